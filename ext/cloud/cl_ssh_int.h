/*
 * cl_ssh_int: what the three files of the SSH layer share, and nothing else of the core uses:
 * cl_ssh.c (sessions: connecting, waiting, tearing down), cl_ssh_known.c (pinned host keys)
 * and cl_ssh_exec.c (commands and uploads over channels of a session).
 */
#ifndef CL_SSH_INT_H
#define CL_SSH_INT_H

#include <libssh2.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"
#include "cl_ssh.h"

#define CL_SSH_FP_MAX 64    /* "SHA256:" and 43 base64 characters, NUL included */
#define CL_SSH_PARKED_MAX 8 /* abandoned channels awaiting the guest's CLOSE, per session */

struct cl_ssh {
    char *host, *user, *key, *pubkey, *known_hosts; /* owned copies; pubkey NULL: derived */
    unsigned port, connect_ms, auth_ms;
    int fd;                                     /* -1 while disconnected */
    LIBSSH2_SESSION *sess;                      /* NULL while disconnected */
    unsigned connects;                          /* successful connections so far */
    char fp[CL_SSH_FP_MAX];                     /* the host key's fingerprint as last seen */
    LIBSSH2_CHANNEL *parked[CL_SSH_PARKED_MAX]; /* see cl_ssh_io_channel_drop */
    unsigned nparked;
    /* cl_ssh_wait_ready_watch's watch, set only while it runs (watch NULL otherwise) */
    cl_ssh_watch_fn watch;
    void *watch_ud;
    unsigned watch_ms;   /* the longest time between two calls while waiting */
    uint64_t watch_next; /* cl_time_now_ms of the next call */
    int watch_stopped;   /* it gave up: every wait ends at once */
    cl_err_t watch_err;  /* why */
};

/*
 * Wait until s's socket is ready in the directions dirs (LIBSSH2_SESSION_BLOCK_*; 0: those
 * libssh2 reports now).  1 while time is left (call libssh2 again), 0 at the deadline (or
 * when the watch of a cl_ssh_wait_ready_watch gave up).
 */
int cl_ssh_io_wait(cl_ssh_t *s, int dirs, uint64_t deadline);
/* libssh2's last error text of s (holds no secrets: no command or data is given to it). */
const char *cl_ssh_io_msg(cl_ssh_t *s);
/* Does the libssh2 code rc mean that the connection itself is gone or unusable? */
int cl_ssh_io_lost(int rc);
/* Close s's session (politely: with a disconnect message) and socket, within CL_SSH_CLOSE_MS. */
void cl_ssh_io_drop(cl_ssh_t *s, int polite);
/*
 * Close and free ch.  OpenSSH answers the CLOSE of a channel whose command still runs (one
 * abandoned at its timeout) only when the command's output is closed: such a channel is parked
 * once our CLOSE is out, and freed by cl_ssh_io_reap later, while the session goes on.  What
 * can neither finish within CL_SSH_CLOSE_MS nor be parked takes the session with it.
 */
void cl_ssh_io_channel_drop(cl_ssh_t *s, LIBSSH2_CHANNEL *ch);
/* Free the parked channels that the guest has closed since (never waits). */
void cl_ssh_io_reap(cl_ssh_t *s);
/* Open a session if s has none (the last one died); *fresh: this call opened it. */
int cl_ssh_io_ensure(cl_ssh_t *s, int *fresh, cl_err_t *err);

/*
 * Compare a guest's host key (the blob libssh2 received) with the one pinned for host:port in
 * file, or pin it on first contact.  fp gets its fingerprint; *permanent is set when
 * retrying cannot help (a changed key, an unusable file).
 */
int cl_ssh_known_check(const char *file, const char *host, unsigned port, const unsigned char *blob,
                       size_t blen, char fp[CL_SSH_FP_MAX], int *permanent, cl_err_t *err);

#endif
