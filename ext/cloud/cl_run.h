/*
 * cl_run: the internals of one engine run (cl_engine.c): the pool's hosts and the cloud's
 * domains found on them (cl_run.c), the plan and the actions that carry it out (cl_act.c), and
 * the status document.  Not an API: only the engine's files include it.
 */
#ifndef CL_RUN_H
#define CL_RUN_H

#include <json-c/json.h>
#include <stddef.h>

#include "cl_engine.h"
#include "cl_host.h"
#include "cl_virt.h"

/* The remote host (through the peers' hook) for a pool host of an elected cloud. */
cl_host_t *cl_engine_remote(cl_engine_t *e, const cl_spec_t *spec, const char *host, cl_err_t *err);

/* Ms since the election last heard host (see cl_engine_peers_t.silent_ms); 0 without one. */
uint64_t cl_engine_silent_ms(cl_engine_t *e, const cl_spec_t *spec, const char *host);

typedef struct host_view {
    const char *name;
    cl_host_t *host; /* owned by the run (cl_run_free); NULL: unreachable */
    int primary;     /* first host with this backend (cl_host_same_backend): scanned once */
    int pool_ready;
    unsigned long free_kib;
} cl_host_view_t;

typedef struct run {
    cl_engine_t *e;
    const cl_spec_t *spec;
    const char *name;
    cl_host_view_t *hosts;
    size_t nhosts;
    cl_dom_list_t doms; /* the cloud's domains on every host */
    int *dom_host;      /* host index of each domain */
    cl_idset_t foreign; /* identities used by other domains */
    cl_progress_fn fn;
    void *ud;
    json_object *changes; /* array */
    int changed;
    unsigned long epoch;
    const cl_engine_gate_t *gate; /* a repair run's policy (NULL: everything now) */
    json_object *placed;          /* the state's placement, slot -> host (borrowed; may be NULL) */
    json_object *held;            /* slots left for later: [{slot, host, why, retry_at_ms}] */
    int have_foreign;             /* foreign holds every host's other identities */
    cl_intent_t intent;           /* the cloud's last ordered state, persisted with the state */
    json_object *configured;      /* slot -> the incarnation whose roles were set up (owned) */
} cl_run_t;

/* CL_ACT_MOVE: remove the slot's domain where it is, create it on another host. */
enum cl_slot_action { CL_ACT_NONE, CL_ACT_START, CL_ACT_CREATE, CL_ACT_RECREATE, CL_ACT_MOVE };

extern const char *const cl_act_names[];

typedef struct slot_plan {
    size_t slot; /* index into spec->slots */
    int dom;     /* index into run.doms of the domain kept, or -1 */
    int host;    /* where it runs / will run */
    enum cl_slot_action act;
    char config[20];
    int rank;    /* dependency rank: earliest role */
    int from;    /* CL_ACT_MOVE: the host it leaves */
    int failing; /* 0, CL_FAIL_DOMAIN or CL_FAIL_HOST: why it needs a repair */
} cl_slot_plan_t;

typedef struct extra {
    int dom; /* domain to remove: slot gone, or duplicate */
    const char *why;
} cl_extra_t;

void cl_run_progress(cl_run_t *r, const char *event, const char *slot, const char *host,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void cl_run_flush(cl_run_t *r, const cl_host_view_t *h);
void cl_run_change(cl_run_t *r, const char *action, const char *slot, const char *host);
void cl_run_free(cl_run_t *r);
int cl_run_connect(cl_run_t *r, const char *hypervisor, const char *const *pool, size_t npool,
                   cl_err_t *err);
int cl_run_observe(cl_run_t *r, int want_foreign, cl_err_t *err);
/* The other domains' identities (UUIDs, MACs, names) of every host, if not yet collected. */
int cl_run_foreign(cl_run_t *r, cl_err_t *err);
int cl_run_plan(cl_run_t *r, cl_slot_plan_t **out, cl_extra_t **extras, size_t *nextra,
                cl_err_t *err);
json_object *cl_run_plan_json(const cl_run_t *r, const cl_slot_plan_t *p, const cl_extra_t *x,
                              size_t nx);
int cl_run_remove(cl_run_t *r, const cl_dom_t *d, int host, const char *why, unsigned grace_ms,
                  cl_err_t *err);
int cl_run_create(cl_run_t *r, const cl_slot_plan_t *p, cl_idset_t *ours, cl_err_t *err);
json_object *cl_run_status(cl_run_t *r, json_object *state);

#endif
