/*
 * rb_cloud: the Ruby class Cloud, a thin typed wrapper over the C core.  Ruby data is copied
 * into C (the spec as JSON text) before the GVL is released around every call that can block
 * (control socket, libvirt, spawning cloudd); progress lines are yielded back with the GVL.
 * Core errors (cl_err_t) become Cloud::Error subclasses carrying code, host and operation.
 */
#include <ruby.h>
#include <ruby/thread.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_client.h"
#include "cl_handover.h"
#include "cl_ctl.h"
#include "cl_engine.h"
#include "cl_log.h"
#include "cl_net.h"
#include "cl_spec.h"
#include "cl_timeouts.h"
#include "rb_cloud.h"

static VALUE cCloud, eError, eVirt, eSSH, eProto, eTimeout, eElection, eSpec, eSystem, eState;
static VALUE mJSON;
static ID id_generate, id_parse, id_code, id_host, id_operation;
static ID kw_new[4], kw_status[2]; /* the keywords Cloud.new and Cloud.status accept */

/* ========================================================================================== */
/* Native object                                                                              */
/* ========================================================================================== */

typedef struct rb_cloud {
    char *spec_json; /* the spec, JSON text */
    cl_spec_t *spec; /* parsed and validated */
    char *socket, *daemon, *state_dir;
    int autostart;
    int busy;    /* calls in progress (they release the GVL) */
    int closing; /* #close came while busy: the last call out releases */
} rb_cloud_t;

static void cloud_release(rb_cloud_t *c)
{
    cl_spec_free(c->spec);
    c->spec = NULL;
    free(c->spec_json);
    free(c->socket);
    free(c->daemon);
    free(c->state_dir);
    c->spec_json = c->socket = c->daemon = c->state_dir = NULL;
}

static void cloud_free(void *p)
{
    rb_cloud_t *c = p;

    cloud_release(c);
    xfree(c);
}

static size_t cloud_size(const void *p)
{
    const rb_cloud_t *c = p;

    return sizeof(*c) + (c->spec_json ? strlen(c->spec_json) : 0);
}

static const rb_data_type_t cloud_type = {
    "Cloud", {NULL, cloud_free, cloud_size, NULL, {NULL}}, NULL, NULL, RUBY_TYPED_FREE_IMMEDIATELY,
};

static VALUE cloud_alloc(VALUE klass)
{
    rb_cloud_t *c;

    return TypedData_Make_Struct(klass, rb_cloud_t, &cloud_type, c);
}

static rb_cloud_t *get_cloud(VALUE self)
{
    rb_cloud_t *c;

    TypedData_Get_Struct(self, rb_cloud_t, &cloud_type, c);
    if (!c->spec || c->closing)
        rb_raise(eError, "this Cloud is closed");
    return c;
}

static VALUE unpin(VALUE self)
{
    rb_cloud_t *c;

    TypedData_Get_Struct(self, rb_cloud_t, &cloud_type, c);
    if (--c->busy == 0 && c->closing) {
        c->closing = 0;
        cloud_release(c);
    }
    return Qnil;
}

/*
 * Runs fn(self) with the native data pinned: another thread's #close while fn waits without
 * the GVL only marks the object, and the last call out frees it (no use after free).
 */
static VALUE pinned(VALUE self, VALUE (*fn)(VALUE))
{
    get_cloud(self)->busy++;
    return rb_ensure(fn, self, unpin, self);
}

#define CL_PINNED(fn)                                                                              \
    static VALUE fn##_pinned(VALUE self)                                                           \
    {                                                                                              \
        return pinned(self, fn);                                                                   \
    }

/* ========================================================================================== */
/* Errors                                                                                     */
/* ========================================================================================== */

static VALUE error_class(cl_err_domain_t d)
{
    switch (d) {
    case CL_ERR_VIRT: return eVirt;
    case CL_ERR_SSH: return eSSH;
    case CL_ERR_PROTO: return eProto;
    case CL_ERR_TIMEOUT: return eTimeout;
    case CL_ERR_ELECTION: return eElection;
    case CL_ERR_SPEC: return eSpec;
    case CL_ERR_SYS: return eSystem;
    case CL_ERR_STATE: return eState;
    default: return eError;
    }
}

