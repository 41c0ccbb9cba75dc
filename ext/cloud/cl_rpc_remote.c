/*
 * cl_rpc_remote: a pool host reached through its cloudd, the client side of cl_rpc.h.  Each
 * cl_host operation is one signed request on a fresh TCP connection, the leader's epoch on
 * every mutation; its answer is believed only once authenticated and bound to the request (same
 * operation, incarnation and seq).  Every error names the pool host, as a local one would.
 */
#include "cl_rpc.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_ctl.h"
#include "cl_log.h"
#include "cl_msg.h"
#include "cl_spec.h"
#include "cl_time.h"
#include "cl_timeouts.h"

typedef struct remote {
    struct sockaddr_storage sa; /* the daemon's peer port */
    socklen_t salen;
    char where[INET6_ADDRSTRLEN + 16]; /* "192.0.2.1:7946", "[2001:db8::1]:7946" */
    const void *backend;               /* where, interned: one daemon, one set of domains */
    char cloud[CL_NAME_MAX + 1];
    unsigned char *key; /* owned, wiped */
    size_t keylen;
    char *sender;
    uint64_t inc;
    unsigned connect_ms, reply_ms, ping_ms;
    int is_test; /* -1 until an answer said (read and written atomically) */
} remote_t;

/* One sequence for every client of the process: (incarnation, seq) rises across them all. */
static uint64_t rpc_seq;

/* ========================================================================================= */
/* Backends: pool entries reaching one daemon are one backend                                */
/* ========================================================================================= */

typedef struct interned {
    struct interned *next;
    char s[];
} interned_t;

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static interned_t *interned; /* never freed: one entry per daemon address ever reached */

static const void *intern(const char *s)
{
    interned_t *p;
    size_t n = strlen(s) + 1;

    pthread_mutex_lock(&intern_lock);
    for (p = interned; p && strcmp(p->s, s) != 0; p = p->next)
        ;
    if (!p && (p = malloc(sizeof(*p) + n))) {
        memcpy(p->s, s, n);
        p->next = interned;
        interned = p;
    }
    pthread_mutex_unlock(&intern_lock);
    return p;
}

/* ========================================================================================= */
/* One call                                                                                  */
/* ========================================================================================= */

