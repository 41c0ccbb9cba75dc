/*
 * cl_elect: the election of several clouds for one daemon over one UDP socket (see
 * cl_elect.h).  cl_bully decides, cl_msg signs and checks; this file does the I/O around them:
 * datagrams in and out, the clock read after each receive, epochs and the incarnation fsync'ed
 * before anything carrying them leaves, counters and the status document.
 */
#include "cl_elect.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_log.h"
#include "cl_msg.h"
#include "cl_spec.h"
#include "cl_time.h"

#define ST_ERR(err, ...) cl_err_set((err), CL_ERR_STATE, 0, NULL, "election state", __VA_ARGS__)
#define COUNT(e, c, field) ((c)->n.field++, (e)->n.field++) /* a cloud's and the daemon's */
#define OOM(err, op) cl_err_set((err), CL_ERR_SYS, ENOMEM, NULL, (op), "out of memory")

typedef struct counters {
    uint64_t sent[CL_MSG_TYPE_COUNT];     /* datagrams sent, one per destination */
    uint64_t received[CL_MSG_TYPE_COUNT]; /* datagrams accepted */
    uint64_t drops[CL_MSG_DROP_COUNT];    /* datagrams dropped, by reason */
    uint64_t send_errors;                 /* sendto failed (the datagram is lost) */
    uint64_t recv_errors;                 /* recv failed (daemon only) */
} counters_t;

typedef struct member {
    char *host;                 /* the pool entry (owned): "s" of its messages */
    struct sockaddr_storage sa; /* where its daemon listens */
    socklen_t salen;
    int heard;         /* a message of it was accepted */
    uint64_t heard_at; /* when the last one was */
} member_t;

typedef struct ecloud {
    struct ecloud *next;
    cl_elect_t *e;
    char name[CL_NAME_MAX + 1];
    member_t *members; /* npool of them, in priority order */
    unsigned npool, me;
    cl_bully_config_t cfg;
    cl_bully_t *b;
    uint64_t deadline; /* of b */
    uint64_t seq;      /* last "q" sent */
    int last_leader, last_acting;
    uint64_t last_epoch; /* what on_change was last told */
    counters_t n;
    /* a follower: the members its leader's last heartbeat said were live, and when it came */
    char leader_live[CL_MSG_LIVE_HEX_MAX + 1];
    int leader_live_from;
    uint64_t leader_live_at;
} ecloud_t;

struct cl_elect {
    char *address; /* as given */
    unsigned port;
    char dir[PATH_MAX]; /* <state>/election */
    struct sockaddr_storage self_sa;
    socklen_t self_salen;
    int fd;
    uint64_t inc;       /* this incarnation, persisted */
    uint64_t seq_floor; /* messages encoded so far: a (re)joined cloud's "q" starts above */
    cl_msg_rx_t *rx;
    ecloud_t *clouds; /* owned list */
    cl_elect_change_fn on_change;
    void *on_change_ud;
    cl_elect_resolve_fn resolve;
    void *resolve_ud;
    counters_t n; /* every cloud's, and the drops no cloud can be told for */
};

/* ---------------------------------------------------------------------------------------- */
/* Persistence: <state>/election/<cloud>.json and <state>/election/incarnation                */
/* ---------------------------------------------------------------------------------------- */

/* {"key":value} into path: path.tmp written and fsync'ed, renamed, the directory fsync'ed. */
static int save_number(const char *dir, const char *path, const char *key, uint64_t value,
                       cl_err_t *err)
{
    const char *op = "persist election state";
    char tmp[PATH_MAX], text[96];
    size_t len, off = 0;
    int fd = -1, dfd = -1, rc = -1;
    ssize_t w;

    len = (size_t)snprintf(text, sizeof(text), "{\"%s\":%" PRIu64 "}\n", key, value);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return ST_ERR(err, "path too long: %s", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return cl_err_sys(err, NULL, op, "open %s", tmp);
    while (off < len)
        if ((w = write(fd, text + off, len - off)) >= 0)
            off += (size_t)w;
        else if (errno != EINTR)
            break;
    if (off < len || fsync(fd) < 0 || rename(tmp, path) < 0 ||
        (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) < 0) {
        cl_err_sys(err, NULL, op, "write, fsync and rename %s", tmp);
        goto cleanup;
    }
    rc = 0;
cleanup:
    close(fd);
    if (rc < 0)
        unlink(tmp);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* The number under key in the JSON object of path: 1 if read, 0 if there is no file, -1. */
static int read_number(const char *path, const char *key, uint64_t *out, cl_err_t *err)
{
    json_object *o = NULL, *v;
    struct stat st;
    int64_t x;
    int rc = -1;

    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : cl_err_sys(err, NULL, "load election state", "stat %s", path);
    o = st.st_size <= CL_ELECT_STATE_MAX ? json_object_from_file(path) : NULL;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v) ||
        !json_object_is_type(v, json_type_int) || (x = json_object_get_int64(v)) < 0 ||
        (uint64_t)x > CL_MSG_NUM_MAX) {
        ST_ERR(err, "%s: not an object with \"%s\" in 0..2^62 (remove it to start from 0)", path,
               key);
        goto cleanup;
    }
    *out = (uint64_t)x;
    rc = 1;
cleanup:
    json_object_put(o); /* ours: the parser's only reference */
    return rc;
}

