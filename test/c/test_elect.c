/*
 * test_elect: the election runtime over real UDP on loopback (127.0.0.2, .3... are all on lo),
 * 3 to 5 daemons in one process pumped by one poll loop with short timers.  Agreement, failover
 * and return, garbage and replays that change nothing, two clouds electing independently,
 * epochs and incarnations persisted across restarts.  Every wait is a bounded poll for a
 * condition; at every step no two daemons act for one cloud (checked on a frozen clock).
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_elect.h"
#include "cl_log.h"
#include "cl_msg.h"
#include "cl_time.h"

#define MAXN 6
#define BOUND_MS 2000 /* longest wait for an election (expected: ~150-300 ms) */
#define TAP "127.0.0.250"

static const unsigned char KEY_A[] = "cloud-a-secret-0123456789abcdef";
static const unsigned char KEY_B[] = "cloud-b-secret-fedcba9876543210";
#define KEYLEN (sizeof(KEY_A) - 1)

typedef struct node {
    cl_elect_t *e;
    char addr[32], dir[128];
    char leader[64]; /* what on_change said last */
    int acting;
} node_t;

/* A cloud of the test: its pool as node indices (-1: the tap socket) or as given names. */
typedef struct tcloud {
    const char *name;
    const unsigned char *key;
    int member[MAXN];
    size_t n;
    const char *pool[MAXN];
} tcloud_t;

static node_t nodes[MAXN];
/* short timers (ms): hb_interval, hb_timeout, answer_timeout, coord_timeout, quorum_window */
static cl_bully_config_t timers = {20, 100, 25, 80, 100};
static unsigned port;
static char root[64];
static tcloud_t *active[2]; /* the clouds the safety check watches */
static unsigned two_acting; /* times two daemons acted for one cloud at one instant */
static uint64_t frozen;     /* the clock of every cl_elect while set */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t clock_ms(void *ud)
{
    return frozen ? frozen : cl_time_real_us() / 1000;
}

static uint64_t rnd(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
}

/* ---------------------------------------------------------------------------------------- */
/* Daemons and clouds                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void on_change(void *ud, const char *cloud, const char *leader, uint64_t epoch, int acting)
{
    node_t *n = ud;

    snprintf(n->leader, sizeof(n->leader), "%s", leader ? leader : "");
    n->acting = acting;
}

/* Start the daemon of node i (resolve NULL: the default resolver); err if given. */
static int node_start(int i, cl_elect_resolve_fn resolve, cl_err_t *err)
{
    cl_elect_opts_t o = {.address = nodes[i].addr,
                         .port = port,
                         .state_dir = nodes[i].dir,
                         .on_change = on_change,
                         .on_change_ud = &nodes[i],
                         .resolve = resolve};
    cl_err_t local;

    nodes[i].e = cl_elect_new(&o, err ? err : &local);
    if (!nodes[i].e)
        fprintf(stderr, "  cl_elect_new %s: %s\n", nodes[i].addr, (err ? err : &local)->msg);
    return nodes[i].e ? 0 : -1;
}

static void node_stop(int i)
{
    cl_elect_free(nodes[i].e);
    nodes[i].e = NULL;
}

static void stop_all(void)
{
    int i;

    for (i = 0; i < MAXN; i++)
        node_stop(i);
    active[0] = active[1] = NULL;
}

/* The pool entry of position i: given, or its node's address (the tap's for -1). */
static const char *host_of(const tcloud_t *c, size_t i)
{
    return c->pool[i] ? c->pool[i] : c->member[i] >= 0 ? nodes[c->member[i]].addr : TAP;
}

/* The running daemon of pool position i, NULL if none (or the tap). */
static cl_elect_t *member_e(const tcloud_t *c, size_t i)
{
    return c && c->member[i] >= 0 ? nodes[c->member[i]].e : NULL;
}

static int join(int i, const tcloud_t *c)
{
    const char *pool[MAXN];
    cl_err_t err;
    size_t k;

    for (k = 0; k < c->n; k++)
        pool[k] = host_of(c, k);
    cl_err_clear(&err);
    if (cl_elect_join(nodes[i].e, c->name, pool, c->n, c->key, KEYLEN, &timers, &err) == 0)
        return 0;
    fprintf(stderr, "  join %s on %s: %s\n", c->name, nodes[i].addr, err.msg);
    return -1;
}

