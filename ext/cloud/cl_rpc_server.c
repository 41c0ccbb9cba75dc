/*
 * cl_rpc_server: the host daemon's side of cl_rpc (see cl_rpc.h).  It trusts nothing before the
 * MAC verifies and little after: every field is typed, length- and range-checked, the sender
 * must be a pool entry, (incarnation, seq) must be new, and a mutation must carry an epoch no
 * older than the newest persisted for its cloud, persisted again before it acts.  Cloud-level
 * requests (leader, control) may also come from outside the pool: those "clients" share one
 * replay window per cloud, and their control requests go to the daemon's admin function.
 */
#include "cl_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_ctl.h"
#include "cl_log.h"
#include "cl_msg.h"
#include "cl_spec.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define SRV_ERR(err, ...) cl_err_set((err), CL_ERR_PROTO, 0, NULL, "rpc server", __VA_ARGS__)

/* ========================================================================================= */
/* Server state: clouds, senders, fences                                                     */
/* ========================================================================================= */

typedef struct rpc_peer {
    int seen;
    uint64_t inc, seq; /* highest (incarnation, seq) accepted */
    uint64_t window;   /* bit k: seq - k accepted (within CL_RPC_WINDOW) */
} rpc_peer_t;

typedef struct rpc_cloud {
    char name[CL_NAME_MAX + 1];
    unsigned char *key; /* owned, wiped */
    size_t keylen;
    char **pool; /* owned copies: who may send */
    rpc_peer_t *peers;
    size_t npool;
    rpc_peer_t clients; /* every sender outside the pool (cloud-level requests only) */
    uint64_t epoch;     /* the fence: newest epoch seen, persisted before it is used */
} rpc_cloud_t;

struct cl_rpc_server {
    pthread_mutex_t lock; /* clouds (keys, peers, epochs) and stats */
    char *fence_dir;
    unsigned io_ms;
    rpc_cloud_t *clouds;
    size_t nclouds;
    cl_rpc_stats_t stats;
    cl_rpc_admin_fn admin;
    void *admin_ud;
};

static void cloud_clear(rpc_cloud_t *c)
{
    size_t i;

    if (c->key) {
        OPENSSL_cleanse(c->key, c->keylen);
        free(c->key);
    }
    for (i = 0; c->pool && i < c->npool; i++)
        free(c->pool[i]);
    free(c->pool);
    free(c->peers);
    memset(c, 0, sizeof(*c));
}

static rpc_cloud_t *cloud_find(cl_rpc_server_t *srv, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < srv->nclouds; i++)
        if (strlen(srv->clouds[i].name) == n && memcmp(srv->clouds[i].name, name, n) == 0)
            return &srv->clouds[i];
    return NULL;
}

/* A new (incarnation, seq) is recorded and 1 returned; one seen or too old gives 0. */
static int window_accept(rpc_peer_t *p, uint64_t inc, uint64_t seq)
{
    uint64_t d;

    if (!p->seen || inc > p->inc) {
        p->seen = 1;
        p->inc = inc;
        p->seq = seq;
        p->window = 1;
        return 1;
    }
    if (inc < p->inc)
        return 0;
    if (seq > p->seq) {
        d = seq - p->seq;
        p->window = d >= CL_RPC_WINDOW ? 1 : (p->window << d) | 1;
        p->seq = seq;
        return 1;
    }
    d = p->seq - seq;
    if (d >= CL_RPC_WINDOW || (p->window >> d) & 1)
        return 0;
    p->window |= UINT64_C(1) << d;
    return 1;
}

/* {"epoch":N,"senders":{"<entry>":{"i":I,"q":Q}}}, atomically (cl_state), under the lock. */
static int fence_save(cl_rpc_server_t *srv, const rpc_cloud_t *c, uint64_t epoch, cl_err_t *err)
{
    json_object *doc = json_object_new_object(), *senders = json_object_new_object(), *s;
    size_t i;
    int rc = -1, bad;

    bad = cl_rpc_json_put(doc, "epoch", json_object_new_int64((int64_t)epoch)) < 0 ||
          cl_rpc_json_put(doc, "senders", json_object_get(senders)) < 0;
    for (i = 0; !bad && i < c->npool; i++) {
        if (!c->peers[i].seen)
            continue;
        s = json_object_new_object();
        if (cl_rpc_json_put(s, "i", json_object_new_int64((int64_t)c->peers[i].inc)) < 0 ||
            cl_rpc_json_put(s, "q", json_object_new_int64((int64_t)c->peers[i].seq)) < 0) {
            json_object_put(s);
            bad = 1;
        } else {
            bad = cl_rpc_json_put(senders, c->pool[i], s) < 0;
        }
    }
    if (!bad && c->clients.seen) {
        s = json_object_new_object();
        bad = cl_rpc_json_put(s, "i", json_object_new_int64((int64_t)c->clients.inc)) < 0 ||
              cl_rpc_json_put(s, "q", json_object_new_int64((int64_t)c->clients.seq)) < 0 ||
              cl_rpc_json_put(doc, "clients", s) < 0;
    }
    if (bad)
        cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "fence", "out of memory");
    else
        rc = cl_state_save(srv->fence_dir, c->name, doc, err);
    json_object_put(senders);
    json_object_put(doc);
    return rc;
}