/* The one place a cl_err_t becomes a Ruby exception. */
void rb_cloud_raise(const cl_err_t *err)
{
    char buf[1200];
    VALUE exc = rb_exc_new_cstr(error_class(err->domain), cl_err_format(err, buf, sizeof(buf)));

    rb_ivar_set(exc, id_code, INT2NUM(err->code));
    rb_ivar_set(exc, id_host, err->host[0] ? rb_str_new_cstr(err->host) : Qnil);
    rb_ivar_set(exc, id_operation, err->op[0] ? rb_str_new_cstr(err->op) : Qnil);
    rb_exc_raise(exc);
}

/* ========================================================================================== */
/* Calls without the GVL                                                                      */
/* ========================================================================================== */

typedef struct call {
    const cl_client_opts_t *opts;
    json_object *req;
    int autostart;
    unsigned timeout_ms;
    VALUE block; /* Qnil or a Proc to yield progress Hashes to */
    volatile int cancel;
    int exc_state; /* rb_protect state of a block that raised */
    json_object *final;
    cl_err_t err;
    int rc;
    json_object *line; /* progress line being yielded */
} call_t;

static VALUE json_to_ruby(json_object *o)
{
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

    return rb_funcall(mJSON, id_parse, 1, rb_str_new_cstr(text));
}

static VALUE yield_line(VALUE arg)
{
    call_t *c = (call_t *)arg;

    return rb_proc_call(c->block, rb_ary_new_from_args(1, json_to_ruby(c->line)));
}

static void *with_gvl_progress(void *arg)
{
    call_t *c = arg;
    int state = 0;

    rb_protect(yield_line, (VALUE)c, &state);
    if (state)
        c->exc_state = state;
    return NULL;
}

static int on_line(void *ud, json_object *line)
{
    call_t *c = ud;

    if (NIL_P(c->block))
        return 0;
    c->line = line;
    rb_thread_call_with_gvl(with_gvl_progress, c);
    c->line = NULL;
    return c->exc_state ? 1 : 0;
}

static void *do_call(void *arg)
{
    call_t *c = arg;

    c->rc = cl_client_call(c->opts, c->req, c->autostart, c->timeout_ms, on_line, c, &c->cancel,
                           &c->final, &c->err);
    json_object_put(c->req);
    c->req = NULL;
    return NULL;
}

static void ubf_cancel(void *arg)
{
    ((call_t *)arg)->cancel = 1;
}

static void opts_of(const rb_cloud_t *c, cl_client_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->socket = c->socket;
    o->daemon = c->daemon;
    o->state_dir = c->state_dir;
}

static json_object *request(const char *op, const rb_cloud_t *c, int with_spec, int noop)
{
    json_object *req = json_object_new_object();

    json_object_object_add(req, "v", json_object_new_int(CL_CTL_VERSION));
    json_object_object_add(req, "op", json_object_new_string(op));
    if (c) {
        json_object_object_add(req, "name", json_object_new_string(c->spec->name));
        if (with_spec)
            json_object_object_add(req, "spec", json_object_get(c->spec->json));
    }
    if (noop)
        json_object_object_add(req, "noop", json_object_new_boolean(1));
    return req;
}

/*
 * Send req (consumed) to the daemon; returns the final answer as a Ruby Hash.  With soft, an
 * election error is not raised but copied there, and Qundef returned.
 */
static VALUE daemon_call_soft(const cl_client_opts_t *opts, json_object *req, int autostart,
                              unsigned timeout_ms, VALUE block, cl_err_t *soft)
{
    call_t c;
    VALUE res;

    memset(&c, 0, sizeof(c));
    c.opts = opts;
    c.req = req;
    c.autostart = autostart;
    c.timeout_ms = timeout_ms;
    c.block = block;
    rb_thread_call_without_gvl(do_call, &c, ubf_cancel, &c);
    if (c.exc_state) {
        json_object_put(c.final);
        rb_jump_tag(c.exc_state);
    }
    if (c.rc < 0 && soft && c.err.domain == CL_ERR_ELECTION) {
        *soft = c.err;
        return Qundef;
    }
    if (c.rc < 0)
        rb_cloud_raise(&c.err);
    res = json_to_ruby(c.final);
    json_object_put(c.final);
    return res;
}

