/*
 * cl_peers: the election and the host-operation server of one daemon, on its peer address,
 * driven by libvirt's event loop (see cl_peers.h).  The election is not thread-safe, so every
 * call into it, from the loop or from request threads, holds the layer's lock; served host
 * operations run on threads of their own (cl_rpc fences them).
 */
#include "cl_peers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_elect.h"
#include "cl_handover.h"
#include "cl_log.h"
#include "cl_msg.h"
#include "cl_net.h"
#include "cl_rpc.h"
#include "cl_run.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define CL_PEERS_QUIET_CONNECT_MS 300 /* a member not heard lately: connect within this */
#define CL_PEERS_QUIET_REPLY_MS 1000  /* ... and answer within this, or it is down */

typedef struct peer_cloud {
    char name[CL_NAME_MAX + 1];
    cl_spec_t *spec;    /* owned: the hypervisor for served operations, the pool */
    unsigned char *key; /* owned, wiped on free */
    size_t keylen;
    cl_host_t *local;               /* this host's hypervisor for served operations (lazily made) */
    int acting;                     /* as last told by the election */
    int joined;                     /* taking part in its election (not left) */
    uint64_t joined_ms, contact_ms; /* when joined; when last acting or following a leader */
    int fenced;                     /* fenced itself since it last had contact */
    uint64_t acting_since;          /* when this daemon last started acting (0: not acting) */
    uint64_t alive_mask;            /* the members heard lately, as of the last tick */
} peer_cloud_t;

struct cl_peers {
    char *address;
    unsigned port;
    char *state_dir;
    cl_elect_t *elect;
    cl_rpc_server_t *rpc;
    int tcp_fd;
    int udp_watch, tcp_watch, timer;
    pthread_mutex_t lock; /* elect, clouds */
    cl_engine_t *engine;
    peer_cloud_t *clouds;
    size_t nclouds;
    cl_bully_config_t timers; /* election timers (persist fields unused) */
    cl_peers_control_fn control;
    void *control_ud;
    uint64_t fence_ms;       /* self-fencing after this long without the leader */
    uint64_t last_tick;      /* when cl_peers_tick last ended (a stall: this far behind) */
    cl_peers_watch_fn watch; /* a member's liveness changed, or a leader started acting */
    void *watch_ud;
};

/* ========================================================================================== */
/* Clouds                                                                                     */
/* ========================================================================================== */

static peer_cloud_t *find(cl_peers_t *p, const char *name)
{
    size_t i;

    for (i = 0; i < p->nclouds; i++)
        if (strcmp(p->clouds[i].name, name) == 0)
            return &p->clouds[i];
    return NULL;
}

static void cloud_clear(peer_cloud_t *c)
{
    cl_spec_free(c->spec);
    if (c->key) {
        memset(c->key, 0, c->keylen);
        free(c->key);
    }
    cl_host_free(c->local);
    memset(c, 0, sizeof(*c));
}

/* ========================================================================================== */
/* Event loop                                                                                 */
/* ========================================================================================== */

/* Under the lock: the election's next deadline for the loop's timer. */
static void rearm(cl_peers_t *p)
{
    if (p->timer >= 0)
        virEventUpdateTimeout(p->timer, cl_elect_timeout_ms(p->elect));
}

static void on_udp(int watch, int fd, int events, void *ud)
{
    cl_peers_t *p = ud;

    pthread_mutex_lock(&p->lock);
    cl_elect_on_readable(p->elect);
    rearm(p);
    pthread_mutex_unlock(&p->lock);
}

static void on_timer(int timer, void *ud)
{
    cl_peers_t *p = ud;

    pthread_mutex_lock(&p->lock);
    cl_elect_on_timer(p->elect);
    rearm(p);
    pthread_mutex_unlock(&p->lock);
}

/* The host whose operations are served for cloud: this host's hypervisor (borrowed). */
static cl_host_t *local_for(void *ud, const char *cloud, cl_err_t *err)
{
    cl_peers_t *p = ud;
    peer_cloud_t *c;
    cl_host_t *h = NULL;

    pthread_mutex_lock(&p->lock);
    c = find(p, cloud);
    if (!c) {
        cl_err_set(err, CL_ERR_ELECTION, 0, p->address, "serve",
                   "cloud %s is not known here: apply its manifest on this host", cloud);
    } else if (!c->local && p->engine) {
        char *uri = cl_spec_uri_for(c->spec->hypervisor, p->address);
        cl_virt_t *v = uri ? cl_engine_conn(p->engine, uri, p->address, err) : NULL;
        free(uri);
        if (v)
            c->local = cl_host_local_new(v, p->address, err);
    }
    if (c)
        h = c->local;
    pthread_mutex_unlock(&p->lock);
    return h;
}

typedef struct served {
    cl_peers_t *p;
    int fd;
} served_t;

static void *serve(void *arg)
{
    served_t *s = arg;

    cl_rpc_serve_fd(s->p->rpc, s->fd, local_for, s->p);
    close(s->fd);
    free(s);
    return NULL;
}

static void on_tcp(int watch, int fd, int events, void *ud)
{
    cl_peers_t *p = ud;
    int cfd;

    while ((cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        pthread_attr_t attr;
        pthread_t th;
        served_t *s = malloc(sizeof(*s));
        if (!s) {
            close(cfd);
            continue;
        }
        s->p = p;
        s->fd = cfd;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, serve, s) != 0) {
            close(cfd);
            free(s);
        }
        pthread_attr_destroy(&attr);
    }
}

