/*
 * cloudd_ops: the control protocol's ops (doc/INTERNALS.md), one request in and its answer out:
 * hello, apply and plan, stop, status, events, domains and fault, monitor, leader, handover,
 * exec, shutdown.  A request thread (or the peer layer, for a request handed over) calls
 * cloudd_dispatch; progress goes to the request's client as it happens.
 */
#include "cloudd_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_ctl.h"
#include "cl_exec.h"
#include "cl_spec.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_virt.h"

#define CLOUDD_LEADER_WAIT_MS 2000 /* "leader" right after joining waits this long for one */

static json_object *ok_with(json_object *res)
{
    if (!res)
        res = json_object_new_object();
    json_object_object_add(res, "ok", json_object_new_boolean(1));
    return res;
}

/* Parse "spec" of a request if present.  Returns 1 if parsed, 0 if absent, -1 on error. */
static int req_spec(json_object *req, cl_spec_t **spec, cl_err_t *err)
{
    json_object *v;

    *spec = NULL;
    if (!json_object_object_get_ex(req, "spec", &v) || json_object_is_type(v, json_type_null))
        return 0;
    return cl_spec_parse(v, spec, err) < 0 ? -1 : 1;
}

static const char *req_str(json_object *req, const char *key)
{
    json_object *v;

    if (json_object_object_get_ex(req, key, &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

/*
 * Just joined, or just elected: give the election a moment (bounded) to name a leader and, when
 * that is this host, to gather its majority.  The leader's index (-1: none yet).
 */
static int wait_leader(const cl_spec_t *spec, uint64_t *ep, int *acting)
{
    uint64_t deadline = cl_time_now_ms() + CLOUDD_LEADER_WAIT_MS;
    int li = cl_engine_leader(cloudd_engine, spec, ep, acting);

    while (
        cl_engine_elected(cloudd_engine, spec) && cl_time_now_ms() < deadline &&
        (li < 0 || (cl_net_is_self(cl_engine_self(cloudd_engine), spec->pool[li]) && !*acting))) {
        usleep(20000);
        li = cl_engine_leader(cloudd_engine, spec, ep, acting);
    }
    return li;
}

/* The leader of spec as this daemon sees it; -1 with err if this host may not act on it. */
static int check_leader(const cl_spec_t *spec, cl_err_t *err)
{
    int li;

    if (!cl_engine_is_member(cloudd_engine, spec))
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "lead cloud",
                          "this host is not in the pool of cloud %s", spec->name);
    if (cl_engine_elected(cloudd_engine, spec)) {
        uint64_t ep = 0;
        int acting = 0;
        wait_leader(spec, &ep, &acting);
        return 0; /* the engine asks the election again, right before it acts */
    }
    if (spec->npool > 1 && !cloudd_peers)
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "lead cloud",
                          "cloud %s has a pool of %zu hosts but this cloudd has no peer layer: "
                          "run it with --address (this host's pool address, which it must be "
                          "able to bind; see its log)",
                          spec->name, spec->npool);
    li = cl_engine_leader_index(cloudd_engine, spec);
    if (li < 0 || !cl_net_is_self(cl_engine_self(cloudd_engine), spec->pool[li]))
        return cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? spec->pool[li] : NULL, "lead cloud",
                          "this host does not lead cloud %s (the leader is %s)", spec->name,
                          li >= 0 ? spec->pool[li] : "unknown");
    return 0;
}

/*
 * The cloud domains on this host's own hypervisors (the URIs of the clouds known here, for this
 * host): {"domains": [{name, cloud, slot, state, epoch, uri}]}.  With fault_slot: that slot's
 * domain of cloud is destroyed first, behind the engine's back (the chaos tests' fault).
 */
