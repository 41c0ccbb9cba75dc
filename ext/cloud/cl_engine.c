/*
 * cl_engine: observe, plan, converge, tear down and describe clouds (see cl_engine.h).
 * Everything a run learns about the world comes from libvirt (domains and their ownership
 * metadata) and from the cloud's state file, so an interrupted run is finished by the next.
 */
#include "cl_engine.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_guests.h"
#include "cl_log.h"
#include "cl_metrics.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_run.h"
#include "cl_virt.h"

/* ========================================================================================== */
/* Engine and its connection cache                                                            */
/* ========================================================================================== */

typedef struct conn_entry {
    char *uri;
    cl_virt_t *virt;
} conn_entry_t;

struct cl_engine {
    char *state_dir;
    cl_addrs_t self;
    int readonly;
    pthread_mutex_t act_lock;   /* one actor: every mutation of every cloud */
    pthread_mutex_t conn_lock;  /* the connection cache */
    pthread_mutex_t state_lock; /* read-modify-write of a state file's intent */
    conn_entry_t *conns;
    size_t nconns;
    cl_addrs_t led;          /* clouds led by this process: a new term bumps the epoch */
    cl_engine_peers_t peers; /* peers.lead == NULL: single-host behaviour */
    void (*conn_hook)(void *ud, cl_virt_t *v);
    void *conn_hook_ud;
    cl_metrics_hist_t apply_seconds; /* cl_engine_apply (not noop) */
    atomic_ullong applies[2];        /* ... that succeeded, failed */
};

char **cl_engine_conn_uris(cl_engine_t *e, size_t *n)
{
    char **v;
    size_t i;

    pthread_mutex_lock(&e->conn_lock);
    v = calloc(e->nconns + 1, sizeof(*v));
    for (i = 0, *n = 0; v && i < e->nconns; i++)
        if ((v[*n] = strdup(e->conns[i].uri)) != NULL)
            (*n)++;
    pthread_mutex_unlock(&e->conn_lock);
    return v;
}

void cl_engine_set_conn_hook(cl_engine_t *e, void (*fn)(void *ud, cl_virt_t *v), void *ud)
{
    pthread_mutex_lock(&e->conn_lock);
    e->conn_hook = fn;
    e->conn_hook_ud = ud;
    pthread_mutex_unlock(&e->conn_lock);
}

int cl_engine_new(const cl_engine_opts_t *o, cl_engine_t **out, cl_err_t *err)
{
    cl_engine_t *e = calloc(1, sizeof(*e));
    size_t i;

    *out = NULL;
    if (!e)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "engine", "out of memory");
    e->state_dir = strdup(o->state_dir ? o->state_dir : "/var/lib/cloud");
    e->readonly = o->readonly;
    if (o->peers)
        e->peers = *o->peers;
    pthread_mutex_init(&e->act_lock, NULL);
    pthread_mutex_init(&e->conn_lock, NULL);
    pthread_mutex_init(&e->state_lock, NULL);
    cl_metrics_hist_init(&e->apply_seconds, cl_metrics_duration_bounds, cl_metrics_duration_nbounds,
                         NULL);
    if (o->self && o->self->n) {
        for (i = 0; i < o->self->n; i++)
            cl_addrs_add(&e->self, o->self->v[i]);
    } else if (cl_net_local_addrs(&e->self, err) < 0) {
        cl_engine_free(e);
        return -1;
    }
    cl_virt_global_init();
    *out = e;
    return 0;
}

void cl_engine_free(cl_engine_t *e)
{
    size_t i;

    if (!e)
        return;
    for (i = 0; i < e->nconns; i++) {
        cl_virt_close(e->conns[i].virt);
        free(e->conns[i].uri);
    }
    free(e->conns);
    cl_addrs_free(&e->self);
    cl_addrs_free(&e->led);
    pthread_mutex_destroy(&e->act_lock);
    pthread_mutex_destroy(&e->conn_lock);
    pthread_mutex_destroy(&e->state_lock);
    cl_metrics_hist_destroy(&e->apply_seconds);
    free(e->state_dir);
    free(e);
}

const char *cl_engine_state_dir(const cl_engine_t *e)
{
    return e->state_dir;
}

const cl_addrs_t *cl_engine_self(const cl_engine_t *e)
{
    return &e->self;
}

cl_virt_t *cl_engine_conn(cl_engine_t *e, const char *uri, const char *host, cl_err_t *err)
{
    cl_virt_t *v = NULL;
    size_t i;

    pthread_mutex_lock(&e->conn_lock);
    for (i = 0; i < e->nconns; i++)
        if (strcmp(e->conns[i].uri, uri) == 0)
            break;
    if (i < e->nconns && cl_virt_alive(e->conns[i].virt)) {
        v = e->conns[i].virt;
        goto cleanup;
    }
    if (cl_virt_open(uri, host, e->readonly, &v, err) < 0) {
        v = NULL;
        goto cleanup;
    }
    if (i < e->nconns) {
        cl_virt_close(e->conns[i].virt);
        e->conns[i].virt = v;
    } else {
        conn_entry_t *nv = realloc(e->conns, (e->nconns + 1) * sizeof(*nv));
        char *u = strdup(uri);
        if (!nv || !u) {
            free(u);
            if (nv)
                e->conns = nv;
            cl_virt_close(v);
            v = NULL;
            cl_err_set(err, CL_ERR_SYS, 0, host, "connect", "out of memory");
            goto cleanup;
        }
        e->conns = nv;
        e->conns[e->nconns].uri = u;
        e->conns[e->nconns].virt = v;
        e->nconns++;
    }
    cl_log(CL_LOG_INFO, "+connect", "host=%s uri=%s%s", host, uri,
           e->readonly ? " (read-only)" : "");
    if (e->conn_hook)
        e->conn_hook(e->conn_hook_ud, v);

cleanup:
    pthread_mutex_unlock(&e->conn_lock);
    return v;
}

