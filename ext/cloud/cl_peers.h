/*
 * cl_peers: a daemon's peer layer for pools of several hosts.  It puts the election (cl_elect,
 * UDP) and the host-operation server (cl_rpc, TCP, fenced) on one peer address and port, drives
 * them from libvirt's event loop, and gives the engine its peer hooks: who leads a cloud and in
 * which epoch, and the other pool hosts as remote cl_host_t reached through their daemons.
 */
#ifndef CL_PEERS_H
#define CL_PEERS_H

#include <json-c/json.h>

#include "cl_bully.h"
#include "cl_engine.h"
#include "cl_err.h"
#include "cl_spec.h"

typedef struct cl_peers cl_peers_t;

/*
 * Bind UDP and TCP on address:port (address: this daemon's identity in pools, numeric), with
 * the election's and the fence's state under state_dir.  NULL and err on failure.
 */
cl_peers_t *cl_peers_new(const char *address, unsigned port, const char *state_dir, cl_err_t *err);
/* Election timers for the clouds joined from now on (NULL fields/zeros: the defaults). */
void cl_peers_set_timers(cl_peers_t *p, const cl_bully_config_t *timers);
void cl_peers_free(cl_peers_t *p); /* NULL-safe; call after the event loop stopped */
/* The engine's hooks (ud = p); set the engine once it exists (for local hosts and takeovers). */
void cl_peers_hooks(cl_peers_t *p, cl_engine_peers_t *out);
void cl_peers_set_engine(cl_peers_t *p, cl_engine_t *e);
/* Watch the sockets and the election's timer in libvirt's default event loop. */
int cl_peers_register(cl_peers_t *p, cl_err_t *err);
/*
 * Take part in spec's cloud (a pool of several hosts, this host in it): its key is read from
 * spec's secret_file; the spec is remembered for the host operations served here.  Joining
 * again with the same spec is cheap.  -1 and err naming the attribute (secret_file) or cloud.
 */
int cl_peers_join(cl_peers_t *p, const cl_spec_t *spec, cl_err_t *err);
/* Leave a cloud's election (after a stop); its host operations are still served. */
void cl_peers_leave(cl_peers_t *p, const char *cloud);
/*
 * Serves a control request (apply, plan, stop, status; borrowed) handed over from another
 * machine as if it came from the local socket, appending its progress events to events: the
 * answer's result (new), or NULL and err.
 */
typedef json_object *(*cl_peers_control_fn)(void *ud, json_object *request, json_object *events,
                                            cl_err_t *err);
/*
 * Where handed-over control requests go (cl_rpc's "control", checked first: this host leads
 * the cloud and acts in the epoch the request names, the spec is that cloud's, same pool).
 */
void cl_peers_set_control(cl_peers_t *p, cl_peers_control_fn fn, void *ud);
/*
 * A member that does not lead hands a control request (req, borrowed: apply with its spec) to
 * the cloud's leader, as itself (its pool entry, key and incarnation), following a change of
 * leader for up to CL_HANDOVER_MEMBER_MS.  0 with the leader's *answer and progress *events
 * (caller puts), or -1 and err (CL_ERR_ELECTION when no other member leads and acts).
 */
int cl_peers_forward(cl_peers_t *p, const cl_spec_t *spec, json_object *req, json_object **answer,
                     json_object **events, cl_err_t *err);
/*
 * Self-healing (issue 5).  fence_ms: a member that has neither acted nor followed a leader of
 * a cloud for this long stops its copies of the cloud's domains (0: CL_FENCE_SELF_MS; the same
 * on every pool host: the leader waits fence_ms + CL_FENCE_MARGIN_MS before re-placing a silent
 * host's slots).  Set it before cl_peers_hooks.
 */
void cl_peers_set_fence_ms(cl_peers_t *p, uint64_t ms);
/* Told (from the event loop) when a cloud this daemon acts on needs a look, and why. */
typedef void (*cl_peers_watch_fn)(void *ud, const char *cloud, const char *why);
void cl_peers_set_watch(cl_peers_t *p, cl_peers_watch_fn fn, void *ud);
/*
 * A domain of cloud (slot) stopped on this host, which does not lead it: tell the leader, whose
 * monitor looks at once (cl_rpc "poke").  0, or -1 and err (no leader, or it did not answer:
 * its sweep still sees it).  Blocks up to CL_PEERS_QUIET_* : not from the event loop.
 */
int cl_peers_poke_leader(cl_peers_t *p, const char *cloud, const char *slot, cl_err_t *err);
/* Every CL_MONITOR_TICK_MS, from the event loop: self-fencing, members' liveness changes. */
void cl_peers_tick(cl_peers_t *p);
/* The election's view of cloud (NULL: the daemon's), for status documents; caller puts. */
json_object *cl_peers_status(cl_peers_t *p, const char *cloud);
/* The host-operation server's counters (requests served, failed; drops by reason): metrics. */
struct cl_rpc_stats;
void cl_peers_rpc_stats(cl_peers_t *p, struct cl_rpc_stats *out);

#endif