static int join_all(const tcloud_t *c)
{
    size_t i;
    int rc = 0;

    for (i = 0; i < c->n; i++)
        if (member_e(c, i) && join(c->member[i], c) < 0)
            rc = -1;
    return rc;
}

/*
 * The value at path ("epoch", "members.0.alive", "counters.drops.replay") in a node's status of
 * cloud (NULL: the daemon's); valid until the next call (i < 0 only releases it).
 */
static json_object *status_at(int i, const char *cloud, const char *path)
{
    static json_object *held;
    char key[64], *p, *save = NULL;
    json_object *o;

    json_object_put(held);
    o = held = i >= 0 ? cl_elect_status_json(nodes[i].e, cloud) : NULL;
    snprintf(key, sizeof(key), "%s", path);
    for (p = strtok_r(key, ".", &save); o && p; p = strtok_r(NULL, ".", &save))
        o = json_object_is_type(o, json_type_array) ? json_object_array_get_idx(o, (size_t)atoi(p))
                                                    : json_object_object_get(o, p);
    return o;
}

/* A number (or boolean) there, -1 if there is none. */
static int64_t stat_of(int i, const char *cloud, const char *path)
{
    json_object *o = status_at(i, cloud, path);

    if (json_object_is_type(o, json_type_int) || json_object_is_type(o, json_type_boolean))
        return json_object_get_int64(o);
    return -1;
}

static const char *str_of(int i, const char *cloud, const char *path)
{
    json_object *o = status_at(i, cloud, path);

    return json_object_is_type(o, json_type_string) ? json_object_get_string(o) : "(none)";
}

/* The sum of a node's drop counters. */
static int64_t drops_of(int i)
{
    int64_t sum = 0;
    char key[64];
    int r;

    for (r = CL_MSG_OK + 1; r < CL_MSG_DROP_COUNT; r++) {
        snprintf(key, sizeof(key), "counters.drops.%s", cl_msg_drop_name(r));
        sum += stat_of(i, NULL, key);
    }
    return sum;
}

static int64_t persisted(int i, const char *file, const char *key)
{
    char path[512];
    json_object *o, *v;
    int64_t x = -1;

    snprintf(path, sizeof(path), "%s/election/%s", nodes[i].dir, file);
    if ((o = json_object_from_file(path)) && json_object_object_get_ex(o, key, &v))
        x = json_object_get_int64(v);
    json_object_put(o);
    return x;
}

/* ---------------------------------------------------------------------------------------- */
/* The poll loop                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* At one (frozen) instant, at most one daemon acts for each watched cloud. */
static void check_safety(void)
{
    size_t k, i;
    int acting;

    frozen = cl_time_real_us() / 1000;
    for (k = 0; k < 2; k++) {
        for (i = 0, acting = 0; active[k] && i < active[k]->n; i++)
            acting +=
                member_e(active[k], i) && cl_elect_acting(member_e(active[k], i), active[k]->name);
        if (acting > 1 && two_acting++ < 5)
            fprintf(stderr, "  SAFETY: %d daemons act for cloud %s\n", acting, active[k]->name);
    }
    frozen = 0;
}

typedef int (*pred_fn)(const tcloud_t *c, int arg);

/* Pump every daemon until pred holds or ms pass: the ms it took, or -1 (pred NULL: run ms). */
static long pump(pred_fn pred, const tcloud_t *c, int arg, unsigned ms)
{
    uint64_t start = clock_ms(NULL), now;
    struct pollfd p[MAXN];
    int i, timeout, t;

    for (;;) {
        check_safety();
        now = clock_ms(NULL);
        if (pred && pred(c, arg))
            return (long)(now - start);
        if (now >= start + ms)
            return -1;
        timeout = (int)(start + ms - now) < 10 ? (int)(start + ms - now) : 10;
        for (i = 0; i < MAXN; i++) { /* poll ignores the fd -1 of a node not running */
            p[i].fd = cl_elect_fd(nodes[i].e);
            p[i].events = POLLIN;
            if ((t = cl_elect_timeout_ms(nodes[i].e)) >= 0 && t < timeout)
                timeout = t;
        }
        if (poll(p, MAXN, timeout) < 0 && errno != EINTR)
            return -1;
        for (i = 0; i < MAXN; i++)
            if (nodes[i].e && (p[i].revents & POLLIN))
                cl_elect_on_readable(nodes[i].e);
        now = clock_ms(NULL);
        for (i = 0; i < MAXN; i++)
            if (nodes[i].e && cl_elect_next_deadline_ms(nodes[i].e) <= now)
                cl_elect_on_timer(nodes[i].e);
    }
}