cl_host_t *cl_engine_remote(cl_engine_t *e, const cl_spec_t *spec, const char *host, cl_err_t *err)
{
    if (!e->peers.remote) {
        cl_err_set(err, CL_ERR_ELECTION, 0, host, "connect", "no peer layer in this process");
        return NULL;
    }
    return e->peers.remote(e->peers.ud, spec, host, err);
}

uint64_t cl_engine_silent_ms(cl_engine_t *e, const cl_spec_t *spec, const char *host)
{
    return e->peers.silent_ms ? e->peers.silent_ms(e->peers.ud, spec, host) : 0;
}

uint64_t cl_engine_fence_wait_ms(const cl_engine_t *e)
{
    return (e->peers.fence_ms ? e->peers.fence_ms : CL_FENCE_SELF_MS) + CL_FENCE_MARGIN_MS;
}

uint64_t cl_engine_fence_wait_host_ms(const cl_engine_t *e, const cl_spec_t *spec, size_t copies)
{
    uint64_t wait = cl_engine_fence_wait_ms(e);

    /* the test driver's domains end with their daemon, at once */
    if (copies > 1 && e->peers.destroy_ms && strncmp(spec->hypervisor, "test:", 5) != 0)
        wait += (copies - 1) * e->peers.destroy_ms;
    return wait;
}

int cl_engine_is_member(const cl_engine_t *e, const cl_spec_t *spec)
{
    size_t i;

    for (i = 0; i < spec->npool; i++)
        if (cl_net_is_self(&e->self, spec->pool[i]))
            return 1;
    return 0;
}

/*
 * Until the election (next issue) exists, the highest-priority host (first in pool) leads.
 * With a pool of one this host is member and leader.
 */
int cl_engine_elected(const cl_engine_t *e, const cl_spec_t *spec)
{
    return e && e->peers.lead && spec->npool > 1;
}

int cl_engine_leader(const cl_engine_t *e, const cl_spec_t *spec, uint64_t *epoch, int *acting)
{
    char leader[256] = "";
    uint64_t ep = 0;
    int act = 0;
    size_t i;

    if (!cl_engine_elected(e, spec)) {
        /* single host (or no election here): the first pool host leads */
        if (epoch)
            *epoch = 0;
        if (acting)
            *acting = spec->npool > 0 && e && cl_net_is_self(&e->self, spec->pool[0]);
        return spec->npool ? 0 : -1;
    }
    act = e->peers.lead(e->peers.ud, spec, leader, sizeof(leader), &ep);
    if (epoch)
        *epoch = ep;
    if (acting)
        *acting = act == 1;
    for (i = 0; leader[0] && i < spec->npool; i++)
        if (strcmp(spec->pool[i], leader) == 0)
            return (int)i;
    return -1;
}

int cl_engine_leader_index(const cl_engine_t *e, const cl_spec_t *spec)
{
    return cl_engine_leader(e, spec, NULL, NULL);
}

size_t cl_engine_cloud_count(cl_engine_t *e)
{
    char **names = NULL;
    size_t n = 0;

    if (cl_state_list(e->state_dir, &names, &n, NULL) < 0)
        n = 0;
    cl_state_names_free(names);
    return n;
}

/* ========================================================================================== */
/* Entry points                                                                               */
/* ========================================================================================== */

static unsigned long state_epoch(json_object *state)
{
    json_object *v;

    if (state && json_object_object_get_ex(state, "epoch", &v))
        return (unsigned long)json_object_get_int64(v);
    return 0;
}

/* The intent recorded in a state document (none: running, epoch 0). */
static void intent_read(json_object *state, cl_intent_t *o)
{
    json_object *in, *v;

    memset(o, 0, sizeof(*o));
    if (!state)
        return;
    o->known = 1;
    if (!json_object_object_get_ex(state, "intent", &in))
        return;
    if (json_object_object_get_ex(in, "ensure", &v) && json_object_is_type(v, json_type_string))
        o->stopped = strcmp(json_object_get_string(v), "stopped") == 0;
    if (json_object_object_get_ex(in, "epoch", &v))
        o->epoch = (uint64_t)json_object_get_int64(v);
}

/* Does a supersede b?  The newer epoch; in one epoch, stopped (the cautious answer). */
static int intent_newer(const cl_intent_t *a, const cl_intent_t *b)
{
    return a->known && (!b->known || a->epoch > b->epoch ||
                        (a->epoch == b->epoch && a->stopped && !b->stopped));
}

static void intent_put(json_object *doc, const cl_intent_t *in)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "ensure",
                           json_object_new_string(in->stopped ? "stopped" : "running"));
    json_object_object_add(o, "epoch", json_object_new_int64((int64_t)in->epoch));
    json_object_object_add(doc, "intent", o);
}

/*
 * Save doc as name's state, keeping the newer of its intent (*in, updated) and the one on
 * disk: another leader may have told this host meanwhile (cl_engine_intent).
 */
static int state_save_intent(cl_engine_t *e, const char *name, json_object *doc, cl_intent_t *in,
                             cl_err_t *err)
{
    json_object *cur = NULL;
    cl_intent_t disk;
    cl_err_t e2;
    int rc;

    pthread_mutex_lock(&e->state_lock);
    cl_err_clear(&e2);
    if (cl_state_load(e->state_dir, name, &cur, &e2) > 0) {
        intent_read(cur, &disk);
        if (intent_newer(&disk, in))
            *in = disk;
    }
    json_object_put(cur);
    intent_put(doc, in);
    rc = cl_state_save(e->state_dir, name, doc, err);
    pthread_mutex_unlock(&e->state_lock);
    return rc;
}

