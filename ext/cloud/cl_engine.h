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
#include "cl_policy.h"
#include "cl_spec.h"
#include "cl_virt.h"

typedef struct cl_engine cl_engine_t;

/*
 * A cloud's last ordered state (its "intent", in the state file): running or stopped, and the
 * epoch of the leader that ordered it -- the newest epoch wins.  Every pool host keeps one, so
 * that a new leader can tell a cloud stopped while it was away (some host says stopped) from
 * a cloud whose domains were all lost (a majority says running): see doc/MONITOR.md.
 */
typedef struct cl_intent {
    int known;      /* the host knows the cloud (has its state); 0: no answer, or forgotten */
    int stopped;    /* ordered stopped (a stop begun, perhaps not finished) */
    uint64_t epoch; /* the ordering leader's epoch (0: before any was recorded) */
} cl_intent_t;

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
    /*
     * Ms since the election last heard pool host host of spec's cloud (UINT64_MAX: never since
     * this daemon joined).  A dead host's slots are re-placed only once it has been silent for
     * the fencing wait: by then it has fenced itself (destroyed its copies), see fence_ms.
     */
    uint64_t (*silent_ms)(void *ud, const cl_spec_t *spec, const char *host);
    /*
     * Every other pool host's intent for spec's cloud, told first when set is "running" (with
     * spec, which the hosts store), "stopped" or "forget" (the stop is done: forget the cloud),
     * or only asked (set NULL), in epoch.  out[i] for pool entry i (this host's left zero;
     * known 0: no answer).  Returns how many answered.  May be NULL (no peers).
     */
    size_t (*intent)(void *ud, const cl_spec_t *spec, uint64_t epoch, const char *set,
                     cl_intent_t *out);
    /* This daemon stopped and forgot spec's cloud by itself (a resumed stop): leave it. */
    void (*forgotten)(void *ud, const char *cloud);
    /* A member that loses the cloud's leader for this long fences itself (0: CL_FENCE_SELF_MS) */
    uint64_t fence_ms;
    /*
     * How long one guest's destroy takes on the pool's (real) hypervisors: a host whose daemon
     * died has its guests destroyed by libvirtd one after the other (autodestroy), so the wait
     * for a silent host grows by this for each further copy it may hold (0: not at all; the
     * test driver's domains end with the daemon: never counted).
     */
    uint64_t destroy_ms;
} cl_engine_peers_t;

/*
 * The monitor's restart policy, consulted by a repair run (cl_engine_repair) for every slot
 * before it acts.  failing: 0 when the slot runs where it should, else why it does not
 * (CL_FAIL_DOMAIN: its domain stopped, crashed or vanished on a live host; CL_FAIL_HOST: its
 * host is gone and fenced).  host: where it runs or ran ("" if unknown); epoch: the run's.
 * Returns CL_GATE_GO (repair now; for a slot that runs: leave it), CL_GATE_HOLD (not now:
 * *retry_at, absolute cl_time_now_ms, says when to look again) or CL_GATE_MOVE (recreate it on
 * another host, also when it runs).  Called with the engine's lock held: no engine calls from it.
 */
enum { CL_GATE_HOLD, CL_GATE_GO, CL_GATE_MOVE };
typedef struct cl_engine_gate {
    void *ud;
    int (*decide)(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                  uint64_t epoch, uint64_t *retry_at);
} cl_engine_gate_t;

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
 * The monitor's repair run: like cl_engine_monitor (adopt_only: like cl_engine_takeover), each
 * slot's repair decided by gate first (NULL: as monitor).  Does nothing (changed 0) unless this
 * host leads and acts.  The result
 * also has "held": [{slot, host, why, retry_at_ms}] for the slots left for later (the gate's
 * or the fencing wait's), and "acting": false when it did not run.
 */
int cl_engine_repair(cl_engine_t *e, const char *name, int adopt_only, const cl_engine_gate_t *gate,
                     cl_progress_fn fn, void *ud, json_object **result, cl_err_t *err);
/*
 * Stop slot's domain where it runs (kept defined: a restart of the domain, next started by a
 * repair run), in this leader's epoch.  0, or -1 and err.
 */
int cl_engine_destroy_slot(cl_engine_t *e, const char *name, const char *slot, cl_err_t *err);
/*
 * Self-fencing of a member that lost its cloud's leader: stop every running (or paused) domain
 * of cloud on this host's own hypervisor (uri) at once -- all paused, then all destroyed (kept
 * defined; cl_virt_stop_all).  Returns how many were destroyed, or -1 and err.
 */
int cl_engine_self_fence(cl_engine_t *e, const char *cloud, const char *uri, cl_err_t *err);
/*
 * A pool host's side of cl_engine_peers_t.intent: *out gets cloud name's intent here after set
 * ("running": recorded with spec (may be NULL), when epoch is not older than the one here;
 * "stopped": the same; "forget": the state is removed, only if it says stopped; NULL: asked).
 * out->known 0: no state here.  Returns 1 if "forget" removed the state, else 0; -1 and err.
 */
int cl_engine_intent(cl_engine_t *e, const char *name, const char *set, uint64_t epoch,
                     const cl_spec_t *spec, cl_intent_t *out, cl_err_t *err);
/* The fencing wait of spec's cloud: how long a silent host must be before its slots move. */
uint64_t cl_engine_fence_wait_ms(const cl_engine_t *e);
/*
 * The same for a silent host that may hold copies copies of spec's slots: one destroy_ms more
 * for each copy after the first (on a real hypervisor).
 */
uint64_t cl_engine_fence_wait_host_ms(const cl_engine_t *e, const cl_spec_t *spec, size_t copies);
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
/* The URIs of the connections open in the cache: a new array of new strings, *n of them. */
char **cl_engine_conn_uris(cl_engine_t *e, size_t *n);
/* The cached connection for uri, (re)opened if needed; owned by the engine's cache. */
cl_virt_t *cl_engine_conn(cl_engine_t *e, const char *uri, const char *host, cl_err_t *err);
/*
 * Called (under the connection cache's lock: no engine calls from it) with each hypervisor
 * connection the engine opens or reopens: the daemon's monitor watches its domain events.
 */
void cl_engine_set_conn_hook(cl_engine_t *e, void (*fn)(void *ud, cl_virt_t *v), void *ud);
/* Number of clouds with state on this host. */
size_t cl_engine_cloud_count(cl_engine_t *e);
/* The engine's metrics (cl_metrics): applies by result and their durations. */
struct cl_metrics_buf;
void cl_engine_metrics(cl_engine_t *e, struct cl_metrics_buf *b);

#endif