/* A new leader adopts the cloud from the hosts' domains and finishes its convergence. */
static void *takeover(void *arg)
{
    cl_peers_t *p = ((void **)arg)[0];
    char *name = ((void **)arg)[1];
    json_object *res = NULL;
    cl_err_t err;

    free(arg);
    cl_err_clear(&err);
    if (p->engine && cl_engine_takeover(p->engine, name, &res, &err) < 0)
        cl_log(CL_LOG_WARN, "-takeover", "cloud=%s %s%s%s: %s", name, err.host,
               err.host[0] ? ": " : "", err.op, err.msg);
    else
        cl_log(CL_LOG_INFO, "+takeover", "cloud=%s converged", name);
    json_object_put(res);
    free(name);
    return NULL;
}

/* Called by the election, under the lock. */
static void on_change(void *ud, const char *cloud, const char *leader, uint64_t epoch, int acting)
{
    cl_peers_t *p = ud;
    peer_cloud_t *c = find(p, cloud);
    cl_err_t err;

    cl_err_clear(&err);
    /* every host fences with the newest epoch it knows, its own operations included */
    if (epoch && cl_rpc_server_fence(p->rpc, cloud, epoch, p->address, &err) < 0)
        cl_log(CL_LOG_DEBUG, "-fence", "cloud=%s %s", cloud, err.msg);
    if (c && acting && !c->acting) {
        void **arg = malloc(2 * sizeof(void *));
        pthread_attr_t attr;
        pthread_t th;
        if (arg && (arg[1] = strdup(cloud)) != NULL) {
            arg[0] = p;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&th, &attr, takeover, arg) != 0) {
                free(arg[1]);
                free(arg);
            }
            pthread_attr_destroy(&attr);
        } else {
            free(arg);
        }
    }
    if (c) {
        if (acting && !c->acting && p->watch)
            p->watch(p->watch_ud, cloud, "acting");
        if (acting && !c->acting)
            c->acting_since = cl_time_now_ms();
        else if (!acting)
            c->acting_since = 0;
        c->acting = acting;
    }
    (void)leader;
}

/* ========================================================================================== */
/* Cloud-level requests: who leads, and control requests handed to the leader                 */
/* ========================================================================================== */

static int same_pool(const cl_spec_t *a, const cl_spec_t *b)
{
    size_t i;

    if (a->npool != b->npool)
        return 0;
    for (i = 0; i < a->npool; i++)
        if (strcmp(a->pool[i], b->pool[i]) != 0)
            return 0;
    return 1;
}

/* A handed-over control request: one of the cloud's, for the cloud this leader joined. */
static int control_check(peer_cloud_t *c, const char *cloud, json_object *req, cl_err_t *err)
{
    static const char *const ops[] = {"apply", "plan", "stop", "status", "exec"};
    json_object *v;
    cl_spec_t *spec = NULL;
    const char *op = NULL;
    size_t i;
    int rc = -1;

    if (json_object_object_get_ex(req, "op", &v) && json_object_is_type(v, json_type_string))
        op = json_object_get_string(v);
    for (i = 0; op && i < sizeof(ops) / sizeof(ops[0]) && strcmp(op, ops[i]) != 0; i++)
        ;
    if (!op || i == sizeof(ops) / sizeof(ops[0]))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "control",
                          "only apply, plan, stop, status and exec are handed over, not '%.32s'",
                          op ? op : "");
    if (json_object_object_get_ex(req, "name", &v) &&
        (!json_object_is_type(v, json_type_string) ||
         strcmp(json_object_get_string(v), cloud) != 0))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "the request names another cloud");
    if (!json_object_object_get_ex(req, "spec", &v))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no spec in the request");
    if (cl_spec_parse(v, &spec, err) < 0)
        return -1;
    if (strcmp(spec->name, cloud) != 0)
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, op, "name: the spec is of cloud %s, not %s",
                   spec->name, cloud);
    else if (!same_pool(spec, c->spec))
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, op,
                   "pool: differs from the pool the members of cloud %s joined with: change "
                   "the pool on the pool hosts' manifests",
                   cloud);
    else if (!spec->secret_file || strcmp(spec->secret_file, c->spec->secret_file) != 0)
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, op,
                   "secret_file: differs from the one the members of cloud %s use (%s)", cloud,
                   c->spec->secret_file);
    else
        rc = 0;
    cl_spec_free(spec);
    return rc;
}

/*
 * A leader asks or tells this host the cloud's intent (cl_engine_intent).  An order older than
 * the election's epoch here is refused; a spec sent with "running" is kept only if it is of
 * the pool this host joined.  "forget" (the stop is done) also leaves the election.
 */