static VALUE daemon_call(const cl_client_opts_t *opts, json_object *req, int autostart,
                         unsigned timeout_ms, VALUE block)
{
    return daemon_call_soft(opts, req, autostart, timeout_ms, block, NULL);
}

/* Read-only work: asked of the daemon (req), or in-process when none runs: status or plan. */
typedef struct local {
    const cl_client_opts_t *opts;
    json_object *req; /* NULL: only answer when no daemon runs */
    volatile int cancel;
    const char *name;
    const cl_spec_t *spec;
    int plan;
    json_object *result;
    cl_err_t err;
    int rc;
    int up;
} local_t;

static void *do_local(void *arg)
{
    local_t *l = arg;

    if (l->req) {
        l->rc = cl_client_read(l->opts, l->req, l->name, l->spec, l->plan, &l->cancel, &l->result,
                               &l->err);
        json_object_put(l->req);
        l->req = NULL;
        return NULL;
    }
    l->up = cl_client_daemon_up(l->opts);
    if (l->up)
        return NULL;
    l->rc = l->plan ? cl_client_local_plan(l->opts, l->spec, &l->result, &l->err)
                    : cl_client_local_status(l->opts, l->name, l->spec, &l->result, &l->err);
    return NULL;
}

static void ubf_local(void *arg)
{
    ((local_t *)arg)->cancel = 1;
}

/* req (consumed): the request for a running daemon; NULL: returns Qundef if a daemon runs. */
static VALUE local_call(const cl_client_opts_t *opts, const char *name, const cl_spec_t *spec,
                        int plan, json_object *req)
{
    local_t l;
    VALUE res;

    memset(&l, 0, sizeof(l));
    l.opts = opts;
    l.req = req;
    l.name = name;
    l.spec = spec;
    l.plan = plan;
    rb_thread_call_without_gvl(do_local, &l, ubf_local, &l);
    if (l.up)
        return Qundef;
    if (l.rc < 0)
        rb_cloud_raise(&l.err);
    res = json_to_ruby(l.result);
    json_object_put(l.result);
    return res;
}

/* A control request handed to the leader of a cloud whose pool this host is not in. */
typedef struct hand {
    const cl_spec_t *spec;
    json_object *req; /* owned */
    unsigned timeout_ms;
    volatile int cancel;
    char *answer, *events; /* the leader's answer and its progress events, as JSON text */
    cl_err_t err;
    int rc;
} hand_t;

static void *do_handover(void *arg)
{
    hand_t *h = arg;
    json_object *answer = NULL, *events = NULL;

    h->rc = cl_handover(h->spec, h->req, h->timeout_ms, 0, &h->cancel, &answer, &events, &h->err);
    if (h->rc == 0) {
        h->answer = strdup(json_object_to_json_string_ext(answer, JSON_C_TO_STRING_PLAIN));
        h->events = strdup(json_object_to_json_string_ext(events, JSON_C_TO_STRING_PLAIN));
        if (!h->answer || !h->events) {
            h->rc = cl_err_set(&h->err, CL_ERR_SYS, ENOMEM, NULL, "handover", "out of memory");
            free(h->answer);
            free(h->events);
            h->answer = h->events = NULL;
        }
    }
    json_object_put(answer);
    json_object_put(events);
    json_object_put(h->req);
    h->req = NULL;
    return NULL;
}

static void ubf_handover(void *arg)
{
    ((hand_t *)arg)->cancel = 1;
}

/* JSON.parse of a Ruby String. */
static VALUE parse_owned(VALUE text)
{
    return rb_funcall(mJSON, id_parse, 1, text);
}

