/*
 * cl_exec: one command in every selected guest of a cloud at once (issue 6: `cloudctl exec`,
 * what the seed did with MCollective).  The leader resolves roles and slot names against the
 * stored spec, runs the command's argv (each word quoted for the guest's shell: never a shell
 * string built from values) over its kept SSH sessions, one thread per guest and at most
 * CL_EXEC_PARALLEL at once, and answers each slot's exit status and output.  Every exec and
 * every slot's result go into the cloud's event history (the audit), without the arguments.
 */
#ifndef CL_EXEC_H
#define CL_EXEC_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_engine.h"
#include "cl_err.h"
#include "cl_guests.h"
#include "cl_monitor.h"
#include "cl_peers.h"
#include "cl_spec.h"
#include "cl_ssh.h"

#define CL_EXEC_PARALLEL 16           /* guests a command runs in at once */
#define CL_EXEC_OUTPUT_MAX 65536      /* bytes of a slot's stdout kept, and of its stderr */
#define CL_EXEC_ANSWER_MAX (3u << 20) /* every output of one answer, as JSON (cl_rpc: 4 MiB) */
#define CL_EXEC_ARGV_MAX 4096         /* words of a command (CL_SSH_CMD_MAX bounds their length) */
#define CL_EXEC_ID_LEN 8              /* hex digits of an exec's id (events and answer) */

/* One selected slot, and what the command did there. */
typedef struct cl_exec_slot {
    size_t slot;         /* index in the spec's slots */
    char host[128];      /* the pool host its domain runs on ("" unknown) */
    char state[16];      /* its domain's state when the exec began ("running", "shutoff"...) */
    int ran;             /* the command ran to its end: res.exit_status/exit_signal are its own */
    cl_ssh_result_t res; /* its output (also the part a timed-out command wrote), exit status */
    uint64_t ms;         /* from its turn to its end, the session's opening included */
    cl_err_t err; /* set: why it did not run to its end (not running, unreachable, timeout) */
} cl_exec_slot_t;

/* How cl_exec_run runs a command.  Borrowed for the call. */
typedef struct cl_exec_opts {
    const cl_spec_t *spec;         /* the slots, their addresses, ssh_key */
    const char *const *argv;       /* NULL-terminated; argv[0] the program */
    uint64_t deadline;             /* cl_time_now_ms: every command ends by then */
    unsigned parallel;             /* threads at most; 0: CL_EXEC_PARALLEL */
    size_t max_output;             /* of stdout and of stderr each; 0: CL_EXEC_OUTPUT_MAX */
    cl_guest_sessions_t *sessions; /* taken from and given back to (thread-safe) */
    const char *state_dir;         /* <state_dir>/known_hosts/<cloud>: the pinned host keys */
} cl_exec_opts_t;

/*
 * The slots that names select in spec (n names; n 0: every slot): a slot's name selects it, a
 * role (declared, or a service of a composite role) every slot holding it.  sel (spec->nslots
 * entries) gets 1 for each selected slot.  Returns how many are selected, or -1 and err
 * (CL_ERR_SPEC naming each unknown name, or a role without a VM; nothing selected).
 */
int cl_exec_resolve(const cl_spec_t *spec, const char *const *names, size_t n, unsigned char *sel,
                    cl_err_t *err);

/*
 * Run o->argv in the guest of every slots[k] whose err is clear (the others are left as they
 * are: a slot not running is reported, not run), each in a thread of its own, at most
 * o->parallel at once: over the session o->sessions keeps for the slot, else a new one (kept
 * after).  A command is never sent twice: one cut off by a lost connection is reported so.
 * Each command's output is kept up to o->max_output per stream (res.*_truncated beyond); a
 * command not finished by o->deadline is abandoned (CL_ERR_TIMEOUT: it may still run in the
 * guest), a slot whose turn comes after it is not started.  Returns how many ran to their end.
 */
size_t cl_exec_run(const cl_exec_opts_t *o, cl_exec_slot_t *slots, size_t n);
void cl_exec_slots_free(cl_exec_slot_t *slots, size_t n); /* their outputs, and the array */

/*
 * A command's output as JSON text: valid UTF-8, each invalid byte and each control character
 * but tab, newline and carriage return replaced by U+FFFD (a guest's output never drives the
 * operator's terminal).  A new string (*len: its length), NULL if out of memory.
 */
char *cl_exec_text(const char *p, size_t n, size_t *len);

/* What an answer says about the exec as a whole (borrowed strings). */
typedef struct cl_exec_info {
    const char *id;      /* CL_EXEC_ID_LEN hex digits, also in the events */
    const char *leader;  /* the pool host that ran it */
    const char *origin;  /* who asked: the pool host whose socket it came to */
    const char *command; /* argv[0] up to a blank or '=': the arguments are never shown */
    uint64_t epoch;      /* the leader's */
    unsigned timeout_ms; /* the bound it ran under */
} cl_exec_info_t;

/*
 * The answer of an exec (doc/INTERNALS.md §2): info's fields, each slot's {slot, roles, ip,
 * host, state, ran, exit, signal, stdout, stderr (cl_exec_text), stdout_truncated,
 * stderr_truncated, ms, error} and the counts (selected, ran, succeeded, failed, not_run,
 * all_succeeded).  The outputs together cost at most budget bytes of JSON (0:
 * CL_EXEC_ANSWER_MAX): when they would not, each is cut to an equal share and marked
 * truncated.  A new object.
 */
json_object *cl_exec_answer(const cl_exec_info_t *info, const cl_spec_t *spec,
                            const cl_exec_slot_t *slots, size_t n, size_t budget);

/* Where the "exec" control op runs: the daemon's parts. */
typedef struct cl_exec_ctx {
    cl_engine_t *engine;   /* the stored spec, leadership, the slots' domains */
    cl_monitor_t *monitor; /* the history (audit) and the kept sessions; NULL (--no-monitor):
                              sessions of cl_exec's own, the audit in the log only */
    cl_peers_t *peers;     /* a member hands the request to its leader; NULL: no peer layer */
} cl_exec_ctx_t;

/*
 * The control op "exec" (doc/INTERNALS.md §2): req {name, targets (roles or slots; absent or
 * empty: all), argv, timeout_ms (the whole exec's bound; CL_EXEC_TIMEOUT_MS)}, borrowed.
 * handed_over: it came from another pool host's daemon, whose "origin" names the asker; else
 * from the local socket (the asker is this host).  A member that does not lead hands it to the
 * leader; the leader runs it.  Refused (err, nothing run, a "-exec" event) on the test driver,
 * for an unknown target or without ssh_key.  The answer (caller puts), or NULL and err.
 */
json_object *cl_exec_serve(const cl_exec_ctx_t *x, json_object *req, int handed_over,
                           cl_err_t *err);

/*
 * cloudctl's side: `cloudctl exec NAME [ROLE|SLOT...] [--json] [--timeout S] -- COMMAND
 * [ARG...]` (args: what follows "exec"; json: --json given before it).  Prints each slot's
 * output, grouped, and a summary.  The exit status: 0 when every selected slot ran the command
 * and it exited 0, 1 otherwise (or on an error), 2 for a usage error.
 */
int cl_exec_cli(const char *socket, int json, int argc, char **argv);

#endif
