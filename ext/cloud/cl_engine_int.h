/*
 * cl_engine_int: what the three files of the engine share, and nothing else of the core uses:
 * cl_engine.c (the engine, its connection cache, what the election says; apply, monitor and
 * status runs), cl_engine_state.c (a cloud's state document and the intent in it) and
 * cl_engine_stop.c (stopping: a cloud torn down, one slot's domain, a host's copies fenced).
 */
#ifndef CL_ENGINE_INT_H
#define CL_ENGINE_INT_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cl_engine.h"
#include "cl_err.h"
#include "cl_metrics.h"
#include "cl_net.h"
#include "cl_run.h"
#include "cl_virt.h"

typedef struct cl_engine_conn {
    char *uri;
    cl_virt_t *virt;
} cl_engine_conn_t;

struct cl_engine {
    char *state_dir;
    cl_addrs_t self;
    int readonly;
    pthread_mutex_t act_lock;   /* one actor: every mutation of every cloud */
    pthread_mutex_t conn_lock;  /* the connection cache */
    pthread_mutex_t state_lock; /* read-modify-write of a state file's intent */
    cl_engine_conn_t *conns;
    size_t nconns;
    cl_addrs_t led;          /* clouds led by this process: a new term bumps the epoch */
    cl_engine_peers_t peers; /* peers.lead == NULL: single-host behaviour */
    void (*conn_hook)(void *ud, cl_virt_t *v);
    void *conn_hook_ud;
    cl_metrics_hist_t apply_seconds; /* cl_engine_apply (not noop) */
    atomic_ullong applies[2];        /* ... that succeeded, failed */
};

/* The epoch recorded in a state document (0: none). */
unsigned long cl_engine_state_epoch(json_object *state);
/* The intent recorded in a state document (none: running, epoch 0). */
void cl_engine_intent_read(json_object *state, cl_intent_t *o);
/* Does a supersede b?  The newer epoch; in one epoch, stopped (the cautious answer). */
int cl_engine_intent_newer(const cl_intent_t *a, const cl_intent_t *b);
/* Save doc as name's state with the newer of the intents *in (updated) and on disk. */
int cl_engine_state_save(cl_engine_t *e, const char *name, json_object *doc, cl_intent_t *in,
                         cl_err_t *err);
/* The state document to persist: spec, epoch, leader, placement, intent. */
json_object *cl_engine_state_doc(const cl_run_t *r, const cl_slot_plan_t *p);

/* cl_engine_stop; have_lock: the caller holds the act lock (a monitor run stopping a cloud). */
int cl_engine_stop_run(cl_engine_t *e, const char *name, const cl_spec_t *given, int noop,
                       int have_lock, cl_progress_fn fn, void *ud, json_object **result,
                       cl_err_t *err);

#endif
