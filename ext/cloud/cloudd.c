/*
 * cloudd: the per-host daemon.  It owns the host's hypervisor connections (libvirt's test
 * driver held open in embedded mode), serves the root-only control socket, runs the leader's
 * work, and in embedded mode exits once the last cloud is stopped.  The main thread runs
 * libvirt's event loop; each request is served by a thread of its own (the ops: cloudd_ops.c;
 * the command line: cloudd_opts.c); the engine serialises mutations.
 */
#include "cloudd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <libvirt/libvirt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cl_bully.h"
#include "cl_ctl.h"
#include "cl_engine.h"
#include "cl_err.h"
#include "cl_exec.h"
#include "cl_log.h"
#include "cl_metrics.h"
#include "cl_monitor.h"
#include "cl_net.h"
#include "cl_peers.h"
#include "cl_spec.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_virt.h"

#define CLOUDD_REQUEST_MS 10000   /* a client must send its request within this */
#define CLOUDD_IDLE_CHECK_MS 2000 /* embedded mode: how often to check for idleness */

/* the command line, and the daemon's one engine, monitor and peer layer (cloudd_int.h) */
cloudd_opts_t cloudd_opt;
cl_engine_t *cloudd_engine;
cl_monitor_t *cloudd_monitor;
cl_peers_t *cloudd_peers;

static cl_metrics_server_t *metrics_srv; /* NULL: no --metrics */

static int listen_fd = -1;
static int wake_pipe[2] = {-1, -1};
static atomic_int quit_flag;
static atomic_int active;
static atomic_ullong last_activity_ms;
static atomic_int last_stopped; /* embedded: a stop left no cloud; the loop decides to exit */
static int listen_watch = -1;
static ino_t sock_ino; /* our socket file: never unlink a successor's */

/* ========================================================================================== */
/* Requests                                                                                   */
/* ========================================================================================== */

typedef struct conn {
    int fd;
} conn_t;

static void send_line(int fd, json_object *o)
{
    cl_err_t err;

    cl_err_clear(&err);
    if (cl_ctl_write(fd, o, CL_CTL_STATUS_MS, &err) < 0)
        cl_log(CL_LOG_DEBUG, "-client", "could not write to a client: %s", err.msg);
}

#define CLOUDD_BATCH_BYTES 32768

static void out_flush(cloudd_out_t *o)
{
    size_t off = 0;

    while (off < o->n) {
        ssize_t w = send(o->fd, o->p + off, o->n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {o->fd, POLLOUT, 0};
            if (poll(&pfd, 1, CL_CTL_STATUS_MS) > 0)
                continue;
        }
        if (w < 0) {
            cl_log(CL_LOG_DEBUG, "-client", "could not write to a client: %s", strerror(errno));
            break; /* the client is gone or stuck: the work goes on, its progress is dropped */
        }
        off += (size_t)w;
    }
    o->n = 0;
}

void cloudd_on_progress(void *ud, json_object *ev)
{
    cloudd_out_t *o = ud;
    const char *t;
    size_t len;

    if (!ev) {
        out_flush(o);
        return;
    }
    if (o->fd < 0) {
        if (o->collect)
            json_object_array_add(o->collect, json_object_get(ev));
        return;
    }
    t = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN);
    len = strlen(t);
    if (o->n + len + 1 > o->cap) {
        size_t cap = (o->n + len + 1) * 2;
        char *np = realloc(o->p, cap);
        if (!np) {
            out_flush(o);
            send_line(o->fd, ev);
            return;
        }
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->n, t, len);
    o->p[o->n + len] = '\n';
    o->n += len + 1;
    if (o->n >= CLOUDD_BATCH_BYTES)
        out_flush(o);
}

static void wake_loop(void)
{
    char c = 'w';

    if (write(wake_pipe[1], &c, 1) < 0) {
        /* the loop also wakes on its idle timer */
    }
}

void cloudd_request_quit(void)
{
    atomic_store(&quit_flag, 1);
    wake_loop();
}

/* Remove the socket file if it is still ours (a successor may have bound the path). */
static void unlink_socket(void)
{
    struct stat st;

    if (stat(cloudd_opt.socket_path, &st) == 0 && st.st_ino == sock_ino)
        unlink(cloudd_opt.socket_path);
}

/*
 * Embedded mode leaves once no cloud is left.  Decided on the main thread, which alone accepts
 * connections: with no request in flight, closing the listening socket first means no request
 * can arrive between the decision and the exit (queued connections are reset, and clients
 * start a new daemon).
 */