/* The persisted fence of c into c (epoch, floors of its senders); none is epoch 0. */
static int fence_load(cl_rpc_server_t *srv, rpc_cloud_t *c, cl_err_t *err)
{
    json_object *doc = NULL, *senders = NULL, *s;
    size_t i;
    int rc, have;

    if ((have = cl_state_load(srv->fence_dir, c->name, &doc, err)) <= 0)
        return have;
    rc = cl_rpc_json_num(doc, "epoch", &c->epoch);
    if (json_object_object_get_ex(doc, "senders", &senders) &&
        !json_object_is_type(senders, json_type_object))
        rc = -1;
    for (i = 0; rc == 0 && senders && i < c->npool; i++) {
        if (!json_object_object_get_ex(senders, c->pool[i], &s))
            continue;
        if (!json_object_is_type(s, json_type_object) ||
            cl_rpc_json_num(s, "i", &c->peers[i].inc) < 0 ||
            cl_rpc_json_num(s, "q", &c->peers[i].seq) < 0)
            rc = -1;
        c->peers[i].seen = 1;
        c->peers[i].window = ~UINT64_C(0); /* nothing at or below the floor after a restart */
    }
    if (rc == 0 && json_object_object_get_ex(doc, "clients", &s)) {
        if (!json_object_is_type(s, json_type_object) ||
            cl_rpc_json_num(s, "i", &c->clients.inc) < 0 ||
            cl_rpc_json_num(s, "q", &c->clients.seq) < 0)
            rc = -1;
        c->clients.seen = 1;
        c->clients.window = ~UINT64_C(0);
    }
    if (rc < 0)
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "load fence",
                   "%s/clouds/%s.json is malformed: fix or remove it (the fence of cloud %s)",
                   srv->fence_dir, c->name, c->name);
    json_object_put(doc);
    return rc;
}

/*
 * The fence of c, under the lock: 1 (err: the stale epoch, naming self) if epoch is older than
 * the newest seen; else, if it is newer or floors is set, persist first; 0, or -1 on failure.
 */
static int fence_locked(cl_rpc_server_t *srv, rpc_cloud_t *c, uint64_t epoch, int floors,
                        const char *self, const char *op, cl_err_t *err)
{
    if (epoch < c->epoch) {
        cl_log(CL_LOG_WARN, "-fence-stale", "cloud=%s epoch=%" PRIu64 " seen=%" PRIu64 " op=%s",
               c->name, epoch, c->epoch, op);
        cl_err_set(err, CL_ERR_ELECTION, CL_RPC_DROP_STALE_EPOCH, self, op,
                   "epoch %" PRIu64 " is older than %" PRIu64 " seen by %s: this leader was "
                   "replaced",
                   epoch, c->epoch, self ? self : "this host");
        return 1;
    }
    if ((epoch > c->epoch || floors) && fence_save(srv, c, epoch, err) < 0)
        return -1;
    if (epoch > c->epoch)
        cl_log(CL_LOG_INFO, "+fence", "cloud=%s epoch=%" PRIu64, c->name, epoch);
    c->epoch = epoch;
    return 0;
}

cl_rpc_server_t *cl_rpc_server_new(const char *fence_dir, cl_err_t *err)
{
    cl_rpc_server_t *srv = NULL;

    if (!fence_dir || !*fence_dir) {
        SRV_ERR(err, "no fence directory");
        return NULL;
    }
    if (cl_state_init(fence_dir, err) < 0)
        return NULL;
    if (!(srv = calloc(1, sizeof(*srv))) || !(srv->fence_dir = strdup(fence_dir))) {
        free(srv);
        cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "rpc server", "out of memory");
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    srv->io_ms = CL_RPC_IO_MS;
    return srv;
}

