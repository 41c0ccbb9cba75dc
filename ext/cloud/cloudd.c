/*
 * cloudd: the per-host daemon.  It owns the host's hypervisor connections (holding libvirt's
 * test driver open in embedded mode), serves the root-only control socket, runs the leader's
 * work for the clouds it leads, and in embedded mode exits once the last cloud is stopped.
 * The main thread runs libvirt's event loop (control socket, timers, domain events); each
 * control connection is served by a thread of its own; the engine serialises mutations.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

#define CLOUDD_VERSION "0.1.0"
#define CLOUDD_REQUEST_MS 10000    /* a client must send its request within this */
#define CLOUDD_IDLE_CHECK_MS 2000  /* embedded mode: how often to check for idleness */
#define CLOUDD_LEADER_WAIT_MS 2000 /* "leader" right after joining waits this long for one */
#define CLOUDD_IDLE_EXIT_MS 60000  /* embedded mode: exit when no cloud and idle this long */

static struct {
    const char *socket_path;
    const char *state_dir;
    const char *log_path;
    const char *pid_path;
    int embedded;
    int daemonize;
    int debug;
    unsigned idle_exit_ms;
    unsigned peer_port;
    cl_bully_config_t timers; /* zeros: the defaults of cl_timeouts.h */
    cl_addrs_t addresses;
    unsigned fence_ms;  /* 0: CL_FENCE_SELF_MS */
    long destroy_ms;    /* -1: CL_FENCE_DESTROY_MS */
    unsigned sweep_ms;  /* 0: CL_MONITOR_SWEEP_MS */
    int no_sweep;       /* events and pokes only */
    int no_monitor;     /* no self-healing at all (Puppet and cloudctl monitor only) */
    int allow_faults;   /* the "fault" op: chaos tests on the embedded hypervisor */
    int no_autodestroy; /* VMs outlive this daemon (no dead man's switch) */
} opt;

static cl_engine_t *engine;
static cl_monitor_t *monitor; /* NULL: --no-monitor */
static cl_peers_t *peers;     /* NULL: no peer identity (--address), single-host clouds only */

static const char *metrics_at;           /* --metrics ADDR:PORT (NULL: no metrics endpoint) */
static int metrics_any;                  /* --metrics-any: a non-loopback address is accepted */
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

/*
 * Progress lines of one request are batched: a burst of events (a converge on the test driver
 * emits hundreds within milliseconds) costs one send() and one client wake-up, not one each.
 * The batch goes out when it is large, when the engine says a slow step follows (ev == NULL),
 * and before the final line.
 */
typedef struct outbuf {
    int fd; /* -1: a handed-over request: events go to collect */
    char *p;
    size_t n, cap;
    json_object *collect;
} outbuf_t;

#define CLOUDD_BATCH_BYTES 32768

static void out_flush(outbuf_t *o)
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

