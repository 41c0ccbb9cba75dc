/*
 * cl_engine: the leader's work on a cloud, shared by the daemon and the extension: observe
 * the pool hosts' domains, plan (placement, identities), converge in role dependency order,
 * tear down, and describe the result as the status document of doc/INTERNALS.md §3.
 * One engine per process; mutations of all clouds are serialised by one lock (one actor).
 */
#ifndef CL_ENGINE_H
#define CL_ENGINE_H

#include <json-c/json.h>

#include "cl_err.h"
#include "cl_net.h"
#include "cl_host.h"
#include "cl_spec.h"

typedef struct cl_engine cl_engine_t;

/*
 * Pools of several hosts (cloudd with a peer identity supplies these; without them, or for a
 * pool of one, this host is member and leader and every host is reached through the
 * hypervisor URI).  Called from request threads: implementations lock what they share.
 */
typedef struct cl_engine_peers {
    void *ud;
    /*
     * The leader of spec's cloud as the election sees it: its pool host into leader (""
     * when none is known), its epoch, and 1 if this daemon leads and may act now.
     */
    int (*lead)(void *ud, const cl_spec_t *spec, char *leader, size_t len, uint64_t *epoch);
    /* A pool host other than this one, driven through its daemon (caller frees); NULL+err. */
    cl_host_t *(*remote)(void *ud, const cl_spec_t *spec, const char *host, cl_err_t *err);
} cl_engine_peers_t;

typedef struct cl_engine_opts {
    const char *state_dir;          /* where clouds' state files live */
    const cl_addrs_t *self;         /* this host's identity (copied); NULL: the local interfaces */
    int readonly;                   /* status/plan only: read-only connections, no state written */
    const cl_engine_peers_t *peers; /* NULL: single-host behaviour (copied) */
} cl_engine_opts_t;

/*
 * Called for each progress event (ev is borrowed: the callee takes a reference to keep it), and
 * with ev == NULL when a slow step may follow: a listener that batches events sends them then.
 */
typedef void (*cl_progress_fn)(void *ud, json_object *ev);

int cl_engine_new(const cl_engine_opts_t *opts, cl_engine_t **out, cl_err_t *err);
void cl_engine_free(cl_engine_t *e);
const cl_addrs_t *cl_engine_self(const cl_engine_t *e);
const char *cl_engine_state_dir(const cl_engine_t *e);

/*
 * Is this host in the spec's pool?  Which pool host leads: with peers and a pool of several, the
 * elected one (-1: none yet); otherwise the first.  *epoch (may be NULL) gets the election's.
 */
int cl_engine_is_member(const cl_engine_t *e, const cl_spec_t *spec);
int cl_engine_leader_index(const cl_engine_t *e, const cl_spec_t *spec);
int cl_engine_leader(const cl_engine_t *e, const cl_spec_t *spec, uint64_t *epoch, int *acting);
/* Whether spec's cloud is run by the election (peers given and a pool of several). */
int cl_engine_elected(const cl_engine_t *e, const cl_spec_t *spec);

/*
 * Converge spec (ensure => running).  noop: only plan.  *result (caller puts):
 * {"changed":N,"changes":[...],"plan":[...],"status":{...}}.
 */
int cl_engine_apply(cl_engine_t *e, const cl_spec_t *spec, int noop, cl_progress_fn fn, void *ud,
                    json_object **result, cl_err_t *err);
/* Tear cloud name down on every pool host (spec may be NULL: the stored one is used). */
int cl_engine_stop(cl_engine_t *e, const char *name, const cl_spec_t *spec, int noop,
                   cl_progress_fn fn, void *ud, json_object **result, cl_err_t *err);
/* One observe/repair cycle with the stored spec (nothing to do if none). */
int cl_engine_monitor(cl_engine_t *e, const char *name, cl_progress_fn fn, void *ud,
                      json_object **result, cl_err_t *err);
/*
 * A new leader's cycle: like monitor (adopts what runs, re-places the slots of hosts that are
 * gone), but a cloud of which nothing runs anywhere is left alone (stopped, or never started).
 */
int cl_engine_takeover(cl_engine_t *e, const char *name, json_object **result, cl_err_t *err);
/*
 * Status of one cloud (name, with spec if the caller has it) or of every known cloud (name
 * NULL): {"clouds":[...]}.
 */
int cl_engine_status(cl_engine_t *e, const char *name, const cl_spec_t *spec, json_object **result,
                     cl_err_t *err);
/* Number of clouds with state on this host. */
size_t cl_engine_cloud_count(cl_engine_t *e);

#endif