/* buf: PATH_MAX bytes (e->dir leaves room for a file name of 64) */
static char *epoch_path(const cl_elect_t *e, const char *cloud, char *buf)
{
    snprintf(buf, PATH_MAX, "%.*s/%.40s.json", PATH_MAX - 64, e->dir, cloud);
    return buf;
}

/* cl_bully's persist callback: the newest epoch of a cloud reaches the disk first. */
static int persist_epoch(void *ud, uint64_t epoch)
{
    ecloud_t *c = ud;
    char path[PATH_MAX];
    cl_err_t err;

    cl_err_clear(&err);
    if (save_number(c->e->dir, epoch_path(c->e, c->name, path), "epoch", epoch, &err) == 0)
        return 0;
    cl_log(CL_LOG_ERR, "-persist", "cloud=%s epoch=%" PRIu64 " %s", c->name, epoch, err.msg);
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Addresses                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* host:port into *sa: numeric only (AF_UNSPEC), or looked up in family.  0 or an EAI_/errno. */
static int lookup(const char *host, int family, unsigned port, struct sockaddr_storage *sa,
                  socklen_t *salen)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_DGRAM}, *res = NULL;
    char ps[16];
    int r;

    hints.ai_flags = AI_NUMERICSERV | (family == AF_UNSPEC ? AI_NUMERICHOST : 0);
    snprintf(ps, sizeof(ps), "%u", port);
    if ((r = getaddrinfo(host, ps, &hints, &res)) != 0)
        return r == EAI_SYSTEM ? (errno ? errno : EIO) : r;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The default resolver: a literal of the right family, or getaddrinfo (DNS, /etc/hosts). */
static int resolve_default(void *ud, const char *host, int family, unsigned port,
                           struct sockaddr_storage *sa, socklen_t *salen, cl_err_t *err)
{
    int r = lookup(host, AF_UNSPEC, port, sa, salen); /* a literal needs no lookup */

    if (r == 0 ? sa->ss_family == family : (r = lookup(host, family, port, sa, salen)) == 0)
        return 0;
    return cl_err_set(err, CL_ERR_ELECTION, r, host, "resolve pool host",
                      "cannot resolve %s to an %s address%s%s", host,
                      family == AF_INET ? "IPv4" : "IPv6", r ? ": " : " (not this daemon's family)",
                      r > 0   ? strerror(r)
                      : r < 0 ? gai_strerror(r)
                              : "");
}

/* Same host address (the port is not compared). */
static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
    const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return a4->sin_addr.s_addr == b4->sin_addr.s_addr;
    return a->ss_family == AF_INET6 && memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0 &&
           a6->sin6_scope_id == b6->sin6_scope_id;
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle                                                                                */
/* ---------------------------------------------------------------------------------------- */