static void on_progress(void *ud, json_object *ev)
{
    outbuf_t *o = ud;
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

static void request_quit(void)
{
    atomic_store(&quit_flag, 1);
    wake_loop();
}

/* Remove the socket file if it is still ours (a successor may have bound the path). */
static void unlink_socket(void)
{
    struct stat st;

    if (stat(opt.socket_path, &st) == 0 && st.st_ino == sock_ino)
        unlink(opt.socket_path);
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

    if (!opt.embedded || atomic_load(&active) != 0 || atomic_load(&quit_flag))
        return;
    if (cl_engine_cloud_count(engine) != 0) {
        atomic_store(&last_stopped, 0);
        return;
    }
    if (!atomic_load(&last_stopped) && idle < opt.idle_exit_ms)
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

static json_object *ok_with(json_object *res)
{
    if (!res)
        res = json_object_new_object();
    json_object_object_add(res, "ok", json_object_new_boolean(1));
    return res;
}

/* Parse "spec" of a request if present.  Returns 1 if parsed, 0 if absent, -1 on error. */
static int req_spec(json_object *req, cl_spec_t **spec, cl_err_t *err)
{
    json_object *v;

    *spec = NULL;
    if (!json_object_object_get_ex(req, "spec", &v) || json_object_is_type(v, json_type_null))
        return 0;
    return cl_spec_parse(v, spec, err) < 0 ? -1 : 1;
}

static const char *req_str(json_object *req, const char *key)
{
    json_object *v;

    if (json_object_object_get_ex(req, key, &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return NULL;
}

/*
 * Just joined, or just elected: give the election a moment (bounded) to name a leader and, when
 * that is this host, to gather its majority.  The leader's index (-1: none yet).
 */
static int wait_leader(const cl_spec_t *spec, uint64_t *ep, int *acting)
{
    uint64_t deadline = cl_time_now_ms() + CLOUDD_LEADER_WAIT_MS;
    int li = cl_engine_leader(engine, spec, ep, acting);

    while (cl_engine_elected(engine, spec) && cl_time_now_ms() < deadline &&
           (li < 0 || (cl_net_is_self(cl_engine_self(engine), spec->pool[li]) && !*acting))) {
        usleep(20000);
        li = cl_engine_leader(engine, spec, ep, acting);
    }
    return li;
}

/* The leader of spec as this daemon sees it; -1 with err if this host may not act on it. */
static int check_leader(const cl_spec_t *spec, cl_err_t *err)
{
    int li;

    if (!cl_engine_is_member(engine, spec))
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "lead cloud",
                          "this host is not in the pool of cloud %s", spec->name);
    if (cl_engine_elected(engine, spec)) {
        uint64_t ep = 0;
        int acting = 0;
        wait_leader(spec, &ep, &acting);
        return 0; /* the engine asks the election again, right before it acts */
    }
    if (spec->npool > 1 && !peers)
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "lead cloud",
                          "cloud %s has a pool of %zu hosts but this cloudd has no peer layer: "
                          "run it with --address (this host's pool address, which it must be "
                          "able to bind; see its log)",
                          spec->name, spec->npool);
    li = cl_engine_leader_index(engine, spec);
    if (li < 0 || !cl_net_is_self(cl_engine_self(engine), spec->pool[li]))
        return cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? spec->pool[li] : NULL, "lead cloud",
                          "this host does not lead cloud %s (the leader is %s)", spec->name,
                          li >= 0 ? spec->pool[li] : "unknown");
    return 0;
}

/*
 * The cloud domains on this host's own hypervisors (the URIs of the clouds known here, for this
 * host): {"domains": [{name, cloud, slot, state, epoch, uri}]}.  With fault_slot: that slot's
 * domain of cloud is destroyed first, behind the engine's back (the chaos tests' fault).
 */
static json_object *local_domains(const char *cloud, const char *fault_slot, cl_err_t *err)
{
    char **names = NULL, **uris = NULL;
    size_t n = 0, nu = 0, i, k;
    json_object *res = NULL, *arr = json_object_new_array();
    int faulted = 0;

    if (cl_state_list(opt.state_dir, &names, &n, err) < 0)
        goto cleanup;
    /* the hypervisors already open here too: a forgotten cloud's leftovers are listed */
    {
        size_t nc = 0;
        char **open_uris = cl_engine_conn_uris(engine, &nc);
        uris = calloc(n + nc + 1, sizeof(*uris));
        for (k = 0; uris && k < nc; k++)
            uris[nu++] = open_uris[k];
        if (!uris)
            for (k = 0; k < nc; k++)
                free(open_uris[k]);
        free(open_uris);
    }
    for (i = 0; uris && i < n; i++) {
        json_object *state = NULL, *v;
        cl_spec_t *spec = NULL;
        cl_err_t e2;
        size_t j;
        if (cl_state_load(opt.state_dir, names[i], &state, &e2) > 0 &&
            json_object_object_get_ex(state, "spec", &v) && cl_spec_parse(v, &spec, &e2) == 0)
            for (j = 0; j < spec->npool; j++)
                if (cl_net_is_self(cl_engine_self(engine), spec->pool[j])) {
                    char *u = cl_spec_uri_for(spec->hypervisor, spec->pool[j]);
                    for (k = 0; u && k < nu; k++)
                        if (strcmp(uris[k], u) == 0) {
                            free(u);
                            u = NULL;
                        }
                    if (u)
                        uris[nu++] = u;
                    break;
                }
        cl_spec_free(spec);
        json_object_put(state);
    }
    for (k = 0; k < nu; k++) {
        cl_virt_t *vt = cl_engine_conn(engine, uris[k], "self", err);
        cl_dom_list_t doms = {0};
        if (!vt || cl_virt_scan(vt, NULL, &doms, NULL, err) < 0)
            goto cleanup;
        for (i = 0; i < doms.n; i++) {
            json_object *o;
            if (fault_slot && strcmp(doms.v[i].cloud, cloud) == 0 &&
                strcmp(doms.v[i].slot, fault_slot) == 0 && doms.v[i].state == CL_DOM_RUNNING) {
                if (cl_virt_destroy(vt, doms.v[i].name, "fault", err) < 0) {
                    cl_dom_list_free(&doms);
                    goto cleanup;
                }
                faulted++;
                doms.v[i].state = CL_DOM_SHUTOFF;
            }
            o = json_object_new_object();
            json_object_object_add(o, "name", json_object_new_string(doms.v[i].name));
            json_object_object_add(o, "cloud", json_object_new_string(doms.v[i].cloud));
            json_object_object_add(o, "slot", json_object_new_string(doms.v[i].slot));
            json_object_object_add(o, "state",
                                   json_object_new_string(cl_dom_state_name(doms.v[i].state)));
            json_object_object_add(o, "epoch", json_object_new_int64((int64_t)doms.v[i].epoch));
            json_object_object_add(o, "uri", json_object_new_string(uris[k]));
            json_object_array_add(arr, o);
        }
        cl_dom_list_free(&doms);
    }
    if (fault_slot && !faulted) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "fault",
                   "no running domain of slot %s of cloud %s on this host", fault_slot, cloud);
        goto cleanup;
    }
    res = json_object_new_object();
    json_object_object_add(res, "domains", arr);
    arr = NULL;
    if (fault_slot)
        json_object_object_add(res, "destroyed", json_object_new_int(faulted));