static json_object *intent_answer(cl_peers_t *p, const char *cloud, uint64_t epoch,
                                  uint64_t elect_epoch, json_object *args, cl_err_t *err)
{
    json_object *v, *res;
    const char *set = NULL;
    cl_spec_t *given = NULL;
    cl_intent_t in;
    int rc;

    if (json_object_object_get_ex(args, "set", &v) && json_object_is_type(v, json_type_string))
        set = json_object_get_string(v);
    if (set && epoch < elect_epoch) {
        cl_err_set(err, CL_ERR_ELECTION, CL_RPC_EPOCH_MOVED, p->address, "intent",
                   "an order of epoch %" PRIu64 " for cloud %s, which is in epoch %" PRIu64 " here",
                   epoch, cloud, elect_epoch);
        return NULL;
    }
    if (set && strcmp(set, "running") == 0 && json_object_object_get_ex(args, "spec", &v)) {
        cl_err_t e2;
        cl_err_clear(&e2);
        if (cl_spec_parse(v, &given, &e2) == 0) {
            peer_cloud_t *c;
            int same;
            pthread_mutex_lock(&p->lock);
            c = find(p, cloud);
            same = c && strcmp(given->name, cloud) == 0 && same_pool(given, c->spec);
            pthread_mutex_unlock(&p->lock);
            if (!same) {
                cl_spec_free(given);
                given = NULL;
            }
        }
    }
    if (!p->engine) {
        cl_spec_free(given);
        cl_err_set(err, CL_ERR_ELECTION, 0, p->address, "intent", "this cloudd has no engine");
        return NULL;
    }
    rc = cl_engine_intent(p->engine, cloud, set, epoch, given, &in, err);
    cl_spec_free(given);
    if (rc < 0)
        return NULL;
    if (rc == 1)
        cl_peers_leave(p, cloud);
    res = json_object_new_object();
    json_object_object_add(res, "known", json_object_new_boolean(in.known));
    json_object_object_add(res, "ensure",
                           json_object_new_string(in.stopped ? "stopped" : "running"));
    json_object_object_add(res, "epoch", json_object_new_int64((int64_t)in.epoch));
    return res;
}

/*
 * cl_rpc's cloud-level requests, from members or from machines outside the pool, signed with
 * the cloud's key: "leader" says who leads; "control" runs a request on this daemon as if it
 * came from its socket, only while this host is the acting leader in the epoch named.
 */
static json_object *admin(void *ud, const char *cloud, int op, uint64_t epoch, json_object *args,
                          cl_err_t *err)
{
    cl_peers_t *p = ud;
    char leader[CL_MSG_SENDER_MAX + 1] = "";
    json_object *res = NULL, *req = NULL, *events, *ans;
    peer_cloud_t *c;
    uint64_t ep = 0;
    int li = -1, acting = 0, checked = -1;
    cl_peers_control_fn fn;
    void *fud;

    pthread_mutex_lock(&p->lock);
    c = find(p, cloud);
    if (c && cl_elect_leader(p->elect, cloud, &li, &ep) == 1 && li >= 0 &&
        (size_t)li < c->spec->npool) {
        snprintf(leader, sizeof(leader), "%s", c->spec->pool[li]);
        acting = strcmp(leader, p->address) == 0 && cl_elect_acting(p->elect, cloud);
    }
    if (c && op == CL_RPC_CONTROL && acting && epoch == ep) {
        json_object_object_get_ex(args, "request", &req);
        checked = control_check(c, cloud, req, err);
    }
    fn = p->control;
    fud = p->control_ud;
    pthread_mutex_unlock(&p->lock);
    if (!c) {
        cl_err_set(err, CL_ERR_ELECTION, 0, p->address, cl_rpc_op_name(op),
                   "cloud %s is not known here: apply its manifest on this host", cloud);
        return NULL;
    }
    if (op == CL_RPC_LEADER) {
        res = json_object_new_object();
        if (cl_rpc_json_put(res, "leader", leader[0] ? json_object_new_string(leader) : NULL) < 0 ||
            cl_rpc_json_put(res, "epoch", json_object_new_int64((int64_t)ep)) < 0 ||
            cl_rpc_json_put(res, "acting", json_object_new_boolean(acting)) < 0 ||
            cl_rpc_json_put(res, "self", json_object_new_string(p->address)) < 0) {
            json_object_put(res);
            cl_err_set(err, CL_ERR_SYS, ENOMEM, p->address, "leader", "out of memory");
            return NULL;
        }
        return res;
    }
    if (op == CL_RPC_POKE && acting) {
        /* a member saw a domain of the cloud stop: the monitor looks at once */
        json_object *v;
        const char *slot =
            json_object_object_get_ex(args, "slot", &v) && json_object_is_type(v, json_type_string)
                ? json_object_get_string(v)
                : NULL;
        cl_log(CL_LOG_DEBUG, "=poke", "cloud=%s slot=%s from a member", cloud, slot ? slot : "-");
        if (p->watch)
            p->watch(p->watch_ud, cloud, "a member saw a domain stop");
        return json_object_new_object();
    }
    if (op == CL_RPC_INTENT)
        return intent_answer(p, cloud, epoch, ep, args, err);
    if (!acting) {
        cl_err_set(err, CL_ERR_ELECTION, CL_RPC_NOT_LEADER, p->address, "control",
                   "%s does not lead cloud %s (%s%s)", p->address, cloud,
                   leader[0] ? leader : "no leader yet", leader[0] ? " leads" : "");
        return NULL;
    }
    if (epoch != ep) {
        cl_err_set(err, CL_ERR_ELECTION, CL_RPC_EPOCH_MOVED, p->address, "control",
                   "the request is for epoch %" PRIu64 " of cloud %s, which is in epoch %" PRIu64
                   " now",
                   epoch, cloud, ep);
        return NULL;
    }
    if (checked < 0)
        return NULL;
    if (!fn) {
        cl_err_set(err, CL_ERR_ELECTION, 0, p->address, "control",
                   "this cloudd takes no handed-over requests");
        return NULL;
    }
    if (!(events = json_object_new_array())) {
        cl_err_set(err, CL_ERR_SYS, ENOMEM, p->address, "control", "out of memory");
        return NULL;
    }
    cl_log(CL_LOG_INFO, "+handover", "cloud=%s epoch=%" PRIu64 " op=%s", cloud, ep,
           json_object_get_string(json_object_object_get(req, "op")));
    if (!(ans = fn(fud, req, events, err))) {
        json_object_put(events);
        return NULL;
    }
    res = json_object_new_object();
    if (cl_rpc_json_put(res, "answer", ans) < 0 ? (json_object_put(events), 1)
                                                : cl_rpc_json_put(res, "events", events) < 0) {
        json_object_put(res);
        cl_err_set(err, CL_ERR_SYS, ENOMEM, p->address, "control", "out of memory");
        return NULL;
    }
    return res;
}