cl_elect_t *cl_elect_new(const cl_elect_opts_t *opts, cl_err_t *err)
{
    const char *op = "start election";
    char path[PATH_MAX];
    cl_elect_t *e = NULL;
    uint64_t inc = 0;
    int one = 1;

    if (!opts || !opts->address || !opts->state_dir || opts->port > 65535) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "address, state dir and port 0..65535");
        return NULL;
    }
    if (!(e = calloc(1, sizeof(*e))) || !(e->address = strdup(opts->address))) {
        OOM(err, op);
        goto cleanup;
    }
    e->fd = -1;
    e->port = opts->port ? opts->port : CL_ELECT_PORT;
    e->on_change = opts->on_change;
    e->on_change_ud = opts->on_change_ud;
    e->resolve = opts->resolve ? opts->resolve : resolve_default;
    e->resolve_ud = opts->resolve_ud;
    if (lookup(e->address, AF_UNSPEC, e->port, &e->self_sa, &e->self_salen) != 0) {
        cl_err_set(err, CL_ERR_ELECTION, 0, e->address, op,
                   "address '%s' is not a numeric IPv4 or IPv6 address", e->address);
        goto cleanup;
    }
    if (snprintf(e->dir, sizeof(e->dir), "%s/" CL_ELECT_SUBDIR, opts->state_dir) >=
        (int)sizeof(e->dir) - 64) {
        ST_ERR(err, "state dir path too long: %s", opts->state_dir);
        goto cleanup;
    }
    snprintf(path, sizeof(path), "%.*s/incarnation", PATH_MAX - 64, e->dir);
    if ((mkdir(opts->state_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(e->dir, 0700) < 0 && errno != EEXIST)) {
        cl_err_sys(err, NULL, op, "mkdir %s", e->dir);
        goto cleanup;
    }

    /* the socket first: a second daemon on the same address stops here */
    e->fd = socket(e->self_sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (e->fd >= 0 && e->self_sa.ss_family == AF_INET6)
        setsockopt(e->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (e->fd < 0 || bind(e->fd, (struct sockaddr *)&e->self_sa, e->self_salen) < 0) {
        cl_err_sys(err, e->address, op, "UDP socket on %s port %u", e->address, e->port);
        goto cleanup;
    }
    if (!(e->rx = cl_msg_rx_new(err)))
        goto cleanup;

    /* a new incarnation on disk before any message: peers drop what an older one sent */
    if (read_number(path, "incarnation", &inc, err) < 0)
        goto cleanup;
    e->inc = inc + 1; /* read_number: at most 2^62, so encoding fails if it is exhausted */
    if (save_number(e->dir, path, "incarnation", e->inc, err) < 0)
        goto cleanup;
    cl_log(CL_LOG_INFO, "+election", "address=%s port=%u incarnation=%" PRIu64, e->address, e->port,
           e->inc);
    return e;
cleanup: /* failed */
    cl_elect_free(e);
    return NULL;
}

static void cloud_free(ecloud_t *c)
{
    unsigned i;

    if (!c)
        return;
    cl_bully_free(c->b);
    for (i = 0; c->members && i < c->npool; i++)
        free(c->members[i].host);
    free(c->members);
    free(c);
}

void cl_elect_free(cl_elect_t *e)
{
    ecloud_t *c;

    if (!e)
        return;
    if (e->fd >= 0)
        close(e->fd);
    while ((c = e->clouds)) {
        e->clouds = c->next;
        cloud_free(c);
    }
    cl_msg_rx_free(e->rx); /* wipes the keys it holds */
    free(e->address);
    free(e);
}

uint64_t cl_elect_incarnation(const cl_elect_t *e)
{
    return e ? e->inc : 0;
}

int cl_elect_fd(const cl_elect_t *e)
{
    return e ? e->fd : -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Sending and reporting                                                                     */
/* ---------------------------------------------------------------------------------------- */

/* Heard from member i within hb_timeout (this member always is). */
static int heard_lately(const ecloud_t *c, unsigned i, uint64_t now)
{
    const member_t *m = &c->members[i];

    return i == c->me ||
           (m->heard && now >= m->heard_at && now - m->heard_at < c->cfg.hb_timeout_ms);
}

/* The leader's view of its members, for its heartbeats ("l"): the ones it heard lately. */
static void live_set(const ecloud_t *c, uint64_t now, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned k, b, d;

    for (k = 0; 4 * k < c->npool; k++) {
        for (d = 0, b = 0; b < 4 && 4 * k + b < c->npool; b++)
            if (heard_lately(c, 4 * k + b, now))
                d |= 1u << b;
        out[k] = hex[d];
    }
    out[k] = '\0';
}

/* Is member i in a live set of hex digits? */
static int live_has(const char *live, unsigned i)
{
    size_t k = i / 4;
    char ch;
    int d;

    if (k >= strlen(live))
        return 0;
    ch = live[k];
    d = ch >= 'a' ? ch - 'a' + 10 : ch - '0';
    return (d >> (i % 4)) & 1;
}

/* One action of cl_bully: encode once (the next "q"), send to each destination. */
static void send_one(cl_elect_t *e, ecloud_t *c, const cl_bully_send_t *s, uint64_t now)
{
    cl_msg_t m = {.type = s->type, .epoch = s->epoch, .prio = c->me, .inc = e->inc};
    char buf[CL_MSG_MAX + 1];
    cl_err_t err;
    size_t len;
    ssize_t n;
    unsigned j;

    snprintf(m.sender, sizeof(m.sender), "%s", c->members[c->me].host);
    m.has_ack = s->has_ack;
    m.ack_epoch = s->ack_epoch;
    m.has_round = s->has_round;
    m.round = s->round;
    if (m.type == CL_MSG_HB && c->npool <= 4 * CL_MSG_LIVE_HEX_MAX) {
        m.has_live = 1; /* members see each other's liveness through the leader */
        live_set(c, now, m.live);
    }
    m.seq = ++c->seq;
    e->seq_floor++; /* stays >= every cloud's seq */
    cl_err_clear(&err);
    for (j = 0; j < e->rx->nclouds && strcmp(e->rx->clouds[j].name, c->name) != 0; j++)
        ; /* the receiver holds the key */
    if (j == e->rx->nclouds ||
        cl_msg_encode(&m, c->name, e->rx->clouds[j].key, e->rx->clouds[j].keylen, buf, sizeof(buf),
                      &len, &err) < 0) {
        COUNT(e, c, send_errors);
        cl_log(CL_LOG_ERR, "-send", "cloud=%s %s", c->name, err.msg);
        return;
    }
    for (j = 0; j < c->npool; j++) {
        const member_t *to = &c->members[j];
        if (j == c->me || (s->dest >= 0 && (unsigned)s->dest != j) ||
            (s->dest == CL_BULLY_HIGHER && j >= c->me))
            continue;
        do
            n = sendto(e->fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&to->sa, to->salen);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)len) {
            COUNT(e, c, sent[m.type]);
            continue;
        }
        COUNT(e, c, send_errors);
        cl_log(CL_LOG_DEBUG, "-send", "cloud=%s to=%s type=%s: %s", c->name, to->host,
               cl_msg_type_name(m.type), n < 0 ? strerror(errno) : "short write");
    }
}

/* After each call into cl_bully: send, keep the deadline, log, tell on_change. */
static void settle(cl_elect_t *e, ecloud_t *c, const cl_bully_out_t *out, uint64_t now)
{
    int leader = cl_bully_leader(c->b), acting = cl_bully_acting(c->b, now);
    uint64_t epoch = cl_bully_epoch(c->b);
    size_t k;

    for (k = 0; k < out->nsend; k++)
        send_one(e, c, &out->send[k], now);
    c->deadline = out->deadline;
    cl_bully_log(c->b, c->name, out);
    if (leader >= 0 && leader != c->last_leader)
        cl_log(CL_LOG_INFO, "+leader", "cloud=%s leader=%s epoch=%" PRIu64 " self=%s", c->name,
               c->members[leader].host, epoch, c->members[c->me].host);
    else if (leader < 0 && c->last_leader >= 0 && c->last_leader != (int)c->me)
        cl_log(CL_LOG_INFO, "-leader", "cloud=%s was=%s self=%s", c->name,
               c->members[c->last_leader].host, c->members[c->me].host);
    if (leader == c->last_leader && acting == c->last_acting &&
        (leader < 0 || epoch == c->last_epoch))
        return;
    c->last_leader = leader;
    c->last_epoch = epoch;
    c->last_acting = acting;
    if (e->on_change)
        e->on_change(e->on_change_ud, c->name, leader >= 0 ? c->members[leader].host : NULL, epoch,
                     acting);
}

/* ---------------------------------------------------------------------------------------- */
/* Clouds                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Where the cloud named name[0..n) is linked (*result NULL if not joined). */
static ecloud_t **find(const cl_elect_t *e, const char *name, size_t n)
{
    ecloud_t *const *p;

    for (p = &e->clouds; *p; p = &(*p)->next)
        if (strlen((*p)->name) == n && memcmp((*p)->name, name, n) == 0)
            break;
    return (ecloud_t **)p;
}

static ecloud_t *lookup_cloud(const cl_elect_t *e, const char *cloud)
{
    return e && cloud ? *find(e, cloud, strlen(cloud)) : NULL;
}

/* The key of c to the receiver (which copies it, and also signs with it), with c's pool. */
static int set_key(cl_elect_t *e, ecloud_t *c, const unsigned char *key, size_t keylen,
                   cl_err_t *err)
{
    const char **names = calloc(c->npool, sizeof(*names));
    unsigned i;
    int rc;

    if (!names)
        return OOM(err, "join election");
    for (i = 0; i < c->npool; i++)
        names[i] = c->members[i].host;
    rc = cl_msg_rx_add_cloud(e->rx, c->name, key, keylen, names, c->npool, err);
    free(names);
    return rc;
}

/* The pool entries, resolved; which one is this daemon.  -1 and err naming the culprit. */
static int resolve_pool(cl_elect_t *e, ecloud_t *c, const char *const *pool, cl_err_t *err)
{
    const char *op = "join election";
    char list[512] = "";
    size_t used = 0;
    unsigned i, j;
    int self = -1;

    for (i = 0; i < c->npool; i++) {
        member_t *m = &c->members[i];
        if (!pool[i] || !*pool[i] || strlen(pool[i]) > CL_MSG_SENDER_MAX)
            return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op,
                              "cloud %s: pool[%u] empty or "
                              "too long",
                              c->name, i);
        for (j = 0; j < i; j++)
            if (strcmp(pool[j], pool[i]) == 0)
                return cl_err_set(err, CL_ERR_ELECTION, 0, pool[i], op,
                                  "cloud %s: the pool lists %s twice", c->name, pool[i]);
        if (!(m->host = strdup(pool[i])))
            return OOM(err, op);
        if (e->resolve(e->resolve_ud, m->host, e->self_sa.ss_family, e->port, &m->sa, &m->salen,
                       err) < 0)
            return -1;
        if (strcmp(m->host, e->address) == 0 || same_addr(&m->sa, &e->self_sa)) {
            if (self >= 0)
                return cl_err_set(err, CL_ERR_ELECTION, 0, m->host, op,
                                  "cloud %s: %s and %s are both this daemon (%s)", c->name,
                                  c->members[self].host, m->host, e->address);
            self = (int)i;
        }
        if (used < sizeof(list))
            used +=
                (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", m->host);
    }
    if (self < 0)
        return cl_err_set(err, CL_ERR_ELECTION, 0, e->address, op,
                          "cloud %s: this daemon (%s) is not in its pool (%s)", c->name, e->address,
                          list);
    c->me = (unsigned)self;
    return 0;
}

/* The same pool (entries, order) and timers: joining again only changes the key. */
static int same_setup(const ecloud_t *c, const char *const *pool, size_t npool,
                      cl_bully_config_t cfg)
{
    size_t i;

    cfg.persist_ud = c->cfg.persist_ud; /* the rest: five timers and persist_epoch */
    if (c->npool != npool || memcmp(&c->cfg, &cfg, sizeof(cfg)) != 0)
        return 0;
    for (i = 0; i < npool; i++)
        if (strcmp(c->members[i].host, pool[i]) != 0)
            return 0;
    return 1;
}

int cl_elect_join(cl_elect_t *e, const char *cloud, const char *const *pool, size_t npool,
                  const unsigned char *key, size_t keylen, const cl_bully_config_t *timers,
                  cl_err_t *err)
{
    const char *op = "join election";
    char path[PATH_MAX];
    cl_bully_config_t cfg;
    cl_bully_out_t out;
    ecloud_t *c = NULL, **at, *old;
    uint64_t epoch = 0, now;
    int rc = -1;

    if (!e || !cloud || !cl_spec_name_ok(cloud))
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "invalid cloud name '%.60s'",
                          cloud ? cloud : "");
    if (!pool || npool == 0 || npool > CL_MSG_POOL_MAX) /* the key: cl_msg_rx_add_cloud */
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "cloud %s: pool of %zu entries", cloud,
                          npool);
    cl_bully_config_default(&cfg);
    if (timers)
        cfg = *timers;
    cfg.persist = persist_epoch;
    at = find(e, cloud, strlen(cloud));
    if ((old = *at) && same_setup(old, pool, npool, cfg)) /* the election goes on */
        return set_key(e, old, key, keylen, err);

    if (!(c = calloc(1, sizeof(*c))) || !(c->members = calloc(npool, sizeof(*c->members)))) {
        OOM(err, op);
        goto cleanup;
    }
    c->e = e;
    snprintf(c->name, sizeof(c->name), "%s", cloud);
    c->npool = (unsigned)npool;
    c->last_leader = -1;
    if (resolve_pool(e, c, pool, err) < 0 ||
        read_number(epoch_path(e, cloud, path), "epoch", &epoch, err) < 0)
        goto cleanup;
    if (old && cl_bully_epoch_seen(old->b) > epoch)
        epoch = cl_bully_epoch_seen(old->b);
    cfg.persist_ud = c;
    c->cfg = cfg;
    if (!(c->b = cl_bully_new(&cfg, c->npool, c->me, epoch, err)) ||
        set_key(e, c, key, keylen, err) < 0)
        goto cleanup;

    /* committed: c takes old's place (or the head of the list) */
    c->seq = e->seq_floor;
    if (old) {
        if (cl_bully_state(old->b) == CL_BULLY_LEADER)
            cl_log(CL_LOG_WARN, "-leader-lost", "cloud=%s rejoined with another pool or timers",
                   cloud);
        c->last_leader = old->last_leader;
        c->last_epoch = old->last_epoch;
        c->last_acting = old->last_acting;
        c->n = old->n;
        *at = old->next;
        cloud_free(old);
    }
    c->next = e->clouds;
    e->clouds = c;
    cl_log(CL_LOG_INFO, "+join", "cloud=%s self=%s priority=%u pool=%u epoch=%" PRIu64, cloud,
           c->members[c->me].host, c->me, c->npool, epoch);
    now = cl_time_now_ms();
    cl_bully_start(c->b, now, &out);
    settle(e, c, &out, now);
    c = NULL;
    rc = 0;
