/*
 * cl_ssh_exec: commands and file uploads over channels of a cl_ssh_t session (see cl_ssh.h).
 * Each command is one channel: the argv is quoted here for a POSIX shell, stdin is fed while
 * stdout and stderr are drained (capped), and the whole run is bounded by one deadline.
 * Uploads go by SCP to a temporary name, then a fixed script sets the mode and renames.
 */
#include "cl_ssh_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define WORD_MAX 48 /* how much of argv[0] names an operation in logs and errors */
/* cl_ssh_upload's second step: $1 mode, $2 the uploaded temporary file, $3 the destination */
#define INSTALL_SCRIPT "chmod \"$1\" \"$2\" && mv -f \"$2\" \"$3\" || { rm -f \"$2\"; exit 1; }"

enum { RUN_OK = 0, RUN_FAILED = -1, RUN_NOT_STARTED = -2 };

/* ========================================================================================= */
/* Commands                                                                                  */
/* ========================================================================================= */

char *cl_ssh_quote_argv(const char *prefix, const char *const *argv)
{
    size_t n = prefix ? strlen(prefix) : 0, i;
    const char *p;
    char *buf, *q;

    for (i = 0; argv && argv[i]; i++) {
        for (n += 3, p = argv[i]; *p; p++)
            n += *p == '\'' ? 4 : 1;
        if (n > CL_SSH_CMD_MAX)
            return NULL;
    }
    if (!(buf = malloc(n + 1)))
        return NULL;
    q = prefix ? stpcpy(buf, prefix) : buf;
    for (i = 0; argv && argv[i]; i++) {
        if (q != buf)
            *q++ = ' ';
        *q++ = '\'';
        for (p = argv[i]; *p; p++) {
            if (*p == '\'')
                q = stpcpy(q, "'\\''"); /* close, an escaped quote, reopen */
            else
                *q++ = *p;
        }
        *q++ = '\'';
    }
    *q = '\0';
    return buf;
}

/* The start of w, printable ASCII only, for logs and operation names. */
static const char *word_of(const char *w, char buf[WORD_MAX])
{
    size_t i;

    for (i = 0; w && w[i] && i < WORD_MAX - 1; i++)
        buf[i] = w[i] > ' ' && w[i] <= '~' ? w[i] : '?';
    buf[i] = '\0';
    return buf;
}

/* Captured output of one stream, capped at max bytes. */
typedef struct sink {
    char *p;
    size_t len, cap, max;
    int trunc;
} sink_t;

static int sink_add(sink_t *k, const char *d, size_t n)
{
    if (n > k->max - k->len) {
        k->trunc = 1;
        n = k->max - k->len;
    }
    if (k->len + n + 1 > k->cap) {
        size_t ncap = k->cap ? k->cap : 4096;
        char *np;
        while (ncap < k->len + n + 1)
            ncap *= 2;
        ncap = ncap > k->max + 1 ? k->max + 1 : ncap;
        if (!(np = realloc(k->p, ncap)))
            return -1;
        k->p = np;
        k->cap = ncap;
    }
    memcpy(k->p + k->len, d, n);
    k->len += n;
    k->p[k->len] = '\0';
    return 0;
}

/* Read what has come on one stream: 1 if something did, 0 if not, else a libssh2 error. */
static int drain(LIBSSH2_CHANNEL *ch, int stream, sink_t *k)
{
    char buf[32768];
    int got = 0;

    for (;;) {
        ssize_t n = libssh2_channel_read_ex(ch, stream, buf, sizeof(buf));
        if (n > 0 && sink_add(k, buf, (size_t)n) < 0)
            return LIBSSH2_ERROR_ALLOC;
        if (n > 0)
            got = 1;
        else if (n == 0 || n == LIBSSH2_ERROR_EAGAIN)
            return got;
        else
            return (int)n;
    }
}

/*
 * Run cmd on a new channel of the session, feeding it in[0..in_len) and capturing its output,
 * until deadline.  RUN_OK, RUN_FAILED, or RUN_NOT_STARTED if no channel could be opened (the
 * command never ran: it may be sent again).  A dead connection is dropped here.
 */