static cl_host_t *hook_remote(void *ud, const cl_spec_t *spec, const char *host, cl_err_t *err);

int cl_peers_forward(cl_peers_t *p, const cl_spec_t *spec, json_object *req, json_object **answer,
                     json_object **events, cl_err_t *err)
{
    uint64_t deadline = cl_time_now_ms() + CL_HANDOVER_MEMBER_MS, ep;
    char leader[CL_MSG_SENDER_MAX + 1];
    cl_err_t e;
    int li, self;

    cl_err_clear(&e);
    for (;;) {
        cl_host_t *h = NULL;
        leader[0] = '\0';
        self = 0;
        pthread_mutex_lock(&p->lock);
        if (!find(p, spec->name)) {
            pthread_mutex_unlock(&p->lock);
            return cl_err_set(err, CL_ERR_ELECTION, 0, p->address, "handover",
                              "cloud %s is not joined here", spec->name);
        }
        if (cl_elect_leader(p->elect, spec->name, &li, &ep) == 1 && li >= 0 &&
            (size_t)li < spec->npool) {
            snprintf(leader, sizeof(leader), "%s", spec->pool[li]);
            self = strcmp(leader, p->address) == 0;
        }
        if (self && cl_elect_acting(p->elect, spec->name)) {
            pthread_mutex_unlock(&p->lock);
            return cl_err_set(err, CL_ERR_ELECTION, CL_RPC_NOT_LEADER, p->address, "handover",
                              "this host leads cloud %s: apply it here", spec->name);
        }
        pthread_mutex_unlock(&p->lock);
        if (self)
            leader[0] = '\0'; /* elected here, without a majority yet: wait as for none */
        if (leader[0] && (h = hook_remote(p, spec, leader, &e)) != NULL) {
            /* the member's own identity; the leader's answer may take a whole converge */
            cl_host_remote_set_timeouts(h, CL_RPC_CONNECT_MS, CL_CTL_REPLY_MS, CL_RPC_PING_MS);
            if (cl_handover_send(h, ep, req, CL_CTL_REPLY_MS, answer, events, &e) == 0) {
                cl_host_free(h);
                return 0;
            }
            cl_host_free(h);
            if (!cl_handover_retry(&e)) {
                if (err)
                    *err = e;
                return -1;
            }
        }
        if (cl_time_now_ms() + 100 > deadline)
            return cl_err_set(err, CL_ERR_ELECTION, 0, leader[0] ? leader : p->address, "handover",
                              "no leader of cloud %s acts yet%s%s: the member that gets a "
                              "majority converges it",
                              spec->name, e.msg[0] ? ": " : "", e.msg);
        usleep(100000);
    }
}

int cl_peers_poke_leader(cl_peers_t *p, const char *cloud, const char *slot, cl_err_t *err)
{
    char leader[CL_MSG_SENDER_MAX + 1] = "";
    cl_spec_t *spec = NULL;
    peer_cloud_t *c;
    json_object *args, *res = NULL;
    cl_host_t *h;
    uint64_t ep = 0;
    int li = -1, rc = -1;

    pthread_mutex_lock(&p->lock);
    c = find(p, cloud);
    if (c && c->joined && cl_elect_leader(p->elect, cloud, &li, &ep) == 1 && li >= 0 &&
        (size_t)li < c->spec->npool && strcmp(c->spec->pool[li], p->address) != 0) {
        snprintf(leader, sizeof(leader), "%s", c->spec->pool[li]);
        cl_spec_parse(c->spec->json, &spec, NULL);
    }
    pthread_mutex_unlock(&p->lock);
    if (!leader[0] || !spec) {
        cl_spec_free(spec);
        return cl_err_set(err, CL_ERR_ELECTION, 0, p->address, "poke",
                          "no other member leads cloud %s now", cloud);
    }
    h = hook_remote(p, spec, leader, err);
    if (h) {
        args = json_object_new_object();
        json_object_object_add(args, "slot", slot ? json_object_new_string(slot) : NULL);
        cl_host_remote_set_timeouts(h, CL_PEERS_QUIET_CONNECT_MS, CL_PEERS_QUIET_REPLY_MS,
                                    CL_RPC_PING_MS);
        rc = cl_host_remote_call(h, CL_RPC_POKE, ep, args, CL_PEERS_QUIET_REPLY_MS, &res, err);
        json_object_put(res);
        cl_host_free(h);
    }
    cl_spec_free(spec);
    return rc;
}

void cl_peers_set_control(cl_peers_t *p, cl_peers_control_fn fn, void *ud)
{
    pthread_mutex_lock(&p->lock);
    p->control = fn;
    p->control_ud = ud;
    pthread_mutex_unlock(&p->lock);
}

/* ========================================================================================== */
/* Engine hooks                                                                               */
/* ========================================================================================== */

