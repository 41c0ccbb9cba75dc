/*
 * cl_ssh: SSH sessions to guests over libssh2 (see cl_ssh.h): connecting with bounded steps,
 * waiting for a booting guest, tearing down.  The socket is non-blocking and so is libssh2: a
 * call that would block returns EAGAIN and we poll the directions libssh2 waits for until a
 * cl_time_now_ms deadline, so no step can hang.  Commands are in cl_ssh_exec.c, host keys in
 * cl_ssh_known.c.
 */
#include "cl_ssh_int.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void do_init(void)
{
    init_rc = libssh2_init(0); /* once per process; never undone (libssh2_exit) */
}

/* ========================================================================================= */
/* Waiting and tearing down                                                                  */
/* ========================================================================================= */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/*
 * While cl_ssh_wait_ready_watch waits: ask its watch (every watch_ms at most) whether to go on.
 * 1: go on (no watch: always); 0: it gave up, for good (why: s->watch_err).
 */
static int watch_ok(cl_ssh_t *s)
{
    uint64_t now;

    if (!s->watch || s->watch_stopped)
        return !s->watch_stopped;
    now = cl_time_now_ms();
    if (now < s->watch_next)
        return 1;
    s->watch_next = now + s->watch_ms;
    cl_err_clear(&s->watch_err);
    if (s->watch(s->watch_ud, &s->watch_err) < 0)
        s->watch_stopped = 1;
    return !s->watch_stopped;
}

/* One poll of a wait ending at deadline (after now): 1 s at most, watch_ms while watched. */
static int slice_ms(const cl_ssh_t *s, uint64_t now, uint64_t deadline)
{
    uint64_t ms = min_u64(deadline - now, 1000);

    return (int)(s->watch ? min_u64(ms, s->watch_ms) : ms);
}

int cl_ssh_io_wait(cl_ssh_t *s, int dirs, uint64_t deadline)
{
    struct pollfd p = {s->fd, 0, 0};
    uint64_t now = cl_time_now_ms();
    int ms;

    if (now >= deadline || !watch_ok(s))
        return 0;
    if (!dirs)
        dirs = libssh2_session_block_directions(s->sess);
    ms = slice_ms(s, now, deadline);
    if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
        p.events |= POLLIN;
    if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
        p.events |= POLLOUT;
    if (!p.events) { /* EAGAIN without a direction: look again soon */
        p.events = POLLIN;
        ms = ms > 10 ? 10 : ms;
    }
    if (poll(&p, 1, ms) < 0 && errno != EINTR)
        return 0;
    return 1;
}

static int ssh_wait(cl_ssh_t *s, uint64_t deadline)
{
    return cl_ssh_io_wait(s, 0, deadline);
}

const char *cl_ssh_io_msg(cl_ssh_t *s)
{
    char *m = NULL;

    if (s->sess)
        libssh2_session_last_error(s->sess, &m, NULL, 0);
    return m && *m ? m : "unknown libssh2 error";
}

int cl_ssh_io_lost(int rc)
{
    switch (rc) {
    case LIBSSH2_ERROR_SOCKET_NONE:
    case LIBSSH2_ERROR_BANNER_RECV:
    case LIBSSH2_ERROR_BANNER_SEND:
    case LIBSSH2_ERROR_INVALID_MAC:
    case LIBSSH2_ERROR_KEX_FAILURE:
    case LIBSSH2_ERROR_SOCKET_SEND:
    case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
    case LIBSSH2_ERROR_TIMEOUT:
    case LIBSSH2_ERROR_DECRYPT:
    case LIBSSH2_ERROR_SOCKET_DISCONNECT:
    case LIBSSH2_ERROR_PROTO:
    case LIBSSH2_ERROR_SOCKET_TIMEOUT:
    case LIBSSH2_ERROR_SOCKET_RECV:
    case LIBSSH2_ERROR_ENCRYPT:
    case LIBSSH2_ERROR_BAD_SOCKET: return 1;
    default: return 0;
    }
}

