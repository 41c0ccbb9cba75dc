/*
 * cl_engine_stop: stopping, in the engine: a cloud torn down in reverse dependency order, its
 * stop ordered on every pool host first (cl_engine_stop); one slot's running domain destroyed
 * for the monitor's escalation (cl_engine_destroy_slot); and every copy of a cloud on this
 * host stopped together when it lost the cloud's leader (cl_engine_self_fence).
 */
#include "cl_engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_guests.h"
#include "cl_log.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

/* ========================================================================================== */
/* Tearing a cloud down                                                                       */
/* ========================================================================================== */

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
    if (state && cl_engine_state_save(e, r->name, state, &r->intent, &e2) < 0)
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

int cl_engine_stop_run(cl_engine_t *e, const char *name, const cl_spec_t *given, int noop,
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
    r.epoch = cl_engine_state_epoch(state);
    cl_engine_intent_read(state, &r.intent);
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
    return cl_engine_stop_run(e, name, given, noop, 0, fn, ud, result, err);
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
    r.epoch = cl_engine_state_epoch(state);
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