static void embedded_check(void)
{
    uint64_t idle = cl_time_now_ms() - atomic_load(&last_activity_ms);

    if (!cloudd_opt.embedded || atomic_load(&active) != 0 || atomic_load(&quit_flag))
        return;
    if (cl_engine_cloud_count(cloudd_engine) != 0) {
        atomic_store(&last_stopped, 0);
        return;
    }
    if (!atomic_load(&last_stopped) && idle < cloudd_opt.idle_exit_ms)
        return;
    cl_log(CL_LOG_INFO, "-exit", "embedded mode: %s",
           atomic_load(&last_stopped) ? "the last cloud is stopped" : "no cloud for a while");
    if (listen_watch >= 0)
        virEventRemoveHandle(listen_watch);
    listen_watch = -1;
    close(listen_fd);
    listen_fd = -1;
    unlink_socket();
    atomic_store(&quit_flag, 1);
}

/*
 * A request is over (the one `active` counted): an embedded daemon whose last cloud it stopped
 * may now exit, decided on the event loop.
 */
static void request_done(int stopped)
{
    atomic_store(&last_activity_ms, cl_time_now_ms());
    if (stopped && cloudd_opt.embedded && cl_engine_cloud_count(cloudd_engine) == 0)
        atomic_store(&last_stopped, 1);
    atomic_fetch_sub(&active, 1);
    if (stopped)
        wake_loop();
}

static void *serve(void *arg)
{
    conn_t *c = arg;
    cl_ctl_reader_t rd;
    json_object *req = NULL, *res = NULL;
    cloudd_out_t out = {c->fd, NULL, 0, 0, NULL};
    cl_err_t err;
    int stopped = 0, n;

    cl_err_clear(&err);
    cl_ctl_reader_init(&rd, c->fd);
    n = cl_ctl_read(&rd, CLOUDD_REQUEST_MS, &req, &err);
    if (n <= 0) {
        if (n == 0)
            cl_err_set(&err, CL_ERR_PROTO, 0, NULL, "request", "empty request");
        res = cl_ctl_error_json(&err);
    } else {
        res = cloudd_dispatch(&out, req, &stopped, &err);
        if (!res)
            res = cl_ctl_error_json(&err);
    }
    if (err.domain && err.domain != CL_ERR_PROTO)
        cl_log(CL_LOG_WARN, "-request", "%s%s%s: %s", err.host, err.host[0] ? ": " : "", err.op,
               err.msg);
    out_flush(&out);
    free(out.p);
    send_line(c->fd, res);
    cl_log_flush();
    json_object_put(req);
    json_object_put(res);
    cl_ctl_reader_free(&rd);
    close(c->fd);
    free(c);
    request_done(stopped);
    return NULL;
}

/*
 * A control request handed over by the peer layer (from a machine outside the pool, checked
 * there): served like one from the socket, its progress events collected for the answer.
 */
static json_object *peer_control(void *ud, json_object *req, json_object *events, cl_err_t *err)
{
    cloudd_out_t out = {-1, NULL, 0, 0, events};
    json_object *res;
    int stopped = 0;

    (void)ud;
    atomic_fetch_add(&active, 1);
    atomic_store(&last_activity_ms, cl_time_now_ms());
    res = cloudd_dispatch(&out, req, &stopped, err);
    cl_log_flush();
    request_done(stopped);
    return res;
}

/* ========================================================================================== */
/* Event loop callbacks                                                                       */
/* ========================================================================================== */

static void on_accept(int watch, int fd, int events, void *ud)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    pthread_attr_t attr;
    pthread_t th;
    conn_t *c;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (cfd < 0)
        return;
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        cl_log(CL_LOG_WARN, "-client", "refused a control connection from uid %d", (int)cred.uid);
        close(cfd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(cfd);
        return;
    }
    c->fd = cfd;
    atomic_fetch_add(&active, 1);
    atomic_store(&last_activity_ms, cl_time_now_ms());
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, serve, c) != 0) {
        atomic_fetch_sub(&active, 1);
        close(cfd);
        free(c);
    }
    pthread_attr_destroy(&attr);
}

static void on_wake(int watch, int fd, int events, void *ud)
{
    char buf[64];

    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    embedded_check();
}

static void on_idle_timer(int timer, void *ud)
{
    cl_log_flush();
    embedded_check();
}

/* Self-healing: the peers' fencing and liveness checks, on the loop; buffered log lines out. */
static void on_tick(int timer, void *ud)
{
    if (cloudd_peers)
        cl_peers_tick(cloudd_peers);
    cl_log_flush();
}

