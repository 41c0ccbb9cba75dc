/*
 * cl_monitor_metrics: the monitor's metrics (issue 6) in the Prometheus text format: its runs,
 * checks and events, each cloud's state and repairs by action, each slot's state, health,
 * restarts and failures (clouds this daemon acts on), run durations.  From the counters and the
 * last run's view alone: no libvirt call.
 */
#include "cl_monitor_int.h"

#include <string.h>

#include "cl_time.h"

static const char *const mon_act_names[] = {"start", "create",  "remove",
                                            "setup", "service", "other"};

/* cloud_repairs_total's action for a change of a repair run */
int cl_monitor_act(const char *action)
{
    int i;

    for (i = 0; i < CL_MON_ACT_OTHER; i++)
        if (strcmp(action, mon_act_names[i]) == 0)
            return i;
    return CL_MON_ACT_OTHER;
}

/* The health word of cl_monitor_annotate, from the record alone. */
static const char *slot_health(const cl_monitor_slot_t *s, uint64_t now)
{
    if (cl_policy_flapping(&s->pol, now))
        return "flapping";
    if (strcmp(s->health, "unknown") != 0)
        return s->health;
    return s->running ? "ok" : "unknown";
}

/* Whether the cloud's slot metrics are this daemon's to give: it acts, and s is still declared */
static int slot_shown(const cl_monitor_cloud_t *c, const cl_monitor_slot_t *s)
{
    return c->acting && c->runs && s->seen_run == c->runs;
}

void cl_monitor_metrics(cl_monitor_t *m, cl_metrics_buf_t *b)
{
    uint64_t now = cl_time_now_ms();
    size_t i, k;
    int a;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    cl_metrics_family(b, "cloud_monitor_runs_total", "counter",
                      "Repair runs of the monitor (events, sweeps, held repairs).");
    cl_metrics_sample(b, "cloud_monitor_runs_total", NULL, (double)m->stats.runs);
    cl_metrics_family(b, "cloud_monitor_checks_total", "counter",
                      "Role checks run in guests by the monitor.");
    cl_metrics_sample(b, "cloud_monitor_checks_total", NULL, (double)m->stats.checks);
    cl_metrics_family(b, "cloud_monitor_check_failures_total", "counter",
                      "Role checks that failed.");
    cl_metrics_sample(b, "cloud_monitor_check_failures_total", NULL,
                      (double)m->stats.check_failures);
    cl_metrics_family(b, "cloud_monitor_events_total", "counter",
                      "Events added to the clouds' histories (failures, repairs, backoff...).");
    cl_metrics_sample(b, "cloud_monitor_events_total", NULL, (double)m->stats.events);
    cl_metrics_family(b, "cloud_monitor_watching", "gauge",
                      "1 if this daemon acted on the cloud at the monitor's last run.");
    for (i = 0; i < m->nclouds; i++)
        cl_metrics_sample(b, "cloud_monitor_watching",
                          (const char *[]){"cloud", m->clouds[i]->name, NULL},
                          m->clouds[i]->acting);
    cl_metrics_family(b, "cloud_state", "gauge",
                      "The cloud's state (running, degraded, stopped) at the monitor's last run, "
                      "on the daemon that acts on it.");
    for (i = 0; i < m->nclouds; i++)
        if (m->clouds[i]->acting && m->clouds[i]->state[0])
            cl_metrics_sample(
                b, "cloud_state",
                (const char *[]){"cloud", m->clouds[i]->name, "state", m->clouds[i]->state, NULL},
                1);
    cl_metrics_family(b, "cloud_repairs_total", "counter",
                      "Repairs by this daemon's monitor, by action (start, create, remove, setup: "
                      "a repair run's changes; service: a role's start step run again).");
    for (i = 0; i < m->nclouds; i++)
        for (a = 0; a < CL_MON_ACT_COUNT; a++)
            cl_metrics_sample(
                b, "cloud_repairs_total",
                (const char *[]){"cloud", m->clouds[i]->name, "action", mon_act_names[a], NULL},
                (double)m->clouds[i]->repairs_by[a]);
    cl_metrics_family(b, "cloud_slot_up", "gauge",
                      "1 if the slot's domain ran at the monitor's last run, else 0 (on the daemon "
                      "that acts on the cloud).");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const cl_monitor_slot_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(b, "cloud_slot_up",
                                  (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name,
                                                   "host", s->host, NULL},
                                  s->running);
        }
    cl_metrics_family(b, "cloud_slot_health", "gauge",
                      "1 for the slot's health as the monitor says it (ok, repairing, failing, "
                      "flapping, held, unknown).");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const cl_monitor_slot_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(b, "cloud_slot_health",
                                  (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name,
                                                   "health", slot_health(s, now), NULL},
                                  1);
        }
    cl_metrics_family(b, "cloud_slot_restarts_total", "counter",
                      "Repairs chosen for the slot by its restart policy.");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const cl_monitor_slot_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(
                    b, "cloud_slot_restarts_total",
                    (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name, NULL},
                    s->pol.restarts);
        }
    cl_metrics_family(b, "cloud_slot_failures_total", "counter",
                      "Failures seen for the slot: its domain stopped, its host gone, a check.");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const cl_monitor_slot_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(
                    b, "cloud_slot_failures_total",
                    (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name, NULL},
                    (double)s->failures);
        }
    pthread_mutex_unlock(&m->lock);
    cl_metrics_family(b, "cloud_monitor_run_duration_seconds", "histogram",
                      "Duration of the monitor's repair runs.");
    cl_metrics_hist_write(b, "cloud_monitor_run_duration_seconds", NULL, &m->run_seconds);
    cl_metrics_family(b, "cloud_repair_duration_seconds", "histogram",
                      "Duration of the repair runs that repaired a slot, and of service repairs.");
    cl_metrics_hist_write(b, "cloud_repair_duration_seconds", NULL, &m->repair_seconds);
}