/* The state document to persist: spec, epoch, leader, placement, intent. */
static json_object *state_doc(const cl_run_t *r, const cl_slot_plan_t *p)
{
    int li;
    json_object *o = json_object_new_object(), *pl = json_object_new_object();
    size_t i;

    json_object_object_add(o, "spec", json_object_get(r->spec->json));
    json_object_object_add(o, "epoch", json_object_new_int64((int64_t)r->epoch));
    li = cl_engine_leader_index(r->e, r->spec);
    json_object_object_add(o, "leader", li >= 0 ? json_object_new_string(r->spec->pool[li]) : NULL);
    for (i = 0; p && i < r->spec->nslots; i++) {
        const char *slot = r->spec->slots[p[i].slot].name;
        json_object *was = NULL;
        /* a slot held for later keeps the host it was on (its fencing is still awaited) */
        if (p[i].dom < 0 && p[i].act == CL_ACT_NONE) {
            if (r->placed && json_object_object_get_ex(r->placed, slot, &was) && was)
                json_object_object_add(pl, slot, json_object_get(was));
        } else
            json_object_object_add(pl, slot, json_object_new_string(r->hosts[p[i].host].name));
    }
    json_object_object_add(o, "placement", pl);
    intent_put(o, &r->intent);
    if (r->configured && r->spec) {
        /* the slots' set-up incarnations, of the slots the spec still has */
        json_object *cf = json_object_new_object(), *v;
        for (i = 0; i < r->spec->nslots; i++)
            if (json_object_object_get_ex(r->configured, r->spec->slots[i].name, &v))
                json_object_object_add(cf, r->spec->slots[i].name, json_object_get(v));
        json_object_object_add(o, "configured", cf);
    }
    return o;
}

static int led_has(const cl_engine_t *e, const char *name)
{
    size_t i;

    for (i = 0; i < e->led.n; i++)
        if (strcmp(e->led.v[i], name) == 0)
            return 1;
    return 0;
}

static void forget_led(cl_engine_t *e, const char *name)
{
    size_t i;

    for (i = 0; i < e->led.n; i++)
        if (strcmp(e->led.v[i], name) == 0) {
            free(e->led.v[i]);
            e->led.v[i] = e->led.v[--e->led.n];
            e->led.v[e->led.n] = NULL;
            return;
        }
}

/*
 * adopt_only (a takeover): a cloud of which no domain runs anywhere is left alone -- it was
 * stopped, or never started, and only an explicit apply creates a cloud from nothing.
 */
