/*
 * cl_monitor_int: what the three files of the monitor share, and nothing else of the core uses:
 * cl_monitor.c (the clouds' records and histories, the worker, the API), cl_monitor_policy.c
 * (each slot's restart policy applied: the engine's gate in a repair run, the role checks in
 * running guests) and cl_monitor_metrics.c (the metrics, from the records alone).  Everything
 * in struct cl_monitor and its clouds is guarded by its lock, unless said otherwise.
 */
#ifndef CL_MONITOR_INT_H
#define CL_MONITOR_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_events.h"
#include "cl_metrics.h"
#include "cl_monitor.h"
#include "cl_policy.h"
#include "cl_spec.h"

typedef struct cl_monitor_slot {
    char name[128];
    cl_policy_t pol;
    cl_repair_t pending;  /* a repair chosen, waiting for its time (pending_at) */
    uint64_t pending_at;  /* 0: none */
    uint64_t repaired_at; /* the last repair done (0: none since healthy) */
    const char *health;   /* static string */
    char last_failure[CL_EVENT_TEXT_MAX];
    uint64_t last_failure_ms; /* wall clock */
    uint64_t next_check;      /* monotonic: the next role check of a running guest */
    int expect_stop;          /* the monitor stopped it itself (a domain restart) */
    int running;              /* its domain ran at the last run (checks only then) */
    int move;                 /* a check escalated to another host: move it on the next run */
    int check_failing;        /* its last role check failed (a running domain is not healthy) */
    char host[256];           /* where the last run saw it ("": nowhere), for the metrics */
    char state[12];           /* its domain's state at the last run ("running"...) */
    uint64_t seen_run;        /* the cloud's run that saw it last (metrics: slots still declared) */
    uint64_t failures;        /* failures seen (domain, host, check): a counter for the metrics */
} cl_monitor_slot_t;

/* What the monitor's repairs did, for cloud_repairs_total{action} (changes of a run, + service) */
enum {
    CL_MON_ACT_START,
    CL_MON_ACT_CREATE,
    CL_MON_ACT_REMOVE,
    CL_MON_ACT_SETUP,
    CL_MON_ACT_SERVICE,
    CL_MON_ACT_OTHER,
    CL_MON_ACT_COUNT
};

typedef struct cl_monitor_cloud {
    char name[CL_NAME_MAX + 1];
    cl_monitor_slot_t *slots;
    size_t nslots;
    cl_events_t *events;
    int events_dirty;
    int due;              /* poked: run as soon as the worker is free */
    uint64_t next_at;     /* monotonic: the next run (sweep or a held repair's time) */
    int seen_running;     /* this daemon saw it running while acting: repair it from nothing too */
    int acting;           /* as of the last run */
    uint64_t epoch;       /* as of the last run */
    unsigned repairs;     /* since the last apply (the Puppet report) */
    uint64_t applied_seq; /* the last event before that apply */
    int present;          /* still has a state file (sweep bookkeeping) */
    int fwd; /* a domain stopped here: the leader is told if this daemon does not act */
    char fwd_slot[128];
    uint64_t runs;                         /* repair runs done (cl_monitor_slot_t.seen_run) */
    uint64_t repairs_by[CL_MON_ACT_COUNT]; /* every repair since the daemon started */
    char state[16];                        /* the cloud's state at the last run ("" unknown) */
} cl_monitor_cloud_t;

struct cl_monitor {
    cl_engine_t *engine;
    uint64_t sweep_ms;
    int no_sweep;
    int (*forward)(void *ud, const char *cloud, const char *slot);
    void *forward_ud;
    pthread_mutex_t lock; /* clouds and everything in them, stats */
    pthread_cond_t cond;
    pthread_t thread;
    int started, quit;
    cl_monitor_cloud_t **clouds;
    size_t nclouds;
    uint64_t next_scan;            /* monotonic: look for new clouds in the state directory */
    cl_guest_sessions_t *sessions; /* the checks' and cloudctl exec's (locks its own) */
    struct {
        uint64_t repairs, runs, events, checks, check_failures;
    } stats;
    cl_metrics_hist_t run_seconds;    /* every repair run (cl_engine_repair) */
    cl_metrics_hist_t repair_seconds; /* the runs that repaired something, and service repairs */
};

/* A repair run's context for the engine's gate (cl_monitor_decide's ud). */
typedef struct cl_monitor_run {
    cl_monitor_t *m;
    cl_monitor_cloud_t *c;
} cl_monitor_run_t;

/* Milliseconds on the wall clock: the times of events and failures shown (never a timeout). */
uint64_t cl_monitor_wall_ms(void);
/* Under the lock: c's record of slot name, made if missing (NULL: out of memory). */
cl_monitor_slot_t *cl_monitor_slot_get(cl_monitor_cloud_t *c, const char *name);
/* Under the lock: one event into c's history (and the log, with the epoch; 0: c's). */
void cl_monitor_note_locked(cl_monitor_t *m, cl_monitor_cloud_t *c, uint64_t epoch,
                            const char *type, const char *slot, const char *host, const char *text);

/*
 * The engine's gate (cl_engine_gate_t, ud: a cl_monitor_run_t) for each slot of a repair run:
 * its restart policy says repair now, later (a backoff, flapping) or elsewhere.  Takes the lock.
 */
int cl_monitor_decide(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                      uint64_t epoch, uint64_t *retry_at);
/*
 * The role checks of c's running guests that are due (real hypervisors only), each failure
 * escalated by the slot's policy.  From the worker, without the lock.
 */
void cl_monitor_run_checks(cl_monitor_t *m, cl_monitor_cloud_t *c, uint64_t now);

/* cloud_repairs_total's action (CL_MON_ACT_*) for a change of a repair run. */
int cl_monitor_act(const char *action);

#endif