static void on_peers_watch(void *ud, const char *cloud, const char *why)
{
    cl_monitor_poke(cloudd_monitor, cloud, NULL, why);
}

/* A domain stopped here, of a cloud another member leads: its monitor is told. */
static int forward_poke(void *ud, const char *cloud, const char *slot)
{
    cl_err_t err;

    cl_err_clear(&err);
    if (!cloudd_peers)
        return -1;
    if (cl_peers_poke_leader(cloudd_peers, cloud, slot, &err) < 0) {
        cl_log(CL_LOG_DEBUG, "-forward", "cloud=%s slot=%s %s", cloud, slot, err.msg);
        return -1;
    }
    return 0;
}

/* Every hypervisor connection the engine opens: its domain events go to the monitor. */
static void on_conn(void *ud, cl_virt_t *v)
{
    cl_err_t err;

    cl_err_clear(&err);
    if (cl_virt_watch(v, cl_monitor_on_domain, cloudd_monitor, &err) < 0)
        cl_log(CL_LOG_WARN, "-watch", "uri=%s no domain events (the sweep still runs): %s",
               cl_virt_uri(v), err.msg);
    else
        cl_log(CL_LOG_INFO, "+watch", "uri=%s domain events on", cl_virt_uri(v));
}

static void on_signal(int sig)
{
    char c = 's';

    atomic_store(&quit_flag, 1);
    if (write(wake_pipe[1], &c, 1) < 0) {
    }
}

/* ========================================================================================== */
/* Start-up                                                                                   */
/* ========================================================================================== */

/* After a restart, take part again in the elections of the clouds this host knows. */
static void rejoin_clouds(void)
{
    char **names = NULL;
    size_t n = 0, i;
    cl_err_t err;

    cl_err_clear(&err);
    if (cl_state_list(cloudd_opt.state_dir, &names, &n, &err) < 0)
        return;
    for (i = 0; i < n; i++) {
        json_object *state = NULL, *v;
        cl_spec_t *spec = NULL;
        if (cl_state_load(cloudd_opt.state_dir, names[i], &state, &err) > 0 &&
            json_object_object_get_ex(state, "spec", &v) && cl_spec_parse(v, &spec, &err) == 0 &&
            spec->npool > 1 && cl_engine_is_member(cloudd_engine, spec) &&
            cl_peers_join(cloudd_peers, spec, &err) < 0)
            cl_log(CL_LOG_WARN, "-join", "cloud=%s %s", names[i], err.msg);
        cl_spec_free(spec);
        json_object_put(state);
    }
    cl_state_names_free(names);
}

static int make_socket(cl_err_t *err)
{
    struct sockaddr_un sa;
    char tmp[PATH_MAX], dir[PATH_MAX];
    int fd, probe;
    struct stat st;

    if (strlen(cloudd_opt.socket_path) >= sizeof(sa.sun_path))
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "listen", "socket path too long");
    snprintf(tmp, sizeof(tmp), "%s", cloudd_opt.socket_path);
    snprintf(dir, sizeof(dir), "%s", dirname(tmp));
    if (stat(dir, &st) < 0) {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return cl_err_sys(err, NULL, "listen", "mkdir %s", dir);
    }
    /* Another daemon on this socket?  A stale socket file is removed. */
    {
        cl_err_t e2;
        if (cl_ctl_connect(cloudd_opt.socket_path, 500, &probe, &e2) == 0) {
            close(probe);
            return cl_err_set(err, CL_ERR_SYS, EADDRINUSE, NULL, "listen",
                              "a cloudd already answers on %s", cloudd_opt.socket_path);
        }
    }
    unlink(cloudd_opt.socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cl_err_sys(err, NULL, "listen", "socket");
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cloudd_opt.socket_path);
    {
        mode_t old = umask(0077);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (rc < 0) {
            cl_err_sys(err, NULL, "listen", "bind %s", cloudd_opt.socket_path);
            close(fd);
            return -1;
        }
    }
    chmod(cloudd_opt.socket_path, 0600);
    {
        struct stat st;
        if (stat(cloudd_opt.socket_path, &st) == 0)
            sock_ino = st.st_ino;
    }
    if (listen(fd, 64) < 0) {
        cl_err_sys(err, NULL, "listen", "listen %s", cloudd_opt.socket_path);
        close(fd);
        return -1;
    }
    listen_fd = fd;
    return 0;
}