static int exec_once(cl_ssh_t *s, const char *op, const char *cmd, const void *in, size_t in_len,
                     uint64_t deadline, unsigned bound_ms, sink_t *out, sink_t *eout,
                     cl_ssh_result_t *res, cl_err_t *err)
{
    LIBSSH2_CHANNEL *ch = NULL;
    size_t off = 0, siglen = 0;
    int rc = 0, ret = RUN_FAILED, eof_sent = 0, dead = 0, progress, r1 = 0, r2 = 0, wdirs;
    char *sig = NULL;

    cl_ssh_io_reap(s);
    while (!(ch = libssh2_channel_open_session(s->sess)) &&
           (rc = libssh2_session_last_errno(s->sess)) == LIBSSH2_ERROR_EAGAIN &&
           cl_ssh_io_wait(s, 0, deadline))
        ;
    if (!ch) {
        ret = rc == LIBSSH2_ERROR_EAGAIN ? RUN_FAILED : RUN_NOT_STARTED;
        goto fail;
    }
    while ((rc = libssh2_channel_exec(ch, cmd)) == LIBSSH2_ERROR_EAGAIN &&
           cl_ssh_io_wait(s, 0, deadline))
        ;
    if (rc < 0)
        goto fail;
    for (;;) {
        progress = 0;
        wdirs = 0;
        if (off < in_len) {
            ssize_t w = libssh2_channel_write(ch, (const char *)in + off, in_len - off);
            if (w > 0) {
                off += (size_t)w;
                progress = 1;
            } else if (w < 0 && w != LIBSSH2_ERROR_EAGAIN) {
                if (cl_ssh_io_lost(rc = (int)w))
                    goto fail;
                off = in_len; /* the command closed its stdin: the rest is not wanted */
            } else if (libssh2_channel_eof(ch)) {
                off = in_len; /* it ended without reading all of its input */
            } else {
                wdirs = libssh2_session_block_directions(s->sess);
            }
        }
        if (off >= in_len && !eof_sent) {
            rc = libssh2_channel_send_eof(ch);
            if (rc == LIBSSH2_ERROR_EAGAIN)
                wdirs = libssh2_session_block_directions(s->sess);
            else if (rc < 0 && cl_ssh_io_lost(rc))
                goto fail;
            else
                eof_sent = progress = 1;
        }
        if ((r1 = drain(ch, 0, out)) < 0 || (r2 = drain(ch, SSH_EXTENDED_DATA_STDERR, eout)) < 0) {
            rc = r1 < 0 ? r1 : r2;
            goto fail;
        }
        if (eof_sent && libssh2_channel_eof(ch))
            break;
        if (!progress && !r1 && !r2 &&
            !cl_ssh_io_wait(s, wdirs | libssh2_session_block_directions(s->sess), deadline)) {
            rc = LIBSSH2_ERROR_EAGAIN;
            goto fail;
        }
    }
    /* the exit status comes before the guest closes the channel */
    while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN &&
           cl_ssh_io_wait(s, 0, deadline))
        ;
    if (rc < 0)
        goto fail;
    res->exit_status = libssh2_channel_get_exit_status(ch);
    if (libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 && sig) {
        snprintf(res->exit_signal, sizeof(res->exit_signal), "%.*s", (int)siglen, sig);
        res->exit_status = -1;
        libssh2_free(s->sess, sig);
    }
    cl_ssh_io_channel_drop(s, ch);
    return RUN_OK;

fail:
    if (rc == LIBSSH2_ERROR_EAGAIN)
        cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, op,
                   "not finished within %u ms; channel closed, the command may still run",
                   bound_ms);
    else if ((dead = cl_ssh_io_lost(rc)))
        cl_err_set(err, CL_ERR_SSH, CL_SSH_E_LOST, s->host, op, "connection lost%s: %s",
                   ret == RUN_NOT_STARTED ? " before the command started" : "", cl_ssh_io_msg(s));
    else if (!ch)
        cl_err_set(err, CL_ERR_SSH, rc, s->host, op, "cannot open a channel: %s", cl_ssh_io_msg(s));
    else
        cl_err_set(err, CL_ERR_SSH, rc, s->host, op, "%s", cl_ssh_io_msg(s));
    /* a session that cannot open a channel is of no further use either */
    if (dead || !ch)
        cl_ssh_io_drop(s, 0); /* frees the channel too */
    else
        cl_ssh_io_channel_drop(s, ch);
    return ret;
}