/* Connect to r before deadline: 0 and *fd, or -1 and err. */
static int dial(const remote_t *r, const char *host, const char *what, uint64_t deadline, int *fd,
                cl_err_t *err)
{
    int s, w, soerr = 0, rc = -1;
    socklen_t sl = sizeof(soerr);

    *fd = -1;
    if ((s = socket(r->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return cl_err_sys(err, host, what, "socket");
    if (connect(s, (const struct sockaddr *)&r->sa, r->salen) < 0) {
        if (errno != EINPROGRESS) {
            cl_err_sys(err, host, what, "cannot reach cloudd at %s", r->where);
            goto cleanup;
        }
        if ((w = cl_rpc_wait(s, POLLOUT, deadline)) != 0) {
            if (w > 0)
                cl_err_set(err, CL_ERR_TIMEOUT, 0, host, what,
                           "cloudd at %s did not accept a connection in time", r->where);
            else
                cl_err_sys(err, host, what, "poll");
            goto cleanup;
        }
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            errno = soerr ? soerr : errno;
            cl_err_sys(err, host, what, "cannot reach cloudd at %s", r->where);
            goto cleanup;
        }
    }
    *fd = s;
    s = -1;
    rc = 0;
cleanup:
    if (s >= 0)
        close(s);
    return rc;
}

/* The hint for a drop reason a daemon gave instead of an answer. */
static const char *drop_hint(int reason)
{
    switch (reason) {
    case CL_RPC_DROP_BAD_MAC: return " (is the cloud's secret the same on both hosts?)";
    case CL_RPC_DROP_UNKNOWN_CLOUD: return " (it does not serve this cloud)";
    case CL_RPC_DROP_NOT_MEMBER: return " (this daemon is not in its pool of the cloud)";
    default: return "";
    }
}

/*
 * Check the answer line[0..len) to request (op, seq) of r: 0 and *result (the caller puts it),
 * or -1 and err: the remote operation's own error (with this host's name), or why the answer
 * is not believed.
 */
static int answer_check(const remote_t *r, const char *host, int op, uint64_t seq, const char *what,
                        const char *line, size_t len, json_object **result, cl_err_t *err)
{
    static const char note[] = CL_RPC_MAGIC " - DROP ";
    json_tokener *tok = NULL;
    json_object *ans = NULL, *v, *res;
    cl_rpc_header_t h;
    uint64_t ver = 0, inc = 0, q = 0;
    int rc = -1, reason;

    if (len > sizeof(note) - 1 && memcmp(line, note, sizeof(note) - 1) == 0) {
        reason = cl_rpc_drop_from_name(line + sizeof(note) - 1);
        cl_err_set(err, CL_ERR_PROTO, reason < 0 ? 0 : reason, host, what,
                   "cloudd at %s refused the request: %.40s%s", r->where, line + sizeof(note) - 1,
                   drop_hint(reason));
        goto cleanup;
    }
    if (cl_rpc_parse_header(line, len, &h) != CL_RPC_OK || h.cloud_len != strlen(r->cloud) ||
        memcmp(h.cloud, r->cloud, h.cloud_len) != 0 ||
        !cl_msg_mac_ok(r->key, r->keylen, h.json, h.json_len, h.mac_hex)) {
        cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_MAC, host, what,
                   "the answer of cloudd at %s is not signed with the key of cloud %s", r->where,
                   r->cloud);
        goto cleanup;
    }
    if (!(tok = json_tokener_new_ex(CL_RPC_JSON_DEPTH)) ||
        cl_msg_parse_object(tok, h.json, h.json_len, &ans) != CL_MSG_OK ||
        cl_rpc_json_num(ans, "v", &ver) < 0 || ver != CL_RPC_VERSION ||
        !json_object_object_get_ex(ans, "op", &v) || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), cl_rpc_op_name(op)) != 0 ||
        cl_rpc_json_num(ans, "i", &inc) < 0 || inc != r->inc || cl_rpc_json_num(ans, "q", &q) < 0 ||
        q != seq || !json_object_object_get_ex(ans, "ok", &v) ||
        !json_object_is_type(v, json_type_boolean)) {
        cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_FIELD, host, what,
                   "the answer of cloudd at %s is malformed or not the answer to this request",
                   r->where);
        goto cleanup;
    }
    if (!json_object_get_boolean(v)) {
        cl_ctl_error_from(ans, err);
        if (err && (!cl_rpc_op_admin(op) || !err->host[0])) {
            /* the pool entry, as the engine and Puppet know the host (a handed-over request's
             * error keeps the host it happened on) */
            snprintf(err->host, sizeof(err->host), "%s", host);
        }
        if (err && !err->op[0])
            snprintf(err->op, sizeof(err->op), "%s", what);
        goto cleanup;
    }
    if (!json_object_object_get_ex(ans, "result", &res) ||
        !json_object_is_type(res, json_type_object)) {
        cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_FIELD, host, what,
                   "the answer of cloudd at %s has no result", r->where);
        goto cleanup;
    }
    *result = json_object_get(res);
    rc = 0;
cleanup:
    json_object_put(ans);
    if (tok)
        json_tokener_free(tok);
    return rc;
}

/*
 * One request: op with args (taken) in epoch, answered within timeout_ms; what ("define
 * web-0") names it in errors.  0 and *result (the caller puts it), or -1 and err naming h.
 */