int main(int argc, char **argv)
{
    cl_engine_opts_t eo;
    cl_engine_peers_t peer_hooks;
    cl_err_t err;
    int ready_pipe[2] = {-1, -1};
    int rc = 1, idle_timer = -1, tick_timer = -1;
    char logbuf[PATH_MAX];

    cl_err_clear(&err);
    /*
     * Few malloc arenas: the daemon's threads (requests, the monitor, libvirt's workers) would
     * otherwise each grow one, and a watching leader's memory is mostly that (BENCHMARKS.md).
     */
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    if (cloudd_opts_parse(&cloudd_opt, argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (cloudd_opt.daemonize) {
        pid_t pid;
        char c = 0;
        if (pipe(ready_pipe) < 0) {
            perror("cloudd: pipe");
            return 1;
        }
        pid = fork();
        if (pid < 0) {
            perror("cloudd: fork");
            return 1;
        }
        if (pid > 0) {
            /* The parent returns once the daemon answers on its socket (or has failed). */
            close(ready_pipe[1]);
            if (read(ready_pipe[0], &c, 1) == 1 && c == 'R')
                return 0;
            fprintf(stderr, "cloudd: the daemon failed to start (see its log)\n");
            return 1;
        }
        close(ready_pipe[0]);
        setsid();
        if (!cloudd_opt.log_path) {
            snprintf(logbuf, sizeof(logbuf), "%s/cloudd.log", cloudd_opt.state_dir);
            cloudd_opt.log_path = logbuf;
        }
    }
    if (cl_state_init(cloudd_opt.state_dir, &err) < 0) {
        fprintf(stderr, "cloudd: %s\n", err.msg);
        goto out;
    }
    if (cloudd_opt.log_path) {
        FILE *fp = fopen(cloudd_opt.log_path, "a");
        if (!fp) {
            fprintf(stderr, "cloudd: cannot open log %s: %s\n", cloudd_opt.log_path,
                    strerror(errno));
            goto out;
        }
        setvbuf(fp, NULL, _IOFBF, 65536); /* cl_log flushes (see CL_LOG_FLUSH_MS) */
        cl_log_set_stream(fp);
        if (cloudd_opt.daemonize) {
            int nul = open("/dev/null", O_RDWR);
            if (nul >= 0) {
                dup2(nul, 0);
                dup2(fileno(fp), 1);
                dup2(fileno(fp), 2);
                close(nul);
            }
        }
    }
    if (cloudd_opt.debug)
        cl_log_set_level(CL_LOG_DEBUG);
    cl_log_set_tag(cloudd_opt.addresses.n ? cloudd_opt.addresses.v[0] : "cloudd");

    if (virEventRegisterDefaultImpl() < 0) {
        cl_log(CL_LOG_ERR, "-start", "cannot register libvirt's event loop");
        goto out;
    }
    cl_virt_global_init();
    cl_virt_set_autodestroy(!cloudd_opt.no_autodestroy);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = cloudd_opt.state_dir;
    eo.self = &cloudd_opt.addresses;
    if (cl_state_init(cloudd_opt.state_dir, &err) < 0)
        goto fail_start;
    if (cloudd_opt.addresses.n > 0) {
        /* a peer identity: this daemon takes part in the elections of pools of several hosts */
        cloudd_peers = cl_peers_new(cloudd_opt.addresses.v[0], cloudd_opt.peer_port,
                                    cloudd_opt.state_dir, &err);
        if (cloudd_peers) {
            cl_peers_set_timers(cloudd_peers, &cloudd_opt.timers);
            cl_peers_set_fence_ms(cloudd_peers, cloudd_opt.fence_ms);
            cl_peers_hooks(cloudd_peers, &peer_hooks);
            peer_hooks.destroy_ms =
                cloudd_opt.destroy_ms < 0 ? CL_FENCE_DESTROY_MS : (uint64_t)cloudd_opt.destroy_ms;
            cl_peers_set_control(cloudd_peers, peer_control, NULL);
            eo.peers = &peer_hooks;
        } else {
            /* clouds of one host still work; pools of several are refused, saying why */
            cl_log(CL_LOG_WARN, "-peers", "no peer layer: %s%s%s", err.op, err.op[0] ? ": " : "",
                   err.msg);
            cl_err_clear(&err);
        }
    }
    if (cl_engine_new(&eo, &cloudd_engine, &err) < 0 || make_socket(&err) < 0 ||
        (cloudd_peers && (cl_peers_set_engine(cloudd_peers, cloudd_engine),
                          cl_peers_register(cloudd_peers, &err) < 0))) {
    fail_start:;
        char buf[1024];
        cl_log(CL_LOG_ERR, "-start", "%s", cl_err_format(&err, buf, sizeof(buf)));
        if (!cloudd_opt.log_path || cloudd_opt.daemonize)
            fprintf(stderr, "cloudd: %s\n", buf);
        goto out;
    }
    if (!cloudd_opt.no_monitor) {
        cl_monitor_opts_t mo;
        memset(&mo, 0, sizeof(mo));
        mo.engine = cloudd_engine;
        mo.sweep_ms = cloudd_opt.sweep_ms;
        mo.no_sweep = cloudd_opt.no_sweep;
        mo.forward = forward_poke;
        cloudd_monitor = cl_monitor_new(&mo, &err);
        if (!cloudd_monitor)
            goto fail_start;
        cl_engine_set_conn_hook(cloudd_engine, on_conn, NULL);
        if (cloudd_peers)
            cl_peers_set_watch(cloudd_peers, on_peers_watch, NULL);
    }
    if (cloudd_opt.metrics_at) {
        cl_metrics_daemon_opts_t mo = {.engine = cloudd_engine,
                                       .monitor = cloudd_monitor,
                                       .peers = cloudd_peers,
                                       .version = CLOUDD_VERSION,
                                       .listen = cloudd_opt.metrics_at,
                                       .allow_any = cloudd_opt.metrics_any};
        if (!(metrics_srv = cl_metrics_daemon_start(&mo, &err)))
            goto fail_start;
    }
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        cl_log(CL_LOG_ERR, "-start", "pipe: %s", strerror(errno));
        goto out;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    listen_watch = virEventAddHandle(listen_fd, VIR_EVENT_HANDLE_READABLE, on_accept, NULL, NULL);
    if (listen_watch < 0 ||
        virEventAddHandle(wake_pipe[0], VIR_EVENT_HANDLE_READABLE, on_wake, NULL, NULL) < 0) {
        cl_log(CL_LOG_ERR, "-start", "cannot watch the control socket");
        goto out;
    }
    atomic_store(&last_activity_ms, cl_time_now_ms());
    /* the housekeeping timer: buffered log lines out, embedded-mode exit check */
    idle_timer = virEventAddTimeout(CLOUDD_IDLE_CHECK_MS, on_idle_timer, NULL, NULL);
    tick_timer = virEventAddTimeout(CL_MONITOR_TICK_MS, on_tick, NULL, NULL);
    if (cloudd_opt.pid_path) {
        FILE *fp = fopen(cloudd_opt.pid_path, "w");
        if (fp) {
            fprintf(fp, "%d\n", (int)getpid());
            fclose(fp);
        }
    }
    if (cloudd_peers)
        rejoin_clouds();
    cl_log(CL_LOG_INFO, "+start", "cloudd %s pid=%d socket=%s state=%s%s", CLOUDD_VERSION,
           (int)getpid(), cloudd_opt.socket_path, cloudd_opt.state_dir,
           cloudd_opt.embedded ? " embedded" : "");
    cl_log_flush();
    if (ready_pipe[1] >= 0) {
        char c = 'R';
        if (write(ready_pipe[1], &c, 1) < 0) {
        }
        close(ready_pipe[1]);
        ready_pipe[1] = -1;
    }
    while (!atomic_load(&quit_flag))
        if (virEventRunDefaultImpl() < 0)
            break;
    /* Let requests in flight finish (bounded). */
    {
        uint64_t deadline = cl_time_now_ms() + 5000;
        if (listen_fd >= 0)
            close(listen_fd);
        listen_fd = -1;
        while (atomic_load(&active) > 0 && cl_time_now_ms() < deadline)
            usleep(10000);
    }
    cl_log(CL_LOG_INFO, "-stop", "cloudd exits");
    cl_log_flush();
    rc = 0;

out:
    if (idle_timer >= 0)
        virEventRemoveTimeout(idle_timer);
    if (tick_timer >= 0)
        virEventRemoveTimeout(tick_timer);
    if (sock_ino)
        unlink_socket();
    if (cloudd_opt.pid_path && rc == 0)
        unlink(cloudd_opt.pid_path);
    if (ready_pipe[1] >= 0)
        close(ready_pipe[1]);
    cl_metrics_server_free(metrics_srv); /* its thread reads the monitor, peers and engine */
    /* the engine is left to the OS if requests are still running */
    if (atomic_load(&active) == 0) {
        cl_monitor_free(cloudd_monitor); /* before the engine it uses */
        cl_peers_free(cloudd_peers);
        cl_engine_free(cloudd_engine);
    }
    cl_addrs_free(&cloudd_opt.addresses);
    return rc;
}
