/*
 * cl_metrics: cloudd's metrics in the Prometheus text exposition format 0.0.4 (issue 6): a
 * writer for families and samples (escaping, HELP/TYPE, histograms with fixed buckets), and a
 * tiny HTTP server in a thread of its own that answers GET /metrics on a local address
 * (cl_metrics_http.c).  The values come from counters kept where the events happen (monitor,
 * election, rpc, engine); cl_metrics_daemon.c gathers them for cloudd.  No libvirt call and
 * no I/O but the socket while a scrape is served.
 */
#ifndef CL_METRICS_H
#define CL_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"

#define CL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define CL_METRICS_REQUEST_MAX 8192 /* longest request head (request line and headers) */
#define CL_METRICS_IO_MS 5000       /* a client sends its request, and reads the answer, within */
#define CL_METRICS_CONN_MAX 8       /* connections served at once; more wait to be accepted */
#define CL_METRICS_BUCKETS_MAX 16   /* finite buckets of one histogram */

/* ========================================================================================== */
/* Exposition                                                                                 */
/* ========================================================================================== */

/* A growing text buffer; on allocation failure it stops growing and says so (oom). */
typedef struct cl_metrics_buf {
    char *p; /* NUL-terminated; owned (cl_metrics_buf_free) */
    size_t n, cap;
    int oom;
} cl_metrics_buf_t;

void cl_metrics_buf_init(cl_metrics_buf_t *b);
void cl_metrics_buf_free(cl_metrics_buf_t *b); /* NULL-safe; b can be initialised again */
void cl_metrics_printf(cl_metrics_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whether name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), label name ([a-zA-Z_]...). */
int cl_metrics_name_ok(const char *name);
int cl_metrics_label_ok(const char *name);

/*
 * "# HELP name help" (help escaped: backslash, newline) and "# TYPE name type" (counter, gauge,
 * histogram, summary, untyped).  Every sample of a family follows its family line, once.
 * -1 (nothing written) if name or type is not valid.
 */
int cl_metrics_family(cl_metrics_buf_t *b, const char *name, const char *type, const char *help);
/*
 * One sample: name{k="v",...} value.  labels: NULL, or key, value, key, value..., NULL (values
 * escaped: backslash, double quote, newline; a NULL value is written as "").  -1 (nothing
 * written) if a name is not valid.
 */
int cl_metrics_sample(cl_metrics_buf_t *b, const char *name, const char *const *labels,
                      double value);
/* The shortest text that reads back as v ("+Inf", "-Inf", "NaN" included) into buf (>= 32). */
const char *cl_metrics_fmt_double(double v, char *buf, size_t len);

/*
 * A histogram with fixed upper bounds (seconds, increasing, at most CL_METRICS_BUCKETS_MAX;
 * +Inf is implicit).  Observations and the writer may run on different threads.
 */
typedef struct cl_metrics_hist {
    pthread_mutex_t lock;
    size_t nb;
    double bounds[CL_METRICS_BUCKETS_MAX];
    uint64_t counts[CL_METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative; last: +Inf */
    double sum;
    uint64_t count;
} cl_metrics_hist_t;

/* Bounds for run durations: 5 ms .. 10 min (applies on real guests take minutes). */
extern const double cl_metrics_duration_bounds[];
extern const size_t cl_metrics_duration_nbounds;

/* -1 and err if the bounds are not increasing or too many. */
int cl_metrics_hist_init(cl_metrics_hist_t *h, const double *bounds, size_t n, cl_err_t *err);
void cl_metrics_hist_destroy(cl_metrics_hist_t *h); /* NULL-safe */
void cl_metrics_hist_observe(cl_metrics_hist_t *h, double v);
/*
 * The samples of h under family name (its HELP/TYPE written by the caller): name_bucket with
 * le (cumulative, ending with +Inf), name_sum, name_count, each with labels (as in _sample).
 */
int cl_metrics_hist_write(cl_metrics_buf_t *b, const char *name, const char *const *labels,
                          cl_metrics_hist_t *h);

/* ========================================================================================== */
/* The HTTP endpoint                                                                          */
/* ========================================================================================== */

typedef struct cl_metrics_server cl_metrics_server_t;

/*
 * Write the whole exposition into b (srv: the server asking, for its own counters); -1 if it
 * could not (answered 500).  Called from the server's thread.
 */
typedef int (*cl_metrics_collect_fn)(void *ud, cl_metrics_server_t *srv, cl_metrics_buf_t *b);

typedef struct cl_metrics_server_opts {
    const char *address; /* numeric IPv4 or IPv6 address to bind */
    unsigned port;       /* 0: any free port (cl_metrics_server_port says which) */
    int allow_any;       /* accept a non-loopback address (cloudd --metrics-any) */
    unsigned io_ms;      /* 0: CL_METRICS_IO_MS */
    cl_metrics_collect_fn collect;
    void *ud;
    void (*ud_free)(void *ud); /* optional: called by cl_metrics_server_free (and on failure) */
} cl_metrics_server_opts_t;

/*
 * "ADDR:PORT", "[ADDR]:PORT" (IPv6), ":PORT" or "PORT" (ADDR 127.0.0.1; "localhost" too) into
 * addr (numeric) and *port.  -1 and err naming the option if it is not that.
 */
int cl_metrics_parse_listen(const char *spec, char *addr, size_t len, unsigned *port,
                            cl_err_t *err);
/* Whether a numeric address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x.y.z). */
int cl_metrics_loopback(const char *addr);
/* cl_metrics_parse_listen, then refuses a non-loopback address unless allow_any: 0, or -1. */
int cl_metrics_check_listen(const char *spec, int allow_any, cl_err_t *err);

/*
 * Bind (a non-loopback address only with allow_any), listen and start the server's thread:
 * GET (and HEAD) /metrics is answered 200 with the collector's text; another path 404; another
 * method 405; a request head over CL_METRICS_REQUEST_MAX 431; a malformed one 400; a client
 * that has not sent its request within io_ms 408; every answer closes the connection.  NULL
 * and err on failure.
 */
cl_metrics_server_t *cl_metrics_server_new(const cl_metrics_server_opts_t *o, cl_err_t *err);
/* Stop the thread, close every socket, free.  NULL-safe. */
void cl_metrics_server_free(cl_metrics_server_t *s);
unsigned cl_metrics_server_port(const cl_metrics_server_t *s);
/* Answers given so far with this HTTP status code (200, 404, 405...), for its own metrics. */
uint64_t cl_metrics_server_answers(cl_metrics_server_t *s, int code);

/* ========================================================================================== */
/* cloudd's collector (cl_metrics_daemon.c)                                                   */
/* ========================================================================================== */

struct cl_engine;
struct cl_monitor;
struct cl_peers;

typedef struct cl_metrics_daemon_opts {
    struct cl_engine *engine;   /* borrowed: outlive the server */
    struct cl_monitor *monitor; /* NULL: --no-monitor */
    struct cl_peers *peers;     /* NULL: no peer layer */
    const char *version;        /* cloudd's */
    const char *listen;         /* cloudd --metrics */
    int allow_any;              /* cloudd --metrics-any */
} cl_metrics_daemon_opts_t;

/*
 * Serve cloudd's metrics on o->listen (see cl_metrics_parse_listen): logs
 * "+metrics listen=ADDR:PORT".  NULL and err on failure (refused address, port in use).
 */
cl_metrics_server_t *cl_metrics_daemon_start(const cl_metrics_daemon_opts_t *o, cl_err_t *err);

#endif