/* A command line (already quoted) run to its end, reconnecting first if the session died. */
static int run_cmd(cl_ssh_t *s, const char *op, const char *tag, const char *cmd, const void *in,
                   size_t in_len, const cl_ssh_run_opts_t *ro, cl_ssh_result_t *res, cl_err_t *err)
{
    unsigned bound = ro && ro->timeout_ms ? ro->timeout_ms : CL_SSH_EXEC_MS;
    sink_t out = {0}, eout = {0};
    uint64_t t0 = cl_time_now_ms();
    int fresh, attempt, rc = RUN_FAILED;
    cl_err_t e;

    memset(res, 0, sizeof(*res));
    out.max = eout.max = ro && ro->max_output ? ro->max_output : CL_SSH_OUTPUT_MAX;
    cl_err_clear(&e);
    for (attempt = 0; attempt < 2; attempt++) {
        if (cl_ssh_io_ensure(s, &fresh, &e) < 0)
            break;
        out.len = eout.len = 0;
        out.trunc = eout.trunc = 0;
        rc = exec_once(s, op, cmd, in, in_len, cl_time_now_ms() + bound, bound, &out, &eout, res,
                       &e);
        if (rc != RUN_NOT_STARTED || fresh)
            break;
        cl_log(CL_LOG_WARN, "-ssh-session-lost", "host=%s port=%u: %s; reconnecting", s->host,
               s->port, e.msg);
    }
    res->ms = cl_time_now_ms() - t0;
    if ((!out.p && !(out.p = calloc(1, 1))) || (!eout.p && !(eout.p = calloc(1, 1)))) {
        cl_err_sys(&e, s->host, op, "out of memory");
        rc = RUN_FAILED;
    }
    res->out = out.p;
    res->out_len = out.len;
    res->out_truncated = out.trunc;
    res->errout = eout.p;
    res->errout_len = eout.len;
    res->errout_truncated = eout.trunc;
    if (rc == RUN_OK) {
        cl_log(CL_LOG_DEBUG, "+ssh-exec", "host=%s %s exit=%d%s%s out=%zu err=%zu ms=%llu", s->host,
               tag, res->exit_status, res->exit_signal[0] ? " signal=" : "", res->exit_signal,
               res->out_len, res->errout_len, (unsigned long long)res->ms);
        return 0;
    }
    cl_log(CL_LOG_WARN, "-ssh-exec", "host=%s %s: %s", s->host, tag, e.msg);
    if (err)
        *err = e;
    return -1;
}

int cl_ssh_run(cl_ssh_t *s, const char *const *argv, const cl_ssh_run_opts_t *ro,
               cl_ssh_result_t *res, cl_err_t *err)
{
    char word[WORD_MAX], op[WORD_MAX + 8], tag[WORD_MAX + 8], *cmd;
    int rc;

    memset(res, 0, sizeof(*res));
    if (!s || !argv || !argv[0])
        return cl_err_set(err, CL_ERR_SSH, 0, cl_ssh_host(s), "exec", "no session or empty argv");
    snprintf(op, sizeof(op), "exec %s", word_of(argv[0], word));
    snprintf(tag, sizeof(tag), "cmd=%s", word);
    if (!(cmd = cl_ssh_quote_argv(NULL, argv)))
        return cl_err_set(err, CL_ERR_SSH, 0, s->host, op,
                          "command line longer than %u bytes (or out of memory)", CL_SSH_CMD_MAX);
    rc = run_cmd(s, op, tag, cmd, ro ? ro->input : NULL, ro && ro->input ? ro->input_len : 0, ro,
                 res, err);
    free(cmd);
    return rc;
}