static int call(cl_host_t *h, int op, uint64_t epoch, json_object *args, const char *what,
                unsigned timeout_ms, json_object **result, cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    const char *host = cl_host_name(h), *text;
    uint64_t seq = __atomic_add_fetch(&rpc_seq, 1, __ATOMIC_SEQ_CST);
    uint64_t start = cl_time_now_ms(), deadline = start + timeout_ms;
    json_object *req = json_object_new_object();
    char *line = NULL, *reply = NULL;
    size_t len = 0, rlen = 0;
    int fd = -1, rc = -1, d, bad = 0;

    *result = NULL;
    bad |= cl_rpc_json_put(req, "v", json_object_new_int(CL_RPC_VERSION));
    bad |= cl_rpc_json_put(req, "op", json_object_new_string(cl_rpc_op_name(op)));
    bad |= cl_rpc_json_put(req, "cloud", json_object_new_string(r->cloud));
    bad |= cl_rpc_json_put(req, "epoch", json_object_new_int64((int64_t)epoch));
    bad |= cl_rpc_json_put(req, "sender", json_object_new_string(r->sender));
    bad |= cl_rpc_json_put(req, "i", json_object_new_int64((int64_t)r->inc));
    bad |= cl_rpc_json_put(req, "q", json_object_new_int64((int64_t)seq));
    bad |= cl_rpc_json_put(req, "args", args); /* args is req's (or put) from here on */
    if (bad || epoch > CL_MSG_NUM_MAX) {
        cl_err_set(err, bad ? CL_ERR_SYS : CL_ERR_ELECTION, bad ? ENOMEM : 0, host, what,
                   bad ? "out of memory" : "epoch out of range");
        goto cleanup;
    }
    text = json_object_to_json_string_ext(req,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!text || cl_rpc_frame(r->cloud, r->key, r->keylen, text, strlen(text), &line, &len, err)) {
        if (!text)
            cl_err_set(err, CL_ERR_SYS, ENOMEM, host, what, "out of memory");
        else if (err)
            snprintf(err->host, sizeof(err->host), "%s", host);
        goto cleanup;
    }
    if (dial(r, host, what, start + (r->connect_ms < timeout_ms ? r->connect_ms : timeout_ms), &fd,
             err) < 0)
        goto cleanup;
    if (cl_rpc_write_all(fd, line, len, deadline) < 0) {
        if (errno == ETIMEDOUT)
            cl_err_set(err, CL_ERR_TIMEOUT, 0, host, what,
                       "cloudd at %s did not take the request within %u ms", r->where, timeout_ms);
        else
            cl_err_sys(err, host, what, "sending to cloudd at %s", r->where);
        goto cleanup;
    }
    d = cl_rpc_read_line(fd, deadline, CL_RPC_MAX_LINE, &reply, &rlen);
    if (d == CL_RPC_DROP_TIMEOUT)
        cl_err_set(err, CL_ERR_TIMEOUT, 0, host, what, "no answer from cloudd at %s within %u ms",
                   r->where, timeout_ms);
    else if (d == CL_RPC_DROP_IO)
        cl_err_sys(err, host, what, "reading the answer of cloudd at %s", r->where);
    else if (d != CL_RPC_OK)
        cl_err_set(err, CL_ERR_PROTO, d, host, what, "cloudd at %s gave no whole answer (%s)",
                   r->where, cl_rpc_drop_name(d));
    else
        rc = answer_check(r, host, op, seq, what, reply, rlen, result, err);
cleanup:
    if (fd >= 0)
        close(fd);
    json_object_put(req);
    free(line);
    free(reply);
    return rc;
}

int cl_host_remote_call(cl_host_t *h, int op, uint64_t epoch, json_object *args,
                        unsigned timeout_ms, json_object **result, cl_err_t *err)
{
    *result = NULL;
    if (!h || !cl_rpc_op_admin(op)) {
        json_object_put(args);
        return cl_err_set(err, CL_ERR_PROTO, 0, h ? cl_host_name(h) : NULL, cl_rpc_op_name(op),
                          "not a cloud-level request");
    }
    return call(h, op, epoch, args, cl_rpc_op_name(op), timeout_ms, result, err);
}

/* A call whose result is not needed. */
static int call0(cl_host_t *h, int op, uint64_t epoch, json_object *args, const char *what,
                 unsigned timeout_ms, cl_err_t *err)
{
    json_object *res = NULL;
    int rc = call(h, op, epoch, args, what, timeout_ms, &res, err);

    json_object_put(res);
    return rc;
}

/* {k1: v1, k2: v2, ...} of strings (a NULL value is left out); NULL on allocation failure. */
static json_object *args_of(const char *k1, const char *v1, const char *k2, const char *v2)
{
    json_object *a = json_object_new_object();

    if (k1 && v1 && cl_rpc_json_put(a, k1, json_object_new_string(v1)) < 0)
        return NULL;
    if (k2 && v2 && a && cl_rpc_json_put(a, k2, json_object_new_string(v2)) < 0) {
        json_object_put(a);
        return NULL;
    }
    return a;
}

/* ========================================================================================= */
/* The operations                                                                            */
/* ========================================================================================= */

