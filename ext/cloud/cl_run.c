/*
 * cl_run: one run of the engine over a cloud: connect to the pool's hosts, find the cloud's
 * domains by their ownership metadata, report progress and changes, and describe what is
 * there as the status document of doc/INTERNALS.md §3.
 */
#include "cl_run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_tmpl.h"

/* ========================================================================================== */
/* A run: the pool's hosts and what is on them                                                */
/* ========================================================================================== */

void cl_run_progress(cl_run_t *r, const char *event, const char *slot, const char *host,
                     const char *fmt, ...)
{
    char msg[512];
    json_object *ev;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cl_log(CL_LOG_INFO, event, "cloud=%s%s%s%s%s epoch=%lu %s", r->name, slot ? " slot=" : "",
           slot ? slot : "", host ? " host=" : "", host ? host : "", r->epoch, msg);
    if (!r->fn)
        return;
    ev = json_object_new_object();
    json_object_object_add(ev, "progress", json_object_new_boolean(1));
    json_object_object_add(ev, "event", json_object_new_string(event));
    json_object_object_add(ev, "cloud", json_object_new_string(r->name));
    if (slot)
        json_object_object_add(ev, "slot", json_object_new_string(slot));
    if (host)
        json_object_object_add(ev, "host", json_object_new_string(host));
    json_object_object_add(ev, "message", json_object_new_string(msg));
    r->fn(r->ud, ev);
    json_object_put(ev);
}

/*
 * Tell the listener that a slow step may follow (fn(ud, NULL)): on a real hypervisor each
 * slot's actions take long enough that its events should be on their way.  The test driver
 * answers in microseconds, so its events travel in bursts.
 */
void cl_run_flush(cl_run_t *r, const cl_host_view_t *h)
{
    if (r->fn && (!h || !h->host || !cl_host_is_test(h->host)))
        r->fn(r->ud, NULL);
}

void cl_run_change(cl_run_t *r, const char *action, const char *slot, const char *host)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "action", json_object_new_string(action));
    json_object_object_add(c, "slot", json_object_new_string(slot));
    json_object_object_add(c, "domain", json_object_new_string(slot));
    json_object_object_add(c, "host", json_object_new_string(host ? host : ""));
    json_object_array_add(r->changes, c);
    r->changed++;
}

void cl_run_free(cl_run_t *r)
{
    size_t i;

    for (i = 0; r->hosts && i < r->nhosts; i++)
        cl_host_free(r->hosts[i].host);
    free(r->hosts);
    free(r->dom_host);
    cl_dom_list_free(&r->doms);
    cl_idset_free(&r->foreign);
    json_object_put(r->changes);
}

/* Hosts that see the same domains (pool entries sharing one hypervisor connection). */
static int same_backend(const cl_host_view_t *a, const cl_host_view_t *b)
{
    return a->host && b->host && cl_host_same_backend(a->host, b->host);
}

/*
 * Connect to every pool host (through the engine's connection cache) and make a cl_host_t of
 * each; unreachable hosts are marked, not fatal (placement skips them).
 */
/*
 * The guard of an elected cloud's hosts: a mutation runs only while this daemon still leads the
 * cloud and acts in the run's epoch, checked right before it (a leader cut off in the middle of
 * a run stops there, on its own host too, not only where host daemons fence it).
 */
static int still_acting(void *ud, const cl_host_t *h, uint64_t epoch, const char *op, cl_err_t *err)
{
    cl_run_t *r = ud;
    uint64_t ep = 0;
    int acting = 0;

    cl_engine_leader(r->e, r->spec, &ep, &acting);
    if (acting && ep == epoch)
        return 0;
    return cl_err_set(err, CL_ERR_ELECTION, 0, cl_host_name(h), op,
                      "not done: this host %s cloud %s in epoch %llu (the election is in epoch "
                      "%llu)",
                      acting ? "leads" : "no longer leads", r->spec->name,
                      (unsigned long long)epoch, (unsigned long long)ep);
}