static int hook_lead(void *ud, const cl_spec_t *spec, char *leader, size_t len, uint64_t *epoch)
{
    cl_peers_t *p = ud;
    int li = -1, acting = 0, self = 0;
    uint64_t ep = 0;
    cl_err_t err;

    leader[0] = '\0';
    pthread_mutex_lock(&p->lock);
    if (cl_elect_leader(p->elect, spec->name, &li, &ep) == 1 && li >= 0 &&
        (size_t)li < spec->npool) {
        snprintf(leader, len, "%s", spec->pool[li]);
        self = strcmp(spec->pool[li], p->address) == 0;
        acting = self && cl_elect_acting(p->elect, spec->name);
    }
    pthread_mutex_unlock(&p->lock);
    /* the leader's own host is fenced like the others */
    cl_err_clear(&err);
    if (acting && cl_rpc_server_fence(p->rpc, spec->name, ep, p->address, &err) < 0)
        acting = 0;
    *epoch = ep;
    return acting;
}

/* Is host heard by the election (a silent host is not asked, it is down)? */
static int heard(cl_peers_t *p, const char *cloud, const char *host)
{
    json_object *st, *members, *m, *v;
    size_t i;
    int alive = 0;

    st = cl_elect_status_json(p->elect, cloud);
    if (st && json_object_object_get_ex(st, "members", &members))
        for (i = 0; i < json_object_array_length(members); i++) {
            m = json_object_array_get_idx(members, i);
            if (json_object_object_get_ex(m, "host", &v) &&
                strcmp(json_object_get_string(v), host) == 0 &&
                json_object_object_get_ex(m, "alive", &v))
                alive = json_object_get_boolean(v);
        }
    json_object_put(st);
    return alive;
}

static cl_host_t *hook_remote(void *ud, const cl_spec_t *spec, const char *host, cl_err_t *err)
{
    cl_peers_t *p = ud;
    char addr[NI_MAXHOST];
    peer_cloud_t *c;
    cl_host_t *h = NULL;

    if (cl_net_numeric(host, addr, sizeof(addr), err) < 0)
        return NULL;
    pthread_mutex_lock(&p->lock);
    c = find(p, spec->name);
    if (!c)
        cl_err_set(err, CL_ERR_ELECTION, 0, host, "connect", "cloud %s is not joined here",
                   spec->name);
    else {
        /* a follower only reads (status): it never waits long on a silent host either */
        int quiet = !cl_elect_acting(p->elect, spec->name) || !heard(p, spec->name, host);
        h = cl_host_remote_new(host, addr, p->port, spec->name, c->key, c->keylen, p->address,
                               cl_elect_incarnation(p->elect), err);
        /*
         * A member the election has not heard lately (stopped, cut off, or just back from a
         * partition and not yet acknowledged) is still asked, but briefly: a silent one is
         * then down, a reachable one shows its VMs (no second copy is placed beside them).
         * A follower's questions (status) are brief too.
         */
        if (h && quiet)
            cl_host_remote_set_timeouts(h, CL_PEERS_QUIET_CONNECT_MS, CL_PEERS_QUIET_REPLY_MS,
                                        CL_PEERS_QUIET_CONNECT_MS);
    }
    pthread_mutex_unlock(&p->lock);
    return h;
}

/* Ms since the election heard host (in spec's cloud), or since this daemon joined. */
static uint64_t hook_silent_ms(void *ud, const cl_spec_t *spec, const char *host)
{
    cl_peers_t *p = ud;
    json_object *st, *members, *v;
    peer_cloud_t *c;
    uint64_t since_join = UINT64_MAX, silent = UINT64_MAX;
    size_t i;

    pthread_mutex_lock(&p->lock);
    c = find(p, spec->name);
    if (c && c->joined_ms)
        since_join = cl_time_now_ms() - c->joined_ms;
    /*
     * A host silent to this daemon only counts as fenced for the time this daemon has acted:
     * before that, this daemon may have been the one cut off (a minority), and the others, in
     * the majority, had no reason to fence themselves.  Plus one quorum window: the majority
     * that made this daemon act had let its promises to the previous leader run out first
     * (cl_bully), so that leader had stopped acting, and its fencing clock started, by then.
     */
    if (c && c->acting_since) {
        uint64_t acted = cl_time_now_ms() - c->acting_since + p->timers.quorum_window_ms;
        if (acted < since_join)
            since_join = acted;
    }
    st = cl_elect_status_json(p->elect, spec->name);
    pthread_mutex_unlock(&p->lock);
    if (st && json_object_object_get_ex(st, "members", &members))
        for (i = 0; i < json_object_array_length(members); i++) {
            json_object *mb = json_object_array_get_idx(members, i);
            if (!json_object_object_get_ex(mb, "host", &v) ||
                strcmp(json_object_get_string(v), host) != 0)
                continue;
            if (json_object_object_get_ex(mb, "self", &v) && json_object_get_boolean(v))
                silent = 0;
            else if (json_object_object_get_ex(mb, "last_heard_ms_ago", &v) && v)
                silent = (uint64_t)json_object_get_int64(v);
        }
    json_object_put(st);
    return silent < since_join ? silent : since_join;
}