void cl_ssh_io_reap(cl_ssh_t *s)
{
    unsigned i = 0;

    while (s->sess && i < s->nparked) {
        if (libssh2_channel_free(s->parked[i]) == LIBSSH2_ERROR_EAGAIN)
            i++;
        else /* freed (libssh2 frees it after any other outcome too) */
            s->parked[i] = s->parked[--s->nparked];
    }
}

void cl_ssh_io_drop(cl_ssh_t *s, int polite)
{
    uint64_t deadline = cl_time_now_ms() + CL_SSH_CLOSE_MS;
    int rc = 0, n;

    if (s->sess) {
        while (polite && libssh2_session_disconnect(s->sess, "closing") == LIBSSH2_ERROR_EAGAIN &&
               ssh_wait(s, deadline))
            ;
        /* with the socket shut, whatever libssh2 still sends or awaits fails at once */
        if (s->fd >= 0)
            shutdown(s->fd, SHUT_RDWR);
        for (n = 0; n < 100 && (rc = libssh2_session_free(s->sess)) == LIBSSH2_ERROR_EAGAIN; n++)
            ;
        if (rc == LIBSSH2_ERROR_EAGAIN)
            cl_log(CL_LOG_WARN, "-ssh-leak", "host=%s: libssh2 session not freed", s->host);
        s->sess = NULL;
        s->nparked = 0; /* freed with the session */
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

void cl_ssh_io_channel_drop(cl_ssh_t *s, LIBSSH2_CHANNEL *ch)
{
    uint64_t deadline = cl_time_now_ms() + CL_SSH_CLOSE_MS;
    int rc, out = 0;

    /* our CLOSE goes out whole first: libssh2 must not be left mid-packet */
    while ((rc = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN &&
           (out = libssh2_session_block_directions(s->sess) & LIBSSH2_SESSION_BLOCK_OUTBOUND) &&
           ssh_wait(s, deadline))
        ;
    if (rc == LIBSSH2_ERROR_EAGAIN && !out && s->nparked < CL_SSH_PARKED_MAX) {
        s->parked[s->nparked++] = ch; /* only the guest's CLOSE is awaited */
        return;
    }
    if (rc == 0)
        while ((rc = libssh2_channel_free(ch)) == LIBSSH2_ERROR_EAGAIN && ssh_wait(s, deadline))
            ;
    if (rc != 0) {
        cl_log(CL_LOG_WARN, "-ssh-channel", "host=%s: channel not closed (%d), session dropped",
               s->host, rc);
        cl_ssh_io_drop(s, 0); /* frees the channel too */
    }
}

/* ========================================================================================= */
/* Connecting                                                                                */
/* ========================================================================================= */

/* A non-blocking TCP connection to host:port into s->fd, within deadline. */
static int tcp_connect(cl_ssh_t *s, uint64_t deadline, unsigned bound_ms, cl_err_t *err)
{
    struct addrinfo hints, *ai = NULL;
    socklen_t sl = sizeof(int);
    char port[16];
    int fd = -1, rc = -1, soerr = 0, one = 1, gai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", s->port);
    if ((gai = getaddrinfo(s->host, port, &hints, &ai)) != 0)
        return cl_err_set(err, CL_ERR_SSH, 0, s->host, "connect", "not a numeric address: %s",
                          gai_strerror(gai));
    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        cl_err_sys(err, s->host, "connect", "socket");
        goto cleanup;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* many small packets */
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        cl_err_sys(err, s->host, "connect", "port %u", s->port);
        goto cleanup;
    }
    for (;;) {
        struct pollfd p = {fd, POLLOUT, 0};
        uint64_t now = cl_time_now_ms();
        int n;
        if (now >= deadline || !watch_ok(s)) {
            cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, "connect",
                       "no TCP connection to port %u within %u ms", s->port, bound_ms);
            goto cleanup;
        }
        n = poll(&p, 1, slice_ms(s, now, deadline));
        if (n < 0 && errno != EINTR) {
            cl_err_sys(err, s->host, "connect", "poll");
            goto cleanup;
        }
        if (n > 0)
            break;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        errno = soerr ? soerr : errno;
        cl_err_sys(err, s->host, "connect", "port %u", s->port);
        goto cleanup;
    }
    s->fd = fd;
    fd = -1;
    rc = 0;

cleanup:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

static int authenticate(cl_ssh_t *s, uint64_t deadline, unsigned bound_ms, int *permanent,
                        cl_err_t *err)
{
    int rc;

    while ((rc = libssh2_userauth_publickey_fromfile_ex(s->sess, s->user, (unsigned)strlen(s->user),
                                                        s->pubkey, s->key, NULL)) ==
               LIBSSH2_ERROR_EAGAIN &&
           ssh_wait(s, deadline))
        ;
    if (rc == 0)
        return 0;
    if (rc == LIBSSH2_ERROR_EAGAIN)
        return cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, "auth",
                          "no answer to authentication within %u ms", bound_ms);
    if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED)
        return cl_err_set(err, CL_ERR_SSH, CL_SSH_E_AUTH_REFUSED, s->host, "auth",
                          "public key %s refused for user %s", s->key, s->user);
    *permanent = rc == LIBSSH2_ERROR_FILE;
    return cl_err_set(err, CL_ERR_SSH, rc, s->host, "auth", "key %s for user %s: %s", s->key,
                      s->user, cl_ssh_io_msg(s));
}