/* Run a handover (h->req consumed) without the GVL; h->rc says how it went. */
static void handover_run(hand_t *h)
{
    rb_thread_call_without_gvl(do_handover, h, ubf_handover, h);
}

/* The leader's answer of a successful handover; its progress events are yielded to block. */
static VALUE handover_answer(hand_t *h, VALUE block)
{
    VALUE answer = rb_str_new_cstr(h->answer), events = rb_str_new_cstr(h->events);
    long i;

    free(h->answer);
    free(h->events);
    h->answer = h->events = NULL;
    answer = parse_owned(answer);
    events = parse_owned(events);
    for (i = 0; !NIL_P(block) && RB_TYPE_P(events, T_ARRAY) && i < RARRAY_LEN(events); i++)
        rb_proc_call(block, rb_ary_new_from_args(1, rb_ary_entry(events, i)));
    return answer;
}

/*
 * req (consumed) to the leader found among the pool's daemons (cl_handover); its progress
 * events are yielded to block afterwards; returns the leader's answer as a Ruby Hash.
 */
static VALUE handover_call(const rb_cloud_t *c, json_object *req, unsigned timeout_ms, VALUE block)
{
    hand_t h;

    memset(&h, 0, sizeof(h));
    h.spec = c->spec;
    h.req = req;
    h.timeout_ms = timeout_ms;
    handover_run(&h);
    if (h.rc < 0)
        rb_cloud_raise(&h.err);
    return handover_answer(&h, block);
}

static VALUE first_cloud(VALUE doc, const char *name)
{
    VALUE clouds = rb_hash_aref(doc, rb_str_new_cstr("clouds"));
    VALUE h;

    if (RB_TYPE_P(clouds, T_ARRAY) && RARRAY_LEN(clouds) > 0)
        return rb_ary_entry(clouds, 0);
    h = rb_hash_new();
    rb_hash_aset(h, rb_str_new_cstr("name"), rb_str_new_cstr(name));
    rb_hash_aset(h, rb_str_new_cstr("state"), rb_str_new_cstr("stopped"));
    rb_hash_aset(h, rb_str_new_cstr("slots"), rb_ary_new());
    return h;
}

/* ========================================================================================== */
/* Ruby methods                                                                               */
/* ========================================================================================== */

static char *opt_str(VALUE opts, const char *key)
{
    VALUE v;

    if (NIL_P(opts))
        return NULL;
    v = rb_hash_aref(opts, ID2SYM(rb_intern(key)));
    if (NIL_P(v))
        return NULL;
    return strdup(StringValueCStr(v));
}

/*
 * call-seq:
 *   Cloud.new(spec, socket: nil, state_dir: nil, daemon: nil, autostart: true) -> cloud
 *
 * Validates +spec+ (the Hash of doc/INTERNALS.md §1); raises Cloud::SpecError naming the
 * attribute when it is invalid.  Nothing is contacted yet.
 */
static VALUE cloud_initialize(int argc, VALUE *argv, VALUE self)
{
    rb_cloud_t *c;
    VALUE spec, opts = Qnil, json, v;
    cl_err_t err;

    TypedData_Get_Struct(self, rb_cloud_t, &cloud_type, c);
    rb_scan_args(argc, argv, "1:", &spec, &opts);
    if (!NIL_P(opts))
        rb_get_kwargs(opts, kw_new, 0, 4, NULL); /* unknown keyword: ArgumentError */
    Check_Type(spec, T_HASH);
    if (c->busy)
        rb_raise(eError, "this Cloud is in use by another thread");
    json = rb_funcall(mJSON, id_generate, 1, spec);
    cloud_release(c);
    c->spec_json = strdup(StringValueCStr(json));
    c->socket = opt_str(opts, "socket");
    c->daemon = opt_str(opts, "daemon");
    c->state_dir = opt_str(opts, "state_dir");
    v = NIL_P(opts) ? Qnil : rb_hash_aref(opts, ID2SYM(rb_intern("autostart")));
    c->autostart = NIL_P(v) ? 1 : RTEST(v);
    cl_err_clear(&err);
    if (!c->spec_json || cl_spec_parse_string(c->spec_json, &c->spec, &err) < 0) {
        free(c->spec_json);
        c->spec_json = NULL;
        rb_cloud_raise(&err);
    }
    return self;
}