/* Ask or tell each other pool host the cloud's intent (cl_engine_peers_t.intent). */
static size_t hook_intent(void *ud, const cl_spec_t *spec, uint64_t epoch, const char *set,
                          cl_intent_t *out)
{
    cl_peers_t *p = ud;
    size_t i, n = 0;

    for (i = 0; i < spec->npool; i++) {
        json_object *args, *res = NULL, *v;
        cl_host_t *h;
        cl_err_t err;
        memset(&out[i], 0, sizeof(out[i]));
        if (strcmp(spec->pool[i], p->address) == 0)
            continue;
        if (set && strcmp(set, "running") == 0) {
            /* the running order goes to the hosts heard lately; the others hear the next one */
            int ok;
            pthread_mutex_lock(&p->lock);
            ok = heard(p, spec->name, spec->pool[i]);
            pthread_mutex_unlock(&p->lock);
            if (!ok)
                continue;
        }
        cl_err_clear(&err);
        if (!(h = hook_remote(p, spec, spec->pool[i], &err)))
            continue;
        cl_host_remote_set_timeouts(h, CL_PEERS_QUIET_CONNECT_MS, CL_PEERS_QUIET_REPLY_MS,
                                    CL_RPC_PING_MS);
        args = json_object_new_object();
        if (set)
            json_object_object_add(args, "set", json_object_new_string(set));
        if (set && strcmp(set, "running") == 0)
            json_object_object_add(args, "spec", json_object_get(spec->json));
        if (cl_host_remote_call(h, CL_RPC_INTENT, epoch, args, CL_PEERS_QUIET_REPLY_MS, &res,
                                &err) == 0) {
            out[i].known =
                json_object_object_get_ex(res, "known", &v) && json_object_get_boolean(v);
            out[i].stopped = out[i].known && json_object_object_get_ex(res, "ensure", &v) &&
                             strcmp(json_object_get_string(v), "stopped") == 0;
            out[i].epoch = json_object_object_get_ex(res, "epoch", &v)
                               ? (uint64_t)json_object_get_int64(v)
                               : 0;
            n++;
        } else {
            cl_log(CL_LOG_DEBUG, "-intent", "cloud=%s host=%s %s: %s", spec->name, spec->pool[i],
                   set ? set : "ask", err.msg);
        }
        json_object_put(res);
        cl_host_free(h);
    }
    return n;
}

static void hook_forgotten(void *ud, const char *cloud)
{
    cl_peers_leave(ud, cloud);
}

void cl_peers_hooks(cl_peers_t *p, cl_engine_peers_t *out)
{
    memset(out, 0, sizeof(*out));
    out->ud = p;
    out->lead = hook_lead;
    out->remote = hook_remote;
    out->silent_ms = hook_silent_ms;
    out->intent = hook_intent;
    out->forgotten = hook_forgotten;
    out->fence_ms = p->fence_ms;
}

void cl_peers_set_fence_ms(cl_peers_t *p, uint64_t ms)
{
    p->fence_ms = ms ? ms : CL_FENCE_SELF_MS;
}

void cl_peers_set_watch(cl_peers_t *p, cl_peers_watch_fn fn, void *ud)
{
    p->watch = fn;
    p->watch_ud = ud;
}

/*
 * The members heard within hb_timeout of the election's status, as a bit mask by priority,
 * and when this daemon last had its cloud's leader: now when it acts; for a follower, when it
 * last heard the leader (not when it noticed the silence: fencing counts from the last word).
 */
static uint64_t alive_mask(json_object *st, uint64_t now, uint64_t *contact_ms)
{
    json_object *members, *v, *lv;
    uint64_t mask = 0;
    size_t i;
    int follower = json_object_object_get_ex(st, "leader", &lv) && lv &&
                   json_object_object_get_ex(st, "state", &v) &&
                   strcmp(json_object_get_string(v), "follower") == 0;

    *contact_ms = 0;
    if (json_object_object_get_ex(st, "acting", &v) && json_object_get_boolean(v))
        *contact_ms = now;
    if (json_object_object_get_ex(st, "members", &members))
        for (i = 0; i < json_object_array_length(members) && i < 64; i++) {
            json_object *mb = json_object_array_get_idx(members, i);
            if ((json_object_object_get_ex(mb, "alive", &v) && json_object_get_boolean(v)) ||
                (json_object_object_get_ex(mb, "self", &v) && json_object_get_boolean(v)))
                mask |= UINT64_C(1) << i;
            if (follower && !*contact_ms && json_object_object_get_ex(mb, "host", &v) &&
                strcmp(json_object_get_string(v), json_object_get_string(lv)) == 0 &&
                json_object_object_get_ex(mb, "last_heard_ms_ago", &v) && v) {
                uint64_t ago = (uint64_t)json_object_get_int64(v);
                *contact_ms = ago < now ? now - ago : 1;
            }
        }
    return mask;
}

