/*
 * cl_monitor: the leader's watch over the clouds it acts on (issue 5, doc/MONITOR.md).  One
 * worker thread repairs a cloud when libvirt reports one of its domains stopped (an event),
 * when the election reports a host gone, and on a periodic sweep (the safety net), each slot's
 * repair decided by its restart policy (cl_policy: backoff, escalation, flapping); it runs the
 * roles' checks in real guests every interval over kept SSH sessions, and keeps each cloud's
 * event history (cl_events, persisted under <state>/events/).
 */
#ifndef CL_MONITOR_H
#define CL_MONITOR_H

#include <json-c/json.h>
#include <stdint.h>

#include "cl_engine.h"
#include "cl_err.h"
#include "cl_guests.h"
#include "cl_virt.h"

typedef struct cl_monitor cl_monitor_t;

typedef struct cl_monitor_opts {
    cl_engine_t *engine; /* borrowed; outlives the monitor */
    uint64_t sweep_ms;   /* 0: CL_MONITOR_SWEEP_MS */
    int no_sweep;        /* only events and pokes (the benchmark's event path alone) */
    /*
     * A domain of a cloud this daemon does not act on stopped here: tell its leader (called
     * from the worker; NULL: nobody to tell, the leader's sweep finds it).
     */
    int (*forward)(void *ud, const char *cloud, const char *slot);
    void *forward_ud;
} cl_monitor_opts_t;

/* Start the worker.  NULL and err on failure. */
cl_monitor_t *cl_monitor_new(const cl_monitor_opts_t *opts, cl_err_t *err);
/* Stop the worker (waits for a repair in progress) and free everything.  NULL-safe. */
void cl_monitor_free(cl_monitor_t *m);

/* Look at cloud now (slot may be NULL); why goes into the event history.  Thread-safe. */
void cl_monitor_poke(cl_monitor_t *m, const char *cloud, const char *slot, const char *why);
/* A cl_virt_event_fn (ud = the monitor): a domain of a cloud stopped, crashed or vanished. */
void cl_monitor_on_domain(void *ud, cl_virt_t *v, const cl_dom_t *d, int event);
/* Add to cloud's history (epoch 0: the one the monitor last saw).  Thread-safe. */
void cl_monitor_note(cl_monitor_t *m, const char *cloud, uint64_t epoch, const char *type,
                     const char *slot, const char *host, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* cloud's events with seq > after (at most limit, 0: all), oldest first: a new array. */
json_object *cl_monitor_events(cl_monitor_t *m, const char *cloud, uint64_t after, size_t limit);
/* Write cloud's history to <state>/events/<cloud>.json now (an audit event), if it changed. */
void cl_monitor_save(cl_monitor_t *m, const char *cloud);
/* The SSH sessions the monitor keeps to running guests, shared with cl_exec (NULL if m is). */
cl_guest_sessions_t *cl_monitor_sessions(cl_monitor_t *m);
/*
 * Add what the monitor knows to one cloud's status document (borrowed, modified): per slot
 * "health" (ok, failing, repairing, flapping, held, unknown), "restarts", "last_failure"
 * ({time_ms, text} or null); for the cloud "repairs" (since the last apply) and "monitor".
 */
void cl_monitor_annotate(cl_monitor_t *m, json_object *cloud_status);
/* An apply converged the cloud: its repairs since then start from 0 (the Puppet report). */
void cl_monitor_applied(cl_monitor_t *m, const char *cloud);
/* Counters for the benchmark and status: {repairs, sweeps, events, checks, sessions}. */
json_object *cl_monitor_stats(cl_monitor_t *m);
/*
 * The monitor's metrics (cl_metrics): runs, checks, repairs by cloud and action, each slot's
 * last known state, health, restarts and failures (clouds this daemon acts on), run durations.
 * From its counters and last run only: no libvirt call.  NULL-safe.
 */
struct cl_metrics_buf;
void cl_monitor_metrics(cl_monitor_t *m, struct cl_metrics_buf *b);

#endif