void cl_rpc_server_free(cl_rpc_server_t *srv)
{
    size_t i;

    if (!srv)
        return;
    for (i = 0; i < srv->nclouds; i++)
        cloud_clear(&srv->clouds[i]);
    free(srv->clouds);
    free(srv->fence_dir);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

void cl_rpc_server_set_admin(cl_rpc_server_t *srv, cl_rpc_admin_fn fn, void *ud)
{
    pthread_mutex_lock(&srv->lock);
    srv->admin = fn;
    srv->admin_ud = ud;
    pthread_mutex_unlock(&srv->lock);
}

void cl_rpc_server_set_io_timeout(cl_rpc_server_t *srv, unsigned ms)
{
    if (srv && ms)
        srv->io_ms = ms;
}

int cl_rpc_server_add_cloud(cl_rpc_server_t *srv, const char *cloud, const unsigned char *key,
                            size_t keylen, const char *const *pool, size_t npool, cl_err_t *err)
{
    rpc_cloud_t c, *old, *grown;
    size_t i, j;
    int rc = -1, locked = 0;

    memset(&c, 0, sizeof(c));
    if (!srv || !cloud || !cl_spec_name_ok(cloud))
        return SRV_ERR(err, "add cloud: invalid cloud name '%.60s'", cloud ? cloud : "");
    if (!key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX)
        return SRV_ERR(err, "add cloud %s: key of %zu bytes (%d..%d required)", cloud, keylen,
                       CL_MSG_KEY_MIN, CL_MSG_KEY_MAX);
    if (!pool || npool == 0 || npool > CL_MSG_POOL_MAX)
        return SRV_ERR(err, "add cloud %s: pool of %zu entries (1..%d required)", cloud, npool,
                       CL_MSG_POOL_MAX);
    for (i = 0; i < npool; i++)
        if (!pool[i] || !*pool[i] || strnlen(pool[i], CL_MSG_SENDER_MAX + 1) > CL_MSG_SENDER_MAX)
            return SRV_ERR(err, "add cloud %s: pool[%zu] empty or longer than %d", cloud, i,
                           CL_MSG_SENDER_MAX);
    snprintf(c.name, sizeof(c.name), "%s", cloud);
    c.key = malloc(keylen);
    c.pool = calloc(npool, sizeof(*c.pool));
    c.peers = calloc(npool, sizeof(*c.peers));
    c.npool = npool;
    for (i = 0; c.pool && i < npool; i++)
        if (!(c.pool[i] = strdup(pool[i])))
            break;
    if (!c.key || !c.pool || !c.peers || i < npool) {
        cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "rpc server", "add cloud %s: out of memory",
                   cloud);
        goto cleanup;
    }
    memcpy(c.key, key, keylen);
    c.keylen = keylen;

    pthread_mutex_lock(&srv->lock);
    locked = 1;
    if ((old = cloud_find(srv, cloud, strlen(cloud)))) {
        /* a new key or pool: the fence stays, and what is known of senders still in the pool */
        c.epoch = old->epoch;
        c.clients = old->clients;
        for (i = 0; i < npool; i++)
            for (j = 0; j < old->npool; j++)
                if (strcmp(c.pool[i], old->pool[j]) == 0)
                    c.peers[i] = old->peers[j];
        cloud_clear(old);
        *old = c;
    } else {
        if (fence_load(srv, &c, err) < 0)
            goto cleanup;
        if (!(grown = realloc(srv->clouds, (srv->nclouds + 1) * sizeof(*grown)))) {
            cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "rpc server", "add cloud %s: out of memory",
                       cloud);
            goto cleanup;
        }
        srv->clouds = grown;
        srv->clouds[srv->nclouds++] = c;
    }
    memset(&c, 0, sizeof(c)); /* now the server's */
    rc = 0;
cleanup:
    if (locked)
        pthread_mutex_unlock(&srv->lock);
    cloud_clear(&c);
    return rc;
}

int cl_rpc_server_fence(cl_rpc_server_t *srv, const char *cloud, uint64_t epoch, const char *self,
                        cl_err_t *err)
{
    rpc_cloud_t *c;
    int r;

    if (!srv || !cloud)
        return SRV_ERR(err, "fence: missing argument");
    pthread_mutex_lock(&srv->lock);
    c = cloud_find(srv, cloud, strlen(cloud));
    r = c ? fence_locked(srv, c, epoch, 0, self, "fence", err)
          : cl_err_set(err, CL_ERR_ELECTION, 0, self, "fence", "cloud %s is not served here",
                       cloud);
    pthread_mutex_unlock(&srv->lock);
    return r == 0 ? 0 : -1;
}