int cl_run_connect(cl_run_t *r, const char *hypervisor, const char *const *pool, size_t npool,
                   cl_err_t *err)
{
    size_t i, j;
    int alive = 0;
    cl_err_t first;

    cl_err_clear(&first);
    r->hosts = calloc(npool + 1, sizeof(*r->hosts));
    if (!r->hosts)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "connect", "out of memory");
    r->nhosts = npool;
    for (i = 0; i < npool; i++) {
        char *uri = cl_spec_uri_for(hypervisor, pool[i]);
        cl_err_t e1;
        cl_host_view_t *h = &r->hosts[i];
        cl_virt_t *v;

        h->name = pool[i];
        cl_err_clear(&e1);
        if (!uri)
            return cl_err_set(err, CL_ERR_SYS, 0, pool[i], "connect", "out of memory");
        if (r->spec && cl_engine_elected(r->e, r->spec) &&
            !cl_net_is_self(cl_engine_self(r->e), pool[i])) {
            /* another pool host of an elected cloud: through its daemon, which fences */
            free(uri);
            h->host = cl_engine_remote(r->e, r->spec, pool[i], &e1);
            if (!h->host) {
                if (!first.domain)
                    first = e1;
                cl_run_progress(r, "-host-down", NULL, pool[i], "cannot reach its daemon: %s",
                                e1.msg);
                continue;
            }
        } else {
            v = cl_engine_conn(r->e, uri, pool[i], &e1);
            free(uri);
            if (!v) {
                if (!first.domain)
                    first = e1;
                cl_run_progress(r, "-host-down", NULL, pool[i], "cannot reach the hypervisor: %s",
                                e1.msg);
                continue;
            }
            h->host = cl_host_local_new(v, pool[i], err);
            if (!h->host)
                return -1;
        }
        if (r->spec && cl_engine_elected(r->e, r->spec))
            cl_host_set_guard(h->host, still_acting, r);
        alive++;
        h->primary = 1;
        for (j = 0; j < i; j++)
            if (same_backend(&r->hosts[j], h))
                h->primary = 0;
        h->free_kib = cl_host_is_test(h->host) ? 0 : cl_host_free_kib(h->host);
    }
    if (!alive) {
        if (err)
            *err = first;
        return -1;
    }
    return 0;
}