cleanup:
    if (rc < 0 && err) /* the resolver and cl_bully do not know the cloud */
        snprintf(err->op, sizeof(err->op), "join cloud %s", cloud);
    cloud_free(c);
    return rc;
}

int cl_elect_leave(cl_elect_t *e, const char *cloud)
{
    ecloud_t *c, **at;

    /* the receiver keeps the cloud (its replay floors serve a rejoin); handle() drops its
     * datagrams as unknown_cloud */
    if (!e || !cloud || !(c = *(at = find(e, cloud, strlen(cloud)))))
        return -1;
    if (cl_bully_state(c->b) == CL_BULLY_LEADER)
        cl_log(CL_LOG_WARN, "-leader-lost", "cloud=%s left", c->name);
    cl_log(CL_LOG_INFO, "-join", "cloud=%s self=%s", c->name, c->members[c->me].host);
    *at = c->next;
    cloud_free(c);
    return 0;
}

int cl_elect_forget(cl_elect_t *e, const char *cloud, cl_err_t *err)
{
    char path[PATH_MAX];

    if (!e || !cloud || !cl_spec_name_ok(cloud))
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "forget election",
                          "invalid cloud name '%.60s'", cloud ? cloud : "");
    cl_elect_leave(e, cloud);
    if (unlink(epoch_path(e, cloud, path)) < 0 && errno != ENOENT)
        return cl_err_sys(err, NULL, "forget election", "unlink %s", path);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Receiving and timers                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* The joined cloud a datagram's header names ("CLOUD1 <name> "), to count its drops. */
