/*
 * cl_monitor_policy: the monitor applies each slot's restart policy (cl_policy, the role's
 * health settings): as the engine's gate for the slots of a repair run (repair now, after a
 * backoff, elsewhere, or not while it flaps), and to the role checks it runs in running guests,
 * whose failures escalate from the service to the domain to another host.
 */
#include "cl_monitor_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cl_guests.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

/* ========================================================================================== */
/* The restart policy, asked by the engine for each slot of a repair run                      */
/* ========================================================================================== */

static void policy_cfg(const cl_spec_t *spec, size_t slot, cl_policy_cfg_t *cfg)
{
    const cl_slot_t *sl = &spec->slots[slot];
    size_t i;

    cl_policy_cfg_default(cfg);
    for (i = 0; i < spec->nroles; i++)
        if (sl->nroles && strcmp(spec->roles[i].name, sl->roles[0]) == 0) {
            const cl_health_t *h = &spec->roles[i].health;
            if (h->max_restarts)
                cfg->max_failures = h->max_restarts;
            if (h->window_ms)
                cfg->window_ms = h->window_ms;
            cfg->backoff_ms = h->backoff_ms;
            if (h->backoff_max_ms)
                cfg->backoff_max_ms = h->backoff_max_ms;
        }
}

int cl_monitor_decide(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                      uint64_t epoch, uint64_t *retry_at)
{
    cl_monitor_run_t *x = ud;
    cl_monitor_t *m = x->m;
    cl_monitor_slot_t *s;
    cl_policy_cfg_t cfg;
    uint64_t now = cl_time_now_ms(), at = 0;
    cl_repair_t r;
    int verdict = CL_GATE_GO;
    char text[CL_EVENT_TEXT_MAX];

    policy_cfg(spec, slot, &cfg);
    pthread_mutex_lock(&m->lock);
    s = cl_monitor_slot_get(x->c, spec->slots[slot].name);
    if (epoch)
        x->c->epoch = epoch; /* the events of this run carry it */
    if (!s)
        goto cleanup;
    if (!failing) {
        x->c->seen_running = 1;
        if (s->move) {
            s->move = 0;
            verdict = CL_GATE_MOVE;
            goto cleanup;
        }
        /* stable for a while, and its checks (if any) pass again: the escalation starts over */
        if (s->repaired_at && now - s->repaired_at >= CL_MONITOR_STABLE_MS && !s->check_failing) {
            cl_policy_healthy(&s->pol);
            s->repaired_at = 0;
        }
        if (!cl_policy_flapping(&s->pol, now))
            s->health = s->repaired_at ? "repairing" : "ok";
        goto cleanup;
    }
    if (s->expect_stop && failing == CL_FAIL_DOMAIN) {
        s->expect_stop = 0; /* stopped by the monitor itself: start it, no new failure */
        goto cleanup;
    }
    if (s->pending_at) {
        if (now < s->pending_at) {
            *retry_at = s->pending_at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
        r = s->pending;
        s->pending_at = 0;
    } else if (cl_policy_flapping(&s->pol, now)) {
        *retry_at = s->pol.flapping_until;
        s->health = "flapping";
        verdict = CL_GATE_HOLD;
        goto cleanup;
    } else {
        snprintf(text, sizeof(text), "%s",
                 failing == CL_FAIL_HOST ? "its host is gone (fenced)"
                                         : "its domain is not running");
        snprintf(s->last_failure, sizeof(s->last_failure), "%s", text);
        s->last_failure_ms = cl_monitor_wall_ms();
        s->failures++;
        cl_monitor_note_locked(m, x->c, 0, "-failure", s->name, host, text);
        r = cl_policy_failure(&s->pol, &cfg, failing, now, &at);
        if (r == CL_REPAIR_NONE) {
            s->health = "flapping";
            cl_monitor_note_locked(m, x->c, 0, "-flapping", s->name, host,
                                   "too many failures in the window: repairs paused");
            *retry_at = at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
        if (at > now) {
            s->pending = r;
            s->pending_at = at;
            s->health = "failing";
            snprintf(text, sizeof(text), "%s repair in %" PRIu64 " ms (backoff)", cl_repair_name(r),
                     at - now);
            cl_monitor_note_locked(m, x->c, 0, "=backoff", s->name, host, text);
            *retry_at = at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
    }
    verdict = r == CL_REPAIR_REPLACE ? CL_GATE_MOVE : CL_GATE_GO;
    s->repaired_at = now;
    s->health = "repairing";

cleanup:
    pthread_mutex_unlock(&m->lock);
    return verdict;
}

/* ========================================================================================== */
/* Role checks in running guests                                                              */
/* ========================================================================================== */

/*
 * The role checks of c's running guests that are due (real hypervisors only), each failure
 * escalated by the slot's policy: the service (start step again), the domain (stopped here,
 * started by the next run), another host (moved by the next run).
 */
void cl_monitor_run_checks(cl_monitor_t *m, cl_monitor_cloud_t *c, uint64_t now)
{
    json_object *state = NULL, *v, *placed = NULL;
    cl_spec_t *spec = NULL;
    size_t i;
    int poke = 0;

    if (cl_state_load(cl_engine_state_dir(m->engine), c->name, &state, NULL) <= 0 ||
        !json_object_object_get_ex(state, "spec", &v) || cl_spec_parse(v, &spec, NULL) < 0)
        goto cleanup;
    if (strncmp(spec->hypervisor, "test:", 5) == 0 || strncmp(spec->hypervisor, "test+", 5) == 0)
        goto cleanup; /* the test driver's domains have no guests */
    json_object_object_get_ex(state, "placement", &placed);
    for (i = 0; i < spec->nslots; i++) {
        const cl_slot_t *sl = &spec->slots[i];
        cl_monitor_slot_t *s;
        cl_policy_cfg_t cfg;
        unsigned interval = CL_HEALTH_INTERVAL_MS;
        size_t k;
        int rc, has_check = 0;
        cl_err_t err;
        uint64_t at = 0;
        cl_repair_t r;
        const char *host = NULL;

        for (k = 0; k < spec->nroles; k++)
            if (sl->nroles && strcmp(spec->roles[k].name, sl->roles[0]) == 0)
                interval = spec->roles[k].health.interval_ms;
        for (k = 0; k < spec->nroles; k++) {
            size_t j;
            for (j = 0; j < sl->nroles; j++)
                if (strcmp(spec->roles[k].name, sl->roles[j]) == 0 &&
                    spec->roles[k].steps[CL_STEP_CHECK])
                    has_check = 1;
        }
        if (!has_check)
            continue;
        pthread_mutex_lock(&m->lock);
        if (c->due) {
            /* an event came: the repair run goes first, the checks wait */
            pthread_mutex_unlock(&m->lock);
            break;
        }
        s = cl_monitor_slot_get(c, sl->name);
        rc = s && s->running && s->next_check <= now && strcmp(s->health, "ok") == 0;
        if (s && s->next_check <= now)
            s->next_check = now + interval;
        pthread_mutex_unlock(&m->lock);
        if (!rc)
            continue;
        if (placed && json_object_object_get_ex(placed, sl->name, &v))
            host = json_object_get_string(v);
        cl_err_clear(&err);
        rc = cl_guests_check_slot(m->sessions, cl_engine_state_dir(m->engine), spec, i, &err);
        pthread_mutex_lock(&m->lock);
        m->stats.checks++;
        if (rc == 0) {
            s->check_failing = 0;
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        s->check_failing = 1;
        m->stats.check_failures++;
        s->failures++;
        snprintf(s->last_failure, sizeof(s->last_failure), "check: %.200s", err.msg);
        s->last_failure_ms = cl_monitor_wall_ms();
        cl_monitor_note_locked(m, c, 0, "-check", sl->name, host, s->last_failure);
        policy_cfg(spec, i, &cfg);
        r = cl_policy_flapping(&s->pol, now)
                ? CL_REPAIR_NONE
                : cl_policy_failure(&s->pol, &cfg, rc < 0 ? CL_FAIL_DOMAIN : CL_FAIL_CHECK, now,
                                    &at); /* no answer at all: the domain, not the service */
        if (r == CL_REPAIR_NONE) {
            s->health = "flapping";
            cl_monitor_note_locked(m, c, 0, "-flapping", sl->name, host,
                                   "too many failures in the window: repairs paused");
            s->next_check = s->pol.flapping_until;
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        s->health = "repairing";
        s->repaired_at = now;
        if (at > now)
            s->next_check = at; /* the backoff: the repair waits for the next check */
        pthread_mutex_unlock(&m->lock);
        if (at > now)
            continue;
        if (r == CL_REPAIR_SERVICE) {
            cl_err_clear(&err);
            uint64_t t0 = cl_time_real_us();
            rc = cl_guests_restart_slot(m->sessions, cl_engine_state_dir(m->engine), spec, i, &err);
            cl_metrics_hist_observe(&m->repair_seconds, (double)(cl_time_real_us() - t0) / 1e6);
            cl_monitor_note(m, c->name, 0, rc == 0 ? "+repair" : "-repair", sl->name, host,
                            "service: start step run again%s%s", rc == 0 ? "" : ": ",
                            rc == 0 ? "" : err.msg);
            pthread_mutex_lock(&m->lock);
            c->repairs++;
            m->stats.repairs++;
            c->repairs_by[CL_MON_ACT_SERVICE]++;
            s->health = "ok"; /* the next check says whether it worked */
            s->next_check = cl_time_now_ms() + CL_GUEST_CHECK_RETRY_MS;
            pthread_mutex_unlock(&m->lock);
        } else if (r == CL_REPAIR_DOMAIN) {
            pthread_mutex_lock(&m->lock);
            s->expect_stop = 1;
            pthread_mutex_unlock(&m->lock);
            cl_err_clear(&err);
            if (cl_engine_destroy_slot(m->engine, c->name, sl->name, &err) < 0)
                cl_monitor_note(m, c->name, 0, "-repair", sl->name, host, "domain: %s", err.msg);
            cl_guest_sessions_drop(m->sessions, c->name, sl->name);
            poke = 1;
        } else {
            pthread_mutex_lock(&m->lock);
            s->move = 1;
            pthread_mutex_unlock(&m->lock);
            cl_guest_sessions_drop(m->sessions, c->name, sl->name);
            poke = 1;
        }
    }

cleanup:
    if (poke) {
        pthread_mutex_lock(&m->lock);
        c->due = 1;
        pthread_mutex_unlock(&m->lock);
    }
    cl_spec_free(spec);
    json_object_put(state);
}