uint64_t cl_rpc_server_epoch(cl_rpc_server_t *srv, const char *cloud)
{
    rpc_cloud_t *c;
    uint64_t e = 0;

    if (!srv || !cloud)
        return 0;
    pthread_mutex_lock(&srv->lock);
    if ((c = cloud_find(srv, cloud, strlen(cloud))))
        e = c->epoch;
    pthread_mutex_unlock(&srv->lock);
    return e;
}

void cl_rpc_server_stats(cl_rpc_server_t *srv, cl_rpc_stats_t *out)
{
    pthread_mutex_lock(&srv->lock);
    *out = srv->stats;
    pthread_mutex_unlock(&srv->lock);
}

/* ========================================================================================= */
/* Requests                                                                                  */
/* ========================================================================================= */

typedef struct request {
    int op;
    uint64_t epoch, inc, seq;
    const char *cloud, *sender; /* these point into the parsed request */
    const char *name, *xml, *pool, *path, *vol, *backing, *fmt;
    int foreign;
    unsigned grace_ms;
    json_object *args; /* borrowed from the parsed request */
} request_t;

static int num_field(json_object *o, const char *key, uint64_t max, uint64_t *out)
{
    json_object *v;
    int64_t x;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return CL_RPC_DROP_BAD_FIELD;
    /* json-c holds integers above INT64_MAX as uint64; get_int64 then answers INT64_MAX */
    x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x > max)
        return CL_RPC_DROP_BAD_FIELD;
    *out = (uint64_t)x;
    return CL_RPC_OK;
}

/* A string of min..max bytes without NUL; absent is fine (NULL) unless required. */
static int str_field(json_object *o, const char *key, int required, size_t min, size_t max,
                     const char **out)
{
    json_object *v;
    const char *s;
    int n;

    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return required ? CL_RPC_DROP_BAD_FIELD : CL_RPC_OK;
    if (!json_object_is_type(v, json_type_string))
        return CL_RPC_DROP_BAD_FIELD;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    if (!s || n < 0 || (size_t)n < min || (size_t)n > max || strlen(s) != (size_t)n)
        return CL_RPC_DROP_BAD_FIELD;
    *out = s;
    return CL_RPC_OK;
}

static int op_args(json_object *a, request_t *rq)
{
    json_object *v;
    uint64_t g = 0;
    int r = CL_RPC_OK;

    switch (rq->op) {
    case CL_RPC_SCAN:
        if (!json_object_object_get_ex(a, "foreign", &v) ||
            !json_object_is_type(v, json_type_boolean))
            return CL_RPC_DROP_BAD_FIELD;
        rq->foreign = json_object_get_boolean(v);
        break;
    case CL_RPC_POOL_ENSURE:
        if ((r = str_field(a, "pool", 1, 1, CL_RPC_ID_MAX, &rq->pool)) ||
            (r = str_field(a, "path", 1, 1, CL_RPC_PATH_MAX, &rq->path)))
            return r;
        break;
    case CL_RPC_OVERLAY:
        if ((r = str_field(a, "pool", 1, 1, CL_RPC_ID_MAX, &rq->pool)) ||
            (r = str_field(a, "vol", 1, 1, CL_RPC_ID_MAX, &rq->vol)) ||
            (r = str_field(a, "backing", 1, 1, CL_RPC_PATH_MAX, &rq->backing)) ||
            (r = str_field(a, "fmt", 1, 1, 31, &rq->fmt)))
            return r;
        break;
    case CL_RPC_DEFINE:
        if ((r = str_field(a, "xml", 1, 1, CL_RPC_MAX_LINE, &rq->xml)))
            return r;
        /* fall through - and a name */
    case CL_RPC_STATE:
    case CL_RPC_START:
    case CL_RPC_DESTROY:
    case CL_RPC_SHUTDOWN_REQUEST: return str_field(a, "name", 1, 1, CL_RPC_NAME_MAX, &rq->name);
    case CL_RPC_REMOVE:
        if ((r = str_field(a, "name", 1, 1, CL_RPC_NAME_MAX, &rq->name)) ||
            (r = num_field(a, "grace_ms", CL_RPC_GRACE_MAX_MS, &g)))
            return r;
        rq->grace_ms = (unsigned)g;
        break;
    case CL_RPC_VOL_DELETE:
        if ((r = str_field(a, "pool", 0, 1, CL_RPC_ID_MAX, &rq->pool)) ||
            (r = str_field(a, "path", 1, 0, CL_RPC_PATH_MAX, &rq->path)))
            return r;
        break;
    case CL_RPC_VOL_DELETE_BY_NAME:
        if ((r = str_field(a, "pool", 1, 1, CL_RPC_ID_MAX, &rq->pool)) ||
            (r = str_field(a, "vol", 1, 1, CL_RPC_ID_MAX, &rq->vol)))
            return r;
        break;
    case CL_RPC_INTENT: {
        const char *set = NULL;
        if ((r = str_field(a, "set", 0, 1, 16, &set)))
            return r;
        if (set && strcmp(set, "running") != 0 && strcmp(set, "stopped") != 0 &&
            strcmp(set, "forget") != 0)
            return CL_RPC_DROP_BAD_FIELD;
        break;
    }
    case CL_RPC_CONTROL:
        if (!json_object_object_get_ex(a, "request", &v) ||
            !json_object_is_type(v, json_type_object))
            return CL_RPC_DROP_BAD_FIELD;
        break;
    default: break;
    }
    return r;
}