/* have_lock: the caller holds the act lock (it read the stored spec under it). */
static int apply_impl(cl_engine_t *e, const cl_spec_t *spec, int noop, int adopt_only,
                      const cl_engine_gate_t *gate, int have_lock, cl_progress_fn fn, void *ud,
                      json_object **result, cl_err_t *err)
{
    cl_run_t r;
    cl_slot_plan_t *p = NULL;
    cl_extra_t *x = NULL;
    size_t nx = 0, i;
    json_object *state = NULL, *res = NULL, *doc = NULL;
    cl_idset_t ours = {0};
    int rc = -1, locked = 0, ls;

    *result = NULL;
    memset(&r, 0, sizeof(r));
    r.e = e;
    r.spec = spec;
    r.name = spec->name;
    r.fn = fn;
    r.ud = ud;
    r.changes = json_object_new_array();
    r.held = json_object_new_array();
    r.gate = gate;
    if (!spec->running) {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "apply", "ensure => stopped is a stop, not an apply");
        goto cleanup;
    }
    if (!noop) {
        if (e->readonly) {
            cl_err_set(err, CL_ERR_STATE, 0, NULL, "apply", "this engine is read-only");
            goto cleanup;
        }
        if (!have_lock) {
            pthread_mutex_lock(&e->act_lock);
            locked = 1;
        }
    }
    ls = cl_state_load(e->state_dir, spec->name, &state, err);
    if (ls < 0)
        goto cleanup;
    r.epoch = state_epoch(state);
    intent_read(state, &r.intent);
    if (state)
        json_object_object_get_ex(state, "placement", &r.placed);
    {
        json_object *cf = NULL;
        r.configured = json_object_new_object();
        if (state && json_object_object_get_ex(state, "configured", &cf) &&
            json_object_is_type(cf, json_type_object)) {
            json_object_object_foreach(cf, k, v)
                json_object_object_add(r.configured, k, json_object_get(v));
        }
    }
    if (gate) {
        /* a repair run: nothing to do unless this host acts (quietly: it is routine) */
        int acting = 0;
        cl_engine_leader(e, spec, NULL, &acting);
        if (!acting) {
            res = json_object_new_object();
            json_object_object_add(res, "changed", json_object_new_int(0));
            json_object_object_add(res, "changes", json_object_new_array());
            json_object_object_add(res, "acting", json_object_new_boolean(0));
            *result = res;
            rc = 0;
            goto cleanup;
        }
    }
    if (cl_engine_elected(e, spec)) {
        /* A pool of several: the election decides who acts, and in which epoch. */
        uint64_t ep = 0;
        int acting = 0, li = cl_engine_leader(e, spec, &ep, &acting);
        if (!noop && !acting) {
            cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? spec->pool[li] : NULL, "lead cloud",
                       "this host does not lead cloud %s now (leader: %s, epoch %llu)", spec->name,
                       li >= 0 ? spec->pool[li] : "none yet", (unsigned long long)ep);
            goto cleanup;
        }
        if (acting && ep != r.epoch) {
            r.epoch = (unsigned long)ep;
            doc = state_doc(&r, NULL);
            if (state_save_intent(e, spec->name, doc, &r.intent, err) < 0)
                goto cleanup;
            cl_run_progress(&r, "+elected", NULL, spec->pool[li], "leading cloud %s in epoch %lu",
                            spec->name, r.epoch);
        }
    }
    if (cl_run_connect(&r, spec->hypervisor, spec->pool, spec->npool, err) < 0)
        goto cleanup;
    if (!noop && !cl_engine_elected(e, spec) && !led_has(e, spec->name)) {
        /*
         * A new term of leadership (first apply of this cloud by this process): the epoch
         * grows and is persisted before any action carries it.
         */
        r.epoch++;
        cl_addrs_add(&e->led, spec->name);
        json_object_put(doc);
        doc = state_doc(&r, NULL);
        if (state_save_intent(e, spec->name, doc, &r.intent, err) < 0)
            goto cleanup;
        cl_run_progress(&r, "+elected", NULL, spec->pool[cl_engine_leader_index(e, spec)],
                        "leading cloud %s in epoch %lu", spec->name, r.epoch);
    }
    if (!noop && !have_lock) {
        /*
         * An apply (Puppet's, not a repair) orders the cloud running in this epoch, before it
         * acts: a stop ordered earlier is superseded.  The other pool hosts are told (with the
         * spec, which they keep for when one of them leads) -- those that answer.
         */
        if (r.intent.stopped || r.intent.epoch != r.epoch) {
            r.intent.known = 1;
            r.intent.stopped = 0;
            r.intent.epoch = r.epoch;
            json_object_put(doc);
            doc = state_doc(&r, NULL);
            if (state_save_intent(e, spec->name, doc, &r.intent, err) < 0)
                goto cleanup;
        }
        if (cl_engine_elected(e, spec) && e->peers.intent) {
            cl_intent_t *told = calloc(spec->npool, sizeof(*told));
            if (told)
                e->peers.intent(e->peers.ud, spec, r.epoch, "running", told);
            free(told);
        }
    }
    if (cl_run_observe(&r, 0, err) < 0) /* other domains' identities: when creating */
        goto cleanup;
    /*
     * Only an elected cloud can have been stopped behind this host's back (by another
     * leader); a single host's state file is the truth: its cloud runs, and is made again.
     */
    if (adopt_only && r.doms.n == 0 && cl_engine_elected(e, spec)) {
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        *result = res;
        rc = 0;
        goto cleanup;
    }
    if (cl_run_plan(&r, &p, &x, &nx, err) < 0)
        goto cleanup;
    if (!noop && !gate && json_object_array_length(r.held) > 0) {
        /*
         * Slots waiting for a silent host's fencing (an apply: Puppet expects it converged):
         * the wait is short and bounded, so wait it out here once and plan again.
         */
        uint64_t until = 0, now = cl_time_now_ms();
        for (i = 0; i < json_object_array_length(r.held); i++) {
            json_object *at =
                json_object_object_get(json_object_array_get_idx(r.held, i), "retry_at_ms");
            if (at && (uint64_t)json_object_get_int64(at) > until)
                until = (uint64_t)json_object_get_int64(at);
        }
        if (until > now &&
            until - now <= cl_engine_fence_wait_host_ms(e, spec, spec->nslots) + 100) {
            cl_run_progress(&r, "=fencing", NULL, NULL,
                            "waiting %llu ms for silent hosts to fence themselves",
                            (unsigned long long)(until - now));
            if (r.fn)
                r.fn(r.ud, NULL); /* a pause follows: batched progress goes out now */
            while (cl_time_now_ms() < until) {
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
            }
            json_object_put(r.held);
            r.held = json_object_new_array();
            free(p);
            free(x);
            p = NULL;
            x = NULL;
            cl_dom_list_free(&r.doms);
            free(r.dom_host);
            r.dom_host = NULL;
            cl_idset_free(&r.foreign);
            r.have_foreign = 0;
            if (cl_run_observe(&r, 0, err) < 0 || cl_run_plan(&r, &p, &x, &nx, err) < 0)
                goto cleanup;
        }
    }
    if (noop) {
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", cl_run_plan_json(&r, p, x, nx));
        json_object_object_add(res, "status", cl_run_status(&r, state));
        *result = res;
        rc = 0;
        goto cleanup;
    }
    /* Domains of the cloud that no slot wants (or duplicates): removed first. */
    for (i = 0; i < nx; i++)
        if (cl_run_remove(&r, &r.doms.v[x[i].dom], r.dom_host[x[i].dom], x[i].why,
                          CL_DOMAIN_SHUTDOWN_GRACE_MS, err) < 0)
            goto cleanup;
    /* Identities taken by this cloud's kept domains (a recreated slot keeps its own). */
    for (i = 0; i < spec->nslots; i++)
        if (p[i].dom >= 0 && p[i].act != CL_ACT_RECREATE && p[i].act != CL_ACT_MOVE) {
            cl_idset_add(&ours, r.doms.v[p[i].dom].uuid);
            if (r.doms.v[p[i].dom].mac[0])
                cl_idset_add(&ours, r.doms.v[p[i].dom].mac);
        }
    /* Then every slot, in dependency order (database before servers before balancer...). */
    for (i = 0; i < spec->nslots; i++) {
        const cl_slot_t *sl = &spec->slots[p[i].slot];
        cl_host_view_t *h = &r.hosts[p[i].host];
        switch (p[i].act) {
        case CL_ACT_NONE: break;
        case CL_ACT_START:
            if (cl_host_start(h->host, r.epoch, r.doms.v[p[i].dom].name, err) < 0)
                goto cleanup;
            cl_run_progress(&r, "+start", sl->name, h->name, "started %s (it was %s)", sl->name,
                            cl_dom_state_name(r.doms.v[p[i].dom].state));
            cl_run_change(&r, "start", sl->name, h->name);
            cl_run_flush(&r, h);
            break;
        case CL_ACT_RECREATE: {
            const cl_dom_t *d = &r.doms.v[p[i].dom];
            if (cl_run_remove(&r, d, r.dom_host[p[i].dom], "its definition changed",
                              CL_DOMAIN_SHUTDOWN_GRACE_MS, err) < 0)
                goto cleanup;
            /* the slot keeps its host (its memory is already counted there) */
            if (cl_run_create(&r, &p[i], &ours, err) < 0)
                goto cleanup;
            break;
        }
        case CL_ACT_CREATE:
            if (cl_run_create(&r, &p[i], &ours, err) < 0)
                goto cleanup;
            break;
        case CL_ACT_MOVE: {
            const cl_dom_t *d = &r.doms.v[p[i].dom];
            if (cl_run_remove(&r, d, r.dom_host[p[i].dom], "moved to another host", 0, err) < 0)
                goto cleanup;
            if (cl_run_create(&r, &p[i], &ours, err) < 0)
                goto cleanup;
            break;
        }
        }
    }
    /* Roles inside the guests (the test driver has none: reported skipped, never done). */
    if (cl_guests_configure(&r, p, err) < 0)
        goto cleanup;
    json_object_put(doc);
    doc = state_doc(&r, p);
    /* unchanged (a sweep that found nothing to do): not written again (no fsync) */
    if ((!state || !json_object_equal(doc, state)) &&
        state_save_intent(e, spec->name, doc, &r.intent, err) < 0)
        goto cleanup;
    /* Observe again if anything was done: the status reported is the world as it is now. */
    if (r.changed) {
        cl_dom_list_free(&r.doms);
        free(r.dom_host);
        r.dom_host = NULL;
        if (cl_run_observe(&r, 0, err) < 0)
            goto cleanup;
    }
    res = json_object_new_object();
    json_object_object_add(res, "changed", json_object_new_int(r.changed));
    json_object_object_add(res, "changes", json_object_get(r.changes));
    json_object_object_add(res, "status", cl_run_status(&r, doc));
    json_object_object_add(res, "held", json_object_get(r.held));
    json_object_object_add(res, "epoch", json_object_new_int64((int64_t)r.epoch));
    cl_run_progress(&r, r.changed ? "+converged" : "=converged", NULL, NULL, "%d change(s)%s",
                    r.changed, json_object_array_length(r.held) ? ", some held for later" : "");
    *result = res;
    rc = 0;