static json_object *local_domains(const char *cloud, const char *fault_slot, cl_err_t *err)
{
    char **names = NULL, **uris = NULL;
    size_t n = 0, nu = 0, i, k;
    json_object *res = NULL, *arr = json_object_new_array();
    int faulted = 0;

    if (cl_state_list(cloudd_opt.state_dir, &names, &n, err) < 0)
        goto cleanup;
    /* the hypervisors already open here too: a forgotten cloud's leftovers are listed */
    {
        size_t nc = 0;
        char **open_uris = cl_engine_conn_uris(cloudd_engine, &nc);
        uris = calloc(n + nc + 1, sizeof(*uris));
        for (k = 0; uris && k < nc; k++)
            uris[nu++] = open_uris[k];
        if (!uris)
            for (k = 0; k < nc; k++)
                free(open_uris[k]);
        free(open_uris);
    }
    for (i = 0; uris && i < n; i++) {
        json_object *state = NULL, *v;
        cl_spec_t *spec = NULL;
        cl_err_t e2;
        size_t j;
        if (cl_state_load(cloudd_opt.state_dir, names[i], &state, &e2) > 0 &&
            json_object_object_get_ex(state, "spec", &v) && cl_spec_parse(v, &spec, &e2) == 0)
            for (j = 0; j < spec->npool; j++)
                if (cl_net_is_self(cl_engine_self(cloudd_engine), spec->pool[j])) {
                    char *u = cl_spec_uri_for(spec->hypervisor, spec->pool[j]);
                    for (k = 0; u && k < nu; k++)
                        if (strcmp(uris[k], u) == 0) {
                            free(u);
                            u = NULL;
                        }
                    if (u)
                        uris[nu++] = u;
                    break;
                }
        cl_spec_free(spec);
        json_object_put(state);
    }
    for (k = 0; k < nu; k++) {
        cl_virt_t *vt = cl_engine_conn(cloudd_engine, uris[k], "self", err);
        cl_dom_list_t doms = {0};
        if (!vt || cl_virt_scan(vt, NULL, &doms, NULL, err) < 0)
            goto cleanup;
        for (i = 0; i < doms.n; i++) {
            json_object *o;
            if (fault_slot && strcmp(doms.v[i].cloud, cloud) == 0 &&
                strcmp(doms.v[i].slot, fault_slot) == 0 && doms.v[i].state == CL_DOM_RUNNING) {
                if (cl_virt_destroy(vt, doms.v[i].name, "fault", err) < 0) {
                    cl_dom_list_free(&doms);
                    goto cleanup;
                }
                faulted++;
                doms.v[i].state = CL_DOM_SHUTOFF;
            }
            o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(doms.v[i].name));
            json_object_object_add(o, "cloud", json_object_new_string(doms.v[i].cloud));
            json_object_object_add(o, "slot", json_object_new_string(doms.v[i].slot));
            json_object_object_add(o, "state",
                                   json_object_new_string(cl_dom_state_name(doms.v[i].state)));
            json_object_object_add(o, "epoch", json_object_new_int64((int64_t)doms.v[i].epoch));
            json_object_object_add(o, "uri", json_object_new_string(uris[k]));
            json_object_array_add(arr, o);
        }
        cl_dom_list_free(&doms);
    }
    if (fault_slot && !faulted) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "fault",
                   "no running domain of slot %s of cloud %s on this host", fault_slot, cloud);
        goto cleanup;
    }
    res = json_object_new_object();
    json_object_object_add(res, "domains", arr);
    arr = NULL;
    if (fault_slot)
        json_object_object_add(res, "destroyed", json_object_new_int(faulted));

cleanup:
    json_object_put(arr);
    for (k = 0; k < nu; k++)
        free(uris[k]);
    free(uris);
    cl_state_names_free(names);
    return res;
}