/* The fields of a parsed request (pointers into o); CL_RPC_OK or the drop reason. */
static int read_request(json_object *o, request_t *rq)
{
    json_object *args;
    const char *op;
    uint64_t v = 0;
    int r;

    memset(rq, 0, sizeof(*rq));
    if ((r = num_field(o, "v", CL_MSG_NUM_MAX, &v)))
        return r;
    if (v != CL_RPC_VERSION)
        return CL_RPC_DROP_VERSION;
    if ((r = str_field(o, "op", 1, 1, 32, &op)))
        return r;
    if ((rq->op = cl_rpc_op_from_name(op)) < 0)
        return CL_RPC_DROP_UNKNOWN_OP;
    if ((r = str_field(o, "cloud", 1, 1, CL_NAME_MAX, &rq->cloud)) ||
        (r = num_field(o, "epoch", CL_MSG_NUM_MAX, &rq->epoch)) ||
        (r = str_field(o, "sender", 1, 1, CL_MSG_SENDER_MAX, &rq->sender)) ||
        (r = num_field(o, "i", CL_MSG_NUM_MAX, &rq->inc)) ||
        (r = num_field(o, "q", CL_MSG_NUM_MAX, &rq->seq)))
        return r;
    if (!json_object_object_get_ex(o, "args", &args) ||
        !json_object_is_type(args, json_type_object))
        return CL_RPC_DROP_BAD_FIELD;
    rq->args = args;
    return op_args(args, rq);
}

/* "start web-0": the operation and what it is about, for errors. */
static void describe(const request_t *rq, char *buf, size_t n)
{
    const char *about = rq->name ? rq->name : rq->vol ? rq->vol : rq->path ? rq->path : rq->pool;

    snprintf(buf, n, "%s%s%s", cl_rpc_op_name(rq->op), about ? " " : "", about ? about : "");
}

/* Under the lock: the sender is a pool entry and (incarnation, seq) is new. */
static int admit(cl_rpc_server_t *srv, const request_t *rq)
{
    rpc_cloud_t *c;
    size_t i;
    int r = CL_RPC_OK;

    pthread_mutex_lock(&srv->lock);
    if (!(c = cloud_find(srv, rq->cloud, strlen(rq->cloud)))) {
        r = CL_RPC_DROP_UNKNOWN_CLOUD; /* forgotten since its key was read */
        goto cleanup;
    }
    for (i = 0; i < c->npool && strcmp(c->pool[i], rq->sender) != 0; i++)
        ;
    if (i == c->npool && !cl_rpc_op_admin(rq->op))
        r = CL_RPC_DROP_NOT_MEMBER;
    else if (!window_accept(i == c->npool ? &c->clients : &c->peers[i], rq->inc, rq->seq))
        r = CL_RPC_DROP_REPLAY;
cleanup:
    pthread_mutex_unlock(&srv->lock);
    return r;
}

/* The cloud's key into key[] (the caller wipes it), so the MAC is checked outside the lock. */
static int key_copy(cl_rpc_server_t *srv, const cl_rpc_header_t *h, unsigned char *key,
                    size_t *keylen)
{
    rpc_cloud_t *c;
    int r = CL_RPC_DROP_UNKNOWN_CLOUD;

    pthread_mutex_lock(&srv->lock);
    if ((c = cloud_find(srv, h->cloud, h->cloud_len))) {
        memcpy(key, c->key, c->keylen);
        *keylen = c->keylen;
        r = CL_RPC_OK;
    }
    pthread_mutex_unlock(&srv->lock);
    return r;
}

