/*
 * cl_ssh: the leader's SSH to its guests (libssh2, public-key authentication only).  A cl_ssh_t
 * is one persistent session to one guest: connect once, run many commands over channels of
 * it, reconnect on demand when it died.  Host keys are pinned on first contact in a
 * known-hosts file and a changed key is refused.  Commands are argv vectors quoted here for a
 * POSIX shell; secrets travel only on stdin or in uploaded files.  Every wait is bounded.
 *
 * Threads: libssh2 is initialised once for the process.  A cl_ssh_t is used by one thread at a
 * time (one per guest is the intended use); distinct cl_ssh_t may run in parallel threads, and
 * sessions sharing a known-hosts file serialise their pinning on a lock.
 */
#ifndef CL_SSH_H
#define CL_SSH_H

#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"

#define CL_SSH_OUTPUT_MAX (1u << 20)     /* default cap of captured stdout, and of stderr */
#define CL_SSH_CMD_MAX (256u * 1024u)    /* longest quoted command line sent to the guest */
#define CL_SSH_KNOWN_MAX (4u << 20)      /* largest known-hosts file read */
#define CL_SSH_SCRIPT_SHELL "/bin/sh -s" /* runs cl_ssh_run_script's script, read on stdin */

/* cl_err_t.code of domain CL_ERR_SSH errors that callers may want to tell apart */
#define CL_SSH_E_HOSTKEY_CHANGED 1 /* the guest presents a key other than the pinned one */
#define CL_SSH_E_AUTH_REFUSED 2    /* the guest refused our public key */
#define CL_SSH_E_LOST 3            /* the connection died during an operation */

typedef struct cl_ssh cl_ssh_t;

/* Where and who.  Copied by cl_ssh_connect: the strings need not outlive the call. */
typedef struct cl_ssh_opts {
    const char *host; /* numeric IPv4/IPv6 address of the guest (no DNS: bounded) */
    unsigned port;    /* 0: 22 */
    const char *user; /* NULL: "root" */
    const char *key;  /* private key file, no passphrase; public key KEY.pub if present */
    const char
        *known_hosts;    /* pinned host keys (OpenSSH format), e.g. <state>/known_hosts/<cloud> */
    unsigned connect_ms; /* TCP connect bound; 0: CL_SSH_CONNECT_MS */
    unsigned auth_ms;    /* banner, key exchange, host key and authentication; 0: CL_SSH_AUTH_MS */
} cl_ssh_opts_t;

/* How to run one command; a zeroed struct (or NULL) means the defaults. */
typedef struct cl_ssh_run_opts {
    const void *input; /* the command's stdin (may be a secret: never logged); NULL: empty */
    size_t input_len;
    unsigned timeout_ms; /* from opening the channel to the exit status; 0: CL_SSH_EXEC_MS */
    size_t max_output;   /* cap of out and of errout each; 0: CL_SSH_OUTPUT_MAX */
} cl_ssh_run_opts_t;

/* What a command did.  Filled by cl_ssh_run*; the caller frees with cl_ssh_result_free. */
typedef struct cl_ssh_result {
    char *out, *errout; /* stdout and stderr, NUL-terminated (may contain NULs: use the lengths) */
    size_t out_len, errout_len;
    int out_truncated, errout_truncated; /* more than max_output bytes came; the rest dropped */
    int exit_status;                     /* the command's status; -1 if killed by a signal */
    char exit_signal[32];                /* "TERM", "KILL"... or "" */
    uint64_t ms;                         /* wall time of the run */
} cl_ssh_result_t;

/* ----------------------------------------------------------------------------------------- */
/* Sessions                                                                                  */
/* ----------------------------------------------------------------------------------------- */

/*
 * Connect, check or pin the host key, authenticate.  NULL and err (op "connect", "hostkey" or
 * "auth"; CL_ERR_TIMEOUT if a bound ran out).  The caller owns the result (cl_ssh_free).
 */
cl_ssh_t *cl_ssh_connect(const cl_ssh_opts_t *opts, cl_err_t *err);
/*
 * The same, retried with backoff (CL_SSH_BACKOFF_MIN_MS doubling up to CL_SSH_BACKOFF_MAX_MS)
 * until deadline (cl_time_now_ms clock) while a guest boots: refused or silent ports, no
 * banner yet, and refused keys (authorized_keys may be written late in the boot) are retried;
 * a changed host key or an unusable local file is not.  CL_ERR_TIMEOUT naming the last error
 * when the deadline passes.
 */
cl_ssh_t *cl_ssh_wait_ready(const cl_ssh_opts_t *opts, uint64_t deadline, cl_err_t *err);
/*
 * What cl_ssh_wait_ready_watch asks while it waits: 0 to go on waiting, -1 and err to give up
 * at once (the guest's domain stopped: no sshd will answer).  Called on the waiting thread.
 */