cleanup:
    if (locked)
        pthread_mutex_unlock(&e->act_lock);
    cl_idset_free(&ours);
    json_object_put(doc);
    json_object_put(state);
    free(p);
    free(x);
    json_object_put(r.held);
    json_object_put(r.configured);
    cl_run_free(&r);
    return rc;
}

int cl_engine_apply(cl_engine_t *e, const cl_spec_t *spec, int noop, cl_progress_fn fn, void *ud,
                    json_object **result, cl_err_t *err)
{
    uint64_t t0 = cl_time_real_us();
    int rc = apply_impl(e, spec, noop, 0, NULL, 0, fn, ud, result, err);

    if (!noop) {
        cl_metrics_hist_observe(&e->apply_seconds, (double)(cl_time_real_us() - t0) / 1e6);
        atomic_fetch_add(&e->applies[rc < 0], 1);
    }
    return rc;
}

void cl_engine_metrics(cl_engine_t *e, cl_metrics_buf_t *b)
{
    cl_metrics_family(b, "cloud_applies_total", "counter",
                      "Applies (Puppet runs, hand-overs) converged by this daemon, by result.");
    cl_metrics_sample(b, "cloud_applies_total", (const char *[]){"result", "ok", NULL},
                      (double)atomic_load(&e->applies[0]));
    cl_metrics_sample(b, "cloud_applies_total", (const char *[]){"result", "error", NULL},
                      (double)atomic_load(&e->applies[1]));
    cl_metrics_family(b, "cloud_apply_duration_seconds", "histogram",
                      "Duration of the applies converged by this daemon.");
    cl_metrics_hist_write(b, "cloud_apply_duration_seconds", NULL, &e->apply_seconds);
}

/* Rank of a domain for tear-down order: reverse dependency (balancer before database). */
static int dom_rank(const cl_spec_t *s, const cl_dom_t *d)
{
    size_t i;

    for (i = 0; s && i < s->nroles; i++)
        if (strcmp(s->roles[i].name, d->role) == 0)
            return (int)i;
    return -1;
}

/*
 * An elected cloud's stop is ordered on every pool host before anything is removed (its intent
 * "stopped", in this epoch), and forgotten by them once done: a leader that dies half-way is
 * followed by one that finishes the stop, and no later leader makes the cloud again.
 */
static void stop_order(cl_run_t *r, json_object *state, const cl_spec_t *s)
{
    cl_engine_t *e = r->e;
    cl_intent_t *told;
    size_t i, acks = 1;
    cl_err_t e2;

    cl_err_clear(&e2);
    r->intent.known = 1;
    r->intent.stopped = 1;
    r->intent.epoch = r->epoch;
    if (state && state_save_intent(e, r->name, state, &r->intent, &e2) < 0)
        cl_log(CL_LOG_WARN, "-stop-order", "cloud=%s %s", r->name, e2.msg);
    if (!e->peers.intent || !(told = calloc(s->npool, sizeof(*told))))
        return;
    e->peers.intent(e->peers.ud, s, r->epoch, "stopped", told);
    for (i = 0; i < s->npool; i++)
        if (told[i].known && told[i].stopped)
            acks++;
    free(told);
    if (acks <= s->npool / 2)
        cl_run_progress(r, "-stop-order", NULL, NULL,
                        "only %zu of %zu pool hosts recorded the stop of cloud %s: if this "
                        "leader dies before it is done, another may keep the cloud running",
                        acks, s->npool, r->name);
}