static ecloud_t *header_cloud(const cl_elect_t *e, const char *buf, size_t len)
{
    const size_t m = sizeof(CL_MSG_MAGIC); /* with the space after it */
    const char *sp;

    if (len <= m || memcmp(buf, CL_MSG_MAGIC " ", m) != 0)
        return NULL;
    sp = memchr(buf + m, ' ', len - m < CL_NAME_MAX + 1 ? len - m : CL_NAME_MAX + 1);
    return sp ? *find(e, buf + m, (size_t)(sp - buf) - m) : NULL;
}

static void handle(cl_elect_t *e, const char *buf, size_t len, uint64_t now)
{
    ecloud_t *c = header_cloud(e, buf, len < CL_MSG_MAX ? len : CL_MSG_MAX);
    cl_bully_out_t out;
    cl_msg_t m;
    int r;

    /* only CL_MSG_MAX + 1 bytes of a longer one were read */
    r = len > CL_MSG_MAX ? CL_MSG_DROP_OVERSIZED : cl_msg_decode(e->rx, buf, len, &m);
    if (r == CL_MSG_OK && (!c || m.prio >= c->npool || m.prio == c->me)) /* left; our own */
        r = c && m.prio == c->me ? CL_MSG_DROP_REPLAY : CL_MSG_DROP_UNKNOWN_CLOUD;
    if (r != CL_MSG_OK) {
        e->n.drops[r]++;
        if (c)
            c->n.drops[r]++;
        /* the 1st, 2nd, 4th, 8th... of a reason is a warning: a wrong key shows in the log */
        cl_log((e->n.drops[r] & (e->n.drops[r] - 1)) == 0 ? CL_LOG_WARN : CL_LOG_DEBUG, "-drop",
               "cloud=%s reason=%s len=%zu count=%" PRIu64, c ? c->name : "?", cl_msg_drop_name(r),
               len, e->n.drops[r]);
        return;
    }
    COUNT(e, c, received[m.type]);
    c->members[m.prio].heard = 1;
    c->members[m.prio].heard_at = now;
    cl_bully_on_msg(c->b, now, &m, &out);
    if (m.type == CL_MSG_HB && m.has_live && cl_bully_leader(c->b) == (int)m.prio) {
        memcpy(c->leader_live, m.live, sizeof(c->leader_live));
        c->leader_live_from = (int)m.prio;
        c->leader_live_at = now;
    }
    settle(e, c, &out, now);
}