/*
 * Ask for host key algorithms in a fixed order, so that a guest presents the same key each
 * time.  Only names this libssh2 supports are given: 1.10 corrupts memory (an overlapping
 * memcpy) when it filters out names it does not know.
 */
static void hostkey_pref(LIBSSH2_SESSION *sess)
{
    static const char *const want[] = {"ssh-ed25519",
                                       "ecdsa-sha2-nistp256",
                                       "ecdsa-sha2-nistp384",
                                       "ecdsa-sha2-nistp521",
                                       "rsa-sha2-512",
                                       "rsa-sha2-256",
                                       "ssh-rsa"};
    const char **algs = NULL;
    char pref[256] = "";
    int n = libssh2_session_supported_algs(sess, LIBSSH2_METHOD_HOSTKEY, &algs), j;
    size_t i;

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        for (j = 0; j < n; j++)
            if (strcmp(want[i], algs[j]) == 0)
                snprintf(pref + strlen(pref), sizeof(pref) - strlen(pref), "%s%s",
                         pref[0] ? "," : "", want[i]);
    if (n > 0 && algs)
        libssh2_free(sess, algs);
    if (pref[0])
        libssh2_session_method_pref(sess, LIBSSH2_METHOD_HOSTKEY, pref);
}

/*
 * One attempt: TCP, handshake, host key, authentication, each bounded by its timeout and by
 * limit.  *permanent is set when retrying cannot help.
 */