json_object *cloudd_dispatch(cloudd_out_t *out, json_object *req, int *stopped, cl_err_t *err)
{
    const char *op = req_str(req, "op"), *name = req_str(req, "name");
    json_object *res = NULL, *v;
    cl_spec_t *spec = NULL;
    int noop = json_object_object_get_ex(req, "noop", &v) && json_object_get_boolean(v);
    int has;

    if (!json_object_object_get_ex(req, "v", &v) || json_object_get_int(v) != CL_CTL_VERSION) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "unsupported protocol version (want %d)",
                   CL_CTL_VERSION);
        return NULL;
    }
    if (!op) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "no \"op\" in the request");
        return NULL;
    }
    has = req_spec(req, &spec, err);
    if (has < 0)
        return NULL;
    if (!name && spec)
        name = spec->name;
    if (name && !cl_spec_name_ok(name)) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "invalid cloud name");
        goto cleanup;
    }
    /*
     * A member of a pool of several takes part in its election as soon as it knows the spec
     * of a running cloud (not from a stop manifest, whatever the op: a host that forgot a
     * stopped cloud does not join it again when Puppet asks its status or stops it).
     */
    if (spec && spec->running && cloudd_peers && spec->npool > 1 &&
        cl_engine_is_member(cloudd_engine, spec) && strcmp(op, "plan") != 0 &&
        strcmp(op, "stop") != 0 && cl_peers_join(cloudd_peers, spec, err) < 0)
        goto cleanup;

    if (strcmp(op, "hello") == 0) {
        json_object *addrs = json_object_new_array();
        const cl_addrs_t *self = cl_engine_self(cloudd_engine);
        size_t i;
        res = json_object_new_object();
        for (i = 0; i < self->n; i++)
            json_object_array_add(addrs, json_object_new_string(self->v[i]));
        json_object_object_add(res, "version", json_object_new_string(CLOUDD_VERSION));
        json_object_object_add(res, "pid", json_object_new_int((int)getpid()));
        json_object_object_add(res, "embedded", json_object_new_boolean(cloudd_opt.embedded));
        json_object_object_add(res, "addresses", addrs);
        json_object_object_add(res, "clouds",
                               json_object_new_int((int)cl_engine_cloud_count(cloudd_engine)));
    } else if (strcmp(op, "apply") == 0 || strcmp(op, "plan") == 0) {
        int plan = strcmp(op, "plan") == 0;
        if (!spec) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no spec in the request");
            goto cleanup;
        }
        if (!plan && !noop && check_leader(spec, err) < 0)
            goto cleanup;
        if (cl_engine_apply(cloudd_engine, spec, plan || noop, plan ? NULL : cloudd_on_progress,
                            out, &res, err) < 0)
            goto cleanup;
        if (!plan && !noop && cloudd_monitor) {
            /* what the leader repaired since the last apply: for this run's report */
            json_object *st = NULL;
            if (json_object_object_get_ex(res, "status", &st))
                cl_monitor_annotate(cloudd_monitor, st);
            cl_monitor_applied(cloudd_monitor, spec->name);
        }
    } else if (strcmp(op, "stop") == 0) {
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (spec && !noop && cl_engine_elected(cloudd_engine, spec)) {
            int acting = 0;
            cl_engine_leader(cloudd_engine, spec, NULL, &acting);
            if (!acting) {
                /*
                 * A member that does not lead hands the stop to the leader, which orders it on
                 * every pool host, tears the cloud down and tells them to forget it.  Leaving
                 * the election here first would take the leader's majority away (the cloud's
                 * VMs left running): without a leader, the stop fails and nothing is forgotten.
                 */
                json_object *answer = NULL, *events = NULL, *state = NULL;
                size_t i;
                int known = cl_state_load(cl_engine_state_dir(cloudd_engine), name, &state, err);
                json_object_put(state);
                if (known < 0)
                    goto cleanup;
                if (known == 0) {
                    /* forgotten already (the leader's stop reached this host): nothing to do */
                    if (cloudd_peers)
                        cl_peers_leave(cloudd_peers, name);
                    res = json_object_new_object();
                    json_object_object_add(res, "changed", json_object_new_int(0));
                    json_object_object_add(res, "changes", json_object_new_array());
                    json_object_object_add(res, "forgotten", json_object_new_boolean(1));
                    *stopped = 1;
                    goto cleanup;
                }
                if (!cloudd_peers ||
                    cl_peers_forward(cloudd_peers, spec, req, &answer, &events, err) < 0) {
                    /*
                     * No leader to hand it to.  If a leader's stop order reached this host,
                     * the stop is recorded where it counts: forgetting it here is safe.
                     */
                    cl_intent_t in;
                    cl_err_t e2;
                    int now_acting = 0;
                    cl_engine_leader(cloudd_engine, spec, NULL, &now_acting);
                    if (now_acting) {
                        /* this host was elected meanwhile: it stops the cloud itself */
                        cl_err_clear(err);
                        goto stop_here;
                    }
                    cl_err_clear(&e2);
                    if (cl_engine_intent(cloudd_engine, name, NULL, 0, NULL, &in, &e2) < 0 ||
                        !in.stopped)
                        goto cleanup;
                    cl_err_clear(err);
                    answer = json_object_new_object();
                    json_object_object_add(answer, "changed", json_object_new_int(0));
                    json_object_object_add(answer, "changes", json_object_new_array());
                }
                for (i = 0; events && i < json_object_array_length(events); i++)
                    cloudd_on_progress(out, json_object_array_get_idx(events, i));
                json_object_put(events);
                /* the leader's "forget" may have missed this host: forget it here too */
                cl_peers_leave(cloudd_peers, name);
                if (cl_state_remove(cl_engine_state_dir(cloudd_engine), name, err) < 0) {
                    json_object_put(answer);
                    goto cleanup;
                }
                res = answer;
                json_object_object_add(res, "forgotten", json_object_new_boolean(1));
                *stopped = 1;
                goto cleanup;
            }
        }
    stop_here:
        if (spec && !noop && check_leader(spec, err) < 0)
            goto cleanup;
        if (cl_engine_stop(cloudd_engine, name, spec, noop, cloudd_on_progress, out, &res, err) < 0)
            goto cleanup;
        *stopped = !noop;
        if (cloudd_peers && !noop)
            cl_peers_leave(cloudd_peers, name);
    } else if (strcmp(op, "status") == 0) {
        if (cl_engine_status(cloudd_engine, name, spec, &res, err) < 0)
            goto cleanup;
        if (cloudd_monitor) {
            json_object *clouds = NULL;
            size_t i;
            json_object_object_get_ex(res, "clouds", &clouds);
            for (i = 0; clouds && i < json_object_array_length(clouds); i++)
                cl_monitor_annotate(cloudd_monitor, json_object_array_get_idx(clouds, i));
        }
        if (cloudd_peers) {
            /* each cloud run by an election says how its election stands */
            json_object *clouds = NULL;
            size_t i;
            json_object_object_get_ex(res, "clouds", &clouds);
            for (i = 0; clouds && i < json_object_array_length(clouds); i++) {
                json_object *c = json_object_array_get_idx(clouds, i), *nm, *el;
                if (!json_object_object_get_ex(c, "name", &nm))
                    continue;
                el = cl_peers_status(cloudd_peers, json_object_get_string(nm));
                if (el && json_object_object_get_ex(el, "state", NULL)) {
                    /* the election's word on leader and epoch, on every member alike */
                    json_object *lv, *ev;
                    if (json_object_object_get_ex(el, "leader", &lv))
                        json_object_object_add(c, "leader", json_object_get(lv));
                    if (json_object_object_get_ex(el, "epoch", &ev))
                        json_object_object_add(c, "epoch", json_object_get(ev));
                }
                if (el)
                    json_object_object_add(c, "election", el);
            }
        }
    } else if (strcmp(op, "events") == 0) {
        int64_t after = 0, limit = 0;
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (json_object_object_get_ex(req, "after", &v))
            after = json_object_get_int64(v);
        if (json_object_object_get_ex(req, "limit", &v))
            limit = json_object_get_int64(v);
        if (after < 0 || limit < 0) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "after and limit must not be negative");
            goto cleanup;
        }
        res = json_object_new_object();
        json_object_object_add(res, "name", json_object_new_string(name));
        json_object_object_add(
            res, "events",
            cloudd_monitor ? cl_monitor_events(cloudd_monitor, name, (uint64_t)after, (size_t)limit)
                           : json_object_new_array());
    } else if (strcmp(op, "fault") == 0 || strcmp(op, "domains") == 0) {
        /* this host's own domains of every cloud; "fault": stop one behind the engine's back */
        const char *slot = req_str(req, "slot");
        if (strcmp(op, "fault") == 0 && (!cloudd_opt.allow_faults || !slot || !name)) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op,
                       !cloudd_opt.allow_faults ? "fault injection is off (cloudd --allow-faults)"
                                                : "fault needs a cloud name and a slot");
            goto cleanup;
        }
        if (!(res = local_domains(name, strcmp(op, "fault") == 0 ? slot : NULL, err)))
            goto cleanup;
    } else if (strcmp(op, "monitor") == 0) {
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (cl_engine_monitor(cloudd_engine, name, cloudd_on_progress, out, &res, err) < 0)
            goto cleanup;
    } else if (strcmp(op, "leader") == 0) {
        int li, acting = 0;
        uint64_t ep = 0;
        if (!spec) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no spec in the request");
            goto cleanup;
        }
        li = wait_leader(spec, &ep, &acting);
        res = json_object_new_object();
        json_object_object_add(res, "leader",
                               li >= 0 ? json_object_new_string(spec->pool[li]) : NULL);
        json_object_object_add(res, "member",
                               json_object_new_boolean(cl_engine_is_member(cloudd_engine, spec)));
        json_object_object_add(
            res, "self",
            json_object_new_boolean(li >= 0 &&
                                    cl_net_is_self(cl_engine_self(cloudd_engine), spec->pool[li])));
        json_object_object_add(res, "acting", json_object_new_boolean(acting));
        if (cl_engine_elected(cloudd_engine, spec)) {
            json_object_object_add(res, "epoch", json_object_new_int64((int64_t)ep));
            json_object_object_add(res, "election", cl_peers_status(cloudd_peers, spec->name));
        } else {
            /* the epoch is in the cloud's state file: no need to scan the hypervisor */
            json_object *st = NULL;
            cl_err_t e2;
            int64_t epoch = 0;
            if (cl_state_load(cloudd_opt.state_dir, spec->name, &st, &e2) > 0 &&
                json_object_object_get_ex(st, "epoch", &v))
                epoch = json_object_get_int64(v);
            json_object_put(st);
            json_object_object_add(res, "epoch", json_object_new_int64(epoch));
        }
    } else if (strcmp(op, "handover") == 0) {
        /* a member that does not lead: its spec to the leader, the leader's progress back */
        json_object *fwd = json_object_new_object(), *answer = NULL, *events = NULL;
        size_t i;
        int rc;
        if (!spec || !cloudd_peers || !cl_engine_elected(cloudd_engine, spec)) {
            json_object_put(fwd);
            cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op,
                       "no election of this cloud here: only a member of a pool of several "
                       "hosts hands its spec over");
            goto cleanup;
        }
        json_object_object_add(fwd, "v", json_object_new_int(CL_CTL_VERSION));
        json_object_object_add(fwd, "op", json_object_new_string("apply"));
        json_object_object_add(fwd, "name", json_object_new_string(spec->name));
        json_object_object_add(fwd, "spec", json_object_get(spec->json));
        rc = cl_peers_forward(cloudd_peers, spec, fwd, &answer, &events, err);
        json_object_put(fwd);
        if (rc < 0)
            goto cleanup;
        for (i = 0; i < json_object_array_length(events); i++)
            cloudd_on_progress(out, json_object_array_get_idx(events, i));
        json_object_put(events);
        res = answer;
    } else if (strcmp(op, "exec") == 0) {
        /* a command in the cloud's guests (cl_exec): run by the leader, handed over to it */
        cl_exec_ctx_t x = {cloudd_engine, cloudd_monitor, cloudd_peers};
        if (!(res = cl_exec_serve(&x, req, out->fd < 0, err)))
            goto cleanup;
    } else if (strcmp(op, "shutdown") == 0) {
        res = json_object_new_object();
        cloudd_request_quit();
    } else {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "unknown op '%s'", op);
    }

cleanup:
    cl_spec_free(spec);
    return res ? ok_with(res) : NULL;
}