static json_object *dom_json(const cl_dom_t *d)
{
    json_object *o = json_object_new_object();
    const struct {
        const char *k, *v;
    } s[] = {{"name", d->name},     {"uuid", d->uuid},   {"cloud", d->cloud},
             {"slot", d->slot},     {"host", d->host},   {"role", d->role},
             {"ip", d->ip},         {"image", d->image}, {"disk", d->disk},
             {"config", d->config}, {"mac", d->mac},     {"state", cl_dom_state_name(d->state)}};
    size_t i;
    int bad = !o;

    for (i = 0; !bad && i < sizeof(s) / sizeof(s[0]); i++)
        bad = cl_rpc_json_put(o, s[i].k, json_object_new_string(s[i].v)) < 0;
    bad = bad || cl_rpc_json_put(o, "epoch", json_object_new_int64((int64_t)d->epoch)) < 0 ||
          cl_rpc_json_put(o, "index", json_object_new_int(d->index)) < 0;
    if (bad) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *scan_result(const request_t *rq, cl_host_t *local, cl_err_t *err)
{
    cl_dom_list_t owned = {0};
    cl_idset_t foreign = {0};
    json_object *o = NULL, *ov = json_object_new_array(), *fv = json_object_new_array();
    size_t i;
    int bad;

    if (cl_host_scan(local, rq->cloud, &owned, rq->foreign ? &foreign : NULL, err) < 0)
        goto cleanup;
    o = json_object_new_object();
    bad = cl_rpc_json_put(o, "owned", json_object_get(ov)) < 0 ||
          cl_rpc_json_put(o, "foreign", json_object_get(fv)) < 0;
    for (i = 0; !bad && i < owned.n; i++)
        bad = cl_rpc_json_push(ov, dom_json(&owned.v[i])) < 0;
    for (i = 0; !bad && i < foreign.n; i++)
        bad = cl_rpc_json_push(fv, json_object_new_string(foreign.v[i])) < 0;
    if (bad) {
        cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(local), "scan", "out of memory");
        json_object_put(o);
        o = NULL;
    }
cleanup:
    json_object_put(ov);
    json_object_put(fv);
    cl_dom_list_free(&owned);
    cl_idset_free(&foreign);
    return o;
}

/* Run rq on local: a new result object, or NULL and err (the host's own error). */
static json_object *execute(const request_t *rq, cl_host_t *local, cl_err_t *err)
{
    json_object *res;
    char path[CL_RPC_PATH_MAX + 1], what[160];
    int rc = 0, bad = 0, st;

    if (rq->op == CL_RPC_SCAN)
        return scan_result(rq, local, err);
    res = json_object_new_object();
    switch (rq->op) {
    case CL_RPC_ALIVE:
        bad = cl_rpc_json_put(res, "alive", json_object_new_boolean(cl_host_alive(local))) < 0;
        /* fall through - and whether it is the test driver */
    case CL_RPC_IS_TEST:
        bad |= cl_rpc_json_put(res, "is_test", json_object_new_boolean(cl_host_is_test(local))) < 0;
        break;
    case CL_RPC_FREE_KIB:
        bad = cl_rpc_json_put(res, "kib", json_object_new_int64((int64_t)cl_host_free_kib(local))) <
              0;
        break;
    case CL_RPC_STATE:
        if ((rc = st = cl_host_state(local, rq->name, err)) >= 0)
            bad = cl_rpc_json_put(res, "state", json_object_new_string(cl_dom_state_name(st))) < 0;
        break;
    case CL_RPC_POOL_ENSURE:
        rc = cl_host_pool_ensure(local, rq->epoch, rq->pool, rq->path, err);
        break;
    case CL_RPC_OVERLAY:
        rc = cl_host_overlay(local, rq->epoch, rq->pool, rq->vol, rq->backing, rq->fmt, path,
                             sizeof(path), err);
        if (rc == 0)
            bad = cl_rpc_json_put(res, "path", json_object_new_string(path)) < 0;
        break;
    case CL_RPC_DEFINE: rc = cl_host_define(local, rq->epoch, rq->name, rq->xml, err); break;
    case CL_RPC_START: rc = cl_host_start(local, rq->epoch, rq->name, err); break;
    case CL_RPC_DESTROY: rc = cl_host_destroy(local, rq->epoch, rq->name, err); break;
    case CL_RPC_SHUTDOWN_REQUEST: cl_host_shutdown_request(local, rq->epoch, rq->name); break;
    case CL_RPC_REMOVE: rc = cl_host_remove(local, rq->epoch, rq->name, rq->grace_ms, err); break;
    case CL_RPC_VOL_DELETE:
        rc = cl_host_vol_delete(local, rq->epoch, rq->pool, rq->path, err);
        break;
    case CL_RPC_VOL_DELETE_BY_NAME:
        rc = cl_host_vol_delete_by_name(local, rq->epoch, rq->pool, rq->vol, err);
        break;
    default: break;
    }
    if (rc >= 0 && (bad || !res)) {
        describe(rq, what, sizeof(what));
        cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(local), what, "out of memory");
    }
    if (rc < 0 || bad || !res) {
        json_object_put(res);
        return NULL;
    }
    return res;
}