static int stop_impl(cl_engine_t *e, const char *name, const cl_spec_t *given, int noop,
                     int have_lock, cl_progress_fn fn, void *ud, json_object **result,
                     cl_err_t *err)
{
    cl_run_t r;
    json_object *state = NULL, *res = NULL, *plan = NULL, *v;
    cl_spec_t *stored = NULL;
    const cl_spec_t *s = given;
    size_t i, k;
    int rc = -1, locked = 0, ls, top;

    *result = NULL;
    memset(&r, 0, sizeof(r));
    r.e = e;
    r.name = name;
    r.fn = fn;
    r.ud = ud;
    r.changes = json_object_new_array();
    if (!noop) {
        if (e->readonly) {
            cl_err_set(err, CL_ERR_STATE, 0, NULL, "stop", "this engine is read-only");
            goto cleanup;
        }
        if (!have_lock) {
            pthread_mutex_lock(&e->act_lock);
            locked = 1;
        }
    }
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    if (ls > 0 && json_object_object_get_ex(state, "spec", &v)) {
        cl_err_t e2;
        if (cl_spec_parse(v, &stored, &e2) < 0)
            stored = NULL; /* a stored spec we cannot read: tear down by metadata alone */
    }
    /* The stored spec knows the slots (and disks of half-made ones); the given one the pool. */
    if (!s)
        s = stored;
    if (!s) {
        /* Nothing known about it: nothing to do, unless the caller gave us where to look. */
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", json_object_new_array());
        *result = res;
        rc = 0;
        goto cleanup;
    }
    r.spec = s;
    r.epoch = state_epoch(state);
    intent_read(state, &r.intent);
    if (cl_engine_elected(e, s) && !noop) {
        uint64_t ep = 0;
        int acting = 0, li = cl_engine_leader(e, s, &ep, &acting);
        if (!acting) {
            cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? s->pool[li] : NULL, "stop cloud",
                       "this host does not lead cloud %s now (leader: %s): stop it there", name,
                       li >= 0 ? s->pool[li] : "none yet");
            goto cleanup;
        }
        r.epoch = (unsigned long)ep;
        stop_order(&r, ls > 0 ? state : NULL, s);
    }
    if (cl_run_connect(&r, s->hypervisor, s->pool, s->npool, err) < 0)
        goto cleanup;
    if (cl_run_observe(&r, 0, err) < 0)
        goto cleanup;
    plan = json_object_new_array();
    for (i = 0; i < r.doms.n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "action", json_object_new_string("remove"));
        json_object_object_add(o, "slot", json_object_new_string(r.doms.v[i].slot));
        json_object_object_add(o, "domain", json_object_new_string(r.doms.v[i].name));
        json_object_object_add(o, "host", json_object_new_string(r.hosts[r.dom_host[i]].name));
        json_object_array_add(plan, o);
    }
    if (noop) {
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", plan);
        plan = NULL;
        *result = res;
        rc = 0;
        goto cleanup;
    }
    /*
     * Reverse dependency order (balancer, servers, database): the stored spec knows the roles
     * even when the stop manifest declares only the pool.
     */
    top = (int)(stored ? stored->nroles : s->nroles);
    for (; top >= -1; top--) {
        /*
         * The VMs of one role shut down together: each is asked (ACPI) at once, then each gets
         * what is left of one grace period, so a role costs one grace at most, not one a VM.
         */
        uint64_t deadline;
        for (i = 0; i < r.doms.n; i++) /* the roles' stop steps first (real guests) */
            if (dom_rank(stored ? stored : s, &r.doms.v[i]) == top)
                cl_guests_stop(&r, stored ? stored : s, &r.doms.v[i], r.dom_host[i]);
        deadline = cl_time_now_ms() + CL_DOMAIN_SHUTDOWN_GRACE_MS;
        for (i = 0; i < r.doms.n; i++)
            if (dom_rank(stored ? stored : s, &r.doms.v[i]) == top)
                cl_host_shutdown_request(r.hosts[r.dom_host[i]].host, r.epoch, r.doms.v[i].name);
        for (i = 0; i < r.doms.n; i++) {
            uint64_t now = cl_time_now_ms();
            if (dom_rank(stored ? stored : s, &r.doms.v[i]) != top)
                continue;
            if (cl_run_remove(&r, &r.doms.v[i], r.dom_host[i], "cloud stopped",
                              now < deadline ? (unsigned)(deadline - now) : 0, err) < 0)
                goto cleanup;
        }
    }
    /* Overlays of slots whose domain was never defined (an interrupted run). */
    for (i = 0; stored && i < stored->nslots; i++) {
        size_t j;
        int seen = 0;
        for (j = 0; j < r.doms.n && !seen; j++)
            seen = r.doms.v[j].disk[0] && strcmp(r.doms.v[j].slot, stored->slots[i].name) == 0;
        if (seen)
            continue; /* its disk went with its domain */
        for (k = 0; k < r.nhosts; k++) {
            cl_host_t *h = r.hosts[k].host;
            char vol[CL_DOMNAME_MAX + 8];
            if (!h || !r.hosts[k].primary)
                continue;
            snprintf(vol, sizeof(vol), "%s.qcow2", stored->slots[i].name);
            if (cl_host_vol_delete_by_name(h, r.epoch, stored->disk_pool, vol, err) < 0)
                goto cleanup;
        }
    }
    if (cl_state_remove(e->state_dir, name, err) < 0)
        goto cleanup;
    forget_led(e, name);
    if (cl_engine_elected(e, s)) {
        /* done: the others forget it too (a host that misses this keeps "stopped") */
        cl_intent_t *told = e->peers.intent ? calloc(s->npool, sizeof(*told)) : NULL;
        if (told)
            e->peers.intent(e->peers.ud, s, r.epoch, "forget", told);
        free(told);
        if (e->peers.forgotten)
            e->peers.forgotten(e->peers.ud, name);
    }
    cl_run_progress(&r, "-forget", NULL, NULL, "cloud %s stopped and forgotten (%d change(s))",
                    name, r.changed);
    res = json_object_new_object();
    json_object_object_add(res, "changed", json_object_new_int(r.changed + (ls > 0)));
    json_object_object_add(res, "changes", json_object_get(r.changes));
    *result = res;
    rc = 0;

cleanup:
    if (locked)
        pthread_mutex_unlock(&e->act_lock);
    json_object_put(plan);
    json_object_put(state);
    cl_spec_free(stored);
    cl_run_free(&r);
    return rc;
}

int cl_engine_stop(cl_engine_t *e, const char *name, const cl_spec_t *given, int noop,
                   cl_progress_fn fn, void *ud, json_object **result, cl_err_t *err)
{
    return stop_impl(e, name, given, noop, 0, fn, ud, result, err);
}