/*
 * call-seq:
 *   cloud.name -> String
 */
static VALUE cloud_name(VALUE self)
{
    return rb_str_new_cstr(get_cloud(self)->spec->name);
}

typedef struct self_q {
    const cl_client_opts_t *opts;
    const cl_spec_t *spec;
    int want_index;
    int found;
    cl_err_t err;
    int rc;
} self_q_t;

/* Without the GVL: matching a pool host name resolves it. */
static void *do_self(void *arg)
{
    self_q_t *q = arg;
    json_object *addrs = NULL;
    cl_addrs_t a = {0};
    size_t i;

    q->found = -1;
    q->rc = cl_client_self(q->opts, &addrs, &q->err);
    if (q->rc < 0)
        return NULL;
    for (i = 0; i < json_object_array_length(addrs); i++)
        cl_addrs_add(&a, json_object_get_string(json_object_array_get_idx(addrs, i)));
    json_object_put(addrs);
    for (i = 0; i < q->spec->npool && q->found < 0; i++)
        if ((q->want_index < 0 || (size_t)q->want_index == i) &&
            cl_net_is_self(&a, q->spec->pool[i]))
            q->found = (int)i;
    cl_addrs_free(&a);
    return NULL;
}

/* Index of this host in the pool, or -1. */
static int self_index(rb_cloud_t *c, int want_index)
{
    cl_client_opts_t o;
    self_q_t q;

    opts_of(c, &o);
    memset(&q, 0, sizeof(q));
    q.opts = &o;
    q.spec = c->spec;
    q.want_index = want_index;
    rb_thread_call_without_gvl(do_self, &q, RUBY_UBF_IO, NULL);
    if (q.rc < 0)
        rb_cloud_raise(&q.err);
    return q.found;
}

/*
 * call-seq:
 *   cloud.member? -> true or false
 *
 * Whether this host (the local daemon's identity, or the local interfaces) is in the pool.
 */
static VALUE cloud_member_p(VALUE self)
{
    return self_index(get_cloud(self), -1) >= 0 ? Qtrue : Qfalse;
}

/*
 * call-seq:
 *   cloud.leader? -> true or false
 *
 * Whether this host leads the cloud now.
 */
static VALUE cloud_leader_p(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;
    VALUE res;
    int li;

    if (c->spec->npool > 1) {
        /* a pool of several: the election decides; asking the daemon makes it join */
        opts_of(c, &o);
        res = daemon_call(&o, request("leader", c, 1, 0), c->autostart, CL_CTL_STATUS_MS, Qnil);
        return RTEST(rb_hash_aref(res, rb_str_new_cstr("self"))) &&
                       RTEST(rb_hash_aref(res, rb_str_new_cstr("acting")))
                   ? Qtrue
                   : Qfalse;
    }
    li = cl_engine_leader_index(NULL, c->spec);
    return li >= 0 && self_index(c, li) == li ? Qtrue : Qfalse;
}

/*
 * call-seq:
 *   cloud.leader_start { |event| ... } -> Hash
 *
 * Converges the cloud from this host, its leader: starts cloudd if none runs, places and
 * starts the missing VMs in dependency order, yields each progress event (a Hash), and returns
 * {"changed"=>n, "changes"=>[...], "status"=>{...}}.
 */
static VALUE cloud_leader_start(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;

    opts_of(c, &o);
    return daemon_call(&o, request("apply", c, 1, 0), c->autostart, CL_CTL_REPLY_MS,
                       rb_block_given_p() ? rb_block_proc() : Qnil);
}

/*
 * call-seq:
 *   cloud.common_start { |event| ... } -> Hash
 *
 * On a member that does not lead: makes sure cloudd runs here and has joined the election,
 * then hands the spec to the leader (so whichever pool host runs first converges the cloud)
 * and yields its progress events.  Returns the leader's answer (as leader_start's) with
 * "leader", "epoch", "member" and "self" added; when no leader acts yet, only those four and
 * "handover" (why nothing was handed over).
 */