static const void *remote_backend(const cl_host_t *h)
{
    return ((const remote_t *)cl_host_impl(h))->backend;
}

static void learn_is_test(remote_t *r, json_object *res)
{
    json_object *v;

    if (json_object_object_get_ex(res, "is_test", &v) && json_object_is_type(v, json_type_boolean))
        __atomic_store_n(&r->is_test, json_object_get_boolean(v) ? 1 : 0, __ATOMIC_RELAXED);
}

/*
 * Reads (scan, state, free memory) answer within CL_RPC_SCAN_MS, or the reply bound if that is
 * shorter: a host daemon that is frozen or hung costs a run this long, not a converge's bound.
 */
static unsigned scan_ms(const remote_t *r)
{
    return r->reply_ms < CL_RPC_SCAN_MS ? r->reply_ms : CL_RPC_SCAN_MS;
}

/* A cheap authenticated ping within ping_ms: the daemon answers and its hypervisor is up. */
static int remote_alive(cl_host_t *h)
{
    remote_t *r = cl_host_impl(h);
    json_object *res = NULL, *v;
    int alive = 0;

    if (call(h, CL_RPC_ALIVE, 0, json_object_new_object(), "alive", r->ping_ms, &res, NULL) == 0) {
        alive = json_object_object_get_ex(res, "alive", &v) &&
                json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
        learn_is_test(r, res);
    }
    json_object_put(res);
    return alive;
}

/* Asked once (within ping_ms), then remembered; 0 while the daemon cannot say. */
static int remote_is_test(const cl_host_t *ch)
{
    cl_host_t *h = (cl_host_t *)ch; /* the table's const: the host is not changed, r is */
    remote_t *r = cl_host_impl(h);
    json_object *res = NULL;
    int t = __atomic_load_n(&r->is_test, __ATOMIC_RELAXED);

    if (t >= 0)
        return t;
    if (call(h, CL_RPC_IS_TEST, 0, json_object_new_object(), "is_test", r->ping_ms, &res, NULL) ==
        0)
        learn_is_test(r, res);
    json_object_put(res);
    t = __atomic_load_n(&r->is_test, __ATOMIC_RELAXED);
    return t > 0;
}

static unsigned long remote_free_kib(cl_host_t *h)
{
    remote_t *r = cl_host_impl(h);
    json_object *res = NULL;
    uint64_t kib = 0;

    if (call(h, CL_RPC_FREE_KIB, 0, json_object_new_object(), "free memory", scan_ms(r), &res,
             NULL) == 0 &&
        (cl_rpc_json_num(res, "kib", &kib) < 0 || kib > ULONG_MAX))
        kib = 0;
    json_object_put(res);
    return (unsigned long)kib;
}

/* A string member of o into out[cap]; -1 if missing, mistyped or too long. */
static int copy_str(json_object *o, const char *key, char *out, size_t cap)
{
    json_object *v;
    int n;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return -1;
    n = json_object_get_string_len(v);
    if (n < 0 || (size_t)n >= cap || strlen(json_object_get_string(v)) != (size_t)n)
        return -1;
    memcpy(out, json_object_get_string(v), (size_t)n + 1);
    return 0;
}

static int state_from_name(const char *name)
{
    int s;

    for (s = CL_DOM_MISSING; s <= CL_DOM_OTHER; s++)
        if (strcmp(cl_dom_state_name(s), name) == 0)
            return s;
    return -1;
}

