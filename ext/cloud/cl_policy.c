/*
 * cl_policy: one slot's restart policy (see cl_policy.h).  The failures of the last window
 * decide flapping; the repairs tried since the slot was last healthy decide the escalation and
 * the backoff.
 */
#include "cl_policy.h"

#include <string.h>

void cl_policy_cfg_default(cl_policy_cfg_t *cfg)
{
    cfg->max_failures = 5;
    cfg->window_ms = 600000;
    cfg->backoff_ms = 1000;
    cfg->backoff_max_ms = 60000;
}

void cl_policy_init(cl_policy_t *p)
{
    memset(p, 0, sizeof(*p));
}

const char *cl_repair_name(cl_repair_t r)
{
    switch (r) {
    case CL_REPAIR_SERVICE: return "service";
    case CL_REPAIR_DOMAIN: return "domain";
    case CL_REPAIR_REPLACE: return "replace";
    default: return "none";
    }
}

int cl_policy_flapping(const cl_policy_t *p, uint64_t now)
{
    return p->flapping_until > now;
}

/* Forget failures older than the window; remember this one (the oldest goes when full). */
static unsigned remember(cl_policy_t *p, const cl_policy_cfg_t *cfg, uint64_t now)
{
    unsigned i, k = 0;

    for (i = 0; i < p->nfail; i++)
        if (p->failures[i] + cfg->window_ms > now)
            p->failures[k++] = p->failures[i];
    if (k == CL_POLICY_HISTORY) {
        memmove(p->failures, p->failures + 1, (CL_POLICY_HISTORY - 1) * sizeof(*p->failures));
        k--;
    }
    p->failures[k++] = now;
    p->nfail = k;
    return k;
}

/* The next repair for kind, one step above the last one tried (never below what kind needs). */
static cl_repair_t escalate(const cl_policy_t *p, cl_failure_t kind)
{
    cl_repair_t floor = kind == CL_FAIL_HOST     ? CL_REPAIR_REPLACE
                        : kind == CL_FAIL_DOMAIN ? CL_REPAIR_DOMAIN
                                                 : CL_REPAIR_SERVICE;
    cl_repair_t next = p->attempts == 0 || p->last == CL_REPAIR_NONE ? floor
                       : p->last >= CL_REPAIR_REPLACE                ? CL_REPAIR_REPLACE
                                                                     : p->last + 1;

    return next < floor ? floor : next;
}

cl_repair_t cl_policy_failure(cl_policy_t *p, const cl_policy_cfg_t *cfg, cl_failure_t kind,
                              uint64_t now, uint64_t *at)
{
    uint64_t delay = 0;
    unsigned n, i;
    cl_repair_t r;

    if (kind == CL_FAIL_HOST) {
        /*
         * The host failed, not the slot (as Pacemaker does not count a node's death in its
         * resources' fail counts): re-placed at once, nothing remembered against the slot.
         */
        p->restarts++;
        *at = now;
        return CL_REPAIR_REPLACE;
    }
    n = remember(p, cfg, now);
    if (cl_policy_flapping(p, now)) {
        *at = p->flapping_until;
        return CL_REPAIR_NONE;
    }
    if (n > cfg->max_failures) {
        /* too many in the window: stop trying for a window, then start over */
        p->flapping_until = now + cfg->window_ms;
        p->attempts = 0;
        p->last = CL_REPAIR_NONE;
        p->nfail = 0;
        *at = p->flapping_until;
        return CL_REPAIR_NONE;
    }
    r = escalate(p, kind);
    if (p->attempts > 0) {
        delay = cfg->backoff_ms;
        for (i = 1; i < p->attempts && delay < cfg->backoff_max_ms; i++)
            delay *= 2;
        if (delay > cfg->backoff_max_ms)
            delay = cfg->backoff_max_ms;
    }
    p->attempts++;
    p->last = r;
    p->restarts++;
    *at = now + delay;
    return r;
}

void cl_policy_healthy(cl_policy_t *p)
{
    p->attempts = 0;
    p->last = CL_REPAIR_NONE;
}
