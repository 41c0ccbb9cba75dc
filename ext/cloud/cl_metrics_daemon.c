/*
 * cl_metrics_daemon: what cloudd's metrics endpoint answers (cloudd --metrics, see cl_metrics.h
 * and the README's "Metrics").  Each scrape reads counters where they are kept -- the
 * election's (cl_peers_status), the host-operation server's, the engine's applies, the
 * monitor's repairs and last known slots -- and the process's own figures from /proc.  Nothing
 * here calls libvirt or blocks on the network.
 */
#include "cl_metrics.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cl_bully.h"
#include "cl_engine.h"
#include "cl_log.h"
#include "cl_monitor.h"
#include "cl_msg.h"
#include "cl_peers.h"
#include "cl_rpc.h"

typedef struct dctx {
    cl_metrics_daemon_opts_t o;
    char version[32];
    char address[64]; /* the peer address ("" without a peer layer) */
    double start_time;
} dctx_t;

/* ========================================================================================== */
/* The process                                                                                */
/* ========================================================================================== */

static void process_metrics(cl_metrics_buf_t *b, const dctx_t *x)
{
    long page = sysconf(_SC_PAGESIZE), threads = -1;
    unsigned long long vsize = 0, rss = 0;
    struct rusage ru;
    FILE *fp;
    DIR *d;

    if ((fp = fopen("/proc/self/statm", "r")) != NULL) {
        if (fscanf(fp, "%llu %llu", &vsize, &rss) != 2)
            vsize = rss = 0;
        fclose(fp);
    }
    if ((fp = fopen("/proc/self/stat", "r")) != NULL) {
        char line[1024], *p;
        if (fgets(line, sizeof(line), fp) && (p = strrchr(line, ')')) != NULL &&
            sscanf(p + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %ld",
                   &threads) != 1)
            threads = -1;
        fclose(fp);
    }
    cl_metrics_family(b, "cloud_process_resident_memory_bytes", "gauge",
                      "Resident memory of cloudd in bytes.");
    cl_metrics_sample(b, "cloud_process_resident_memory_bytes", NULL, (double)rss * (double)page);
    cl_metrics_family(b, "cloud_process_virtual_memory_bytes", "gauge",
                      "Virtual memory of cloudd in bytes.");
    cl_metrics_sample(b, "cloud_process_virtual_memory_bytes", NULL, (double)vsize * (double)page);
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        cl_metrics_family(b, "cloud_process_cpu_seconds_total", "counter",
                          "User and system CPU time of cloudd in seconds.");
        cl_metrics_sample(b, "cloud_process_cpu_seconds_total", NULL,
                          (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    }
    if ((d = opendir("/proc/self/fd")) != NULL) {
        struct dirent *de;
        long n = 0;
        while ((de = readdir(d)) != NULL)
            n += de->d_name[0] != '.';
        closedir(d);
        cl_metrics_family(b, "cloud_process_open_fds", "gauge",
                          "File descriptors open in cloudd (this count's own included).");
        cl_metrics_sample(b, "cloud_process_open_fds", NULL, (double)n);
    }
    if (threads > 0) {
        cl_metrics_family(b, "cloud_process_threads", "gauge", "Threads of cloudd.");
        cl_metrics_sample(b, "cloud_process_threads", NULL, (double)threads);
    }
    cl_metrics_family(b, "cloud_process_start_time_seconds", "gauge",
                      "When cloudd started serving metrics, in seconds since the Unix epoch.");
    cl_metrics_sample(b, "cloud_process_start_time_seconds", NULL, x->start_time);
}

/* ========================================================================================== */
/* The election and the host-operation server                                                 */
/* ========================================================================================== */

static double num(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : 0;
}

static const char *str(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && v &&
                   json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* counters.<group>.<key> of a cloud's election status */
static json_object *group(json_object *cloud, const char *g)
{
    json_object *k = NULL, *v = NULL;

    if (json_object_object_get_ex(cloud, "counters", &k))
        json_object_object_get_ex(k, g, &v);
    return v;
}

/* One gauge or counter per cloud from a field of its election status (counters. if counter). */
static void per_cloud(cl_metrics_buf_t *b, json_object *clouds, const char *name, const char *type,
                      const char *help, const char *field, int in_counters)
{
    cl_metrics_family(b, name, type, help);
    json_object_object_foreach(clouds, cname, c)
    {
        json_object *src = c, *k;
        if (in_counters)
            src = json_object_object_get_ex(c, "counters", &k) ? k : NULL;
        cl_metrics_sample(b, name, (const char *[]){"cloud", cname, NULL}, num(src, field));
    }
}

static void election_metrics(cl_metrics_buf_t *b, cl_peers_t *peers)
{
    json_object *st = cl_peers_status(peers, NULL), *clouds = NULL, *counters = NULL, *drops;
    size_t i;
    int t;

    if (!st)
        return;
    json_object_object_get_ex(st, "clouds", &clouds);
    json_object_object_get_ex(st, "counters", &counters);
    if (!clouds || !json_object_is_type(clouds, json_type_object))
        clouds = NULL;
    if (clouds) {
        per_cloud(b, clouds, "cloud_election_epoch", "gauge",
                  "The epoch of the cloud's leader as this daemon knows it (else the newest seen).",
                  "epoch", 0);
        per_cloud(b, clouds, "cloud_election_acting", "gauge",
                  "1 if this daemon leads the cloud with a majority and may act on it.", "acting",
                  0);
        cl_metrics_family(b, "cloud_election_state", "gauge",
                          "1 for this daemon's state in the cloud's election.");
        json_object_object_foreach(clouds, cname, c)
        {
            const char *s = str(c, "state");
            for (t = CL_BULLY_JOINING; s && t <= CL_BULLY_LEADER; t++)
                cl_metrics_sample(
                    b, "cloud_election_state",
                    (const char *[]){"cloud", cname, "state", cl_bully_state_name(t), NULL},
                    strcmp(s, cl_bully_state_name(t)) == 0);
        }
        cl_metrics_family(b, "cloud_election_leader_info", "gauge",
                          "1 for the cloud's leader as this daemon knows it (none: no sample).");
        json_object_object_foreach(clouds, cname2, c2)
        {
            const char *l = str(c2, "leader");
            if (l)
                cl_metrics_sample(b, "cloud_election_leader_info",
                                  (const char *[]){"cloud", cname2, "leader", l, NULL}, 1);
        }
        cl_metrics_family(b, "cloud_election_member_up", "gauge",
                          "1 if the pool host was heard within the heartbeat timeout (directly, "
                          "or by the leader), 0 if silent.");
        json_object_object_foreach(clouds, cname3, c3)
        {
            json_object *members = NULL, *v;
            json_object_object_get_ex(c3, "members", &members);
            for (i = 0; members && i < json_object_array_length(members); i++) {
                json_object *m = json_object_array_get_idx(members, i);
                cl_metrics_sample(b, "cloud_election_member_up",
                                  (const char *[]){"cloud", cname3, "host", str(m, "host"), NULL},
                                  json_object_object_get_ex(m, "alive", &v) &&
                                      json_object_get_boolean(v));
            }
        }
        per_cloud(b, clouds, "cloud_election_elections_total", "counter",
                  "Elections started by this daemon.", "elections", 1);
        per_cloud(b, clouds, "cloud_election_leader_changes_total", "counter",
                  "Times the leader this daemon knows changed (itself included).", "leader_changes",
                  1);
        per_cloud(b, clouds, "cloud_election_persist_failures_total", "counter",
                  "Epochs that could not be persisted (the election then stalls).",
                  "persist_failures", 1);
        cl_metrics_family(b, "cloud_election_messages_total", "counter",
                          "Election datagrams sent (one per destination) and accepted, by type.");
        json_object_object_foreach(clouds, cname4, c4)
        {
            static const char *const dirs[] = {"sent", "received"};
            for (i = 0; i < 2; i++) {
                json_object *g = group(c4, dirs[i]);
                for (t = 0; t < CL_MSG_TYPE_COUNT; t++)
                    cl_metrics_sample(b, "cloud_election_messages_total",
                                      (const char *[]){"cloud", cname4, "direction", dirs[i],
                                                       "type", cl_msg_type_name(t), NULL},
                                      num(g, cl_msg_type_name(t)));
            }
        }
    }
    cl_metrics_family(b, "cloud_election_drops_total", "counter",
                      "Election datagrams dropped by this daemon, by reason (every cloud, and "
                      "those naming no cloud joined here).");
    if (counters && json_object_object_get_ex(counters, "drops", &drops))
        for (t = CL_MSG_OK + 1; t < CL_MSG_DROP_COUNT; t++)
            cl_metrics_sample(b, "cloud_election_drops_total",
                              (const char *[]){"reason", cl_msg_drop_name(t), NULL},
                              num(drops, cl_msg_drop_name(t)));
    cl_metrics_family(b, "cloud_election_socket_errors_total", "counter",
                      "Election datagrams that could not be sent or received.");
    cl_metrics_sample(b, "cloud_election_socket_errors_total",
                      (const char *[]){"direction", "send", NULL}, num(counters, "send_errors"));
    cl_metrics_sample(b, "cloud_election_socket_errors_total",
                      (const char *[]){"direction", "receive", NULL}, num(counters, "recv_errors"));
    json_object_put(st);
}

static void rpc_metrics(cl_metrics_buf_t *b, cl_peers_t *peers)
{
    cl_rpc_stats_t st;
    int r;

    cl_peers_rpc_stats(peers, &st);
    cl_metrics_family(
        b, "cloud_rpc_requests_total", "counter",
        "Host operations and cloud-level requests from peers executed here, by "
        "result (ok, failed: the operation failed, unanswered: the answer was lost).");
    cl_metrics_sample(b, "cloud_rpc_requests_total", (const char *[]){"result", "ok", NULL},
                      (double)(st.served - st.failed));
    cl_metrics_sample(b, "cloud_rpc_requests_total", (const char *[]){"result", "failed", NULL},
                      (double)st.failed);
    cl_metrics_sample(b, "cloud_rpc_requests_total", (const char *[]){"result", "unanswered", NULL},
                      (double)st.unanswered);
    cl_metrics_family(b, "cloud_rpc_drops_total", "counter",
                      "Peer requests refused before execution, by reason (stale_epoch: fencing).");
    for (r = CL_RPC_OK + 1; r < CL_RPC_DROP_COUNT; r++)
        cl_metrics_sample(b, "cloud_rpc_drops_total",
                          (const char *[]){"reason", cl_rpc_drop_name(r), NULL},
                          (double)st.drops[r]);
}

/* ========================================================================================== */
/* The collector                                                                              */
/* ========================================================================================== */

static int collect(void *ud, cl_metrics_server_t *srv, cl_metrics_buf_t *b)
{
    static const int codes[] = {200, 400, 404, 405, 408, 431, 500};
    const dctx_t *x = ud;
    char code[8];
    size_t i;

    cl_metrics_family(b, "cloud_daemon_info", "gauge", "cloudd's version and peer address.");
    cl_metrics_sample(b, "cloud_daemon_info",
                      (const char *[]){"version", x->version, "address", x->address, NULL}, 1);
    process_metrics(b, x);
    if (x->o.peers) {
        election_metrics(b, x->o.peers);
        rpc_metrics(b, x->o.peers);
    }
    cl_engine_metrics(x->o.engine, b);
    cl_monitor_metrics(x->o.monitor, b);
    cl_metrics_family(b, "cloud_metrics_requests_total", "counter",
                      "Answers of this endpoint by HTTP status code (this one not counted yet).");
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        snprintf(code, sizeof(code), "%d", codes[i]);
        cl_metrics_sample(b, "cloud_metrics_requests_total", (const char *[]){"code", code, NULL},
                          (double)cl_metrics_server_answers(srv, codes[i]));
    }
    return b->oom ? -1 : 0;
}

cl_metrics_server_t *cl_metrics_daemon_start(const cl_metrics_daemon_opts_t *o, cl_err_t *err)
{
    cl_metrics_server_opts_t so;
    cl_metrics_server_t *srv;
    char addr[64];
    unsigned port;
    dctx_t *x;
    json_object *st;
    struct timespec ts;

    if (cl_metrics_parse_listen(o->listen, addr, sizeof(addr), &port, err) < 0)
        return NULL;
    if (!(x = calloc(1, sizeof(*x)))) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics", "out of memory");
        return NULL;
    }
    x->o = *o;
    snprintf(x->version, sizeof(x->version), "%s", o->version ? o->version : "");
    if (o->peers && (st = cl_peers_status(o->peers, NULL)) != NULL) {
        const char *a = str(st, "address");
        snprintf(x->address, sizeof(x->address), "%s", a ? a : "");
        json_object_put(st);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    x->start_time = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1e3;
    memset(&so, 0, sizeof(so));
    so.address = addr;
    so.port = port;
    so.allow_any = o->allow_any;
    so.collect = collect;
    so.ud = x;
    so.ud_free = free;
    if (!(srv = cl_metrics_server_new(&so, err)))
        return NULL;
    cl_log(CL_LOG_INFO, "+metrics", strchr(addr, ':') ? "listen=[%s]:%u" : "listen=%s:%u", addr,
           cl_metrics_server_port(srv));
    return srv;
}
