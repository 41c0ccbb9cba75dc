/*
 * cl_ctl: framing, bounded I/O and the client side of the control protocol (see cl_ctl.h).
 */
#include "cl_ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_time.h"
#include "cl_timeouts.h"

const char *cl_ctl_socket_path(const char *explicit_path)
{
    const char *env = getenv("CLOUD_SOCKET");

    if (explicit_path && *explicit_path)
        return explicit_path;
    if (env && *env)
        return env;
    return CL_CTL_DEFAULT_SOCKET;
}

static int wait_fd_c(int fd, short events, uint64_t deadline, volatile int *cancel, cl_err_t *err,
                     const char *op)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        uint64_t now = cl_time_now_ms();
        int n, slice;
        if (cancel && *cancel)
            return cl_err_set(err, CL_ERR_TIMEOUT, EINTR, NULL, op, "interrupted");
        if (now >= deadline)
            return cl_err_set(err, CL_ERR_TIMEOUT, 0, NULL, op, "no answer from cloudd in time");
        slice = (int)(deadline - now);
        if (cancel && slice > CL_CTL_SLICE_MS)
            slice = CL_CTL_SLICE_MS;
        n = poll(&p, 1, slice);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cl_err_sys(err, NULL, op, "poll");
        if (n > 0)
            return 0;
    }
}

static int wait_fd(int fd, short events, uint64_t deadline, cl_err_t *err, const char *op)
{
    return wait_fd_c(fd, events, deadline, NULL, err, op);
}

int cl_ctl_connect(const char *path, unsigned timeout_ms, int *fd, cl_err_t *err)
{
    struct sockaddr_un sa;
    int s, rc;

    *fd = -1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return cl_err_set(err, CL_ERR_SYS, ENAMETOOLONG, NULL, "connect cloudd",
                          "socket path too long: %s", path);
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return cl_err_sys(err, NULL, "connect cloudd", "socket");
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    rc = connect(s, (struct sockaddr *)&sa, sizeof(sa));
    if (rc < 0 && errno == EINPROGRESS) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (wait_fd(s, POLLOUT, cl_time_now_ms() + timeout_ms, err, "connect cloudd") < 0) {
            close(s);
            return -1;
        }
        getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        errno = soerr;
        rc = soerr ? -1 : 0;
    }
    if (rc < 0) {
        cl_err_sys(err, NULL, "connect cloudd", "%s", path);
        close(s);
        return -1;
    }
    *fd = s;
    return 0;
}

int cl_ctl_write(int fd, json_object *obj, unsigned timeout_ms, cl_err_t *err)
{
    const char *text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(text), off = 0;
    uint64_t deadline = cl_time_now_ms() + timeout_ms;
    char *line = malloc(len + 2);

    if (!line)
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "write", "out of memory");
    memcpy(line, text, len);
    line[len++] = '\n';
    while (off < len) {
        ssize_t w = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline, err, "write") < 0)
                goto fail;
            continue;
        }
        if (w < 0) {
            cl_err_sys(err, NULL, "write", "send");
            goto fail;
        }
        off += (size_t)w;
    }
    free(line);
    return 0;

fail:
    free(line);
    return -1;
}

void cl_ctl_reader_init(cl_ctl_reader_t *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
}

void cl_ctl_reader_free(cl_ctl_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->off = 0;
}

/* Only blanks may follow the object on its line: "{..} {..}" is not one request. */
static int only_blanks(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return 0;
    return 1;
}

int cl_ctl_read(cl_ctl_reader_t *r, unsigned timeout_ms, json_object **obj, cl_err_t *err)
{
    uint64_t deadline = cl_time_now_ms() + timeout_ms;

    *obj = NULL;
    for (;;) {
        char *nl = r->len > r->off ? memchr(r->buf + r->off, '\n', r->len - r->off) : NULL;
        ssize_t n;
        if (nl) {
            json_tokener *tok = json_tokener_new_ex(64);
            size_t llen = (size_t)(nl - (r->buf + r->off));
            json_object *o;
            if (!tok)
                return cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "read", "out of memory");
            o = json_tokener_parse_ex(tok, r->buf + r->off, (int)llen);
            if (!o || json_tokener_get_error(tok) != json_tokener_success ||
                !json_object_is_type(o, json_type_object) ||
                !only_blanks(r->buf + r->off + json_tokener_get_parse_end(tok), nl)) {
                json_tokener_free(tok);
                json_object_put(o);
                return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "read",
                                  "a line is not a JSON object");
            }
            json_tokener_free(tok);
            r->off += llen + 1;
            *obj = o;
            return 1;
        }
        if (r->off) {
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        if (r->len >= CL_CTL_MAX_LINE)
            return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "read", "line longer than %u bytes",
                              CL_CTL_MAX_LINE);
        if (r->cap - r->len < 4096) {
            size_t cap = r->cap ? r->cap * 2 : 65536;
            char *nb = realloc(r->buf, cap);
            if (!nb)
                return cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "read", "out of memory");
            r->buf = nb;
            r->cap = cap;
        }
        n = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            if (r->len)
                return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "read", "connection closed mid-line");
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd_c(r->fd, POLLIN, deadline, r->cancel, err, "read") < 0)
                return -1;
            continue;
        }
        return cl_err_sys(err, NULL, "read", "recv");
    }
}