/*
 * A cloud-level request: the replay floors of a control request persisted first (a captured
 * one must not run again after a restart), then the daemon's admin function.
 */
static json_object *admin(cl_rpc_server_t *srv, const request_t *rq, cl_err_t *err)
{
    cl_rpc_admin_fn fn;
    rpc_cloud_t *c;
    void *ud;
    int rc = 0;

    pthread_mutex_lock(&srv->lock);
    fn = srv->admin;
    ud = srv->admin_ud;
    c = cloud_find(srv, rq->cloud, strlen(rq->cloud));
    if (!c)
        rc = SRV_ERR(err, "cloud %s is no longer served", rq->cloud);
    else if (rq->op == CL_RPC_CONTROL)
        rc = fence_save(srv, c, c->epoch, err);
    pthread_mutex_unlock(&srv->lock);
    if (rc < 0)
        return NULL;
    if (!fn) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, cl_rpc_op_name(rq->op),
                   "this cloudd answers no %s request", cl_rpc_op_name(rq->op));
        return NULL;
    }
    return fn(ud, rq->cloud, rq->op, rq->epoch, rq->args, err);
}

/* ========================================================================================= */
/* Serving one connection                                                                    */
/* ========================================================================================= */

/*
 * {"v":1,"op":..,"i":..,"q":..,"ok":true,"result":{..}} or, without result, the error of
 * cl_ctl's control answers ("ok":false,"error":{domain,code,host,operation,message}).
 */