typedef int (*cl_ssh_watch_fn)(void *ud, cl_err_t *err);
/*
 * cl_ssh_wait_ready that also asks watch (NULL: never) before the first attempt and then every
 * poll_ms (cl_time_now_ms clock), between attempts and inside one (a TCP connect, a handshake
 * or an authentication waiting on a silent guest).  When watch gives up, so does the wait, at
 * once, with watch's err.
 */
cl_ssh_t *cl_ssh_wait_ready_watch(const cl_ssh_opts_t *opts, uint64_t deadline,
                                  cl_ssh_watch_fn watch, void *ud, unsigned poll_ms, cl_err_t *err);
/* Disconnect (bounded by CL_SSH_CLOSE_MS) and free.  NULL is allowed. */
void cl_ssh_free(cl_ssh_t *s);
const char *cl_ssh_host(const cl_ssh_t *s);
/* "SHA256:<base64>" of the guest's host key as last seen ("" before any connection) */
const char *cl_ssh_fingerprint(const cl_ssh_t *s);
/* 1 while a session is open (a dead one is noticed, and replaced, on the next operation) */
int cl_ssh_connected(const cl_ssh_t *s);
/* Successful connections of this cl_ssh_t so far: 1 plus the reconnections */
unsigned cl_ssh_connects(const cl_ssh_t *s);

/* ----------------------------------------------------------------------------------------- */
/* Commands and files                                                                        */
/* ----------------------------------------------------------------------------------------- */

/*
 * Run argv (argv[0] the program, NULL-terminated) on the guest: each word is single-quoted for
 * the guest's POSIX shell, so no value is ever interpreted.  Returns 0 when the command ran to
 * its end, whatever its exit status (see res); -1 and err (op "exec <argv[0]>") if it could
 * not be started, timed out (CL_ERR_TIMEOUT: the channel is closed, the remote process may
 * run on) or the connection died.  A session found dead before the command started is
 * reconnected (bounded by connect_ms and auth_ms) and the command sent once more; a command
 * cut off midway is never repeated.  res is overwritten, and may hold partial output after a
 * failure: cl_ssh_result_free it in any case.  Only argv[0] is logged: pass secrets as
 * ro->input, never as arguments (they would show in the guest's process list).
 */
int cl_ssh_run(cl_ssh_t *s, const char *const *argv, const cl_ssh_run_opts_t *ro,
               cl_ssh_result_t *res, cl_err_t *err);
/*
 * Run a multi-line script with CL_SSH_SCRIPT_SHELL: the script travels on stdin (so it is in
 * no process's arguments and may hold secrets; it is never logged), args (NULL-terminated, or
 * NULL) become $1... quoted as by cl_ssh_run.  name labels logs and errors (op "script
 * <name>").  ro->input must be NULL: the script is the stdin.
 */
int cl_ssh_run_script(cl_ssh_t *s, const char *name, const char *script, const char *const *args,
                      const cl_ssh_run_opts_t *ro, cl_ssh_result_t *res, cl_err_t *err);
void cl_ssh_result_free(cl_ssh_result_t *res); /* frees the buffers, not res; NULL-safe */

/*
 * Write data[0..len) to the absolute path on the guest with the given mode (e.g. 0640): sent
 * by SCP to "<path>.cl-tmp", then chmod and renamed over path, so readers see the old or the
 * new file, never a part.  The content is never logged.  0, or -1 and err (op "upload <path>").
 */
int cl_ssh_upload(cl_ssh_t *s, const char *path, const void *data, size_t len, unsigned mode,
                  cl_err_t *err);

/* ----------------------------------------------------------------------------------------- */
/* Host keys and quoting                                                                     */
/* ----------------------------------------------------------------------------------------- */

/*
 * Drop the pinned key of host:port from known_hosts (for a guest recreated with a new disk),
 * and its recorded incarnation, so the next connection pins afresh.  The number of pinned keys
 * removed (0 if none), or -1.
 */
int cl_ssh_forget_host(const char *known_hosts, const char *host, unsigned port, cl_err_t *err);
/*
 * Record which incarnation of a guest answers at host:port now: id is an opaque one-line text
 * that changes when the guest gets a new disk (so a new host key), e.g. where and in which
 * epoch its domain was defined.  It is kept beside the pin, as a comment line OpenSSH ignores
 * ("#cl-incarnation <[address]:port> <id>").  When the recorded id differs, the guest was
 * recreated (by another leader, say): its pin is dropped and the next connection pins the new
 * key.  With the same id the pin stays, and a changed key is still refused.  A pin without a
 * recorded id (made before ids were recorded, or since the last cl_ssh_forget_host, which
 * drops the id too) is kept and taken as id's.  The number of pins dropped (0: none), or -1.
 */
int cl_ssh_note_incarnation(const char *known_hosts, const char *host, unsigned port,
                            const char *id, cl_err_t *err);
/*
 * prefix (may be NULL) followed by argv's words, each single-quoted ('\'' for a quote), as one
 * malloc'ed command line; NULL if out of memory or longer than CL_SSH_CMD_MAX.
 */
char *cl_ssh_quote_argv(const char *prefix, const char *const *argv);

#endif