static int dom_from_json(json_object *o, cl_dom_t *d)
{
    char state[16];
    json_object *v;
    uint64_t epoch;
    int64_t index;

    memset(d, 0, sizeof(*d));
    if (!json_object_is_type(o, json_type_object) ||
        copy_str(o, "name", d->name, sizeof(d->name)) ||
        copy_str(o, "uuid", d->uuid, sizeof(d->uuid)) ||
        copy_str(o, "cloud", d->cloud, sizeof(d->cloud)) ||
        copy_str(o, "slot", d->slot, sizeof(d->slot)) ||
        copy_str(o, "host", d->host, sizeof(d->host)) ||
        copy_str(o, "role", d->role, sizeof(d->role)) || copy_str(o, "ip", d->ip, sizeof(d->ip)) ||
        copy_str(o, "image", d->image, sizeof(d->image)) ||
        copy_str(o, "disk", d->disk, sizeof(d->disk)) ||
        copy_str(o, "config", d->config, sizeof(d->config)) ||
        copy_str(o, "mac", d->mac, sizeof(d->mac)) || copy_str(o, "state", state, sizeof(state)) ||
        (d->state = state_from_name(state)) < 0 || cl_rpc_json_num(o, "epoch", &epoch) < 0 ||
        epoch > ULONG_MAX || !json_object_object_get_ex(o, "index", &v) ||
        !json_object_is_type(v, json_type_int))
        return -1;
    index = json_object_get_int64(v);
    if (index < INT_MIN || index > INT_MAX)
        return -1;
    d->epoch = (unsigned long)epoch;
    d->index = (int)index;
    return 0;
}

static cl_dom_t *dom_add(cl_dom_list_t *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        cl_dom_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = cap;
    }
    return &l->v[l->n++];
}

/* The cloud's domains only: this host's key is the cloud's, and answers for no other. */
static int remote_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                       cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    json_object *res = NULL, *a, *ov, *fv, *s;
    cl_dom_t d, *slot;
    size_t i, n;
    int rc = -1, malformed = 0;

    if (!cloud || strcmp(cloud, r->cloud) != 0)
        return cl_err_set(err, CL_ERR_PROTO, 0, cl_host_name(h), "list domains",
                          "this host is reached for cloud %s, not %s", r->cloud,
                          cloud ? cloud : "every cloud");
    a = json_object_new_object();
    if (cl_rpc_json_put(a, "foreign", json_object_new_boolean(foreign != NULL)) < 0) {
        json_object_put(a);
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(h), "list domains",
                          "out of memory");
    }
    if (call(h, CL_RPC_SCAN, 0, a, "list domains", scan_ms(r), &res, err) < 0)
        goto cleanup;
    malformed = !json_object_object_get_ex(res, "owned", &ov) ||
                !json_object_is_type(ov, json_type_array) ||
                !json_object_object_get_ex(res, "foreign", &fv) ||
                !json_object_is_type(fv, json_type_array);
    for (i = 0, n = malformed ? 0 : json_object_array_length(ov); i < n; i++) {
        if ((malformed = dom_from_json(json_object_array_get_idx(ov, i), &d) < 0))
            goto cleanup;
        if (!(slot = dom_add(owned))) {
            cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(h), "list domains", "out of memory");
            goto cleanup;
        }
        *slot = d;
    }
    for (i = 0, n = malformed || !foreign ? 0 : json_object_array_length(fv); i < n; i++) {
        s = json_object_array_get_idx(fv, i);
        if ((malformed =
                 !json_object_is_type(s, json_type_string) ||
                 json_object_get_string_len(s) > CL_RPC_ID_MAX ||
                 strlen(json_object_get_string(s)) != (size_t)json_object_get_string_len(s)))
            goto cleanup;
        if (cl_idset_add(foreign, json_object_get_string(s)) < 0) {
            cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(h), "list domains", "out of memory");
            goto cleanup;
        }
    }
    rc = malformed ? -1 : 0;
cleanup:
    if (malformed)
        cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_FIELD, cl_host_name(h), "list domains",
                   "malformed list of domains from cloudd at %s", r->where);
    json_object_put(res);
    return rc;
}

static int remote_state(cl_host_t *h, const char *name, cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    json_object *res = NULL;
    char what[CL_RPC_NAME_MAX + 32], state[16];
    int st = -1;

    snprintf(what, sizeof(what), "state of %s", name);
    if (call(h, CL_RPC_STATE, 0, args_of("name", name, NULL, NULL), what, scan_ms(r), &res, err) ==
            0 &&
        (copy_str(res, "state", state, sizeof(state)) < 0 || (st = state_from_name(state)) < 0))
        st = cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_FIELD, cl_host_name(h), what,
                        "malformed state from cloudd at %s", r->where);
    json_object_put(res);
    return st;
}

static int remote_pool_ensure(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                              cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_ID_MAX + 32];

    snprintf(what, sizeof(what), "storage pool %s", pool);
    return call0(h, CL_RPC_POOL_ENSURE, epoch, args_of("pool", pool, "path", path), what,
                 r->reply_ms, err);
}