cleanup:
    json_object_put(arr);
    for (k = 0; k < nu; k++)
        free(uris[k]);
    free(uris);
    cl_state_names_free(names);
    return res;
}

static json_object *dispatch(outbuf_t *out, json_object *req, int *stopped, cl_err_t *err)
{
    const char *op = req_str(req, "op"), *name = req_str(req, "name");
    json_object *res = NULL, *v;
    cl_spec_t *spec = NULL;
    int noop = json_object_object_get_ex(req, "noop", &v) && json_object_get_boolean(v);
    int has;

    if (!json_object_object_get_ex(req, "v", &v) || json_object_get_int(v) != CL_CTL_VERSION) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "unsupported protocol version (want %d)",
                   CL_CTL_VERSION);
        return NULL;
    }
    if (!op) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "no \"op\" in the request");
        return NULL;
    }
    has = req_spec(req, &spec, err);
    if (has < 0)
        return NULL;
    if (!name && spec)
        name = spec->name;
    if (name && !cl_spec_name_ok(name)) {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "invalid cloud name");
        goto cleanup;
    }
    /*
     * A member of a pool of several takes part in its election as soon as it knows the spec
     * of a running cloud (not from a stop manifest, whatever the op: a host that forgot a
     * stopped cloud does not join it again when Puppet asks its status or stops it).
     */
    if (spec && spec->running && peers && spec->npool > 1 && cl_engine_is_member(engine, spec) &&
        strcmp(op, "plan") != 0 && strcmp(op, "stop") != 0 && cl_peers_join(peers, spec, err) < 0)
        goto cleanup;

    if (strcmp(op, "hello") == 0) {
        json_object *addrs = json_object_new_array();
        const cl_addrs_t *self = cl_engine_self(engine);
        size_t i;
        res = json_object_new_object();
        for (i = 0; i < self->n; i++)
            json_object_array_add(addrs, json_object_new_string(self->v[i]));
        json_object_object_add(res, "version", json_object_new_string(CLOUDD_VERSION));
        json_object_object_add(res, "pid", json_object_new_int((int)getpid()));
        json_object_object_add(res, "embedded", json_object_new_boolean(opt.embedded));
        json_object_object_add(res, "addresses", addrs);
        json_object_object_add(res, "clouds",
                               json_object_new_int((int)cl_engine_cloud_count(engine)));
    } else if (strcmp(op, "apply") == 0 || strcmp(op, "plan") == 0) {
        int plan = strcmp(op, "plan") == 0;
        if (!spec) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no spec in the request");
            goto cleanup;
        }
        if (!plan && !noop && check_leader(spec, err) < 0)
            goto cleanup;
        if (cl_engine_apply(engine, spec, plan || noop, plan ? NULL : on_progress, out, &res, err) <
            0)
            goto cleanup;
        if (!plan && !noop && monitor) {
            /* what the leader repaired since the last apply: for this run's report */
            json_object *st = NULL;
            if (json_object_object_get_ex(res, "status", &st))
                cl_monitor_annotate(monitor, st);
            cl_monitor_applied(monitor, spec->name);
        }
    } else if (strcmp(op, "stop") == 0) {
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (spec && !noop && cl_engine_elected(engine, spec)) {
            int acting = 0;
            cl_engine_leader(engine, spec, NULL, &acting);
            if (!acting) {
                /*
                 * A member that does not lead hands the stop to the leader, which orders it on
                 * every pool host, tears the cloud down and tells them to forget it.  Leaving
                 * the election here first would take the leader's majority away (the cloud's
                 * VMs left running): without a leader, the stop fails and nothing is forgotten.
                 */
                json_object *answer = NULL, *events = NULL, *state = NULL;
                size_t i;
                int known = cl_state_load(cl_engine_state_dir(engine), name, &state, err);
                json_object_put(state);
                if (known < 0)
                    goto cleanup;
                if (known == 0) {
                    /* forgotten already (the leader's stop reached this host): nothing to do */
                    if (peers)
                        cl_peers_leave(peers, name);
                    res = json_object_new_object();
                    json_object_object_add(res, "changed", json_object_new_int(0));
                    json_object_object_add(res, "changes", json_object_new_array());
                    json_object_object_add(res, "forgotten", json_object_new_boolean(1));
                    *stopped = 1;
                    goto cleanup;
                }
                if (!peers || cl_peers_forward(peers, spec, req, &answer, &events, err) < 0) {
                    /*
                     * No leader to hand it to.  If a leader's stop order reached this host,
                     * the stop is recorded where it counts: forgetting it here is safe.
                     */
                    cl_intent_t in;
                    cl_err_t e2;
                    int now_acting = 0;
                    cl_engine_leader(engine, spec, NULL, &now_acting);
                    if (now_acting) {
                        /* this host was elected meanwhile: it stops the cloud itself */
                        cl_err_clear(err);
                        goto stop_here;
                    }
                    cl_err_clear(&e2);
                    if (cl_engine_intent(engine, name, NULL, 0, NULL, &in, &e2) < 0 || !in.stopped)
                        goto cleanup;
                    cl_err_clear(err);
                    answer = json_object_new_object();
                    json_object_object_add(answer, "changed", json_object_new_int(0));
                    json_object_object_add(answer, "changes", json_object_new_array());
                }
                for (i = 0; events && i < json_object_array_length(events); i++)
                    on_progress(out, json_object_array_get_idx(events, i));
                json_object_put(events);
                /* the leader's "forget" may have missed this host: forget it here too */
                cl_peers_leave(peers, name);
                if (cl_state_remove(cl_engine_state_dir(engine), name, err) < 0) {
                    json_object_put(answer);
                    goto cleanup;
                }
                res = answer;
                json_object_object_add(res, "forgotten", json_object_new_boolean(1));
                *stopped = 1;
                goto cleanup;
            }
        }
    stop_here:
        if (spec && !noop && check_leader(spec, err) < 0)
            goto cleanup;
        if (cl_engine_stop(engine, name, spec, noop, on_progress, out, &res, err) < 0)
            goto cleanup;
        *stopped = !noop;
        if (peers && !noop)
            cl_peers_leave(peers, name);
    } else if (strcmp(op, "status") == 0) {
        if (cl_engine_status(engine, name, spec, &res, err) < 0)
            goto cleanup;
        if (monitor) {
            json_object *clouds = NULL;
            size_t i;
            json_object_object_get_ex(res, "clouds", &clouds);
            for (i = 0; clouds && i < json_object_array_length(clouds); i++)
                cl_monitor_annotate(monitor, json_object_array_get_idx(clouds, i));
        }
        if (peers) {
            /* each cloud run by an election says how its election stands */
            json_object *clouds = NULL;
            size_t i;
            json_object_object_get_ex(res, "clouds", &clouds);
            for (i = 0; clouds && i < json_object_array_length(clouds); i++) {
                json_object *c = json_object_array_get_idx(clouds, i), *nm, *el;
                if (!json_object_object_get_ex(c, "name", &nm))
                    continue;
                el = cl_peers_status(peers, json_object_get_string(nm));
                if (el && json_object_object_get_ex(el, "state", NULL)) {
                    /* the election's word on leader and epoch, on every member alike */
                    json_object *lv, *ev;
                    if (json_object_object_get_ex(el, "leader", &lv))
                        json_object_object_add(c, "leader", json_object_get(lv));
                    if (json_object_object_get_ex(el, "epoch", &ev))
                        json_object_object_add(c, "epoch", json_object_get(ev));
                }
                if (el)
                    json_object_object_add(c, "election", el);
            }
        }
    } else if (strcmp(op, "events") == 0) {
        int64_t after = 0, limit = 0;
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (json_object_object_get_ex(req, "after", &v))
            after = json_object_get_int64(v);
        if (json_object_object_get_ex(req, "limit", &v))
            limit = json_object_get_int64(v);
        if (after < 0 || limit < 0) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "after and limit must not be negative");
            goto cleanup;
        }
        res = json_object_new_object();
        json_object_object_add(res, "name", json_object_new_string(name));
        json_object_object_add(
            res, "events",
            monitor ? cl_monitor_events(monitor, name, (uint64_t)after, (size_t)limit)
                    : json_object_new_array());
    } else if (strcmp(op, "fault") == 0 || strcmp(op, "domains") == 0) {
        /* this host's own domains of every cloud; "fault": stop one behind the engine's back */
        const char *slot = req_str(req, "slot");
        if (strcmp(op, "fault") == 0 && (!opt.allow_faults || !slot || !name)) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op,
                       !opt.allow_faults ? "fault injection is off (cloudd --allow-faults)"
                                         : "fault needs a cloud name and a slot");
            goto cleanup;
        }
        if (!(res = local_domains(name, strcmp(op, "fault") == 0 ? slot : NULL, err)))
            goto cleanup;
    } else if (strcmp(op, "monitor") == 0) {
        if (!name) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no cloud name in the request");
            goto cleanup;
        }
        if (cl_engine_monitor(engine, name, on_progress, out, &res, err) < 0)
            goto cleanup;
    } else if (strcmp(op, "leader") == 0) {
        int li, acting = 0;
        uint64_t ep = 0;
        if (!spec) {
            cl_err_set(err, CL_ERR_PROTO, 0, NULL, op, "no spec in the request");
            goto cleanup;
        }
        li = wait_leader(spec, &ep, &acting);
        res = json_object_new_object();
        json_object_object_add(res, "leader",
                               li >= 0 ? json_object_new_string(spec->pool[li]) : NULL);
        json_object_object_add(res, "member",
                               json_object_new_boolean(cl_engine_is_member(engine, spec)));
        json_object_object_add(
            res, "self",
            json_object_new_boolean(li >= 0 &&
                                    cl_net_is_self(cl_engine_self(engine), spec->pool[li])));
        json_object_object_add(res, "acting", json_object_new_boolean(acting));
        if (cl_engine_elected(engine, spec)) {
            json_object_object_add(res, "epoch", json_object_new_int64((int64_t)ep));
            json_object_object_add(res, "election", cl_peers_status(peers, spec->name));
        } else {
            /* the epoch is in the cloud's state file: no need to scan the hypervisor */
            json_object *st = NULL;
            cl_err_t e2;
            int64_t epoch = 0;
            if (cl_state_load(opt.state_dir, spec->name, &st, &e2) > 0 &&
                json_object_object_get_ex(st, "epoch", &v))
                epoch = json_object_get_int64(v);
            json_object_put(st);
            json_object_object_add(res, "epoch", json_object_new_int64(epoch));
        }
    } else if (strcmp(op, "handover") == 0) {
        /* a member that does not lead: its spec to the leader, the leader's progress back */
        json_object *fwd = json_object_new_object(), *answer = NULL, *events = NULL;
        size_t i;
        int rc;
        if (!spec || !peers || !cl_engine_elected(engine, spec)) {
            json_object_put(fwd);
            cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op,
                       "no election of this cloud here: only a member of a pool of several "
                       "hosts hands its spec over");
            goto cleanup;
        }
        json_object_object_add(fwd, "v", json_object_new_int(CL_CTL_VERSION));
        json_object_object_add(fwd, "op", json_object_new_string("apply"));
        json_object_object_add(fwd, "name", json_object_new_string(spec->name));
        json_object_object_add(fwd, "spec", json_object_get(spec->json));
        rc = cl_peers_forward(peers, spec, fwd, &answer, &events, err);
        json_object_put(fwd);
        if (rc < 0)
            goto cleanup;
        for (i = 0; i < json_object_array_length(events); i++)
            on_progress(out, json_object_array_get_idx(events, i));
        json_object_put(events);
        res = answer;
    } else if (strcmp(op, "exec") == 0) {
        /* a command in the cloud's guests (cl_exec): run by the leader, handed over to it */
        cl_exec_ctx_t x = {engine, monitor, peers};
        if (!(res = cl_exec_serve(&x, req, out->fd < 0, err)))
            goto cleanup;
    } else if (strcmp(op, "shutdown") == 0) {
        res = json_object_new_object();
        request_quit();
    } else {
        cl_err_set(err, CL_ERR_PROTO, 0, NULL, "request", "unknown op '%s'", op);
    }