void cl_peers_tick(cl_peers_t *p)
{
    char(*fence)[CL_NAME_MAX + 1] = NULL, (*changed)[CL_NAME_MAX + 1] = NULL;
    char **uris = NULL;
    size_t nf = 0, nc = 0, i;
    uint64_t now = cl_time_now_ms();
    /*
     * This process did not run for fence_ms (frozen, or its host stalled): whatever it hears
     * now (datagrams queued meanwhile), the leader may have re-placed its slots by now.
     */
    int stalled = p->last_tick && now - p->last_tick >= p->fence_ms;

    pthread_mutex_lock(&p->lock);
    fence = calloc(p->nclouds + 1, sizeof(*fence));
    changed = calloc(p->nclouds + 1, sizeof(*changed));
    uris = calloc(p->nclouds + 1, sizeof(*uris));
    for (i = 0; fence && changed && uris && i < p->nclouds; i++) {
        peer_cloud_t *c = &p->clouds[i];
        json_object *st;
        uint64_t mask, contact = 0;
        if (!c->joined)
            continue;
        st = cl_elect_status_json(p->elect, c->name);
        if (!st)
            continue;
        mask = alive_mask(st, now, &contact);
        json_object_put(st);
        if (contact > c->contact_ms && !stalled) {
            c->contact_ms = contact;
            c->fenced = 0;
        }
        if (stalled)
            c->fenced = 0; /* fence again, whatever was fenced before the stall */
        if (!c->fenced && (stalled || now - c->contact_ms >= p->fence_ms)) {
            c->fenced = 1;
            uris[nf] = cl_spec_uri_for(c->spec->hypervisor, p->address);
            snprintf(fence[nf++], sizeof(*fence), "%s", c->name);
        }
        if (mask != c->alive_mask && c->acting)
            snprintf(changed[nc++], sizeof(*changed), "%s", c->name);
        c->alive_mask = mask;
    }
    pthread_mutex_unlock(&p->lock);
    /* outside the lock: the election goes on while the domains are stopped */
    for (i = 0; i < nf; i++) {
        cl_err_t err;
        int n;
        cl_err_clear(&err);
        if (!p->engine || !uris[i])
            continue;
        if (stalled)
            cl_log(CL_LOG_WARN, "-contact",
                   "cloud=%s this daemon stalled for %llu ms: fencing this host (its copies are "
                   "stopped)",
                   fence[i], (unsigned long long)(now - p->last_tick));
        else
            cl_log(CL_LOG_WARN, "-contact",
                   "cloud=%s no leader for %llu ms: fencing this host (its copies are stopped)",
                   fence[i], (unsigned long long)p->fence_ms);
        n = cl_engine_self_fence(p->engine, fence[i], uris[i], &err);
        if (n < 0)
            cl_log(CL_LOG_ERR, "-fence", "cloud=%s %s", fence[i], err.msg);
    }
    for (i = 0; p->watch && i < nc; i++)
        p->watch(p->watch_ud, changed[i], "member liveness changed");
    for (i = 0; uris && i < nf; i++)
        free(uris[i]);
    free(uris);
    free(fence);
    free(changed);
    p->last_tick = cl_time_now_ms(); /* after the fencing: its own work is no stall */
}

void cl_peers_set_engine(cl_peers_t *p, cl_engine_t *e)
{
    p->engine = e;
}

void cl_peers_set_timers(cl_peers_t *p, const cl_bully_config_t *t)
{
    cl_bully_config_default(&p->timers);
    if (!t)
        return;
    if (t->hb_interval_ms)
        p->timers.hb_interval_ms = t->hb_interval_ms;
    if (t->hb_timeout_ms)
        p->timers.hb_timeout_ms = t->hb_timeout_ms;
    if (t->answer_timeout_ms)
        p->timers.answer_timeout_ms = t->answer_timeout_ms;
    if (t->coord_timeout_ms)
        p->timers.coord_timeout_ms = t->coord_timeout_ms;
    if (t->quorum_window_ms)
        p->timers.quorum_window_ms = t->quorum_window_ms;
}

/* ========================================================================================== */
/* Life cycle                                                                                 */
/* ========================================================================================== */

static int listen_tcp(cl_peers_t *p, cl_err_t *err)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int one = 1, fd;

    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", p->port);
    if (getaddrinfo(p->address, port, &hints, &res) != 0 || !res)
        return cl_err_set(err, CL_ERR_SYS, 0, p->address, "listen",
                          "--address %s is not a numeric IP address", p->address);
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        cl_err_sys(err, p->address, "listen", "TCP %s port %u", p->address, p->port);
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    p->tcp_fd = fd;
    return 0;
}

cl_peers_t *cl_peers_new(const char *address, unsigned port, const char *state_dir, cl_err_t *err)
{
    cl_peers_t *p = calloc(1, sizeof(*p));
    cl_elect_opts_t eo;
    char fence[PATH_MAX];

    if (!p) {
        cl_err_set(err, CL_ERR_SYS, 0, address, "peers", "out of memory");
        return NULL;
    }
    p->tcp_fd = -1;
    p->udp_watch = p->tcp_watch = p->timer = -1;
    p->fence_ms = CL_FENCE_SELF_MS;
    pthread_mutex_init(&p->lock, NULL);
    cl_bully_config_default(&p->timers);
    p->address = strdup(address);
    p->state_dir = strdup(state_dir);
    p->port = port ? port : CL_ELECT_PORT;
    if (!p->address || !p->state_dir) {
        cl_err_set(err, CL_ERR_SYS, 0, address, "peers", "out of memory");
        goto fail;
    }
    memset(&eo, 0, sizeof(eo));
    eo.address = address;
    eo.port = p->port;
    eo.state_dir = state_dir;
    eo.on_change = on_change;
    eo.on_change_ud = p;
    p->elect = cl_elect_new(&eo, err);
    if (!p->elect)
        goto fail;
    snprintf(fence, sizeof(fence), "%s/fence", state_dir);
    p->rpc = cl_rpc_server_new(fence, err);
    if (!p->rpc || listen_tcp(p, err) < 0)
        goto fail;
    cl_rpc_server_set_admin(p->rpc, admin, p);
    return p;

fail:
    cl_peers_free(p);
    return NULL;
}

void cl_peers_free(cl_peers_t *p)
{
    size_t i;

    if (!p)
        return;
    if (p->udp_watch >= 0)
        virEventRemoveHandle(p->udp_watch);
    if (p->tcp_watch >= 0)
        virEventRemoveHandle(p->tcp_watch);
    if (p->timer >= 0)
        virEventRemoveTimeout(p->timer);
    if (p->tcp_fd >= 0)
        close(p->tcp_fd);
    cl_elect_free(p->elect);
    cl_rpc_server_free(p->rpc);
    for (i = 0; i < p->nclouds; i++)
        cloud_clear(&p->clouds[i]);
    free(p->clouds);
    pthread_mutex_destroy(&p->lock);
    free(p->address);
    free(p->state_dir);
    free(p);
}