static int remote_overlay(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                          const char *backing, const char *fmt, char *path_out, size_t len,
                          cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    json_object *a = args_of("pool", pool, "vol", vol), *res = NULL;
    char what[CL_RPC_ID_MAX + 32];
    int rc = -1;

    snprintf(what, sizeof(what), "create disk %s", vol);
    if (cl_rpc_json_put(a, "backing", json_object_new_string(backing)) < 0 ||
        cl_rpc_json_put(a, "fmt", json_object_new_string(fmt)) < 0) {
        json_object_put(a);
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(h), what, "out of memory");
    }
    if (call(h, CL_RPC_OVERLAY, epoch, a, what, r->reply_ms, &res, err) < 0)
        goto cleanup;
    if (copy_str(res, "path", path_out, len) < 0) {
        cl_err_set(err, CL_ERR_PROTO, CL_RPC_DROP_BAD_FIELD, cl_host_name(h), what,
                   "no path, or one longer than %zu bytes, from cloudd at %s", len, r->where);
        goto cleanup;
    }
    rc = 0;
cleanup:
    json_object_put(res);
    return rc;
}

static int remote_define(cl_host_t *h, uint64_t epoch, const char *name, const char *xml,
                         cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_NAME_MAX + 32];

    snprintf(what, sizeof(what), "define %s", name);
    return call0(h, CL_RPC_DEFINE, epoch, args_of("name", name, "xml", xml), what, r->reply_ms,
                 err);
}

static int remote_start(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_NAME_MAX + 32];

    snprintf(what, sizeof(what), "start %s", name);
    return call0(h, CL_RPC_START, epoch, args_of("name", name, NULL, NULL), what, r->reply_ms, err);
}

static int remote_destroy(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_NAME_MAX + 32];

    snprintf(what, sizeof(what), "destroy %s", name);
    return call0(h, CL_RPC_DESTROY, epoch, args_of("name", name, NULL, NULL), what, r->reply_ms,
                 err);
}

/* Returns at once on the host; a failure to deliver it is logged, as the table has no error. */
static void remote_shutdown_request(cl_host_t *h, uint64_t epoch, const char *name)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_NAME_MAX + 32], buf[1200];
    cl_err_t err;

    cl_err_clear(&err);
    snprintf(what, sizeof(what), "shut down %s", name);
    if (call0(h, CL_RPC_SHUTDOWN_REQUEST, epoch, args_of("name", name, NULL, NULL), what,
              r->reply_ms, &err) < 0)
        cl_log(CL_LOG_WARN, "-rpc", "%s", cl_err_format(&err, buf, sizeof(buf)));
}

/* Waits on the host up to grace_ms: the answer is awaited that much longer. */
static int remote_remove(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms,
                         cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    json_object *a = args_of("name", name, NULL, NULL);
    char what[CL_RPC_NAME_MAX + 32];

    snprintf(what, sizeof(what), "remove %s", name);
    if (grace_ms > CL_RPC_GRACE_MAX_MS)
        grace_ms = CL_RPC_GRACE_MAX_MS;
    if (cl_rpc_json_put(a, "grace_ms", json_object_new_int64(grace_ms)) < 0) {
        json_object_put(a);
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, cl_host_name(h), what, "out of memory");
    }
    return call0(h, CL_RPC_REMOVE, epoch, a, what, r->reply_ms + grace_ms, err);
}

static int remote_vol_delete(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                             cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_PATH_MAX + 32];

    snprintf(what, sizeof(what), "delete disk %s", path ? path : "");
    return call0(h, CL_RPC_VOL_DELETE, epoch, args_of("path", path ? path : "", "pool", pool), what,
                 r->reply_ms, err);
}

static int remote_vol_delete_by_name(cl_host_t *h, uint64_t epoch, const char *pool,
                                     const char *vol, cl_err_t *err)
{
    remote_t *r = cl_host_impl(h);
    char what[CL_RPC_ID_MAX + 32];

    snprintf(what, sizeof(what), "delete disk %s", vol);
    return call0(h, CL_RPC_VOL_DELETE_BY_NAME, epoch, args_of("pool", pool, "vol", vol), what,
                 r->reply_ms, err);
}