/* The member at pool position p acts; every other running member of the cloud follows it. */
static int agreed(const tcloud_t *c, int p)
{
    int idx, r;
    size_t i;

    if (!member_e(c, (size_t)p) || !cl_elect_acting(member_e(c, (size_t)p), c->name))
        return 0;
    for (i = 0; i < c->n; i++)
        if ((int)i != p && member_e(c, i) &&
            (r = cl_elect_leader(member_e(c, i), c->name, &idx, NULL)) >= 0 && (!r || idx != p))
            return 0; /* (r < 0: it left the cloud) */
    return 1;
}

static int anyone_acts(const tcloud_t *c, int arg)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (member_e(c, i) && cl_elect_acting(member_e(c, i), c->name))
            return 1;
    return 0;
}

/* Wait (bounded) for agreement on position p; reports the time. */
static int elects(const tcloud_t *c, int p, const char *what)
{
    long ms = pump(agreed, c, p, BOUND_MS);

    printf("test_elect: %s: cloud %s, %s leads after %ld ms\n", what, c->name,
           host_of(c, (size_t)p), ms);
    return CHECK(ms >= 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Scenarios                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static int resolve_names(void *ud, const char *host, int family, unsigned p,
                         struct sockaddr_storage *sa, socklen_t *salen, cl_err_t *err)
{
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    const char *ip = strcmp(host, "alpha") == 0  ? "127.0.0.2"
                     : strcmp(host, "beta") == 0 ? "127.0.0.3"
                                                 : NULL;

    if (!ip || family != AF_INET)
        return cl_err_set(err, CL_ERR_ELECTION, 0, host, "resolve", "unknown host %s", host);
    memset(sa, 0, sizeof(*sa));
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)p);
    inet_pton(AF_INET, ip, &in->sin_addr);
    *salen = sizeof(*in);
    return 0;
}

