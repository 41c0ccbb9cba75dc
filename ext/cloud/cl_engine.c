/*
 * cl_engine: observe, plan, converge, tear down and describe clouds (see cl_engine.h).
 * Everything a run learns about the world comes from libvirt (domains and their ownership
 * metadata) and from the cloud's state file, so an interrupted run is finished by the next.
 * Here: the engine, its connection cache, what the election says, and the apply, monitor and
 * status runs; the state document is in cl_engine_state.c, stopping in cl_engine_stop.c.
 */
#include "cl_engine_int.h"

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
        cl_engine_conn_t *nv = realloc(e->conns, (e->nconns + 1) * sizeof(*nv));
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

static int led_has(const cl_engine_t *e, const char *name)
{
    size_t i;

    for (i = 0; i < e->led.n; i++)
        if (strcmp(e->led.v[i], name) == 0)
            return 1;
    return 0;
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
    r.epoch = cl_engine_state_epoch(state);
    cl_engine_intent_read(state, &r.intent);
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
            doc = cl_engine_state_doc(&r, NULL);
            if (cl_engine_state_save(e, spec->name, doc, &r.intent, err) < 0)
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
        doc = cl_engine_state_doc(&r, NULL);
        if (cl_engine_state_save(e, spec->name, doc, &r.intent, err) < 0)
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
            doc = cl_engine_state_doc(&r, NULL);
            if (cl_engine_state_save(e, spec->name, doc, &r.intent, err) < 0)
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
    doc = cl_engine_state_doc(&r, p);
    /* unchanged (a sweep that found nothing to do): not written again (no fsync) */
    if ((!state || !json_object_equal(doc, state)) &&
        cl_engine_state_save(e, spec->name, doc, &r.intent, err) < 0)
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
        cl_engine_intent_read(state, &newest);
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
                    if (cl_engine_intent_newer(&asked[i], &newest))
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
            rc = cl_engine_stop_run(e, name, NULL, 0, 1, fn, ud, result, err);
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