static int monitor_impl(cl_engine_t *e, const char *name, int adopt_only,
                        const cl_engine_gate_t *gate, cl_progress_fn fn, void *ud,
                        json_object **result, cl_err_t *err)
{
    json_object *state = NULL, *v;
    cl_spec_t *spec = NULL;
    int rc = -1, ls;

    *result = NULL;
    if (e->readonly)
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "monitor", "this engine is read-only");
    /* the stored spec is read under the act lock: an apply in progress may be changing it */
    pthread_mutex_lock(&e->act_lock);
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    if (ls == 0 || !json_object_object_get_ex(state, "spec", &v)) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "monitor", "cloud %s is not known here", name);
        goto cleanup;
    }
    if (cl_spec_parse(v, &spec, err) < 0)
        goto cleanup;
    if (cl_engine_elected(e, spec)) {
        uint64_t ep = 0;
        int acting = 0;
        cl_intent_t newest;
        intent_read(state, &newest);
        cl_engine_leader(e, spec, &ep, &acting);
        if (acting && adopt_only && e->peers.intent) {
            /*
             * A new term: what did the pool last order?  The newest intent wins; a cloud of
             * which nothing runs is made again only if an apply ordered it running and a
             * majority of the pool answers (a stop that reached a majority leaves one of them
             * saying stopped; a host that forgot it does not answer: see doc/MONITOR.md).
             */
            cl_intent_t *asked = calloc(spec->npool, sizeof(*asked));
            size_t i, votes = 1;
            if (asked) {
                e->peers.intent(e->peers.ud, spec, ep, NULL, asked);
                for (i = 0; i < spec->npool; i++) {
                    votes += asked[i].known != 0;
                    if (intent_newer(&asked[i], &newest))
                        newest = asked[i];
                }
            }
            free(asked);
            if (!newest.stopped && newest.epoch > 0 && votes > spec->npool / 2)
                adopt_only = 0; /* an apply ordered it running: lost domains are made again */
        }
        if (acting && newest.stopped) {
            /* ordered stopped (by a leader that may have died half-way): finish the stop */
            cl_log(CL_LOG_WARN, "+stop-resume",
                   "cloud=%s epoch=%" PRIu64 " stopped by order of epoch %" PRIu64, name, ep,
                   newest.epoch);
            rc = stop_impl(e, name, NULL, 0, 1, fn, ud, result, err);
            if (rc == 0)
                json_object_object_add(*result, "stopped", json_object_new_boolean(1));
            goto cleanup;
        }
    }
    rc = apply_impl(e, spec, 0, adopt_only, gate, 1, fn, ud, result, err);

cleanup:
    pthread_mutex_unlock(&e->act_lock);
    cl_spec_free(spec);
    json_object_put(state);
    return rc;
}

int cl_engine_monitor(cl_engine_t *e, const char *name, cl_progress_fn fn, void *ud,
                      json_object **result, cl_err_t *err)
{
    return monitor_impl(e, name, 0, NULL, fn, ud, result, err);
}

int cl_engine_repair(cl_engine_t *e, const char *name, int adopt_only, const cl_engine_gate_t *gate,
                     cl_progress_fn fn, void *ud, json_object **result, cl_err_t *err)
{
    static const cl_engine_gate_t none = {NULL, NULL};
    return monitor_impl(e, name, adopt_only, gate ? gate : &none, fn, ud, result, err);
}

int cl_engine_takeover(cl_engine_t *e, const char *name, json_object **result, cl_err_t *err)
{
    return monitor_impl(e, name, 1, NULL, NULL, NULL, result, err);
}

static json_object *status_one(cl_engine_t *e, const char *name, const cl_spec_t *given,
                               cl_err_t *err)
{
    json_object *state = NULL, *v, *o = NULL;
    cl_spec_t *stored = NULL;
    const cl_spec_t *s = given;
    cl_run_t r;
    int ls;

    memset(&r, 0, sizeof(r));
    r.e = e;
    r.name = name;
    r.changes = json_object_new_array();
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    /* A stop manifest declares less than the cloud has: describe it with the stored spec. */
    if (ls > 0 && json_object_object_get_ex(state, "spec", &v) && (!given || !given->running)) {
        if (cl_spec_parse(v, &stored, err) < 0)
            goto cleanup;
        s = stored;
    }
    if (!s) {
        o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "state", json_object_new_string("stopped"));
        json_object_object_add(o, "slots", json_object_new_array());
        goto cleanup;
    }
    r.spec = s;
    if (cl_run_connect(&r, s->hypervisor, s->pool, s->npool, err) < 0) {
        /* no host reachable: everything missing */
        cl_err_clear(err);
    } else if (cl_run_observe(&r, 0, err) < 0) {
        goto cleanup;
    }
    o = cl_run_status(&r, state);

cleanup:
    json_object_put(state);
    cl_spec_free(stored);
    cl_run_free(&r);
    return o;
}

int cl_engine_status(cl_engine_t *e, const char *name, const cl_spec_t *spec, json_object **result,
                     cl_err_t *err)
{
    json_object *res = json_object_new_object(), *clouds = json_object_new_array(), *o;
    char **names = NULL;
    size_t n = 0, i;

    *result = NULL;
    json_object_object_add(res, "clouds", clouds);
    if (name) {
        o = status_one(e, name, spec, err);
        if (!o)
            goto fail;
        json_object_array_add(clouds, o);
    } else {
        if (cl_state_list(e->state_dir, &names, &n, err) < 0)
            goto fail;
        for (i = 0; i < n; i++) {
            o = status_one(e, names[i], NULL, err);
            if (!o)
                goto fail;
            json_object_array_add(clouds, o);
        }
        cl_state_names_free(names);
    }
    *result = res;
    return 0;

fail:
    cl_state_names_free(names);
    json_object_put(res);
    return -1;
}

/* ========================================================================================== */
/* Repairs of one slot, and self-fencing                                                      */
/* ========================================================================================== */