static VALUE cloud_common_start(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    static const char *const keep[] = {"leader", "epoch", "member", "self"};
    cl_client_opts_t o;
    VALUE joined, res;
    cl_err_t soft;
    size_t i;

    opts_of(c, &o);
    joined = daemon_call(&o, request("leader", c, 1, 0), c->autostart, CL_CTL_STATUS_MS, Qnil);
    if (NIL_P(rb_hash_aref(joined, rb_str_new_cstr("leader"))) ||
        RTEST(rb_hash_aref(joined, rb_str_new_cstr("self"))) || c->spec->npool < 2)
        return joined;
    cl_err_clear(&soft);
    res = daemon_call_soft(&o, request("handover", c, 1, 0), c->autostart, CL_CTL_REPLY_MS,
                           rb_block_given_p() ? rb_block_proc() : Qnil, &soft);
    if (res == Qundef) {
        /* a leader without its majority yet: the member that gets one converges the cloud */
        rb_hash_aset(joined, rb_str_new_cstr("handover"), rb_str_new_cstr(soft.msg));
        return joined;
    }
    for (i = 0; RB_TYPE_P(res, T_HASH) && i < sizeof(keep) / sizeof(keep[0]); i++)
        rb_hash_aset(res, rb_str_new_cstr(keep[i]), rb_hash_aref(joined, rb_str_new_cstr(keep[i])));
    return res;
}

/*
 * call-seq:
 *   cloud.not_cloud_start { |event| ... } -> Hash
 *
 * On a machine outside the pool: finds the leader among the pool's daemons (on the spec's
 * peer_port, signed with the key of its secret_file), hands it the spec, waits for the
 * convergence and yields the leader's progress events; returns its answer, as leader_start's.
 * Raises Cloud::ElectionError naming the hosts tried when none answers or none leads.
 */
static VALUE cloud_not_cloud_start(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);

    return handover_call(c, request("apply", c, 1, 0), CL_CTL_REPLY_MS,
                         rb_block_given_p() ? rb_block_proc() : Qnil);
}

/* Whether this host is outside the pool of a cloud that has an election (handed over). */
static int outside(rb_cloud_t *c)
{
    return c->spec->npool > 1 && self_index(c, -1) < 0;
}

/*
 * call-seq:
 *   cloud.plan -> Array
 *
 * What leader_start would do, without changing anything or starting a daemon:
 * [{"action"=>"create", "slot"=>..., "host"=>..., "ip"=>..., "roles"=>[...]}, ...].
 */
static VALUE cloud_plan(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;
    VALUE res;

    opts_of(c, &o);
    if (outside(c))
        res = handover_call(c, request("plan", c, 1, 0), CL_CTL_STATUS_MS, Qnil);
    else
        res = local_call(&o, NULL, c->spec, 1, request("plan", c, 1, 0));
    return rb_hash_aref(res, rb_str_new_cstr("plan"));
}

/*
 * call-seq:
 *   cloud.monitor -> Hash
 *
 * One observe/repair cycle of the leader (restarts stopped VMs, recreates missing ones).
 */
static VALUE cloud_monitor(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;

    opts_of(c, &o);
    return daemon_call(&o, request("monitor", c, 0, 0), c->autostart, CL_CTL_REPLY_MS,
                       rb_block_given_p() ? rb_block_proc() : Qnil);
}

/*
 * call-seq:
 *   cloud.stop { |event| ... } -> Hash
 *
 * Tears the cloud down on every pool host: domains, their disks, its state.  Repeating it is a
 * no-op that starts no daemon.
 */