int cl_ctl_error_from(json_object *answer, cl_err_t *err)
{
    json_object *e = NULL, *v;
    const char *dom = "proto", *host = "", *op = "", *msg = "cloudd reported an error";
    int code = 0;

    if (json_object_object_get_ex(answer, "error", &e) &&
        json_object_is_type(e, json_type_object)) {
        if (json_object_object_get_ex(e, "domain", &v))
            dom = json_object_get_string(v);
        if (json_object_object_get_ex(e, "host", &v) && json_object_is_type(v, json_type_string))
            host = json_object_get_string(v);
        if (json_object_object_get_ex(e, "operation", &v) &&
            json_object_is_type(v, json_type_string))
            op = json_object_get_string(v);
        if (json_object_object_get_ex(e, "message", &v) && json_object_is_type(v, json_type_string))
            msg = json_object_get_string(v);
        if (json_object_object_get_ex(e, "code", &v))
            code = json_object_get_int(v);
    }
    return cl_err_set(err, cl_err_domain_from_name(dom), code, host, op, "%s", msg);
}

json_object *cl_ctl_error_json(const cl_err_t *err)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();

    json_object_object_add(e, "domain", json_object_new_string(cl_err_domain_name(err->domain)));
    json_object_object_add(e, "code", json_object_new_int(err->code));
    json_object_object_add(e, "host", json_object_new_string(err->host));
    json_object_object_add(e, "operation", json_object_new_string(err->op));
    json_object_object_add(e, "message", json_object_new_string(err->msg));
    json_object_object_add(o, "ok", json_object_new_boolean(0));
    json_object_object_add(o, "error", e);
    return o;
}

int cl_ctl_call(const char *path, json_object *req, unsigned timeout_ms, cl_ctl_progress_fn fn,
                void *ud, json_object **final, cl_err_t *err)
{
    return cl_ctl_call_ex(path, req, timeout_ms, fn, ud, NULL, final, err);
}

int cl_ctl_call_ex(const char *path, json_object *req, unsigned timeout_ms, cl_ctl_progress_fn fn,
                   void *ud, volatile int *cancel, json_object **final, cl_err_t *err)
{
    cl_ctl_reader_t rd;
    json_object *line = NULL, *v;
    int fd = -1, rc = -1, n;

    *final = NULL;
    cl_ctl_reader_init(&rd, -1);
    if (cl_ctl_connect(path, CL_CTL_CONNECT_MS, &fd, err) < 0)
        goto cleanup;
    rd.fd = fd;
    rd.cancel = cancel;
    if (cl_ctl_write(fd, req, timeout_ms, err) < 0)
        goto cleanup;
    for (;;) {
        n = cl_ctl_read(&rd, timeout_ms, &line, err);
        if (n < 0)
            goto cleanup;
        if (n == 0) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, "read",
                       "cloudd closed the connection without an answer");
            goto cleanup;
        }
        if (json_object_object_get_ex(line, "progress", &v) && json_object_get_boolean(v)) {
            if (fn && fn(ud, line) != 0) {
                cl_err_set(err, CL_ERR_TIMEOUT, 0, NULL, "wait", "interrupted");
                goto cleanup;
            }
            json_object_put(line);
            line = NULL;
            continue;
        }
        break;
    }
    if (!json_object_object_get_ex(line, "ok", &v) || !json_object_get_boolean(v)) {
        cl_ctl_error_from(line, err);
        goto cleanup;
    }
    *final = line;
    line = NULL;
    rc = 0;

cleanup:
    json_object_put(line);
    cl_ctl_reader_free(&rd);
    if (fd >= 0)
        close(fd);
    return rc;
}