int cl_ssh_run_script(cl_ssh_t *s, const char *name, const char *script, const char *const *args,
                      const cl_ssh_run_opts_t *ro, cl_ssh_result_t *res, cl_err_t *err)
{
    char word[WORD_MAX], op[WORD_MAX + 8], tag[WORD_MAX + 8], *cmd;
    static const char *const none[] = {NULL};
    int rc;

    memset(res, 0, sizeof(*res));
    snprintf(op, sizeof(op), "script %s", word_of(name ? name : "-", word));
    snprintf(tag, sizeof(tag), "script=%s", word);
    if (!s || !script || (ro && ro->input))
        return cl_err_set(err, CL_ERR_SSH, 0, cl_ssh_host(s), op,
                          "a script and no other input are needed: the script is the stdin");
    if (!(cmd = cl_ssh_quote_argv(CL_SSH_SCRIPT_SHELL " --", args ? args : none)))
        return cl_err_set(err, CL_ERR_SSH, 0, s->host, op,
                          "arguments longer than %u bytes (or out of memory)", CL_SSH_CMD_MAX);
    rc = run_cmd(s, op, tag, cmd, script, strlen(script), ro, res, err);
    free(cmd);
    return rc;
}

void cl_ssh_result_free(cl_ssh_result_t *res)
{
    if (!res)
        return;
    free(res->out);
    free(res->errout);
    res->out = res->errout = NULL;
    res->out_len = res->errout_len = 0;
}

/* ========================================================================================= */
/* Upload                                                                                    */
/* ========================================================================================= */

/* SCP data[0..len) to tmp on the guest, within deadline.  A dead connection is dropped here. */
static int scp_put(cl_ssh_t *s, const char *op, const char *tmp, const void *data, size_t len,
                   unsigned mode, uint64_t deadline, cl_err_t *err)
{
    LIBSSH2_CHANNEL *ch = NULL;
    char ack[256];
    size_t off = 0, got = 0, i;
    ssize_t n;
    int rc = 0, ret = -1;

    cl_ssh_io_reap(s);
    while (
        !(ch = libssh2_scp_send64(s->sess, tmp, (int)(mode & 0777), (libssh2_int64_t)len, 0, 0)) &&
        (rc = libssh2_session_last_errno(s->sess)) == LIBSSH2_ERROR_EAGAIN &&
        cl_ssh_io_wait(s, 0, deadline))
        ;
    if (!ch)
        goto cleanup;
    while (off < len + 1) { /* the data, then the '\0' that ends a file in the SCP protocol */
        n = libssh2_channel_write(ch, off < len ? (const char *)data + off : "",
                                  off < len ? len - off : 1);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN && (rc = (int)n))
            goto cleanup;
        else if (!cl_ssh_io_wait(s, 0, deadline) && (rc = LIBSSH2_ERROR_EAGAIN))
            goto cleanup;
    }
    /* the receiver's answer: '\0', or 1 or 2 and a message line */
    while (got == 0 || (ack[0] != 0 && !memchr(ack, '\n', got) && got < sizeof(ack) - 1)) {
        n = libssh2_channel_read(ch, ack + got, sizeof(ack) - 1 - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0 && libssh2_channel_eof(ch))
            break;
        else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN && (rc = (int)n))
            goto cleanup;
        else if (n <= 0 && !cl_ssh_io_wait(s, 0, deadline) && (rc = LIBSSH2_ERROR_EAGAIN))
            goto cleanup;
    }
    if (got == 0 || ack[0] != 0) {
        for (ack[got] = '\0', i = 1; i < got; i++)
            ack[i] = ack[i] >= ' ' && ack[i] <= '~' ? ack[i] : ' ';
        cl_err_set(err, CL_ERR_SSH, 0, s->host, op, "refused by scp on the guest: %s",
                   got > 1 ? ack + 1 : "no answer");
        rc = 0;
        goto cleanup;
    }
    while ((rc = libssh2_channel_send_eof(ch)) == LIBSSH2_ERROR_EAGAIN &&
           cl_ssh_io_wait(s, 0, deadline))
        ;
    if (rc == 0)
        while ((rc = libssh2_channel_wait_eof(ch)) == LIBSSH2_ERROR_EAGAIN &&
               cl_ssh_io_wait(s, 0, deadline))
            ;
    if (rc == 0)
        while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN &&
               cl_ssh_io_wait(s, 0, deadline))
            ;
    if (rc < 0)
        goto cleanup;
    if ((rc = libssh2_channel_get_exit_status(ch)) != 0) {
        cl_err_set(err, CL_ERR_SSH, 0, s->host, op, "scp on the guest exited with %d", rc);
        rc = 0;
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (rc == LIBSSH2_ERROR_EAGAIN)
        cl_err_set(err, CL_ERR_TIMEOUT, 0, s->host, op, "SCP transfer not done within %u ms",
                   CL_SSH_UPLOAD_MS);
    else if (rc == LIBSSH2_ERROR_SCP_PROTOCOL && !ch) /* libssh2 keeps scp's own words */
        cl_err_set(err, CL_ERR_SSH, rc, s->host, op,
                   "scp on the guest refused to create %s (missing or read-only directory?)", tmp);
    else if (rc < 0)
        cl_err_set(err, CL_ERR_SSH, cl_ssh_io_lost(rc) ? CL_SSH_E_LOST : rc, s->host, op, "scp: %s",
                   cl_ssh_io_msg(s));
    if (cl_ssh_io_lost(rc))
        cl_ssh_io_drop(s, 0); /* frees the channel too */
    else if (ch)
        cl_ssh_io_channel_drop(s, ch);
    return ret;
}