int cl_engine_destroy_slot(cl_engine_t *e, const char *name, const char *slot, cl_err_t *err)
{
    json_object *state = NULL, *v;
    cl_spec_t *spec = NULL;
    cl_run_t r;
    size_t i;
    int rc = -1, ls, found = 0;

    memset(&r, 0, sizeof(r));
    r.e = e;
    r.name = name;
    r.changes = json_object_new_array();
    pthread_mutex_lock(&e->act_lock);
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    if (ls == 0 || !json_object_object_get_ex(state, "spec", &v)) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "restart domain", "cloud %s is not known here",
                   name);
        goto cleanup;
    }
    if (cl_spec_parse(v, &spec, err) < 0)
        goto cleanup;
    r.spec = spec;
    r.epoch = state_epoch(state);
    if (cl_engine_elected(e, spec)) {
        uint64_t ep = 0;
        int acting = 0;
        cl_engine_leader(e, spec, &ep, &acting);
        if (!acting) {
            cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "restart domain",
                       "this host does not lead cloud %s now", name);
            goto cleanup;
        }
        r.epoch = (unsigned long)ep;
    }
    if (cl_run_connect(&r, spec->hypervisor, spec->pool, spec->npool, err) < 0 ||
        cl_run_observe(&r, 0, err) < 0)
        goto cleanup;
    for (i = 0; i < r.doms.n; i++) {
        if (strcmp(r.doms.v[i].slot, slot) != 0 || r.doms.v[i].state != CL_DOM_RUNNING)
            continue;
        if (cl_host_destroy(r.hosts[r.dom_host[i]].host, r.epoch, r.doms.v[i].name, err) < 0)
            goto cleanup;
        cl_log(CL_LOG_INFO, "+restart-domain", "cloud=%s slot=%s host=%s epoch=%lu", name, slot,
               r.hosts[r.dom_host[i]].name, r.epoch);
        found++;
    }
    rc = found;

cleanup:
    pthread_mutex_unlock(&e->act_lock);
    json_object_put(state);
    cl_spec_free(spec);
    cl_run_free(&r);
    return rc;
}

int cl_engine_intent(cl_engine_t *e, const char *name, const char *set, uint64_t epoch,
                     const cl_spec_t *spec, cl_intent_t *out, cl_err_t *err)
{
    json_object *state = NULL;
    cl_intent_t cur;
    int rc = -1, ls;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->state_lock);
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    rc = 0;
    if (ls == 0)
        goto cleanup; /* not known (never joined, or forgotten): out->known 0 */
    intent_read(state, &cur);
    if (set && strcmp(set, "forget") == 0) {
        if (cur.stopped) {
            if (cl_state_remove(e->state_dir, name, err) < 0) {
                rc = -1;
                goto cleanup;
            }
            cl_log(CL_LOG_INFO, "-forget", "cloud=%s epoch=%" PRIu64 " stopped by its leader", name,
                   epoch);
            rc = 1;
            goto cleanup;
        }
    } else if (set && epoch >= cur.epoch) {
        /* "running" or "stopped", ordered by a leader not older than the last one heard */
        cl_intent_t in = {1, strcmp(set, "stopped") == 0, epoch};
        json_object *old = NULL;
        int new_spec = spec && !in.stopped && strcmp(spec->name, name) == 0 &&
                       (!json_object_object_get_ex(state, "spec", &old) ||
                        !json_object_equal(old, spec->json));
        if (in.stopped != cur.stopped || in.epoch != cur.epoch || new_spec) {
            if (new_spec)
                json_object_object_add(state, "spec", json_object_get(spec->json));
            intent_put(state, &in);
            if (cl_state_save(e->state_dir, name, state, err) < 0) {
                rc = -1;
                goto cleanup;
            }
            if (in.stopped != cur.stopped)
                cl_log(CL_LOG_INFO, in.stopped ? "+stop-order" : "+run-order",
                       "cloud=%s epoch=%" PRIu64 " recorded", name, epoch);
        }
        cur = in;
    }
    *out = cur;

cleanup:
    pthread_mutex_unlock(&e->state_lock);
    json_object_put(state);
    return rc;
}

int cl_engine_self_fence(cl_engine_t *e, const char *cloud, const char *uri, cl_err_t *err)
{
    cl_dom_list_t doms = {0};
    cl_virt_t *v = cl_engine_conn(e, uri, "self", err);
    cl_virt_stop_t *stop = NULL;
    size_t i, k, ns = 0;
    int n = -1;

    if (!v)
        return -1;
    if (cl_virt_scan(v, cloud, &doms, NULL, err) < 0)
        return -1;
    stop = calloc(doms.n + 1, sizeof(*stop));
    if (!stop) {
        cl_err_set(err, CL_ERR_SYS, 0, cl_virt_host(v), "fence", "out of memory");
        goto cleanup;
    }
    for (i = 0; i < doms.n; i++)
        if (doms.v[i].state == CL_DOM_RUNNING || doms.v[i].state == CL_DOM_PAUSED)
            stop[ns++].name = doms.v[i].name;
    /*
     * All at once: each copy is paused before any is destroyed (a destroy takes 1-2 s under
     * TCG), so that none still runs when the leader re-places them after the fencing wait.
     */
    n = (int)cl_virt_stop_all(v, stop, ns, "fence");
    for (i = 0, k = 0; i < doms.n && k < ns; i++) {
        if (stop[k].name != doms.v[i].name)
            continue;
        if (stop[k].state == CL_DOM_SHUTOFF)
            cl_log(CL_LOG_WARN, "+self-fence",
                   "cloud=%s slot=%s stopped: this host lost the cloud's leader", cloud,
                   doms.v[i].slot);
        else
            cl_log(CL_LOG_ERR, "-fence", "cloud=%s slot=%s could not be stopped%s: %s", cloud,
                   doms.v[i].slot,
                   stop[k].state == CL_DOM_PAUSED ? " (paused: it does not run)" : "",
                   stop[k].err.msg);
        k++;
    }

cleanup:
    free(stop);
    cl_dom_list_free(&doms);
    return n;
}