void cl_elect_on_readable(cl_elect_t *e)
{
    char buf[CL_MSG_MAX + 1];
    ssize_t n;
    int i;

    for (i = 0; e && e->fd >= 0 && i < CL_ELECT_DRAIN_MAX; i++) {
        /* MSG_TRUNC: the real length of a longer datagram, so that it counts as oversized */
        n = recv(e->fd, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 && errno != EINTR) { /* e.g. ICMP errors about earlier datagrams */
            e->n.recv_errors++;
            cl_log(CL_LOG_DEBUG, "-recv", "address=%s: %s", e->address, strerror(errno));
        }
        if (n < 0)
            continue;
        handle(e, buf, (size_t)n, cl_time_now_ms()); /* the clock read after receiving */
    }
}

uint64_t cl_elect_next_deadline_ms(const cl_elect_t *e)
{
    uint64_t d = UINT64_MAX;
    const ecloud_t *c;

    for (c = e ? e->clouds : NULL; c; c = c->next)
        if (c->deadline < d)
            d = c->deadline;
    return d;
}

int cl_elect_timeout_ms(const cl_elect_t *e)
{
    uint64_t d = cl_elect_next_deadline_ms(e), now = cl_time_now_ms();

    if (d == UINT64_MAX)
        return -1;
    return d <= now ? 0 : d - now > INT_MAX ? INT_MAX : (int)(d - now);
}