static int ssh_open(cl_ssh_t *s, uint64_t limit, int *permanent, cl_err_t *err)
{
    uint64_t t0 = cl_time_now_ms(), dl, now;
    const unsigned char *blob;
    unsigned bound;
    size_t blen = 0;
    int rc, htype;

    *permanent = 0;
    dl = min_u64(t0 + s->connect_ms, limit);
    if (tcp_connect(s, dl, (unsigned)(dl > t0 ? dl - t0 : 0), err) < 0)
        goto fail;
    if (!(s->sess = libssh2_session_init_ex(NULL, NULL, NULL, s))) {
        cl_err_set(err, CL_ERR_SSH, 0, s->host, "connect", "cannot create a libssh2 session");
        goto fail;
    }
    libssh2_session_set_blocking(s->sess, 0);
    hostkey_pref(s->sess);
    now = cl_time_now_ms();
    dl = min_u64(now + s->auth_ms, limit);
    bound = (unsigned)(dl > now ? dl - now : 0);
    while ((rc = libssh2_session_handshake(s->sess, s->fd)) == LIBSSH2_ERROR_EAGAIN &&
           ssh_wait(s, dl))
        ;
    if (rc == LIBSSH2_ERROR_EAGAIN) {
        cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, "connect",
                   "no SSH handshake on port %u within %u ms (banner or key exchange)", s->port,
                   bound);
        goto fail;
    }
    if (rc < 0) {
        cl_err_set(err, CL_ERR_SSH, rc, s->host, "connect", "handshake on port %u: %s", s->port,
                   cl_ssh_io_msg(s));
        goto fail;
    }
    blob = (const unsigned char *)libssh2_session_hostkey(s->sess, &blen, &htype);
    if (cl_ssh_known_check(s->known_hosts, s->host, s->port, blob, blen, s->fp, permanent, err) <
            0 ||
        authenticate(s, dl, bound, permanent, err) < 0)
        goto fail;
    s->connects++;
    cl_log(CL_LOG_INFO, "+ssh-connect", "host=%s port=%u user=%s hostkey=%s n=%u ms=%llu", s->host,
           s->port, s->user, s->fp, s->connects, (unsigned long long)(cl_time_now_ms() - t0));
    return 0;

fail:
    cl_ssh_io_drop(s, 0);
    if (s->watch_stopped) { /* not a timeout: the watch gave up on the guest */
        if (err)
            *err = s->watch_err;
        *permanent = 1;
    }
    return -1;
}

static cl_ssh_t *ssh_new(const cl_ssh_opts_t *o, cl_err_t *err)
{
    const char *host = o ? o->host : NULL;
    char pub[4200];
    cl_ssh_t *s;

    pthread_once(&init_once, do_init);
    if (init_rc != 0) {
        cl_err_set(err, CL_ERR_SSH, init_rc, host, "connect", "libssh2_init failed");
        return NULL;
    }
    if (!o || !o->host || !o->key || !o->known_hosts || !o->host[0] || strlen(o->host) > 100) {
        cl_err_set(err, CL_ERR_SSH, 0, host, "connect", "host, key and known_hosts are needed");
        return NULL;
    }
    if (access(o->key, R_OK) < 0) {
        cl_err_sys(err, host, "auth", "private key %s", o->key);
        return NULL;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        cl_err_sys(err, host, "connect", "out of memory");
        return NULL;
    }
    s->fd = -1;
    s->port = o->port ? o->port : 22;
    s->connect_ms = o->connect_ms ? o->connect_ms : CL_SSH_CONNECT_MS;
    s->auth_ms = o->auth_ms ? o->auth_ms : CL_SSH_AUTH_MS;
    snprintf(pub, sizeof(pub), "%s.pub", o->key);
    s->host = strdup(o->host);
    s->user = strdup(o->user ? o->user : "root");
    s->key = strdup(o->key);
    s->known_hosts = strdup(o->known_hosts);
    s->pubkey = access(pub, R_OK) == 0 ? strdup(pub) : NULL; /* else libssh2 derives it */
    if (!s->host || !s->user || !s->key || !s->known_hosts) {
        cl_err_sys(err, host, "connect", "out of memory");
        cl_ssh_free(s);
        return NULL;
    }
    return s;
}

cl_ssh_t *cl_ssh_connect(const cl_ssh_opts_t *opts, cl_err_t *err)
{
    cl_ssh_t *s = ssh_new(opts, err);
    int permanent;

    if (s && ssh_open(s, UINT64_MAX, &permanent, err) < 0) {
        cl_ssh_free(s);
        return NULL;
    }
    return s;
}

