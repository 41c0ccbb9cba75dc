/*
 * cl_metrics_http: the metrics endpoint, a deliberately tiny HTTP/1.x server (see cl_metrics.h).
 * One thread polls the listening socket and at most CL_METRICS_CONN_MAX connections, each a
 * small state machine (read the request head, write the answer, drain what the client still
 * sends, close), every step bounded in bytes and time: a slow or silent client holds its slot
 * for io_ms at most, and while every slot is taken new clients wait in the listen queue.  Only
 * GET/HEAD /metrics; every answer says Connection: close.
 */
#include "cl_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_log.h"
#include "cl_time.h"

#define DRAIN_MS 1000 /* after an answer: what the client still sends is read and dropped */

enum { C_FREE, C_READ, C_WRITE, C_DRAIN };

typedef struct mconn {
    int state;
    int fd;
    char req[CL_METRICS_REQUEST_MAX + 1];
    size_t rn;
    char *out; /* the whole answer, head and body */
    size_t on, off;
    uint64_t deadline; /* ms, cl_time_real_us's clock */
} mconn_t;

/* The status codes counted, in this order. */
static const int codes[] = {200, 400, 404, 405, 408, 431, 500};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

struct cl_metrics_server {
    int lfd;
    int wake[2];
    pthread_t thread;
    int started;
    unsigned port;
    unsigned io_ms;
    cl_metrics_collect_fn collect;
    void *ud;
    void (*ud_free)(void *ud);
    mconn_t conns[CL_METRICS_CONN_MAX];
    atomic_ullong answers[NCODES];
};

static uint64_t now_ms(void)
{
    return cl_time_real_us() / 1000u;
}

/* ========================================================================================== */
/* Addresses                                                                                  */
/* ========================================================================================== */

int cl_metrics_loopback(const char *addr)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 0;
}

int cl_metrics_parse_listen(const char *spec, char *addr, size_t len, unsigned *port, cl_err_t *err)
{
    char host[64];
    const char *p, *colon;
    char *end;
    unsigned long v;
    struct in6_addr a6;
    struct in_addr a4;

    if (!spec || !*spec)
        goto bad;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
            goto bad;
        snprintf(host, sizeof(host), "%.*s", (int)(close - spec - 1), spec + 1);
        p = close + 2;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            goto bad;
    } else if ((colon = strrchr(spec, ':')) != NULL) {
        if (strchr(spec, ':') != colon || (size_t)(colon - spec) >= sizeof(host))
            goto bad; /* a bare IPv6 address needs its brackets */
        snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
        p = colon + 1;
        if (!host[0] || strcmp(host, "localhost") == 0)
            snprintf(host, sizeof(host), "127.0.0.1");
        else if (inet_pton(AF_INET, host, &a4) != 1)
            goto bad;
    } else {
        snprintf(host, sizeof(host), "127.0.0.1");
        p = spec;
    }
    if (*p < '0' || *p > '9')
        goto bad;
    v = strtoul(p, &end, 10);
    if (*end || v > 65535)
        goto bad;
    if (strlen(host) >= len)
        goto bad;
    snprintf(addr, len, "%s", host);
    *port = (unsigned)v;
    return 0;

bad:
    return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "--metrics",
                      "'%s' is not ADDR:PORT, [IPV6]:PORT or PORT (a numeric address)",
                      spec ? spec : "");
}

/* A non-loopback address without allow_any: -1 and err. */
static int refuse(const char *addr, cl_err_t *err)
{
    return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "--metrics",
                      "%s is not a loopback address: the metrics endpoint has no "
                      "authentication (add --metrics-any to serve it there anyway)",
                      addr);
}

int cl_metrics_check_listen(const char *spec, int allow_any, cl_err_t *err)
{
    char addr[64];
    unsigned port;

    if (cl_metrics_parse_listen(spec, addr, sizeof(addr), &port, err) < 0)
        return -1;
    return !allow_any && !cl_metrics_loopback(addr) ? refuse(addr, err) : 0;
}