void cl_elect_on_timer(cl_elect_t *e)
{
    uint64_t now = cl_time_now_ms();
    cl_bully_out_t out;
    ecloud_t *c;

    for (c = e ? e->clouds : NULL; c; c = c->next) {
        if (c->deadline > now)
            continue;
        cl_bully_on_timer(c->b, now, &out);
        settle(e, c, &out, now);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Queries                                                                                   */
/* ---------------------------------------------------------------------------------------- */

int cl_elect_leader(const cl_elect_t *e, const char *cloud, int *leader_index, uint64_t *epoch)
{
    const ecloud_t *c = lookup_cloud(e, cloud);
    int leader = c ? cl_bully_leader(c->b) : -1;

    if (leader_index)
        *leader_index = leader;
    if (c && epoch)
        *epoch = cl_bully_epoch(c->b);
    return c ? leader >= 0 : -1;
}

int cl_elect_acting(const cl_elect_t *e, const char *cloud)
{
    const ecloud_t *c = lookup_cloud(e, cloud);

    return c ? cl_bully_acting(c->b, cl_time_now_ms()) : 0;
}

#define ADD(obj, key, val) json_object_object_add((obj), (key), (val))

static json_object *counters_json(const counters_t *n)
{
    json_object *o = json_object_new_object(), *sent, *recv, *drops;
    int i;

    ADD(o, "sent", sent = json_object_new_object());
    ADD(o, "received", recv = json_object_new_object());
    for (i = 0; sent && recv && i < CL_MSG_TYPE_COUNT; i++) {
        ADD(sent, cl_msg_type_name(i), json_object_new_uint64(n->sent[i]));
        ADD(recv, cl_msg_type_name(i), json_object_new_uint64(n->received[i]));
    }
    ADD(o, "drops", drops = json_object_new_object());
    for (i = CL_MSG_OK + 1; drops && i < CL_MSG_DROP_COUNT; i++)
        ADD(drops, cl_msg_drop_name(i), json_object_new_uint64(n->drops[i]));
    ADD(o, "send_errors", json_object_new_uint64(n->send_errors));
    ADD(o, "recv_errors", json_object_new_uint64(n->recv_errors));
    return o;
}

static json_object *cloud_status(const cl_elect_t *e, const ecloud_t *c, uint64_t now)
{
    const cl_bully_stats_t *st = cl_bully_stats(c->b);
    json_object *o = json_object_new_object(), *members, *k;
    int leader = cl_bully_leader(c->b);
    unsigned i;

    if (!o)
        return NULL;
    ADD(o, "cloud", json_object_new_string(c->name));
    ADD(o, "state", json_object_new_string(cl_bully_state_name(cl_bully_state(c->b))));
    ADD(o, "self", json_object_new_string(c->members[c->me].host));
    ADD(o, "priority", json_object_new_int((int)c->me));
    ADD(o, "leader", leader >= 0 ? json_object_new_string(c->members[leader].host) : NULL);
    ADD(o, "epoch", json_object_new_uint64(cl_bully_epoch(c->b)));
    ADD(o, "epoch_seen", json_object_new_uint64(cl_bully_epoch_seen(c->b)));
    ADD(o, "acting", json_object_new_boolean(cl_bully_acting(c->b, now)));
    ADD(o, "incarnation", json_object_new_uint64(e->inc));
    ADD(o, "members", members = json_object_new_array());
    for (i = 0; members && i < c->npool; i++) {
        const member_t *m = &c->members[i];
        json_object *mo = json_object_new_object();
        int self = i == c->me;
        uint64_t ago = m->heard && now > m->heard_at ? now - m->heard_at : 0;
        int direct = heard_lately(c, i, now);
        /* a follower does not hear the other followers: its leader's last heartbeat tells */
        int via = !direct && leader >= 0 && leader != (int)c->me && c->leader_live_from == leader &&
                  c->leader_live_at && now - c->leader_live_at < c->cfg.hb_timeout_ms &&
                  live_has(c->leader_live, i);
        if (!mo)
            break;
        ADD(mo, "host", json_object_new_string(m->host));
        ADD(mo, "priority", json_object_new_int((int)i));
        ADD(mo, "self", json_object_new_boolean(self));
        ADD(mo, "alive", json_object_new_boolean(direct || via));
        ADD(mo, "seen_by",
            json_object_new_string(self     ? "self"
                                   : direct ? "direct"
                                   : via    ? "leader"
                                            : "nobody"));
        ADD(mo, "last_heard_ms_ago", m->heard && !self ? json_object_new_uint64(ago) : NULL);
        json_object_array_add(members, mo);
    }
    ADD(o, "counters", k = counters_json(&c->n));
    if (k) {
        ADD(k, "elections", json_object_new_uint64(st->elections));
        ADD(k, "leader_changes", json_object_new_uint64(st->leader_changes));
        ADD(k, "persist_failures", json_object_new_uint64(st->persist_failures));
        ADD(k, "acks_withheld", json_object_new_uint64(st->acks_withheld));
    }
    return o;
}

json_object *cl_elect_status_json(const cl_elect_t *e, const char *cloud)
{
    uint64_t now = cl_time_now_ms();
    json_object *o, *clouds;
    const ecloud_t *c;

    if (!e || cloud)
        return (c = lookup_cloud(e, cloud)) ? cloud_status(e, c, now) : NULL;
    if (!(o = json_object_new_object()))
        return NULL;
    ADD(o, "address", json_object_new_string(e->address));
    ADD(o, "port", json_object_new_int((int)e->port));
    ADD(o, "incarnation", json_object_new_uint64(e->inc));
    ADD(o, "clouds", clouds = json_object_new_object());
    for (c = e->clouds; clouds && c; c = c->next)
        ADD(clouds, c->name, cloud_status(e, c, now));
    ADD(o, "counters", counters_json(&e->n));
    return o;
}