static void test_errors_and_names(void)
{
    static const char *const not_me[] = {"127.0.0.3", "127.0.0.4"};
    static const char *const v6[] = {"127.0.0.2", "::1"};
    static const char *const twice[] = {"127.0.0.2", "127.0.0.3", "127.0.0.3"};
    static const char *const unknown[] = {"alpha", "gamma"};
    cl_bully_config_t bad = timers;
    cl_elect_opts_t o = {.address = "not-an-ip", .state_dir = nodes[0].dir};
    tcloud_t c = {
        .name = "named", .key = KEY_A, .member = {0, 1}, .n = 2, .pool = {"alpha", "beta"}};
    char path[512];
    cl_err_t err;
    FILE *fp;

    cl_err_clear(&err);
    CHECK(cl_elect_new(&o, &err) == NULL);
    CHECK_CONTAINS(err.msg, "not-an-ip");
    o.address = "127.0.0.2";
    o.state_dir = NULL;
    CHECK(cl_elect_new(&o, &err) == NULL);
    if (!CHECK(node_start(0, NULL, NULL) == 0))
        return;
    CHECK_INT_EQ(stat_of(0, NULL, "incarnation"), 1);
    /* the same address and port twice */
    o = (cl_elect_opts_t){.address = nodes[0].addr, .port = port, .state_dir = nodes[5].dir};
    CHECK(cl_elect_new(&o, &err) == NULL);
    CHECK_CONTAINS(err.msg, "127.0.0.2");
    CHECK_CONTAINS(err.msg, "in use");

    CHECK(cl_elect_join(nodes[0].e, "a", not_me, 2, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_CONTAINS(err.msg, "cloud a: this daemon (127.0.0.2) is not in its pool");
    CHECK_CONTAINS(err.msg, "127.0.0.3, 127.0.0.4");
    CHECK(cl_elect_join(nodes[0].e, "a", v6, 2, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_STR_EQ(err.host, "::1");
    CHECK_CONTAINS(err.msg, "::1");
    CHECK_CONTAINS(err.op, "join cloud a");
    CHECK(cl_elect_join(nodes[0].e, "a", twice, 3, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_CONTAINS(err.msg, "127.0.0.3 twice");
    CHECK(cl_elect_join(nodes[0].e, "a", twice, 2, KEY_A, 8, &timers, &err) < 0);
    CHECK_CONTAINS(err.msg, "key of 8 bytes");
    CHECK(cl_elect_join(nodes[0].e, "-a", twice, 2, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_CONTAINS(err.msg, "invalid cloud name");
    bad.hb_interval_ms = 0;
    CHECK(cl_elect_join(nodes[0].e, "a", twice, 2, KEY_A, KEYLEN, &bad, &err) < 0);
    CHECK_CONTAINS(err.op, "join cloud a");
    CHECK(cl_elect_leave(nodes[0].e, "a") < 0); /* nothing was joined */
    CHECK(cl_elect_next_deadline_ms(nodes[0].e) == UINT64_MAX);
    CHECK(cl_elect_status_json(nodes[0].e, "a") == NULL);
    /* a corrupt epoch file is an error naming it */
    snprintf(path, sizeof(path), "%s/election/a.json", nodes[0].dir);
    if ((fp = fopen(path, "w"))) {
        fputs("{\"epoch\":-3}", fp);
        fclose(fp);
    }
    CHECK(cl_elect_join(nodes[0].e, "a", twice, 2, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_CONTAINS(err.msg, path);
    CHECK(cl_elect_forget(nodes[0].e, "a", &err) == 0);
    CHECK(access(path, F_OK) < 0);
    node_stop(0);
    CHECK(node_start(0, NULL, NULL) == 0);
    CHECK_INT_EQ(stat_of(0, NULL, "incarnation"), 2); /* bumped at each start */
    node_stop(0);

    /* pool entries as names, through a resolver: the daemon finds itself by address */
    CHECK(node_start(0, resolve_names, NULL) == 0);
    CHECK(node_start(1, resolve_names, NULL) == 0);
    CHECK(cl_elect_join(nodes[0].e, "named", unknown, 2, KEY_A, KEYLEN, &timers, &err) < 0);
    CHECK_STR_EQ(err.host, "gamma");
    CHECK_CONTAINS(err.msg, "gamma");
    if (CHECK(join_all(&c) == 0)) {
        active[0] = &c;
        elects(&c, 0, "names");
        CHECK_INT_EQ(stat_of(1, "named", "priority"), 1);
        CHECK_STR_EQ(nodes[1].leader, "alpha");
    }
    stop_all();
}

/* 3 daemons: agree, stay quiet, fail over, take over again; rejoin with another pool. */
static void test_three(void)
{
    tcloud_t c = {.name = "a", .key = KEY_A, .member = {0, 1, 2}, .n = 3}, c2 = c;
    int64_t e0, e1, e2, e3, inc0;
    int64_t elections;
    int i;

    active[0] = &c;
    for (i = 0; i < 3; i++)
        if (!CHECK(node_start(i, NULL, NULL) == 0))
            goto done;
    inc0 = stat_of(0, NULL, "incarnation");
    if (!CHECK(join_all(&c) == 0) || !elects(&c, 0, "start"))
        goto done;
    e0 = stat_of(0, "a", "epoch");
    CHECK_INT_EQ(e0 % 3, 0);
    CHECK_INT_EQ(persisted(0, "a.json", "epoch"), e0);
    CHECK_INT_EQ(persisted(2, "a.json", "epoch"), e0); /* followers persist it too */
    CHECK_STR_EQ(nodes[1].leader, "127.0.0.2");
    CHECK(nodes[0].acting && !nodes[1].acting);
    CHECK_INT_EQ(stat_of(1, "a", "acting"), 0);
    CHECK_INT_EQ(stat_of(0, "a", "acting"), 1);
    CHECK_STR_EQ(str_of(1, "a", "state"), "follower");
    CHECK_STR_EQ(str_of(1, "a", "leader"), "127.0.0.2");
    CHECK_STR_EQ(str_of(0, "a", "state"), "leader");
    CHECK_INT_EQ(stat_of(1, "a", "members.0.alive"), 1);
    CHECK(stat_of(1, "a", "members.0.last_heard_ms_ago") >= 0);
    CHECK(stat_of(1, "a", "members.0.last_heard_ms_ago") < (int64_t)timers.hb_timeout_ms);
    CHECK_INT_EQ(stat_of(1, "a", "members.1.self"), 1);
    CHECK_INT_EQ(stat_of(1, "a", "members.2.priority"), 2);
    CHECK(status_at(1, "a", "members.3") == NULL);
    CHECK(stat_of(0, "a", "counters.sent.COORDINATOR") >= 2);

    /* quiet: nothing changes for 400 ms */
    elections = stat_of(1, "a", "counters.elections") + stat_of(2, "a", "counters.elections");
    pump(NULL, &c, 0, 400);
    CHECK(agreed(&c, 0));
    CHECK_INT_EQ(stat_of(0, "a", "epoch"), e0);
    CHECK(stat_of(1, "a", "counters.received.HB") > 0);
    CHECK_INT_EQ(stat_of(1, "a", "counters.elections") + stat_of(2, "a", "counters.elections"),
                 elections);

    /* the leader's daemon goes away: priority 1 takes over */
    node_stop(0);
    if (!elects(&c, 1, "failover"))
        goto done;
    e1 = stat_of(1, "a", "epoch");
    CHECK(e1 > e0);
    CHECK_INT_EQ(e1 % 3, 1);
    CHECK_STR_EQ(nodes[2].leader, "127.0.0.3");

    /* it comes back: new incarnation, its epoch reloaded, takes over with a higher one */
    if (!CHECK(node_start(0, NULL, NULL) == 0))
        goto done;
    CHECK_INT_EQ(stat_of(0, NULL, "incarnation"), inc0 + 1);
    if (!CHECK(join(0, &c) == 0))
        goto done;
    CHECK_INT_EQ(stat_of(0, "a", "epoch_seen"), e0);
    CHECK_STR_EQ(str_of(0, "a", "state"), "joining");
    if (!elects(&c, 0, "return"))
        goto done;
    e2 = stat_of(0, "a", "epoch");
    CHECK(e2 > e1);
    CHECK_INT_EQ(e2 % 3, 0);

    /* rejoining with the same pool changes nothing; with another pool, it is a new election */
    CHECK(join(1, &c) == 0);
    CHECK(agreed(&c, 0));
    c2.member[0] = 1; /* priorities 0 and 1 swapped */
    c2.member[1] = 0;
    active[0] = &c2;
    CHECK(join_all(&c2) == 0);
    if (!elects(&c2, 0, "new pool"))
        goto done;
    e3 = stat_of(1, "a", "epoch");
    CHECK(e3 > e2);
    CHECK_INT_EQ(persisted(1, "a.json", "epoch"), e3);
    for (i = 0; i < 3; i++) /* a new instance sends above the old one's sequence numbers */
        CHECK_INT_EQ(stat_of(i, "a", "counters.drops.replay"), 0);
done:
    CHECK_INT_EQ(two_acting, 0);
    stop_all();
}

/* 5 daemons: two failovers; with two of five left nobody acts; all back, the first leads. */
static void test_five(void)
{
    int64_t saved[3];
    int64_t e0, e1, e2, ef;
    tcloud_t c = {.name = "five", .key = KEY_B, .member = {0, 1, 2, 3, 4}, .n = 5};
    int i;

    active[0] = &c;
    for (i = 0; i < 5; i++)
        if (!CHECK(node_start(i, NULL, NULL) == 0) || !CHECK(join(i, &c) == 0))
            goto done;
    if (!elects(&c, 0, "start"))
        goto done;
    e0 = stat_of(0, "five", "epoch");
    node_stop(0);
    if (!elects(&c, 1, "first failover"))
        goto done;
    e1 = stat_of(1, "five", "epoch");
    CHECK(e1 > e0 && e1 % 5 == 1);
    node_stop(1);
    if (!elects(&c, 2, "second failover"))
        goto done;
    e2 = stat_of(2, "five", "epoch");
    CHECK(e2 > e1 && e2 % 5 == 2);

    /* two of five: a minority, in which nobody may act */
    node_stop(2);
    CHECK(pump(anyone_acts, &c, 0, 600) < 0);

    /* the stopped daemons reload what they persisted */
    for (i = 0; i < 3; i++)
        saved[i] = persisted(i, "five.json", "epoch");
    CHECK_INT_EQ(saved[0], e0);
    CHECK_INT_EQ(saved[1], e1);
    CHECK_INT_EQ(saved[2], e2);
    for (i = 0; i < 3; i++) {
        if (!CHECK(node_start(i, NULL, NULL) == 0) || !CHECK(join(i, &c) == 0))
            goto done;
        CHECK_INT_EQ(stat_of(i, "five", "epoch_seen"), saved[i]);
    }
    if (!elects(&c, 0, "all back"))
        goto done;
    ef = stat_of(0, "five", "epoch");
    CHECK(ef > e2 && ef % 5 == 0);
    for (i = 0; i < 5; i++)
        CHECK_INT_EQ(persisted(i, "five.json", "epoch"), ef);

    /* forgetting removes the file: the next join starts from 0 */
    CHECK(cl_elect_forget(nodes[4].e, "five", NULL) == 0);
    CHECK(persisted(4, "five.json", "epoch") < 0);
    CHECK(cl_elect_status_json(nodes[4].e, "five") == NULL);
    CHECK(join(4, &c) == 0);
    CHECK_INT_EQ(stat_of(4, "five", "epoch_seen"), 0);
    if (elects(&c, 0, "forgetful member back"))
        CHECK_INT_EQ(persisted(4, "five.json", "epoch"), stat_of(0, "five", "epoch"));
done:
    CHECK_INT_EQ(two_acting, 0);
    stop_all();
}

static int bind_udp(const char *ip, unsigned p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, ip, &a.sin_addr);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int64_t sent; /* datagrams send_to sent */

static void send_to(int fd, int i, const void *buf, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

    inet_pton(AF_INET, nodes[i].addr, &a.sin_addr);
    sent += CHECK(sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a)) == (ssize_t)len);
}

static int64_t want_drops;

static int readable(const tcloud_t *c, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) > 0;
}

static int drops_reached(const tcloud_t *c, int node)
{
    return drops_of(node) >= want_drops;
}

/* A message of cloud signed with key: a forgery when the key is not the cloud's. */
static size_t forge(const char *cloud, const unsigned char *key, const char *sender, unsigned prio,
                    char *buf)
{
    cl_msg_t m = {.type = CL_MSG_COORDINATOR, .epoch = 999, .prio = prio, .inc = 99, .seq = 1};
    size_t len = 0;

    snprintf(m.sender, sizeof(m.sender), "%s", sender);
    CHECK(cl_msg_encode(&m, cloud, key, KEYLEN, buf, CL_MSG_MAX, &len, NULL) == 0);
    return len;
}

/*
 * Garbage at a follower and at the leader: a forged claim (wrong key), a replayed heartbeat
 * (captured by a pool member that never answers: the tap socket), truncated, oversized,
 * unknown-cloud, mutated and random datagrams.  Each is dropped and counted; nothing changes.
 */
static void test_garbage(void)
{
    static char big[65000];
    char cap[CL_MSG_MAX], buf[1400];
    int64_t changes[3], elections[3], base, replay, mac;
    ssize_t caplen = -1, n;
    int tap, i, k, t, target;
    uint64_t e0;
    tcloud_t c = {.name = "g", .key = KEY_A, .member = {0, 1, 2, -1}, .n = 4};

    active[0] = &c;
    tap = bind_udp(TAP, port);
    if (!CHECK(tap >= 0))
        return;
    for (i = 0; i < 3; i++)
        if (!CHECK(node_start(i, NULL, NULL) == 0) || !CHECK(join(i, &c) == 0))
            goto done;
    if (!elects(&c, 0, "start with a silent member"))
        goto done;
    e0 = stat_of(0, "g", "epoch");
    for (k = 0; caplen < 0 && k < 50 && pump(readable, &c, tap, BOUND_MS) >= 0; k++)
        while ((n = recv(tap, buf, sizeof(buf), 0)) > 0) /* the leader's heartbeats */
            if (n <= (ssize_t)sizeof(cap) && memmem(buf, (size_t)n, "\"t\":\"HB\"", 8)) {
                memcpy(cap, buf, (size_t)n);
                caplen = n;
            }
    if (!CHECK(caplen > 0))
        goto done;
    for (i = 0; i < 3; i++) {
        changes[i] = stat_of(i, "g", "counters.leader_changes");
        elections[i] = stat_of(i, "g", "counters.elections");
    }
    memcpy(big, "CLOUD1 g ", 9);
    memset(big + 9, 'x', sizeof(big) - 9);

    for (t = 0; t < 2; t++) { /* at a follower, then at the leader */
        target = t == 0 ? 1 : 0;
        base = drops_of(target);
        replay = stat_of(target, "g", "counters.drops.replay");
        mac = stat_of(target, "g", "counters.drops.bad_mac");
        sent = 0;
        send_to(tap, target, cap, (size_t)caplen); /* (to the leader: its own, sent back) */
        send_to(tap, target, buf, forge("g", KEY_B, "127.0.0.2", 0, buf));
        send_to(tap, target, buf, forge("g", KEY_B, TAP, 3, buf));
        send_to(tap, target, buf, forge("zz", KEY_A, TAP, 3, buf));
        send_to(tap, target, cap, 40);
        send_to(tap, target, big, CL_MSG_MAX + 1);
        send_to(tap, target, big, sizeof(big));
        for (k = 0; k < 300; k++) {
            size_t len = (size_t)(rnd() % 1300);
            if (k % 3 == 0) { /* a genuine datagram, one byte changed */
                len = (size_t)caplen;
                memcpy(buf, cap, len);
                buf[rnd() % len] ^= (char)(1 + rnd() % 255);
            } else {
                for (i = 0; i < (int)len; i++)
                    buf[i] = (char)rnd();
            }
            send_to(tap, target, buf, len);
            if (k % 25 == 24) { /* let the receiver keep up: UDP on lo drops when full */
                want_drops = base + sent;
                CHECK(pump(drops_reached, &c, target, BOUND_MS) >= 0);
            }
        }
        want_drops = base + sent;
        CHECK(pump(drops_reached, &c, target, BOUND_MS) >= 0);
        CHECK_INT_EQ(drops_of(target), base + sent);
        CHECK_INT_EQ(stat_of(target, "g", "counters.drops.replay"), replay + 1);
        CHECK(stat_of(target, "g", "counters.drops.bad_mac") >= mac + 2);
        CHECK(stat_of(target, NULL, "counters.drops.unknown_cloud") >= 1);
        CHECK(stat_of(target, NULL, "counters.drops.truncated") >= 1);
        CHECK(stat_of(target, "g", "counters.drops.oversized") >= 2);
        CHECK(stat_of(target, NULL, "counters.drops.bad_header") >= 1);
    }

    /* the election did not notice */
    pump(NULL, &c, 0, 3 * timers.hb_interval_ms);
    CHECK(agreed(&c, 0));
    CHECK_INT_EQ(stat_of(0, "g", "epoch"), e0);
    for (i = 0; i < 3; i++) {
        CHECK_INT_EQ(stat_of(i, "g", "counters.leader_changes"), changes[i]);
        CHECK_INT_EQ(stat_of(i, "g", "counters.elections"), elections[i]);
    }
done:
    CHECK_INT_EQ(two_acting, 0);
    close(tap);
    stop_all();
}

/* Two clouds with other pools and keys on the same daemons elect independently. */
static void test_two_clouds(void)
{
    int64_t changes_b[2];
    int64_t ea, eb;
    tcloud_t a = {.name = "a", .key = KEY_A, .member = {0, 1, 2}, .n = 3};
    tcloud_t b = {.name = "b", .key = KEY_B, .member = {3, 2, 1}, .n = 3};
    int i;

    active[0] = &a;
    active[1] = &b;
    for (i = 0; i < 4; i++)
        if (!CHECK(node_start(i, NULL, NULL) == 0))
            goto done;
    if (!CHECK(join_all(&a) == 0 && join_all(&b) == 0) || !elects(&a, 0, "two clouds") ||
        !elects(&b, 0, "two clouds"))
        goto done;
    CHECK_STR_EQ(str_of(2, NULL, "clouds.a.state"), "follower");
    CHECK_STR_EQ(str_of(2, NULL, "clouds.b.state"), "follower");
    eb = stat_of(3, "b", "epoch");
    changes_b[0] = stat_of(1, "b", "counters.leader_changes");
    changes_b[1] = stat_of(2, "b", "counters.leader_changes");

    /* a's leader goes: a fails over, b does not notice */
    node_stop(0);
    if (!elects(&a, 1, "a without its leader"))
        goto done;
    CHECK(agreed(&b, 0));
    CHECK_INT_EQ(stat_of(3, "b", "epoch"), eb);
    CHECK_INT_EQ(stat_of(1, "b", "counters.leader_changes"), changes_b[0]);
    CHECK_INT_EQ(stat_of(2, "b", "counters.leader_changes"), changes_b[1]);
    CHECK(persisted(1, "a.json", "epoch") != persisted(1, "b.json", "epoch"));

    /* b's leader leaves b (its daemon stays, and a with it): b fails over, a does not notice */
    ea = stat_of(1, "a", "epoch");
    CHECK(cl_elect_leave(nodes[3].e, "b") == 0);
    if (!elects(&b, 1, "b without its leader"))
        goto done;
    CHECK(agreed(&a, 1));
    CHECK_INT_EQ(stat_of(1, "a", "epoch"), ea);
    CHECK(stat_of(3, NULL, "counters.drops.unknown_cloud") > 0); /* b's traffic, no longer its */
done:
    CHECK_INT_EQ(two_acting, 0);
    stop_all();
}

/* A port free on every address the tests use. */
static int pick_port(void)
{
    unsigned p, base = 20000 + (unsigned)getpid() % 20000;
    int fds[MAXN + 1], k, ok;

    for (p = base; p < base + 64; p++) {
        for (k = 0, ok = 1; k <= MAXN; k++)
            ok &= (fds[k] = bind_udp(k < MAXN ? nodes[k].addr : TAP, p)) >= 0;
        for (k = 0; k <= MAXN; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (ok) {
            port = p;
            return 0;
        }
    }
    return -1;
}

int main(void)
{
    FILE *log = tmpfile();
    static char text[1 << 20];
    size_t n = 0;
    int i;

    cl_time_set_source(clock_ms, NULL);
    cl_log_set_stream(log);
    check_tmpdir(root, sizeof(root), "test-elect");
    for (i = 0; i < MAXN; i++) {
        snprintf(nodes[i].addr, sizeof(nodes[i].addr), "127.0.0.%d", i + 2);
        snprintf(nodes[i].dir, sizeof(nodes[i].dir), "%s/n%d", root, i);
    }
    if (CHECK(pick_port() == 0)) {
        test_errors_and_names();
        test_three();
        test_five();
        test_garbage();
        test_two_clouds();
    }
    if (log) {
        fflush(log);
        rewind(log);
        n = fread(text, 1, sizeof(text) - 1, log);
        fclose(log);
    }
    text[n] = '\0';
    cl_log_set_stream(stderr);
    CHECK_CONTAINS(text, "+elected cloud=a epoch=");
    CHECK_CONTAINS(text, "+leader cloud=a leader=127.0.0.2");
    CHECK_CONTAINS(text, "-leader-lost cloud=a");
    CHECK_CONTAINS(text, "-drop cloud=g reason=bad_mac");
    status_at(-1, NULL, "");
    check_rmtree(root);
    return check_summary();
}
