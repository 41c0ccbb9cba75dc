/*
 * cloudd_int: what the daemon's three files share, linked into bin/cloudd only (never into the
 * extension): cloudd.c (the control socket, a thread per request, the event loop, start-up),
 * cloudd_ops.c (the control protocol's ops: one request in, its answer out) and cloudd_opts.c
 * (the command line).
 */
#ifndef CLOUDD_INT_H
#define CLOUDD_INT_H

#include <json-c/json.h>
#include <stddef.h>

#include "cl_bully.h"
#include "cl_engine.h"
#include "cl_err.h"
#include "cl_monitor.h"
#include "cl_net.h"
#include "cl_peers.h"

#define CLOUDD_VERSION "0.1.0"
#define CLOUDD_IDLE_EXIT_MS 60000 /* embedded mode: exit when no cloud and idle this long */

/* The command line (cloudd_opts_parse). */
typedef struct cloudd_opts {
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
    unsigned fence_ms;      /* 0: CL_FENCE_SELF_MS */
    long destroy_ms;        /* -1: CL_FENCE_DESTROY_MS */
    unsigned sweep_ms;      /* 0: CL_MONITOR_SWEEP_MS */
    int no_sweep;           /* events and pokes only */
    int no_monitor;         /* no self-healing at all (Puppet and cloudctl monitor only) */
    int allow_faults;       /* the "fault" op: chaos tests on the embedded hypervisor */
    int no_autodestroy;     /* VMs outlive this daemon (no dead man's switch) */
    const char *metrics_at; /* --metrics ADDR:PORT (NULL: no metrics endpoint) */
    int metrics_any;        /* --metrics-any: a non-loopback address is accepted */
} cloudd_opts_t;

extern cloudd_opts_t cloudd_opt;
extern cl_engine_t *cloudd_engine;
extern cl_monitor_t *cloudd_monitor; /* NULL: --no-monitor */
extern cl_peers_t *cloudd_peers; /* NULL: no peer identity (--address), single-host clouds only */

/*
 * Progress lines of one request are batched: a burst of events (a converge on the test driver
 * emits hundreds within milliseconds) costs one send() and one client wake-up, not one each.
 * The batch goes out when it is large, when the engine says a slow step follows (ev == NULL),
 * and before the final line.
 */
typedef struct cloudd_out {
    int fd; /* -1: a handed-over request: events go to collect */
    char *p;
    size_t n, cap;
    json_object *collect;
} cloudd_out_t;

/* A cl_progress_fn (ud: the request's cloudd_out_t): a progress event for the client. */
void cloudd_on_progress(void *ud, json_object *ev);
/* The "shutdown" op: the event loop ends (from any thread). */
void cloudd_request_quit(void);

/*
 * One control request: its answer ({"ok": true, ...}), or NULL and err.  Its progress goes to
 * out (fd -1: a request handed over by the peer layer); *stopped: it stopped a cloud here.
 */
json_object *cloudd_dispatch(cloudd_out_t *out, json_object *req, int *stopped, cl_err_t *err);

/* Parse argv into *o (defaults included).  0, or -1 with a message on stderr (exit status 2). */
int cloudd_opts_parse(cloudd_opts_t *o, int argc, char **argv);

#endif