static VALUE cloud_stop(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;
    VALUE st;

    opts_of(c, &o);
    if (outside(c)) /* the leader tears it down; a stopped cloud is a no-op there too */
        return handover_call(c, request("stop", c, 1, 0), CL_CTL_REPLY_MS,
                             rb_block_given_p() ? rb_block_proc() : Qnil);
    st = local_call(&o, c->spec->name, c->spec, 0, NULL);
    if (st != Qundef) {
        VALUE one = first_cloud(st, c->spec->name);
        VALUE state = rb_hash_aref(one, rb_str_new_cstr("state"));
        if (!NIL_P(state) && strcmp(StringValueCStr(state), "stopped") == 0) {
            VALUE h = rb_hash_new();
            rb_hash_aset(h, rb_str_new_cstr("changed"), INT2NUM(0));
            rb_hash_aset(h, rb_str_new_cstr("changes"), rb_ary_new());
            return h;
        }
    }
    return daemon_call(&o, request("stop", c, 1, 0), c->autostart, CL_CTL_REPLY_MS,
                       rb_block_given_p() ? rb_block_proc() : Qnil);
}

/*
 * call-seq:
 *   cloud.status -> Hash
 *
 * The cloud's status document (doc/INTERNALS.md §3); "state" is "running" only when every slot
 * runs, "stopped" when nothing of it exists, "degraded" otherwise.  Never starts a daemon.
 */
static VALUE cloud_status(VALUE self)
{
    rb_cloud_t *c = get_cloud(self);
    cl_client_opts_t o;
    VALUE res;

    opts_of(c, &o);
    if (outside(c))
        res = handover_call(c, request("status", c, 1, 0), CL_CTL_STATUS_MS, Qnil);
    else
        res = local_call(&o, c->spec->name, c->spec, 0, request("status", c, 1, 0));
    return first_cloud(res, c->spec->name);
}

CL_PINNED(cloud_member_p)
CL_PINNED(cloud_leader_p)
CL_PINNED(cloud_leader_start)
CL_PINNED(cloud_common_start)
CL_PINNED(cloud_not_cloud_start)
CL_PINNED(cloud_plan)
CL_PINNED(cloud_monitor)
CL_PINNED(cloud_stop)
CL_PINNED(cloud_status)

/*
 * call-seq:
 *   cloud.close -> nil
 *
 * Frees the native handle now (or, if another thread's call is in progress, when it returns);
 * later calls raise Cloud::Error.
 */
static VALUE cloud_close(VALUE self)
{
    rb_cloud_t *c;

    TypedData_Get_Struct(self, rb_cloud_t, &cloud_type, c);
    if (c->busy)
        c->closing = 1;
    else
        cloud_release(c);
    return Qnil;
}

/* A private copy of a String option (Qnil if absent): its bytes stay put without the GVL. */
static VALUE opt_copy(VALUE opts, const char *key)
{
    VALUE v = NIL_P(opts) ? Qnil : rb_hash_aref(opts, ID2SYM(rb_intern(key)));

    if (NIL_P(v))
        return Qnil;
    StringValue(v);
    v = rb_str_new(RSTRING_PTR(v), RSTRING_LEN(v));
    StringValueCStr(v);
    return v;
}

/*
 * call-seq:
 *   Cloud.status(socket: nil, state_dir: nil) -> Hash
 *
 * {"clouds"=>[...]} for every cloud this host knows; never starts a daemon.
 */
static VALUE cloud_s_status(int argc, VALUE *argv, VALUE klass)
{
    VALUE opts = Qnil, res, sock, state;
    cl_client_opts_t o;

    rb_scan_args(argc, argv, "0:", &opts);
    if (!NIL_P(opts))
        rb_get_kwargs(opts, kw_status, 0, 2, NULL); /* unknown keyword: ArgumentError */
    sock = opt_copy(opts, "socket");
    state = opt_copy(opts, "state_dir");
    memset(&o, 0, sizeof(o));
    o.socket = NIL_P(sock) ? NULL : RSTRING_PTR(sock);
    o.state_dir = NIL_P(state) ? NULL : RSTRING_PTR(state);
    res = local_call(&o, NULL, NULL, 0, request("status", NULL, 0, 0));
    RB_GC_GUARD(sock);
    RB_GC_GUARD(state);
    return res;
}

/*
 * call-seq:
 *   Cloud.daemon_running?(socket: nil) -> true or false
 */