static json_object *answer_new(const request_t *rq, json_object *result, const cl_err_t *e)
{
    json_object *a = result ? json_object_new_object() : cl_ctl_error_json(e);
    int bad = !a;

    if (!bad && result)
        bad = cl_rpc_json_put(a, "ok", json_object_new_boolean(1)) < 0 ||
              cl_rpc_json_put(a, "result", json_object_get(result)) < 0;
    bad = bad || cl_rpc_json_put(a, "v", json_object_new_int(CL_RPC_VERSION)) < 0 ||
          cl_rpc_json_put(a, "op", json_object_new_string(cl_rpc_op_name(rq->op))) < 0 ||
          cl_rpc_json_put(a, "i", json_object_new_int64((int64_t)rq->inc)) < 0 ||
          cl_rpc_json_put(a, "q", json_object_new_int64((int64_t)rq->seq)) < 0;
    if (bad) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

/* Frame the answer; one too large to send becomes an error answer that fits. */
static int answer_frame(const request_t *rq, json_object *ans, const char *cloud,
                        const unsigned char *key, size_t keylen, char **line, size_t *len)
{
    const char *text = json_object_to_json_string_ext(ans, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    json_object *small = NULL;
    cl_err_t e;
    int rc;

    if (text && cl_rpc_frame(cloud, key, keylen, text, strlen(text), line, len, &e) == 0)
        return 0;
    cl_err_set(&e, CL_ERR_PROTO, 0, NULL, cl_rpc_op_name(rq->op),
               "the answer does not fit in %u bytes", CL_RPC_MAX_LINE);
    if (!(small = answer_new(rq, NULL, &e)))
        return -1;
    text = json_object_to_json_string_ext(small, JSON_C_TO_STRING_PLAIN);
    rc = text ? cl_rpc_frame(cloud, key, keylen, text, strlen(text), line, len, &e) : -1;
    json_object_put(small);
    return rc;
}

int cl_rpc_serve_fd(cl_rpc_server_t *srv, int fd, cl_rpc_local_fn local_for, void *ud)
{
    unsigned char key[CL_MSG_KEY_MAX];
    char *line = NULL, *out = NULL, note[64], what[160];
    size_t keylen = 0, len = 0, olen = 0;
    json_tokener *tok = NULL;
    json_object *req = NULL, *result = NULL, *ans = NULL;
    cl_host_t *local = NULL;
    cl_rpc_header_t h;
    rpc_cloud_t *c;
    request_t rq;
    cl_err_t err;
    int r, flags, fenced = 0;

    if (!srv)
        return CL_RPC_DROP_IO;
    cl_err_clear(&err);
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        r = CL_RPC_DROP_IO;
        goto count;
    }
    if ((r = cl_rpc_read_line(fd, cl_time_now_ms() + srv->io_ms, CL_RPC_MAX_LINE, &line, &len)) ||
        (r = cl_rpc_parse_header(line, len, &h)) || (r = key_copy(srv, &h, key, &keylen)))
        goto count;
    if (!cl_msg_mac_ok(key, keylen, h.json, h.json_len, h.mac_hex)) {
        r = CL_RPC_DROP_BAD_MAC;
        goto count;
    }
    /* authenticated from here on, still not trusted */
    if (!(tok = json_tokener_new_ex(CL_RPC_JSON_DEPTH))) {
        r = CL_RPC_DROP_IO;
        goto count;
    }
    if (cl_msg_parse_object(tok, h.json, h.json_len, &req) != CL_MSG_OK) {
        r = CL_RPC_DROP_BAD_JSON;
        goto count;
    }
    if ((r = read_request(req, &rq)))
        goto count;
    if (strlen(rq.cloud) != h.cloud_len || memcmp(rq.cloud, h.cloud, h.cloud_len) != 0) {
        r = CL_RPC_DROP_BAD_FIELD; /* signed for one cloud, addressed to another */
        goto count;
    }
    if ((r = admit(srv, &rq)))
        goto count;

    /* accepted: fence (persisted before acting), then act */
    if (cl_rpc_op_admin(rq.op)) {
        result = admin(srv, &rq, &err);
    } else if (!local_for || !(local = local_for(ud, rq.cloud, &err))) {
        if (err.domain == CL_ERR_NONE)
            cl_err_set(&err, CL_ERR_STATE, 0, NULL, cl_rpc_op_name(rq.op),
                       "cloud %s has no local host here", rq.cloud);
    } else if (cl_rpc_op_mutates(rq.op)) {
        pthread_mutex_lock(&srv->lock);
        c = cloud_find(srv, rq.cloud, strlen(rq.cloud));
        describe(&rq, what, sizeof(what));
        fenced = c ? fence_locked(srv, c, rq.epoch, 1, cl_host_name(local), what, &err)
                   : SRV_ERR(&err, "cloud %s is no longer served", rq.cloud);
        pthread_mutex_unlock(&srv->lock);
    }
    if (local && fenced == 0)
        result = execute(&rq, local, &err);
    if (fenced == 1)
        r = CL_RPC_DROP_STALE_EPOCH;
    if (!(ans = answer_new(&rq, result, &err)) ||
        answer_frame(&rq, ans, rq.cloud, key, keylen, &out, &olen) < 0)
        r = CL_RPC_DROP_IO;

count:
    /* counted before the answer is written: whoever reads the answer sees the count */
    pthread_mutex_lock(&srv->lock);
    if (r == CL_RPC_OK) {
        srv->stats.served++;
        srv->stats.failed += !result;
    } else {
        srv->stats.drops[r]++;
    }
    pthread_mutex_unlock(&srv->lock);
    if (out) {
        if (cl_rpc_write_all(fd, out, olen, cl_time_now_ms() + srv->io_ms) < 0) {
            pthread_mutex_lock(&srv->lock);
            srv->stats.unanswered++;
            pthread_mutex_unlock(&srv->lock);
        }
    } else if (r != CL_RPC_OK) {
        /* unauthenticated, best effort: lets an operator see why (a wrong secret: bad_mac) */
        snprintf(note, sizeof(note), "%s - DROP %s\n", CL_RPC_MAGIC, cl_rpc_drop_name(r));
        cl_rpc_write_all(fd, note, strlen(note), cl_time_now_ms() + CL_RPC_NOTE_MS);
    }
    OPENSSL_cleanse(key, sizeof(key));
    json_object_put(ans);
    json_object_put(result);
    json_object_put(req);
    if (tok)
        json_tokener_free(tok);
    free(line);
    free(out);
    return r;
}
