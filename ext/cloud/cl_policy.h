/*
 * cl_policy: the restart policy of one slot (issue 5, doc/MONITOR.md), as a pure state machine
 * fed with failures and time: which repair to try next (the service, then the domain, then
 * another host), when (exponential backoff), and when to stop trying for a while (flapping:
 * too many failures in a window).  No I/O, no clock: unit-tested with injected time.
 */
#ifndef CL_POLICY_H
#define CL_POLICY_H

#include <stdint.h>

#define CL_POLICY_HISTORY 32 /* failures remembered per slot (for the window) */

typedef enum cl_failure {
    CL_FAIL_CHECK,  /* a role's check failed in the guest */
    CL_FAIL_DOMAIN, /* the domain stopped or crashed */
    CL_FAIL_HOST,   /* its host is gone (fenced: no second copy can run) */
} cl_failure_t;

typedef enum cl_repair {
    CL_REPAIR_NONE,    /* nothing now (flapping: wait until *at) */
    CL_REPAIR_SERVICE, /* run the roles' start step again in the guest */
    CL_REPAIR_DOMAIN,  /* restart (or recreate) the domain where it is */
    CL_REPAIR_REPLACE, /* recreate it on another host */
} cl_repair_t;

typedef struct cl_policy_cfg {
    unsigned max_failures;   /* more than this within window_ms: flapping */
    uint64_t window_ms;      /* the flapping window, and the pause once flapping */
    uint64_t backoff_ms;     /* delay before the second attempt; doubles each time */
    uint64_t backoff_max_ms; /* the delay never exceeds this */
} cl_policy_cfg_t;

typedef struct cl_policy {
    uint64_t failures[CL_POLICY_HISTORY]; /* when, newest last (nfail of them) */
    unsigned nfail;
    unsigned attempts;       /* repairs since the slot was last healthy */
    cl_repair_t last;        /* the last repair chosen */
    uint64_t flapping_until; /* no repair before this (0: not flapping) */
    unsigned restarts;       /* repairs chosen in all (for status) */
} cl_policy_t;

/* Defaults: 5 failures in 10 minutes, backoff 1 s doubling up to 60 s. */
void cl_policy_cfg_default(cl_policy_cfg_t *cfg);
void cl_policy_init(cl_policy_t *p);
/*
 * A failure of kind seen at now: the repair to do and, in *at, when (now, or later by the
 * backoff; for CL_REPAIR_NONE, the end of the flapping pause).  Escalates while the slot does
 * not become healthy: a failed check is first repaired in the guest, then by the domain, then
 * by another host; a stopped domain first where it is, then elsewhere; a dead host elsewhere,
 * at once and not counted against the slot (no backoff, no flapping: the host failed).
 */
cl_repair_t cl_policy_failure(cl_policy_t *p, const cl_policy_cfg_t *cfg, cl_failure_t kind,
                              uint64_t now, uint64_t *at);
/* The slot works again (its check passed after a repair): the escalation starts over. */
void cl_policy_healthy(cl_policy_t *p);
/* Whether the slot is flapping at now. */
int cl_policy_flapping(const cl_policy_t *p, uint64_t now);
const char *cl_repair_name(cl_repair_t r); /* "none", "service", "domain", "replace" */

#endif