int cl_peers_register(cl_peers_t *p, cl_err_t *err)
{
    p->udp_watch =
        virEventAddHandle(cl_elect_fd(p->elect), VIR_EVENT_HANDLE_READABLE, on_udp, p, NULL);
    p->tcp_watch = virEventAddHandle(p->tcp_fd, VIR_EVENT_HANDLE_READABLE, on_tcp, p, NULL);
    p->timer = virEventAddTimeout(-1, on_timer, p, NULL);
    if (p->udp_watch < 0 || p->tcp_watch < 0 || p->timer < 0)
        return cl_err_set(err, CL_ERR_SYS, 0, p->address, "peers", "cannot watch the peer sockets");
    pthread_mutex_lock(&p->lock);
    rearm(p);
    pthread_mutex_unlock(&p->lock);
    cl_log(CL_LOG_INFO, "+peers", "address=%s port=%u (udp election, tcp host operations)",
           p->address, p->port);
    return 0;
}

int cl_peers_join(cl_peers_t *p, const cl_spec_t *spec, cl_err_t *err)
{
    unsigned char key[CL_MSG_KEY_MAX];
    size_t keylen = 0;
    peer_cloud_t *c, *nv;
    cl_spec_t *own = NULL;
    int rc = -1;

    if (spec->npool < 2)
        return 0;
    if (!spec->secret_file || !*spec->secret_file)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "join",
                          "secret_file: cloud %s has a pool of %zu hosts: its peers need a "
                          "per-cloud secret (a root-only file of at least %d bytes on each host)",
                          spec->name, spec->npool, CL_MSG_KEY_MIN);
    if (cl_msg_key_load(spec->secret_file, key, sizeof(key), &keylen, err) < 0) {
        char tmp[sizeof(err->msg)];
        snprintf(tmp, sizeof(tmp), "%s", err->msg);
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "join", "secret_file: %s", tmp);
        return -1;
    }
    if (cl_spec_parse(spec->json, &own, err) < 0)
        goto cleanup;
    pthread_mutex_lock(&p->lock);
    if (cl_elect_join(p->elect, spec->name, spec->pool, spec->npool, key, keylen, &p->timers, err) <
            0 ||
        cl_rpc_server_add_cloud(p->rpc, spec->name, key, keylen, spec->pool, spec->npool, err) <
            0) {
        pthread_mutex_unlock(&p->lock);
        goto cleanup;
    }
    c = find(p, spec->name);
    if (!c) {
        nv = realloc(p->clouds, (p->nclouds + 1) * sizeof(*nv));
        if (!nv) {
            pthread_mutex_unlock(&p->lock);
            cl_err_set(err, CL_ERR_SYS, 0, NULL, "join", "out of memory");
            goto cleanup;
        }
        p->clouds = nv;
        c = &p->clouds[p->nclouds++];
        memset(c, 0, sizeof(*c));
        snprintf(c->name, sizeof(c->name), "%s", spec->name);
    }
    cl_spec_free(c->spec);
    c->spec = own;
    own = NULL;
    if (c->key) {
        memset(c->key, 0, c->keylen);
        free(c->key);
    }
    c->key = malloc(keylen);
    if (c->key)
        memcpy(c->key, key, keylen);
    c->keylen = c->key ? keylen : 0;
    cl_host_free(c->local); /* the hypervisor may have changed */
    c->local = NULL;
    if (!c->joined) {
        c->joined = 1;
        c->joined_ms = c->contact_ms = cl_time_now_ms();
        c->fenced = 0;
    }
    rearm(p);
    pthread_mutex_unlock(&p->lock);
    /* A member keeps the spec: if it is elected later, it adopts the cloud from it. */
    {
        json_object *state = NULL;
        int ls = cl_state_load(p->state_dir, spec->name, &state, err);
        if (ls == 0) {
            json_object *doc = json_object_new_object();
            json_object_object_add(doc, "spec", json_object_get(spec->json));
            json_object_object_add(doc, "epoch", json_object_new_int64(0));
            rc = cl_state_save(p->state_dir, spec->name, doc, err);
            json_object_put(doc);
            if (rc < 0)
                goto cleanup;
        }
        json_object_put(state);
        if (ls < 0)
            goto cleanup;
    }
    rc = 0;

cleanup:
    memset(key, 0, sizeof(key));
    cl_spec_free(own);
    return rc;
}

void cl_peers_leave(cl_peers_t *p, const char *cloud)
{
    pthread_mutex_lock(&p->lock);
    /*
     * The election is left; the host operations of the cloud are still served (its spec and
     * key stay in memory), so that a leader tearing it down still reaches this host.
     */
    cl_elect_leave(p->elect, cloud);
    {
        peer_cloud_t *c = find(p, cloud);
        if (c)
            c->joined = 0;
    }
    rearm(p);
    pthread_mutex_unlock(&p->lock);
}

json_object *cl_peers_status(cl_peers_t *p, const char *cloud)
{
    json_object *o;

    pthread_mutex_lock(&p->lock);
    o = cl_elect_status_json(p->elect, cloud);
    pthread_mutex_unlock(&p->lock);
    return o;
}

void cl_peers_rpc_stats(cl_peers_t *p, cl_rpc_stats_t *out)
{
    cl_rpc_server_stats(p->rpc, out); /* thread-safe itself */
}