cleanup:
    cl_spec_free(spec);
    return res ? ok_with(res) : NULL;
}

/*
 * A request is over (the one `active` counted): an embedded daemon whose last cloud it stopped
 * may now exit, decided on the event loop.
 */
static void request_done(int stopped)
{
    atomic_store(&last_activity_ms, cl_time_now_ms());
    if (stopped && opt.embedded && cl_engine_cloud_count(engine) == 0)
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
    outbuf_t out = {c->fd, NULL, 0, 0, NULL};
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
        res = dispatch(&out, req, &stopped, &err);
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
    outbuf_t out = {-1, NULL, 0, 0, events};
    json_object *res;
    int stopped = 0;

    (void)ud;
    atomic_fetch_add(&active, 1);
    atomic_store(&last_activity_ms, cl_time_now_ms());
    res = dispatch(&out, req, &stopped, err);
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
    if (peers)
        cl_peers_tick(peers);
    cl_log_flush();
}

static void on_peers_watch(void *ud, const char *cloud, const char *why)
{
    cl_monitor_poke(monitor, cloud, NULL, why);
}

/* A domain stopped here, of a cloud another member leads: its monitor is told. */
static int forward_poke(void *ud, const char *cloud, const char *slot)
{
    cl_err_t err;

    cl_err_clear(&err);
    if (!peers)
        return -1;
    if (cl_peers_poke_leader(peers, cloud, slot, &err) < 0) {
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
    if (cl_virt_watch(v, cl_monitor_on_domain, monitor, &err) < 0)
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
    if (cl_state_list(opt.state_dir, &names, &n, &err) < 0)
        return;
    for (i = 0; i < n; i++) {
        json_object *state = NULL, *v;
        cl_spec_t *spec = NULL;
        if (cl_state_load(opt.state_dir, names[i], &state, &err) > 0 &&
            json_object_object_get_ex(state, "spec", &v) && cl_spec_parse(v, &spec, &err) == 0 &&
            spec->npool > 1 && cl_engine_is_member(engine, spec) &&
            cl_peers_join(peers, spec, &err) < 0)
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

    if (strlen(opt.socket_path) >= sizeof(sa.sun_path))
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "listen", "socket path too long");
    snprintf(tmp, sizeof(tmp), "%s", opt.socket_path);
    snprintf(dir, sizeof(dir), "%s", dirname(tmp));
    if (stat(dir, &st) < 0) {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return cl_err_sys(err, NULL, "listen", "mkdir %s", dir);
    }
    /* Another daemon on this socket?  A stale socket file is removed. */
    {
        cl_err_t e2;
        if (cl_ctl_connect(opt.socket_path, 500, &probe, &e2) == 0) {
            close(probe);
            return cl_err_set(err, CL_ERR_SYS, EADDRINUSE, NULL, "listen",
                              "a cloudd already answers on %s", opt.socket_path);
        }
    }
    unlink(opt.socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cl_err_sys(err, NULL, "listen", "socket");
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", opt.socket_path);
    {
        mode_t old = umask(0077);
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (rc < 0) {
            cl_err_sys(err, NULL, "listen", "bind %s", opt.socket_path);
            close(fd);
            return -1;
        }
    }
    chmod(opt.socket_path, 0600);
    {
        struct stat st;
        if (stat(opt.socket_path, &st) == 0)
            sock_ino = st.st_ino;
    }
    if (listen(fd, 64) < 0) {
        cl_err_sys(err, NULL, "listen", "listen %s", opt.socket_path);
        close(fd);
        return -1;
    }
    listen_fd = fd;
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(
        fp,
        "usage: cloudd [options]\n"
        "  --socket PATH      control socket (default $CLOUD_SOCKET or %s)\n"
        "  --state-dir DIR    state directory (default $CLOUD_STATE_DIR or /var/lib/cloud)\n"
        "  --address ADDR     this host's identity in pools (repeatable; default: all local\n"
        "                     interface addresses)\n"
        "  --peer-port N      UDP (election) and TCP (host operations) port of the peer\n"
        "                     layer, on the first --address (default 7946)\n"
        "  --hb-interval-ms N, --hb-timeout-ms N, --answer-timeout-ms N, --coord-timeout-ms N,\n"
        "  --quorum-window-ms N\n"
        "                     election timers (defaults 50, 250, 60, 200, 250: see\n"
        "                     doc/ELECTION.md); the same on every pool host\n"
        "  --fence-ms N       a member without its cloud's leader for N ms stops its copies\n"
        "                     of the cloud's VMs (default %d; the same on every pool host)\n"
        "  --destroy-ms N     one guest's destroy on this pool's hypervisors: the leader waits\n"
        "                     this much longer for a silent host per further copy it may\n"
        "                     hold (libvirtd destroys a dead daemon's guests one by one;\n"
        "                     default %d, 0: off; the test driver is never counted)\n"
        "  --sweep-ms N       the monitor's periodic sweep of every cloud (default %d)\n"
        "  --no-sweep         domain events and liveness only (benchmarks)\n"
        "  --no-monitor       no self-healing: repairs only by Puppet and cloudctl monitor\n"
        "  --allow-faults     accept cloudctl fault (chaos tests)\n"
        "  --no-autodestroy   VMs started here outlive the daemon (default: libvirtd destroys\n"
        "                     them when the daemon dies, so a dead daemon fences its host)\n"
        "  --metrics ADDR:PORT\n"
        "                     serve Prometheus metrics at http://ADDR:PORT/metrics (PORT\n"
        "                     alone: 127.0.0.1; off by default)\n"
        "  --metrics-any      allow --metrics on a non-loopback address (no authentication)\n"
        "  --embedded         started by the provider: exit once no cloud is left\n"
        "  --idle-exit-ms N   embedded mode: exit after N ms with no cloud (default %d)\n"
        "  --daemonize        fork into the background once the socket is ready\n"
        "  --log FILE         log file (default: stderr; <state-dir>/cloudd.log when daemonized)\n"
        "  --pidfile FILE     write the daemon's PID there\n"
        "  --debug            verbose log\n",
        CL_CTL_DEFAULT_SOCKET, CL_FENCE_SELF_MS, CL_FENCE_DESTROY_MS, CL_MONITOR_SWEEP_MS,
        CLOUDD_IDLE_EXIT_MS);
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"socket", required_argument, NULL, 's'},
                                             {"state-dir", required_argument, NULL, 'd'},
                                             {"address", required_argument, NULL, 'a'},
                                             {"embedded", no_argument, NULL, 'e'},
                                             {"daemonize", no_argument, NULL, 'D'},
                                             {"log", required_argument, NULL, 'l'},
                                             {"pidfile", required_argument, NULL, 'p'},
                                             {"debug", no_argument, NULL, 'g'},
                                             {"idle-exit-ms", required_argument, NULL, 'i'},
                                             {"peer-port", required_argument, NULL, 'P'},
                                             {"hb-interval-ms", required_argument, NULL, 1001},
                                             {"hb-timeout-ms", required_argument, NULL, 1002},
                                             {"answer-timeout-ms", required_argument, NULL, 1003},
                                             {"coord-timeout-ms", required_argument, NULL, 1004},
                                             {"quorum-window-ms", required_argument, NULL, 1005},
                                             {"fence-ms", required_argument, NULL, 1006},
                                             {"destroy-ms", required_argument, NULL, 1050},
                                             {"sweep-ms", required_argument, NULL, 1007},
                                             {"no-sweep", no_argument, NULL, 1008},
                                             {"no-monitor", no_argument, NULL, 1009},
                                             {"allow-faults", no_argument, NULL, 1010},
                                             {"no-autodestroy", no_argument, NULL, 1011},
                                             {"metrics", required_argument, NULL, 1012},
                                             {"metrics-any", no_argument, NULL, 1013},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;

    opt.idle_exit_ms = CLOUDD_IDLE_EXIT_MS;
    opt.destroy_ms = -1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': opt.socket_path = optarg; break;
        case 'd': opt.state_dir = optarg; break;
        case 'a': cl_addrs_add(&opt.addresses, optarg); break;
        case 'e': opt.embedded = 1; break;
        case 'D': opt.daemonize = 1; break;
        case 'l': opt.log_path = optarg; break;
        case 'p': opt.pid_path = optarg; break;
        case 'g': opt.debug = 1; break;
        case 1001:
        case 1002:
        case 1003:
        case 1004:
        case 1005: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            uint64_t *slot[] = {&opt.timers.hb_interval_ms, &opt.timers.hb_timeout_ms,
                                &opt.timers.answer_timeout_ms, &opt.timers.coord_timeout_ms,
                                &opt.timers.quorum_window_ms};
            if (*end || v == 0 || v > 600000) {
                static const char *const names[] = {"hb-interval-ms", "hb-timeout-ms",
                                                    "answer-timeout-ms", "coord-timeout-ms",
                                                    "quorum-window-ms"};
                fprintf(stderr, "cloudd: --%s: '%s' is not a number of ms (1..600000)\n",
                        names[c - 1001], optarg);
                return -1;
            }
            *slot[c - 1001] = v;
            break;
        }
        case 1006:
        case 1007: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 10 || v > 3600000) {
                fprintf(stderr, "cloudd: --%s: '%s' is not a number of ms (10..3600000)\n",
                        c == 1006 ? "fence-ms" : "sweep-ms", optarg);
                return -1;
            }
            *(c == 1006 ? &opt.fence_ms : &opt.sweep_ms) = (unsigned)v;
            break;
        }
        case 1050: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || !*optarg || v < 0 || v > 60000) {
                fprintf(stderr, "cloudd: --destroy-ms: '%s' is not a number of ms (0..60000)\n",
                        optarg);
                return -1;
            }
            opt.destroy_ms = v;
            break;
        }
        case 1008: opt.no_sweep = 1; break;
        case 1009: opt.no_monitor = 1; break;
        case 1010: opt.allow_faults = 1; break;
        case 1011: opt.no_autodestroy = 1; break;
        case 1012: metrics_at = optarg; break;
        case 1013: metrics_any = 1; break;
        case 'P': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 65535) {
                fprintf(stderr, "cloudd: --peer-port: '%s' is not a port number\n", optarg);
                return -1;
            }
            opt.peer_port = (unsigned)v;
            break;
        }
        case 'i': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v > 86400000UL) {
                fprintf(stderr, "cloudd: --idle-exit-ms: '%s' is not a number of ms\n", optarg);
                return -1;
            }
            opt.idle_exit_ms = (unsigned)v;
            break;
        }
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cloudd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (metrics_at) {
        cl_err_t e;
        if (cl_metrics_check_listen(metrics_at, metrics_any, &e) < 0) {
            fprintf(stderr, "cloudd: %s: %s\n", e.op, e.msg);
            return -1;
        }
    }
    opt.socket_path = cl_ctl_socket_path(opt.socket_path);
    if (!opt.state_dir)
        opt.state_dir = getenv("CLOUD_STATE_DIR") && *getenv("CLOUD_STATE_DIR")
                            ? getenv("CLOUD_STATE_DIR")
                            : "/var/lib/cloud";
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
    if (parse_args(argc, argv) < 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    if (opt.daemonize) {
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
        if (!opt.log_path) {
            snprintf(logbuf, sizeof(logbuf), "%s/cloudd.log", opt.state_dir);
            opt.log_path = logbuf;
        }
    }
    if (cl_state_init(opt.state_dir, &err) < 0) {
        fprintf(stderr, "cloudd: %s\n", err.msg);
        goto out;
    }
    if (opt.log_path) {
        FILE *fp = fopen(opt.log_path, "a");
        if (!fp) {
            fprintf(stderr, "cloudd: cannot open log %s: %s\n", opt.log_path, strerror(errno));
            goto out;
        }
        setvbuf(fp, NULL, _IOFBF, 65536); /* cl_log flushes (see CL_LOG_FLUSH_MS) */
        cl_log_set_stream(fp);
        if (opt.daemonize) {
            int nul = open("/dev/null", O_RDWR);
            if (nul >= 0) {
                dup2(nul, 0);
                dup2(fileno(fp), 1);
                dup2(fileno(fp), 2);
                close(nul);
            }
        }
    }
    if (opt.debug)
        cl_log_set_level(CL_LOG_DEBUG);
    cl_log_set_tag(opt.addresses.n ? opt.addresses.v[0] : "cloudd");

    if (virEventRegisterDefaultImpl() < 0) {
        cl_log(CL_LOG_ERR, "-start", "cannot register libvirt's event loop");
        goto out;
    }
    cl_virt_global_init();
    cl_virt_set_autodestroy(!opt.no_autodestroy);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = opt.state_dir;
    eo.self = &opt.addresses;
    if (cl_state_init(opt.state_dir, &err) < 0)
        goto fail_start;
    if (opt.addresses.n > 0) {
        /* a peer identity: this daemon takes part in the elections of pools of several hosts */
        peers = cl_peers_new(opt.addresses.v[0], opt.peer_port, opt.state_dir, &err);
        if (peers) {
            cl_peers_set_timers(peers, &opt.timers);
            cl_peers_set_fence_ms(peers, opt.fence_ms);
            cl_peers_hooks(peers, &peer_hooks);
            peer_hooks.destroy_ms =
                opt.destroy_ms < 0 ? CL_FENCE_DESTROY_MS : (uint64_t)opt.destroy_ms;
            cl_peers_set_control(peers, peer_control, NULL);
            eo.peers = &peer_hooks;
        } else {
            /* clouds of one host still work; pools of several are refused, saying why */
            cl_log(CL_LOG_WARN, "-peers", "no peer layer: %s%s%s", err.op, err.op[0] ? ": " : "",
                   err.msg);
            cl_err_clear(&err);
        }
    }
    if (cl_engine_new(&eo, &engine, &err) < 0 || make_socket(&err) < 0 ||
        (peers && (cl_peers_set_engine(peers, engine), cl_peers_register(peers, &err) < 0))) {
    fail_start:;
        char buf[1024];
        cl_log(CL_LOG_ERR, "-start", "%s", cl_err_format(&err, buf, sizeof(buf)));
        if (!opt.log_path || opt.daemonize)
            fprintf(stderr, "cloudd: %s\n", buf);
        goto out;
    }
    if (!opt.no_monitor) {
        cl_monitor_opts_t mo;
        memset(&mo, 0, sizeof(mo));
        mo.engine = engine;
        mo.sweep_ms = opt.sweep_ms;
        mo.no_sweep = opt.no_sweep;
        mo.forward = forward_poke;
        monitor = cl_monitor_new(&mo, &err);
        if (!monitor)
            goto fail_start;
        cl_engine_set_conn_hook(engine, on_conn, NULL);
        if (peers)
            cl_peers_set_watch(peers, on_peers_watch, NULL);
    }
    if (metrics_at) {
        cl_metrics_daemon_opts_t mo = {.engine = engine,
                                       .monitor = monitor,
                                       .peers = peers,
                                       .version = CLOUDD_VERSION,
                                       .listen = metrics_at,
                                       .allow_any = metrics_any};
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
    if (opt.pid_path) {
        FILE *fp = fopen(opt.pid_path, "w");
        if (fp) {
            fprintf(fp, "%d\n", (int)getpid());
            fclose(fp);
        }
    }
    if (peers)
        rejoin_clouds();
    cl_log(CL_LOG_INFO, "+start", "cloudd %s pid=%d socket=%s state=%s%s", CLOUDD_VERSION,
           (int)getpid(), opt.socket_path, opt.state_dir, opt.embedded ? " embedded" : "");
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
    if (opt.pid_path && rc == 0)
        unlink(opt.pid_path);
    if (ready_pipe[1] >= 0)
        close(ready_pipe[1]);
    cl_metrics_server_free(metrics_srv); /* its thread reads the monitor, peers and engine */
    /* the engine is left to the OS if requests are still running */
    if (atomic_load(&active) == 0) {
        cl_monitor_free(monitor); /* before the engine it uses */
        cl_peers_free(peers);
        cl_engine_free(engine);
    }
    cl_addrs_free(&opt.addresses);
    return rc;
}