static VALUE cloud_s_daemon_running(int argc, VALUE *argv, VALUE klass)
{
    VALUE opts = Qnil;
    cl_client_opts_t o;
    char *sock;
    int up;

    rb_scan_args(argc, argv, "0:", &opts);
    if (!NIL_P(opts))
        rb_get_kwargs(opts, kw_status, 0, 1, NULL); /* socket: only */
    sock = opt_str(opts, "socket");
    memset(&o, 0, sizeof(o));
    o.socket = sock;
    up = cl_client_daemon_up(&o);
    free(sock);
    return up ? Qtrue : Qfalse;
}

static VALUE error_code(VALUE self)
{
    return rb_attr_get(self, id_code);
}
static VALUE error_host(VALUE self)
{
    return rb_attr_get(self, id_host);
}
static VALUE error_operation(VALUE self)
{
    return rb_attr_get(self, id_operation);
}

void rb_cloud_init(void)
{
    /* The core logs to stderr only when asked: Puppet owns the extension's output. */
    cl_log_set_stream(getenv("CLOUD_DEBUG") && *getenv("CLOUD_DEBUG") ? stderr : NULL);
    rb_require("json");
    mJSON = rb_const_get(rb_cObject, rb_intern("JSON"));
    id_generate = rb_intern("generate");
    id_parse = rb_intern("parse");
    id_code = rb_intern("@code");
    id_host = rb_intern("@host");
    id_operation = rb_intern("@operation");
    kw_new[0] = kw_status[0] = rb_intern("socket");
    kw_new[1] = kw_status[1] = rb_intern("state_dir");
    kw_new[2] = rb_intern("daemon");
    kw_new[3] = rb_intern("autostart");

    cCloud = rb_define_class("Cloud", rb_cObject);
    rb_define_alloc_func(cCloud, cloud_alloc);
    eError = rb_define_class_under(cCloud, "Error", rb_eStandardError);
    rb_define_method(eError, "code", error_code, 0);
    rb_define_method(eError, "host", error_host, 0);
    rb_define_method(eError, "operation", error_operation, 0);
    eVirt = rb_define_class_under(cCloud, "VirtError", eError);
    eSSH = rb_define_class_under(cCloud, "SSHError", eError);
    eProto = rb_define_class_under(cCloud, "ProtocolError", eError);
    eTimeout = rb_define_class_under(cCloud, "TimeoutError", eError);
    eElection = rb_define_class_under(cCloud, "ElectionError", eError);
    eSpec = rb_define_class_under(cCloud, "SpecError", eError);
    eSystem = rb_define_class_under(cCloud, "SystemError", eError);
    eState = rb_define_class_under(cCloud, "StateError", eError);
    rb_define_const(cCloud, "VERSION", rb_str_new_cstr("0.1.0"));
    rb_define_const(cCloud, "DEFAULT_SOCKET", rb_str_new_cstr(CL_CTL_DEFAULT_SOCKET));

    rb_define_method(cCloud, "initialize", cloud_initialize, -1);
    rb_define_method(cCloud, "name", cloud_name, 0);
    rb_define_method(cCloud, "member?", cloud_member_p_pinned, 0);
    rb_define_method(cCloud, "leader?", cloud_leader_p_pinned, 0);
    rb_define_method(cCloud, "leader_start", cloud_leader_start_pinned, 0);
    rb_define_method(cCloud, "common_start", cloud_common_start_pinned, 0);
    rb_define_method(cCloud, "not_cloud_start", cloud_not_cloud_start_pinned, 0);
    rb_define_method(cCloud, "plan", cloud_plan_pinned, 0);
    rb_define_method(cCloud, "monitor", cloud_monitor_pinned, 0);
    rb_define_method(cCloud, "stop", cloud_stop_pinned, 0);
    rb_define_method(cCloud, "status", cloud_status_pinned, 0);
    rb_define_method(cCloud, "close", cloud_close, 0);
    rb_define_singleton_method(cCloud, "status", cloud_s_status, -1);
    rb_define_singleton_method(cCloud, "daemon_running?", cloud_s_daemon_running, -1);
}