static void remote_release(void *impl)
{
    remote_t *r = impl;

    if (!r)
        return;
    if (r->key) {
        OPENSSL_cleanse(r->key, r->keylen);
        free(r->key);
    }
    free(r->sender);
    free(r);
}

static const cl_host_ops_t remote_ops = {
    .kind = "remote",
    .backend = remote_backend,
    .alive = remote_alive,
    .is_test = remote_is_test,
    .free_kib = remote_free_kib,
    .scan = remote_scan,
    .state = remote_state,
    .pool_ensure = remote_pool_ensure,
    .overlay = remote_overlay,
    .define = remote_define,
    .start = remote_start,
    .destroy = remote_destroy,
    .shutdown_request = remote_shutdown_request,
    .remove = remote_remove,
    .vol_delete = remote_vol_delete,
    .vol_delete_by_name = remote_vol_delete_by_name,
    .release = remote_release,
};

/* ========================================================================================= */
/* Making one                                                                                */
/* ========================================================================================= */

cl_host_t *cl_host_remote_new(const char *host_name, const char *addr, unsigned port,
                              const char *cloud, const unsigned char *key, size_t keylen,
                              const char *sender, uint64_t incarnation, cl_err_t *err)
{
    struct addrinfo hints, *ai = NULL;
    char num[INET6_ADDRSTRLEN], svc[8];
    remote_t *r = NULL;
    cl_host_t *h = NULL;
    int g;

    if (!host_name || !*host_name || !addr || port == 0 || port > 65535 || !cloud ||
        !cl_spec_name_ok(cloud) || !key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX ||
        !sender || !*sender || strlen(sender) > CL_MSG_SENDER_MAX || incarnation > CL_MSG_NUM_MAX) {
        cl_err_set(err, CL_ERR_PROTO, 0, host_name, "remote host",
                   "invalid address, port, cloud name, key (%d..%d bytes), sender or incarnation",
                   CL_MSG_KEY_MIN, CL_MSG_KEY_MAX);
        goto cleanup;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(svc, sizeof(svc), "%u", port);
    if ((g = getaddrinfo(addr, svc, &hints, &ai)) != 0 || !ai || ai->ai_addrlen > sizeof(r->sa) ||
        getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof(num), NULL, 0, NI_NUMERICHOST)) {
        cl_err_set(err, CL_ERR_PROTO, 0, host_name, "remote host",
                   "'%.64s' is not a numeric IP address (resolve the pool entry first)", addr);
        goto cleanup;
    }
    if (!(r = calloc(1, sizeof(*r))) || !(r->key = malloc(keylen)) ||
        !(r->sender = strdup(sender))) {
        cl_err_set(err, CL_ERR_SYS, ENOMEM, host_name, "remote host", "out of memory");
        goto cleanup;
    }
    memcpy(&r->sa, ai->ai_addr, ai->ai_addrlen);
    r->salen = ai->ai_addrlen;
    snprintf(r->where, sizeof(r->where), ai->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u", num,
             port);
    snprintf(r->cloud, sizeof(r->cloud), "%s", cloud);
    memcpy(r->key, key, keylen);
    r->keylen = keylen;
    r->inc = incarnation;
    r->connect_ms = CL_RPC_CONNECT_MS;
    r->reply_ms = CL_RPC_REPLY_MS;
    r->ping_ms = CL_RPC_PING_MS;
    r->is_test = -1;
    r->backend = intern(r->where);
    if (!r->backend)
        r->backend = r; /* out of memory: a backend of its own is merely less shared */
    h = cl_host_new(&remote_ops, host_name, r, err);
    r = NULL; /* the host's, even when cl_host_new failed */
cleanup:
    remote_release(r);
    if (ai)
        freeaddrinfo(ai);
    return h;
}

void cl_host_remote_set_timeouts(cl_host_t *h, unsigned connect_ms, unsigned reply_ms,
                                 unsigned ping_ms)
{
    remote_t *r;

    if (!h || strcmp(cl_host_kind(h), "remote") != 0)
        return;
    r = cl_host_impl(h);
    if (connect_ms)
        r->connect_ms = connect_ms;
    if (reply_ms)
        r->reply_ms = reply_ms;
    if (ping_ms)
        r->ping_ms = ping_ms;
}