static int host_index(const cl_run_t *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->nhosts; i++)
        if (strcmp(r->hosts[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Find the cloud's domains on every reachable host (and, optionally, foreign identities). */
int cl_run_foreign(cl_run_t *r, cl_err_t *err)
{
    size_t i;

    if (r->have_foreign)
        return 0;
    for (i = 0; i < r->nhosts; i++) {
        cl_host_view_t *h = &r->hosts[i];
        cl_dom_list_t mine = {0};
        if (!h->host || !h->primary)
            continue;
        if (cl_host_scan(h->host, r->name, &mine, &r->foreign, err) < 0) {
            cl_dom_list_free(&mine);
            return -1;
        }
        cl_dom_list_free(&mine);
    }
    r->have_foreign = 1;
    return 0;
}

int cl_run_observe(cl_run_t *r, int want_foreign, cl_err_t *err)
{
    size_t i, before;

    for (i = 0; i < r->nhosts; i++) {
        cl_host_view_t *h = &r->hosts[i];
        size_t k;
        if (!h->host || !h->primary)
            continue;
        before = r->doms.n;
        if (cl_host_scan(h->host, r->name, &r->doms, want_foreign ? &r->foreign : NULL, err) < 0) {
            /* a pool host reached through its daemon that does not answer is down, not fatal */
            if (strcmp(cl_host_kind(h->host), "remote") != 0)
                return -1;
            cl_run_progress(r, "-host-down", NULL, h->name, "%s", err ? err->msg : "no answer");
            cl_host_free(h->host);
            h->host = NULL;
            r->doms.n = before;
            cl_err_clear(err);
            continue;
        }
        r->have_foreign = want_foreign;
        r->dom_host = realloc(r->dom_host, (r->doms.n + 1) * sizeof(*r->dom_host));
        if (!r->dom_host)
            return cl_err_set(err, CL_ERR_SYS, 0, NULL, "observe", "out of memory");
        for (k = before; k < r->doms.n; k++) {
            /* Hosts sharing one connection: the metadata says which of them it was placed on. */
            int hi = host_index(r, r->doms.v[k].host);
            r->dom_host[k] = (hi >= 0 && same_backend(&r->hosts[hi], h)) ? hi : (int)i;
        }
    }
    return 0;
}

/* ========================================================================================== */
/* Status document                                                                            */
/* ========================================================================================== */

static json_object *slot_status(const cl_run_t *r, const cl_slot_t *sl, int dom)
{
    json_object *o = json_object_new_object(), *roles = json_object_new_array();
    size_t j;

    for (j = 0; j < sl->nroles; j++)
        json_object_array_add(roles, json_object_new_string(sl->roles[j]));
    json_object_object_add(o, "name", json_object_new_string(sl->name));
    json_object_object_add(o, "roles", roles);
    json_object_object_add(o, "index", json_object_new_int(sl->index));
    json_object_object_add(o, "ip", json_object_new_string(sl->ip));
    json_object_object_add(o, "image", json_object_new_string(sl->image));
    if (dom >= 0) {
        const cl_dom_t *d = &r->doms.v[dom];
        json_object_object_add(o, "host", json_object_new_string(r->hosts[r->dom_host[dom]].name));
        json_object_object_add(o, "domain", json_object_new_string(d->name));
        json_object_object_add(o, "uuid", json_object_new_string(d->uuid));
        json_object_object_add(o, "mac", json_object_new_string(d->mac));
        json_object_object_add(o, "disk", json_object_new_string(d->disk));
        json_object_object_add(o, "epoch", json_object_new_int64((int64_t)d->epoch));
        json_object_object_add(o, "state", json_object_new_string(cl_dom_state_name(d->state)));
    } else {
        json_object_object_add(o, "host", NULL);
        json_object_object_add(o, "domain", NULL);
        json_object_object_add(o, "state", json_object_new_string("missing"));
    }
    return o;
}

/* Status of one cloud from a run that has connected and observed. */
json_object *cl_run_status(cl_run_t *r, json_object *state)
{
    const cl_spec_t *s = r->spec;
    json_object *o = json_object_new_object(), *members = json_object_new_array(),
                *slots = json_object_new_array(), *v;
    int *used = calloc(r->doms.n + 1, sizeof(*used));
    size_t i, k, running = 0, extra = 0;
    int leader = s ? cl_engine_leader_index(r->e, s) : -1;
    const char *st;

    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "type", json_object_new_string(s ? s->type : "unknown"));
    for (i = 0; i < r->nhosts; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "host", json_object_new_string(r->hosts[i].name));
        json_object_object_add(m, "alive", json_object_new_boolean(r->hosts[i].host != NULL));
        json_object_object_add(
            m, "self",
            json_object_new_boolean(cl_net_is_self(cl_engine_self(r->e), r->hosts[i].name)));
        json_object_object_add(m, "priority", json_object_new_int((int)i));
        json_object_array_add(members, m);
    }
    for (i = 0; s && i < s->nslots; i++) {
        int dom = -1;
        for (k = 0; k < r->doms.n; k++)
            if (strcmp(r->doms.v[k].slot, s->slots[i].name) == 0) {
                if (dom < 0 || (r->doms.v[k].state == CL_DOM_RUNNING &&
                                r->doms.v[dom].state != CL_DOM_RUNNING))
                    dom = (int)k;
                used[k]++;
            }
        if (dom >= 0 && r->doms.v[dom].state == CL_DOM_RUNNING)
            running++;
        json_object_array_add(slots, slot_status(r, &s->slots[i], dom));
    }
    /* extra: domains no declared slot wants, then second copies of a slot */
    for (k = 0; k < r->doms.n; k++)
        extra += !used[k];
    for (i = 0; s && i < s->nslots; i++) {
        size_t copies = 0;
        for (k = 0; k < r->doms.n; k++)
            copies += strcmp(r->doms.v[k].slot, s->slots[i].name) == 0;
        if (copies > 1)
            extra += copies - 1;
    }
    if (!state && r->doms.n == 0)
        st = "stopped";
    else if (s && s->running && running == s->nslots && extra == 0)
        st = "running";
    else
        st = "degraded";
    json_object_object_add(o, "state", json_object_new_string(st));
    json_object_object_add(o, "leader",
                           leader >= 0 ? json_object_new_string(s->pool[leader]) : NULL);
    json_object_object_add(
        o, "epoch",
        json_object_new_int64(
            state && json_object_object_get_ex(state, "epoch", &v) ? json_object_get_int64(v) : 0));
    json_object_object_add(o, "hypervisor", json_object_new_string(s ? s->hypervisor : ""));
    json_object_object_add(o, "members", members);
    json_object_object_add(o, "slots", slots);
    json_object_object_add(o, "domains", json_object_new_int((int)r->doms.n));
    free(used);
    return o;
}