int cl_ssh_upload(cl_ssh_t *s, const char *path, const void *data, size_t len, unsigned mode,
                  cl_err_t *err)
{
    char op[160], tmp[4200], modestr[8];
    const char *argv[] = {"/bin/sh", "-c", INSTALL_SCRIPT, "cl-upload", modestr, tmp, path, NULL};
    cl_ssh_run_opts_t ro = {NULL, 0, CL_SSH_UPLOAD_MS, 4096};
    cl_ssh_result_t res = {0};
    uint64_t t0 = cl_time_now_ms();
    int fresh, attempt, rc = -1;
    char *cmd = NULL;
    cl_err_t e;

    cl_err_clear(&e);
    snprintf(op, sizeof(op), "upload %s", path ? path : "");
    if (!s || !path || path[0] != '/' || strchr(path, '\n') || strlen(path) > 4000 ||
        mode > 07777 || (!data && len))
        return cl_err_set(err, CL_ERR_SSH, 0, cl_ssh_host(s), op,
                          "an absolute path on one line, a mode and data are needed");
    snprintf(tmp, sizeof(tmp), "%s.cl-tmp", path);
    snprintf(modestr, sizeof(modestr), "%04o", mode);
    for (attempt = 0; attempt < 2; attempt++) {
        if (cl_ssh_io_ensure(s, &fresh, &e) < 0)
            goto cleanup;
        if (scp_put(s, op, tmp, data, len, mode, cl_time_now_ms() + CL_SSH_UPLOAD_MS, &e) == 0)
            break;
        if (s->sess || fresh || e.domain == CL_ERR_TIMEOUT)
            goto cleanup;
        /* the connection was found dead: an upload can be repeated, so reconnect once */
        cl_log(CL_LOG_WARN, "-ssh-session-lost", "host=%s port=%u: %s; reconnecting", s->host,
               s->port, e.msg);
    }
    if (attempt == 2)
        goto cleanup;
    if (!(cmd = cl_ssh_quote_argv(NULL, argv))) {
        cl_err_sys(&e, s->host, op, "out of memory");
        goto cleanup;
    }
    if (run_cmd(s, op, "cmd=cl-upload", cmd, NULL, 0, &ro, &res, &e) < 0)
        goto cleanup;
    if (res.exit_status != 0) {
        cl_err_set(&e, CL_ERR_SSH, 0, s->host, op, "cannot install the file (exit %d): %.200s",
                   res.exit_status, res.errout);
        goto cleanup;
    }
    cl_log(CL_LOG_INFO, "+ssh-upload", "host=%s path=%s bytes=%zu mode=%04o ms=%llu", s->host, path,
           len, mode, (unsigned long long)(cl_time_now_ms() - t0));
    rc = 0;

cleanup:
    free(cmd);
    cl_ssh_result_free(&res);
    if (rc < 0 && err)
        *err = e;
    return rc;
}