/* ========================================================================================== */
/* Answers                                                                                    */
/* ========================================================================================== */

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

static void count(cl_metrics_server_t *s, int code)
{
    size_t i;

    for (i = 0; i < NCODES; i++)
        if (codes[i] == code)
            atomic_fetch_add(&s->answers[i], 1);
}

/* A whole answer (new; NULL: out of memory).  body may be NULL (HEAD: head only, its length). */
static char *answer(int code, const char *ctype, const char *body, size_t blen, int head_only,
                    size_t *len)
{
    char head[512];
    int hl;
    char *out;

    hl = snprintf(head, sizeof(head),
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                  "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                  code, reason(code), ctype, blen, code == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (hl < 0 || (size_t)hl >= sizeof(head))
        return NULL;
    if (head_only)
        blen = 0;
    out = malloc((size_t)hl + blen + 1);
    if (!out)
        return NULL;
    memcpy(out, head, (size_t)hl);
    if (blen)
        memcpy(out + hl, body, blen);
    out[hl + blen] = '\0';
    *len = (size_t)hl + blen;
    return out;
}

static void close_conn(mconn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    c->out = NULL;
    c->fd = -1;
    c->state = C_FREE;
}

/* Send what the socket takes now; 1 when all of it is out, 0 if more remains, -1 on error. */
static int push(mconn_t *c)
{
    while (c->off < c->on) {
        ssize_t w = send(c->fd, c->out + c->off, c->on - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w <= 0)
            return -1;
        c->off += (size_t)w;
    }
    return 1;
}

/* The answer is out: stop writing, read and drop what the client may still send, then close. */
static void drain(cl_metrics_server_t *s, mconn_t *c)
{
    uint64_t limit = now_ms() + (s->io_ms < DRAIN_MS ? s->io_ms : DRAIN_MS);

    shutdown(c->fd, SHUT_WR);
    free(c->out);
    c->out = NULL;
    c->state = C_DRAIN;
    c->deadline = limit;
}

/* Start writing an answer (code; body for 200 only); the connection goes to C_WRITE. */
static void respond(cl_metrics_server_t *s, mconn_t *c, int code, const char *body, size_t blen,
                    int head_only)
{
    char msg[80];

    if (code != 200) {
        snprintf(msg, sizeof(msg), "%s\n", reason(code));
        body = msg;
        blen = strlen(msg);
    }
    c->out = answer(code, code == 200 ? CL_METRICS_CONTENT_TYPE : "text/plain; charset=utf-8", body,
                    blen, head_only, &c->on);
    c->off = 0;
    count(s, code);
    if (!c->out) {
        close_conn(c);
        return;
    }
    c->state = C_WRITE;
    c->deadline = now_ms() + s->io_ms;
    switch (push(c)) { /* small answers leave at once */
    case 1: drain(s, c); break;
    case -1: close_conn(c); break;
    default: break;
    }
}

/* The end of the request head in c->req, or NULL if it has not come yet. */
static const char *head_end(mconn_t *c)
{
    const char *e = strstr(c->req, "\r\n\r\n");
    const char *f = strstr(c->req, "\n\n");

    return e && (!f || e < f) ? e : f;
}

static void serve_request(cl_metrics_server_t *s, mconn_t *c)
{
    char method[16], target[1024], version[16];
    const char *line_end = strpbrk(c->req, "\r\n");
    size_t n = line_end ? (size_t)(line_end - c->req) : 0;
    char line[CL_METRICS_REQUEST_MAX + 1];
    char *q;
    cl_metrics_buf_t b;
    int head_only;

    memcpy(line, c->req, n);
    line[n] = '\0';
    if (sscanf(line, "%15s %1023s %15s", method, target, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0 || strchr(line, '\t') != NULL) {
        respond(s, c, 400, NULL, 0, 0);
        return;
    }
    {
        /* exactly three words, one space apart */
        size_t words = 1, i;
        for (i = 0; i < n; i++)
            words += line[i] == ' ';
        if (words != 3) {
            respond(s, c, 400, NULL, 0, 0);
            return;
        }
    }
    head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head_only) {
        respond(s, c, 405, NULL, 0, 0);
        return;
    }
    if ((q = strchr(target, '?')) != NULL)
        *q = '\0'; /* a query string is ignored */
    if (strcmp(target, "/metrics") != 0) {
        respond(s, c, 404, NULL, 0, head_only);
        return;
    }
    cl_metrics_buf_init(&b);
    if (s->collect(s->ud, s, &b) < 0 || b.oom) {
        cl_metrics_buf_free(&b);
        respond(s, c, 500, NULL, 0, head_only);
        return;
    }
    respond(s, c, 200, b.p ? b.p : "", b.n, head_only);
    cl_metrics_buf_free(&b);
}

static void on_readable(cl_metrics_server_t *s, mconn_t *c)
{
    char sink[4096];

    for (;;) {
        ssize_t r;
        if (c->state == C_DRAIN) {
            r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (r > 0)
                continue;
        } else {
            if (c->rn >= CL_METRICS_REQUEST_MAX) {
                respond(s, c, 431, NULL, 0, 0);
                return;
            }
            r = recv(c->fd, c->req + c->rn, CL_METRICS_REQUEST_MAX - c->rn, MSG_DONTWAIT);
            if (r > 0) {
                c->rn += (size_t)r;
                c->req[c->rn] = '\0';
                if (memchr(c->req, '\0', c->rn)) {
                    respond(s, c, 400, NULL, 0, 0); /* a NUL byte in a request head */
                    return;
                }
                if (head_end(c)) {
                    serve_request(s, c);
                    return;
                }
                continue;
            }
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close_conn(c); /* the client closed (before its request was whole), or an error */
        return;
    }
}

/* ========================================================================================== */
/* The thread                                                                                 */
/* ========================================================================================== */

/* Accept while a slot is free; the others wait in the listen queue until one is. */
static void accept_all(cl_metrics_server_t *s)
{
    size_t i;

    for (i = 0; i < CL_METRICS_CONN_MAX; i++) {
        int fd;
        if (s->conns[i].state != C_FREE)
            continue;
        fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        memset(&s->conns[i], 0, sizeof(s->conns[i]));
        s->conns[i].fd = fd;
        s->conns[i].state = C_READ;
        s->conns[i].deadline = now_ms() + s->io_ms;
    }
}

static void *run(void *arg)
{
    cl_metrics_server_t *s = arg;
    struct pollfd pfd[CL_METRICS_CONN_MAX + 2];
    int map[CL_METRICS_CONN_MAX + 2];

    for (;;) {
        uint64_t now = now_ms(), next = UINT64_MAX;
        int n = 0, timeout, i;

        pfd[n].fd = s->wake[0];
        pfd[n].events = POLLIN;
        map[n++] = -1;
        pfd[n].fd = s->lfd;
        pfd[n].events = 0; /* POLLIN below, while a slot is free */
        map[n++] = -1;
        for (i = 0; i < CL_METRICS_CONN_MAX; i++) {
            mconn_t *c = &s->conns[i];
            if (c->state == C_FREE)
                continue;
            if (c->deadline <= now) {
                if (c->state == C_READ) {
                    respond(s, c, 408, NULL, 0, 0); /* best effort: then drained or closed */
                    if (c->state == C_WRITE)
                        close_conn(c);
                } else {
                    close_conn(c);
                }
                if (c->state == C_FREE)
                    continue;
            }
            pfd[n].fd = c->fd;
            pfd[n].events = c->state == C_WRITE ? POLLOUT : POLLIN;
            map[n++] = i;
            if (c->deadline < next)
                next = c->deadline;
        }
        for (i = 0; i < CL_METRICS_CONN_MAX; i++)
            if (s->conns[i].state == C_FREE)
                pfd[1].events = POLLIN;
        timeout = next == UINT64_MAX ? -1 : next > now ? (int)(next - now) : 0;
        if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            break; /* cl_metrics_server_free */
        for (i = 2; i < n; i++) {
            mconn_t *c = &s->conns[map[i]];
            if (!pfd[i].revents || c->state == C_FREE)
                continue;
            if (c->state == C_WRITE) {
                int r = push(c);
                if (r < 0)
                    close_conn(c);
                else if (r > 0)
                    drain(s, c);
            } else {
                on_readable(s, c);
            }
        }
        if (pfd[1].revents & POLLIN)
            accept_all(s); /* after the closes above: their slots are free again */
    }
    return NULL;
}

/* ========================================================================================== */
/* API                                                                                        */
/* ========================================================================================== */

cl_metrics_server_t *cl_metrics_server_new(const cl_metrics_server_opts_t *o, cl_err_t *err)
{
    cl_metrics_server_t *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1;
    size_t i;

    if (!s) {
        if (o->ud_free)
            o->ud_free(o->ud);
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics", "out of memory");
        return NULL;
    }
    s->lfd = s->wake[0] = s->wake[1] = -1;
    for (i = 0; i < CL_METRICS_CONN_MAX; i++)
        s->conns[i].fd = -1;
    s->io_ms = o->io_ms ? o->io_ms : CL_METRICS_IO_MS;
    s->collect = o->collect;
    s->ud = o->ud;
    s->ud_free = o->ud_free;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, o->address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)o->port);
        sl = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, o->address, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        ss.ss_family = AF_INET6;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)o->port);
        sl = sizeof(struct sockaddr_in6);
    } else {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "--metrics", "'%s' is not a numeric address",
                   o->address);
        goto fail;
    }
    if (!o->allow_any && !cl_metrics_loopback(o->address)) {
        refuse(o->address, err);
        goto fail;
    }
    if (!o->collect) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics", "no collector");
        goto fail;
    }
    s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s->lfd < 0) {
        cl_err_sys(err, NULL, "--metrics", "socket");
        goto fail;
    }
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0) {
        cl_err_sys(err, NULL, "--metrics", "bind %s port %u", o->address, o->port);
        goto fail;
    }
    if (listen(s->lfd, 16) < 0) {
        cl_err_sys(err, NULL, "--metrics", "listen");
        goto fail;
    }
    sl = sizeof(ss);
    if (getsockname(s->lfd, (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                : ((struct sockaddr_in6 *)&ss)->sin6_port);
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        cl_err_sys(err, NULL, "metrics", "pipe");
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics", "cannot start the metrics thread");
        goto fail;
    }
    s->started = 1;
    return s;

fail:
    cl_metrics_server_free(s);
    return NULL;
}

void cl_metrics_server_free(cl_metrics_server_t *s)
{
    size_t i;

    if (!s)
        return;
    if (s->started) {
        char c = 'q';
        if (write(s->wake[1], &c, 1) < 0) {
        }
        pthread_join(s->thread, NULL);
    }
    for (i = 0; i < CL_METRICS_CONN_MAX; i++)
        if (s->conns[i].state != C_FREE || s->conns[i].fd >= 0)
            close_conn(&s->conns[i]);
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    if (s->ud_free)
        s->ud_free(s->ud);
    free(s);
}

unsigned cl_metrics_server_port(const cl_metrics_server_t *s)
{
    return s ? s->port : 0;
}

uint64_t cl_metrics_server_answers(cl_metrics_server_t *s, int code)
{
    size_t i;

    for (i = 0; s && i < NCODES; i++)
        if (codes[i] == code)
            return atomic_load(&s->answers[i]);
    return 0;
}
