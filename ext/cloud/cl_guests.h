/*
 * cl_guests: the roles of a converged cloud run in its guests (see cl_guests.c): wait for each
 * guest over SSH, then setup, start and check its roles, in dependency order.
 */
#ifndef CL_GUESTS_H
#define CL_GUESTS_H

#include "cl_err.h"
#include "cl_run.h"
#include "cl_ssh.h"

/*
 * After the domains of run r converged (p: its slot plans, in dependency order): configure
 * every slot's guest on a real hypervisor (the test driver's are reported skipped).  0, or -1
 * and err naming the slot's address and the step (a guest that never answered: CL_ERR_TIMEOUT,
 * after CL_GUEST_BOOT_MS, CL_GUEST_REPAIR_BOOT_MS in a repair run; a guest whose domain stopped
 * while it was waited for, looked at every CL_GUEST_STATE_POLL_MS: CL_ERR_VIRT, at once, naming
 * the slot and its pool host).  Every guest's pin in the known-hosts file follows the
 * incarnation of its domain (cl_ssh_note_incarnation), also for the guests not configured: a
 * slot recreated by another leader is pinned afresh, for this run and for the monitor's checks.
 */
int cl_guests_configure(cl_run_t *r, const cl_slot_plan_t *p, cl_err_t *err);

/*
 * Before domain d (on run host `host`) is shut down: run the stop step of its slot's roles
 * (spec: the one with the steps, the stored spec of a stop), if it runs on a real hypervisor.
 * Best effort, bounded by CL_GUEST_STOP_MS: a failure is a progress event, not an error.
 */
void cl_guests_stop(cl_run_t *r, const cl_spec_t *spec, const cl_dom_t *d, int host);

/*
 * The leader's SSH sessions to running guests, kept between role checks (issue 5) and used by
 * `cloudctl exec` (issue 6, cl_exec): one per slot, opened when missing, reopened once when
 * broken.  Thread-safe: a session is taken out for one thread's use and given back.
 */
typedef struct cl_guest_sessions cl_guest_sessions_t;
typedef struct cl_guest_session cl_guest_session_t; /* one session, taken out of the cache */

cl_guest_sessions_t *cl_guest_sessions_new(void);
void cl_guest_sessions_free(cl_guest_sessions_t *s); /* NULL-safe: closes every session */
/* Forget (close) slot's session of cloud (slot NULL: all of the cloud's): its domain was
 * recreated, moved or removed, or the cloud was stopped. */
void cl_guest_sessions_drop(cl_guest_sessions_t *s, const char *cloud, const char *slot);
/* Number of sessions open (for status and the benchmark). */
size_t cl_guest_sessions_count(const cl_guest_sessions_t *s);
/*
 * Take slot i's session of spec's cloud for this thread's use: the one kept when it was opened
 * for the slot's address, spec's ssh_key and <state_dir>/known_hosts/<cloud> (as the checks
 * open it) and no other thread uses it now; else a new one (one attempt: cl_ssh_connect,
 * bounded by CL_SSH_CONNECT_MS and CL_SSH_AUTH_MS), listed at once.  NULL and err (cl_ssh's:
 * op "connect", "hostkey" or "auth").  Give it back with cl_guest_sessions_give.
 */
cl_guest_session_t *cl_guest_sessions_take(cl_guest_sessions_t *s, const char *state_dir,
                                           const cl_spec_t *spec, size_t i, cl_err_t *err);
cl_ssh_t *cl_guest_session_ssh(cl_guest_session_t *g); /* borrowed from g */
/*
 * Give g back (taken from s): kept for the next user, or closed when why says so (logged:
 * "broken", "unreachable"...), when its slot was dropped meanwhile, or when another session of
 * the slot is kept already.  g is not to be used after.  NULL-safe.
 */
void cl_guest_sessions_give(cl_guest_sessions_t *s, cl_guest_session_t *g, const char *why);

/*
 * Run the check steps of slot i's roles in its guest (spec's ssh_key, host key pinned under
 * state_dir as cl_guests_configure does, for the incarnation the last run saw), over the
 * session kept in s.  Each check is bounded by
 * its role's health.timeout_ms and, when it fails, run again health.retries times.  Returns 0
 * when every check passed (or no role has one), 1 when a check failed (err: the role, its exit
 * status and its last output line), -1 when the guest could not be reached (err).
 */
int cl_guests_check_slot(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec,
                         size_t i, cl_err_t *err);
/*
 * The service repair: run the start steps of slot i's roles again in its guest (the facts and
 * setup are already there), over the session kept in s.  0, or -1 and err.
 */
int cl_guests_restart_slot(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec,
                           size_t i, cl_err_t *err);

#endif