/* Sleep ms milliseconds of real time (whatever the clock source), in slices while watched. */
static void backoff_sleep(cl_ssh_t *s, uint64_t ms)
{
    while (ms > 0 && watch_ok(s)) {
        uint64_t step = s->watch ? min_u64(ms, s->watch_ms) : ms;
        struct timespec ts = {(time_t)(step / 1000), (long)(step % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        ms -= step;
    }
}

cl_ssh_t *cl_ssh_wait_ready_watch(const cl_ssh_opts_t *opts, uint64_t deadline,
                                  cl_ssh_watch_fn watch, void *ud, unsigned poll_ms, cl_err_t *err)
{
    uint64_t t0 = cl_time_now_ms(), pause = CL_SSH_BACKOFF_MIN_MS, now;
    cl_ssh_t *s = ssh_new(opts, err);
    unsigned attempts = 0;
    int permanent = 0;
    cl_err_t last;

    if (!s)
        return NULL;
    s->watch = watch;
    s->watch_ud = ud;
    s->watch_ms = poll_ms ? poll_ms : 1;
    cl_err_clear(&last);
    for (;;) {
        if (!watch_ok(s)) {
            last = s->watch_err;
            permanent = 1;
            break;
        }
        attempts++;
        cl_err_clear(&last);
        if (ssh_open(s, deadline, &permanent, &last) == 0) {
            s->watch = NULL; /* the session outlives the wait; ud may not */
            cl_log(CL_LOG_INFO, "+ssh-ready", "host=%s port=%u attempts=%u ms=%llu", s->host,
                   s->port, attempts, (unsigned long long)(cl_time_now_ms() - t0));
            return s;
        }
        cl_log(CL_LOG_DEBUG, "-ssh-not-ready", "host=%s port=%u attempt=%u: %s: %s", s->host,
               s->port, attempts, last.op, last.msg);
        if (permanent || (now = cl_time_now_ms()) >= deadline)
            break;
        backoff_sleep(s, min_u64(pause, deadline - now));
        pause = min_u64(pause * 2, CL_SSH_BACKOFF_MAX_MS);
        if (!s->watch_stopped && cl_time_now_ms() >= deadline)
            break;
    }
    if (permanent && err)
        *err = last;
    else
        cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, "wait ready",
                   "no SSH session on port %u within %llu ms (%u attempts); last: %s: %s", s->port,
                   (unsigned long long)(deadline > t0 ? deadline - t0 : 0), attempts, last.op,
                   last.msg);
    if (s->watch_stopped)
        cl_log(CL_LOG_INFO, "-ssh-wait-abandoned", "host=%s port=%u attempts=%u ms=%llu: %s",
               s->host, s->port, attempts, (unsigned long long)(cl_time_now_ms() - t0), last.msg);
    cl_ssh_free(s);
    return NULL;
}

cl_ssh_t *cl_ssh_wait_ready(const cl_ssh_opts_t *opts, uint64_t deadline, cl_err_t *err)
{
    return cl_ssh_wait_ready_watch(opts, deadline, NULL, NULL, 0, err);
}

void cl_ssh_free(cl_ssh_t *s)
{
    if (!s)
        return;
    cl_ssh_io_drop(s, 1);
    free(s->host);
    free(s->user);
    free(s->key);
    free(s->pubkey);
    free(s->known_hosts);
    free(s);
}

const char *cl_ssh_host(const cl_ssh_t *s)
{
    return s ? s->host : "";
}

const char *cl_ssh_fingerprint(const cl_ssh_t *s)
{
    return s ? s->fp : "";
}

int cl_ssh_connected(const cl_ssh_t *s)
{
    return s && s->sess != NULL;
}

unsigned cl_ssh_connects(const cl_ssh_t *s)
{
    return s ? s->connects : 0;
}

int cl_ssh_io_ensure(cl_ssh_t *s, int *fresh, cl_err_t *err)
{
    int permanent;

    *fresh = 0;
    if (s->sess)
        return 0;
    *fresh = 1;
    return ssh_open(s, UINT64_MAX, &permanent, err);
}
