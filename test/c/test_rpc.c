/*
 * test_rpc: the host-operation transport on loopback.  A server thread serves a local cl_host
 * over test:///default (one in-memory hypervisor for the whole process, so the test sees what
 * the server did through a connection of its own); remote cl_host clients must get what the
 * local host gives, stale epochs are refused and the fence survives a restart, and forged,
 * replayed, cut, oversized, idle or garbage requests are dropped and counted.
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cl_err.h"
#include "cl_host.h"
#include "cl_log.h"
#include "cl_rpc.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_virt.h"

#define URI "test:///default"
#define CLOUD "t-rpc"
#define SELF "127.0.0.1"  /* the serving host's own name (its local cl_host) */
#define LEADER "10.9.8.7" /* the remote clients' sender: the leader's pool entry */
#define FORGER "10.9.8.6" /* a pool entry whose requests the test writes by hand */
#define HOST "rpc-host-b" /* the serving host as the leader's pool names it */
#define IO_MS 300         /* the server's read bound, short for the idle client */
#define DOM "t-rpc-web-0"
#define POOL "t-rpc-pool"
#define VOL "t-rpc-web-0.qcow2"
#define KEY "0123456789abcdef-test-rpc"
#define KEYLEN (sizeof(KEY) - 1)

#define DOM_XML                                                                                    \
    "<domain type='test'><name>" DOM "</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>"      \
    "<os><type arch='x86_64'>hvm</type></os><metadata><cloud:owner "                               \
    "xmlns:cloud=\"urn:x-puppet-cloud:owner:1\" cloud=\"" CLOUD "\" slot=\"" DOM "\" "             \
    "role=\"web\" index=\"3\" ip=\"192.0.2.10\" host=\"" HOST "\" image=\"/img/base.qcow2\" "      \
    "disk=\"\" config=\"c0ffee\" epoch=\"5\" mac=\"52:54:00:00:00:01\"/></metadata></domain>"

static const char *const pool[] = {LEADER, SELF, FORGER};
static char tmp[64], fence_dir[128];

/* ========================================================================================= */
/* A server thread, and hand-made requests                                                   */
/* ========================================================================================= */

enum mode { SERVE, CANNED, SILENT };

typedef struct server {
    cl_rpc_server_t *srv; /* the instance being served (owned by the test) */
    cl_host_t *local;     /* the served host, over its own connection */
    int lfd;              /* listening on 127.0.0.1, ephemeral port */
    unsigned port;
    pthread_t th;
    int running, stop;
    enum mode mode;
    const char *canned; /* CANNED: written back instead of serving */
} server_t;

static cl_host_t *local_for(void *ud, const char *cloud, cl_err_t *err)
{
    server_t *s = ud;

    if (strcmp(cloud, CLOUD) != 0) {
        cl_err_set(err, CL_ERR_STATE, 0, SELF, "rpc", "no cloud %s", cloud);
        return NULL;
    }
    return s->local;
}

static void *serve_loop(void *ud)
{
    server_t *s = ud;

    while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        char *line = NULL;
        size_t len;
        int fd;
        if (poll(&p, 1, 20) <= 0 || (fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        if (s->mode == SERVE) {
            cl_rpc_serve_fd(s->srv, fd, local_for, s);
        } else {
            struct pollfd q = {fd, POLLIN, 0};
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            cl_rpc_read_line(fd, cl_time_now_ms() + 2000, CL_RPC_MAX_LINE, &line, &len);
            if (s->mode == CANNED)
                cl_rpc_write_all(fd, s->canned, strlen(s->canned), cl_time_now_ms() + 2000);
            else
                poll(&q, 1, 2000); /* SILENT: until the client gives up */
            free(line);
        }
        close(fd);
    }
    return NULL;
}

static int server_start(server_t *s, cl_rpc_server_t *srv)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);

    s->srv = srv;
    if (s->lfd < 0) {
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if ((s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
            bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->lfd, 16) < 0 ||
            getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0)
            return -1;
        s->port = ntohs(sa.sin_port);
    }
    __atomic_store_n(&s->stop, 0, __ATOMIC_SEQ_CST);
    if (pthread_create(&s->th, NULL, serve_loop, s) != 0)
        return -1;
    s->running = 1;
    return 0;
}

static void server_stop(server_t *s)
{
    if (!s->running)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(s->th, NULL);
    s->running = 0;
}

/*
 * Send data[0..len) (then shut the write side if half_close) and read what the server says
 * until it closes, into out (NUL-terminated).  Bytes read, or -1 if no connection.
 */
static long raw(unsigned port, const char *data, size_t len, int half_close, char *out, size_t cap)
{
    struct sockaddr_in sa;
    struct timeval tv = {3, 0};
    size_t off = 0;
    long got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (off < len && (n = send(fd, data + off, len - off, MSG_NOSIGNAL)) > 0)
        off += (size_t)n;
    if (half_close)
        shutdown(fd, SHUT_WR);
    while ((size_t)got + 1 < cap && (n = recv(fd, out + got, cap - 1 - (size_t)got, 0)) > 0)
        got += n;
    out[got] = '\0';
    close(fd);
    return got;
}

/* A request of FORGER (or sender) as JSON text into buf. */
static const char *req_json(char *buf, size_t n, const char *op, long long epoch,
                            const char *sender, unsigned long long seq, const char *args)
{
    snprintf(buf, n,
             "{\"v\":1,\"op\":\"%s\",\"cloud\":\"" CLOUD "\",\"epoch\":%lld,\"sender\":\"%s\","
             "\"i\":1,\"q\":%llu,\"args\":%s}",
             op, epoch, sender ? sender : FORGER, seq, args ? args : "{}");
    return buf;
}

/* The signed line of json for cloud (malloc'ed; *len bytes, '\n' included). */
static char *forge(const char *cloud, const char *key, const char *json, size_t *len)
{
    char *line = NULL;
    cl_err_t err;

    if (cl_rpc_frame(cloud, (const unsigned char *)key, strlen(key), json, strlen(json), &line, len,
                     &err) < 0)
        fprintf(stderr, "forge: %s\n", err.msg);
    return line;
}

static uint64_t drops(server_t *s, int reason)
{
    cl_rpc_stats_t st;

    cl_rpc_server_stats(s->srv, &st);
    return reason == CL_RPC_OK ? st.served : st.drops[reason];
}

/* Send one hand-made line; the answer lands in out.  The drop counted for it must be want. */
static void send_expect(server_t *s, const char *line, size_t len, int want, char *out, size_t cap,
                        int at_line)
{
    uint64_t before = drops(s, want);
    long got = raw(s->port, line, len, 0, out, cap);
    char note[64];

    if (!check_true(got > 0, __FILE__, at_line, "an answer"))
        return;
    check_int_eq((long long)drops(s, want), (long long)before + 1, __FILE__, at_line, "drops",
                 cl_rpc_drop_name(want));
    if (want != CL_RPC_OK && want != CL_RPC_DROP_STALE_EPOCH) {
        snprintf(note, sizeof(note), "DROP %s\n", cl_rpc_drop_name(want));
        check_contains(out, note, __FILE__, at_line, "the note");
    }
}
#define SEND_EXPECT(s, line, len, want, out)                                                       \
    send_expect(s, line, len, want, out, sizeof(out), __LINE__)

/* ========================================================================================= */
/* Every operation, remote and local alike                                                   */
/* ========================================================================================= */

static int vol_exists(cl_virt_t *v, const char *pool_name, const char *vol)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(cl_virt_conn(v), pool_name);
    virStorageVolPtr sv = p ? virStorageVolLookupByName(p, vol) : NULL;

    if (sv)
        virStorageVolFree(sv);
    if (p)
        virStoragePoolFree(p);
    virResetLastError();
    return sv != NULL;
}

static void same_doms(const cl_dom_list_t *a, const cl_dom_list_t *b)
{
    size_t i;

    if (!CHECK_INT_EQ(a->n, b->n))
        return;
    for (i = 0; i < a->n; i++) {
        CHECK_STR_EQ(a->v[i].name, b->v[i].name);
        CHECK_STR_EQ(a->v[i].uuid, b->v[i].uuid);
        CHECK_STR_EQ(a->v[i].cloud, b->v[i].cloud);
        CHECK_STR_EQ(a->v[i].slot, b->v[i].slot);
        CHECK_STR_EQ(a->v[i].host, b->v[i].host);
        CHECK_STR_EQ(a->v[i].role, b->v[i].role);
        CHECK_STR_EQ(a->v[i].ip, b->v[i].ip);
        CHECK_STR_EQ(a->v[i].image, b->v[i].image);
        CHECK_STR_EQ(a->v[i].disk, b->v[i].disk);
        CHECK_STR_EQ(a->v[i].config, b->v[i].config);
        CHECK_STR_EQ(a->v[i].mac, b->v[i].mac);
        CHECK_INT_EQ(a->v[i].epoch, b->v[i].epoch);
        CHECK_INT_EQ(a->v[i].index, b->v[i].index);
        CHECK_INT_EQ(a->v[i].state, b->v[i].state);
    }
}

static void test_roundtrip(server_t *s, cl_host_t *rem, cl_host_t *loc, cl_virt_t *v)
{
    cl_dom_list_t ro = {0}, lo = {0};
    cl_idset_t rf = {0}, lf = {0};
    char rpath[512], lpath[512], dir[160];
    cl_err_t err;
    size_t i;

    cl_err_clear(&err);
    CHECK_STR_EQ(cl_host_kind(rem), "remote");
    CHECK_STR_EQ(cl_host_name(rem), HOST);
    CHECK_INT_EQ(cl_host_alive(rem), 1);
    CHECK_INT_EQ(cl_host_is_test(rem), cl_host_is_test(loc));
    CHECK_INT_EQ(cl_host_free_kib(rem), cl_host_free_kib(loc));
    CHECK(!cl_host_same_backend(rem, loc));

    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), CL_DOM_MISSING);
    if (!CHECK_INT_EQ(cl_host_define(rem, 5, DOM, DOM_XML, &err), 0))
        fprintf(stderr, "define: %s: %s\n", err.op, err.msg);
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_SHUTOFF);
    CHECK_INT_EQ(cl_host_start(rem, 5, DOM, &err), 0);
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_RUNNING);
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), CL_DOM_RUNNING);
    cl_host_shutdown_request(rem, 5, DOM); /* nothing on the test driver */
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), CL_DOM_RUNNING);

    /* owned domains and foreign identities, as the local host lists them */
    CHECK_INT_EQ(cl_host_scan(rem, CLOUD, &ro, &rf, &err), 0);
    CHECK_INT_EQ(cl_host_scan(loc, CLOUD, &lo, &lf, &err), 0);
    same_doms(&ro, &lo);
    if (CHECK_INT_EQ(ro.n, 1)) {
        CHECK_STR_EQ(ro.v[0].slot, DOM);
        CHECK_INT_EQ(ro.v[0].index, 3);
        CHECK_INT_EQ(ro.v[0].state, CL_DOM_RUNNING);
    }
    CHECK(rf.n > 0);
    CHECK_INT_EQ(rf.n, lf.n);
    for (i = 0; i < rf.n; i++)
        CHECK(cl_idset_has(&lf, rf.v[i]));
    cl_dom_list_free(&ro);
    CHECK_INT_EQ(cl_host_scan(rem, CLOUD, &ro, NULL, &err), 0); /* without foreign: fine */
    CHECK_INT_EQ(ro.n, 1);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_scan(rem, "other", &ro, NULL, &err), -1); /* another cloud's: no */
    CHECK_INT_EQ(err.domain, CL_ERR_PROTO);

    /* storage: a pool, an overlay (the same path either way), deletes by name and by path */
    snprintf(dir, sizeof(dir), "%s/pool", tmp);
    CHECK_INT_EQ(cl_host_pool_ensure(rem, 5, POOL, dir, &err), 0);
    CHECK_INT_EQ(
        cl_host_overlay(rem, 5, POOL, VOL, "/img/base.qcow2", "qcow2", rpath, sizeof(rpath), &err),
        0);
    CHECK(vol_exists(v, POOL, VOL));
    CHECK_INT_EQ(
        cl_host_overlay(loc, 5, POOL, VOL, "/img/base.qcow2", "qcow2", lpath, sizeof(lpath), &err),
        0);
    CHECK_STR_EQ(rpath, lpath);
    CHECK_INT_EQ(cl_host_overlay(rem, 5, POOL, VOL, "/img/base.qcow2", "qcow2", rpath, 4, &err),
                 -1); /* the path does not fit: said, not cut */
    CHECK_INT_EQ(cl_host_vol_delete_by_name(rem, 5, POOL, VOL, &err), 0);
    CHECK(!vol_exists(v, POOL, VOL));
    CHECK_INT_EQ(
        cl_host_overlay(loc, 5, POOL, VOL, "/img/base.qcow2", "qcow2", lpath, sizeof(lpath), &err),
        0);
    CHECK_INT_EQ(cl_host_vol_delete(rem, 5, POOL, lpath, &err), 0);
    CHECK(!vol_exists(v, POOL, VOL));
    CHECK_INT_EQ(cl_host_vol_delete(rem, 5, NULL, "", &err), 0); /* no pool, no path: nothing */

    CHECK_INT_EQ(cl_host_remove(rem, 5, DOM, 0, &err), 0);
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_MISSING);
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), CL_DOM_MISSING);

    /* libvirt's errors on the server come back naming the host and the operation */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_define(rem, 5, "t-rpc-bad", "<domain type='test'><name>", &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.op, "define t-rpc-bad");
    CHECK(err.msg[0] != '\0');
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_start(rem, 5, "t-rpc-missing", &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.op, "start t-rpc-missing");
    CHECK_INT_EQ(drops(s, CL_RPC_DROP_BAD_MAC) + drops(s, CL_RPC_DROP_REPLAY), 0);

    cl_dom_list_free(&ro);
    cl_dom_list_free(&lo);
    cl_idset_free(&rf);
    cl_idset_free(&lf);
}

/* ========================================================================================= */
/* Fencing                                                                                   */
/* ========================================================================================= */

static void test_fencing(server_t *s, cl_host_t *rem, cl_host_t *loc)
{
    cl_rpc_server_t *again = NULL;
    json_object *doc = NULL, *e;
    char json[512], out[4096] = "";
    char *replayed = NULL, *line = NULL;
    size_t rlen = 0, len = 0;
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_rpc_server_epoch(s->srv, CLOUD), 5); /* taken by test_roundtrip */
    CHECK_INT_EQ(cl_host_define(rem, 4, DOM, DOM_XML, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_ELECTION);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.op, "define " DOM);
    CHECK_CONTAINS(err.msg, "epoch 4 is older than 5 seen by " SELF ": this leader was replaced");
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_MISSING); /* refused: nothing done */
    CHECK_INT_EQ(drops(s, CL_RPC_DROP_STALE_EPOCH), 1);
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), CL_DOM_MISSING); /* reads: any epoch */

    CHECK_INT_EQ(cl_host_define(rem, 6, DOM, DOM_XML, &err), 0);
    CHECK_INT_EQ(cl_rpc_server_epoch(s->srv, CLOUD), 6);
    if (CHECK_INT_EQ(cl_state_load(fence_dir, CLOUD, &doc, &err), 1)) /* on disk before acting */
        CHECK(json_object_object_get_ex(doc, "epoch", &e) && json_object_get_int64(e) == 6);
    json_object_put(doc);

    /* a mutation of FORGER, answered, to be replayed after the restart */
    req_json(json, sizeof(json), "vol_delete_by_name", 6, NULL, 100,
             "{\"pool\":\"t-rpc-none\",\"vol\":\"x\"}");
    if ((replayed = forge(CLOUD, KEY, json, &rlen)))
        SEND_EXPECT(s, replayed, rlen, CL_RPC_OK, out);
    CHECK_CONTAINS(out, "\"ok\":true");

    /* a new instance on the same fence directory: 6 is still the floor */
    server_stop(s);
    again = cl_rpc_server_new(fence_dir, &err);
    if (!CHECK(again != NULL) ||
        !CHECK_INT_EQ(cl_rpc_server_add_cloud(again, CLOUD, (const unsigned char *)KEY, KEYLEN,
                                              pool, 3, &err),
                      0))
        goto cleanup;
    cl_rpc_server_set_io_timeout(again, IO_MS);
    CHECK_INT_EQ(cl_rpc_server_epoch(again, CLOUD), 6);
    cl_rpc_server_free(s->srv);
    s->srv = again; /* the thread's from now on, even if it does not start */
    again = NULL;
    if (!CHECK_INT_EQ(server_start(s, s->srv), 0))
        goto cleanup;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_start(rem, 5, DOM, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_ELECTION);
    CHECK_CONTAINS(err.msg, "epoch 5 is older than 6 seen by " SELF);
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_SHUTOFF);
    CHECK_INT_EQ(cl_host_start(rem, 6, DOM, &err), 0);
    CHECK_INT_EQ(cl_host_state(loc, DOM, &err), CL_DOM_RUNNING);
    /* the replay floor of a sender was persisted with its last mutation */
    if (replayed)
        SEND_EXPECT(s, replayed, rlen, CL_RPC_DROP_REPLAY, out);
    req_json(json, sizeof(json), "vol_delete_by_name", 6, NULL, 101,
             "{\"pool\":\"t-rpc-none\",\"vol\":\"x\"}");
    if ((line = forge(CLOUD, KEY, json, &len)))
        SEND_EXPECT(s, line, len, CL_RPC_OK, out);

    /* the daemon's own fence: its local operations and the epochs the election shows it */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_rpc_server_fence(s->srv, CLOUD, 3, SELF, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_ELECTION);
    CHECK_INT_EQ(cl_rpc_server_fence(s->srv, CLOUD, 7, SELF, &err), 0);
    CHECK_INT_EQ(cl_rpc_server_epoch(s->srv, CLOUD), 7);
    CHECK_INT_EQ(cl_rpc_server_fence(s->srv, "t-rpc-unknown", 7, SELF, &err), -1);
    CHECK_INT_EQ(cl_host_remove(rem, 7, DOM, 0, &err), 0);
cleanup:
    cl_rpc_server_free(again);
    free(replayed);
    free(line);
}

/* ========================================================================================= */
/* Drops: all counted, none fatal                                                            */
/* ========================================================================================= */

static void forged(server_t *s, const char *cloud, const char *key, const char *json, int want,
                   int at_line)
{
    char out[4096];
    size_t len = 0;
    char *line = forge(cloud, key, json, &len);

    if (check_true(line != NULL, __FILE__, at_line, "forged"))
        send_expect(s, line, len, want, out, sizeof(out), at_line);
    free(line);
}
#define FORGED(s, json, want) forged(s, CLOUD, KEY, json, want, __LINE__)

static void test_drops(server_t *s)
{
    char json[1024], out[4096], name[200], args[256];
    const char *ok_args = "{\"name\":\"" DOM "\"}";
    char *line = NULL, *big = NULL;
    size_t len = 0, n;
    uint64_t t0, before;
    cl_host_t *wrong = NULL;
    cl_err_t err;

    /* a wrong key: the client is told why, without being trusted with more */
    cl_err_clear(&err);
    wrong =
        cl_host_remote_new(HOST, "127.0.0.1", s->port, CLOUD,
                           (const unsigned char *)"another-key-of-16-bytes", 23, LEADER, 1, &err);
    if (CHECK(wrong != NULL)) {
        before = drops(s, CL_RPC_DROP_BAD_MAC);
        CHECK_INT_EQ(cl_host_start(wrong, 9, DOM, &err), -1);
        CHECK_INT_EQ(err.domain, CL_ERR_PROTO);
        CHECK_STR_EQ(err.host, HOST);
        CHECK_CONTAINS(err.msg, "refused the request: bad_mac");
        CHECK_INT_EQ(drops(s, CL_RPC_DROP_BAD_MAC), before + 1);
        CHECK_INT_EQ(cl_host_alive(wrong), 0);
    }
    FORGED(s, req_json(json, sizeof(json), "state", 0, NULL, 200, ok_args), CL_RPC_OK);
    forged(s, CLOUD, "another-key-of-16-bytes",
           req_json(json, sizeof(json), "state", 0, NULL, 201, ok_args), CL_RPC_DROP_BAD_MAC,
           __LINE__);

    /* one flipped byte after signing */
    req_json(json, sizeof(json), "state", 0, NULL, 202, ok_args);
    if (CHECK((line = forge(CLOUD, KEY, json, &len)) != NULL)) {
        line[len - 4] ^= 0x01;
        SEND_EXPECT(s, line, len, CL_RPC_DROP_BAD_MAC, out);
        line[len - 4] ^= 0x01;
        SEND_EXPECT(s, line, len, CL_RPC_OK, out); /* the intact one was not used up */
        SEND_EXPECT(s, line, len, CL_RPC_DROP_REPLAY, out);
        /* cut short: the peer closes in the middle of the line */
        before = drops(s, CL_RPC_DROP_TRUNCATED);
        raw(s->port, line, len / 2, 1, out, sizeof(out));
        CHECK_INT_EQ(drops(s, CL_RPC_DROP_TRUNCATED), before + 1);
        CHECK_CONTAINS(out, "DROP truncated");
    }
    free(line);
    line = NULL;

    /* reordered within the window: each once; below it: never */
    FORGED(s, req_json(json, sizeof(json), "state", 0, NULL, 300, ok_args), CL_RPC_OK);
    FORGED(s, req_json(json, sizeof(json), "state", 0, NULL, 290, ok_args), CL_RPC_OK);
    FORGED(s, req_json(json, sizeof(json), "state", 0, NULL, 290, ok_args), CL_RPC_DROP_REPLAY);
    FORGED(s, req_json(json, sizeof(json), "state", 0, NULL, 300 - CL_RPC_WINDOW, ok_args),
           CL_RPC_DROP_REPLAY);

    /* authenticated but wrong */
    forged(s, "t-rpc-other", KEY, req_json(json, sizeof(json), "state", 0, NULL, 310, ok_args),
           CL_RPC_DROP_UNKNOWN_CLOUD, __LINE__);
    FORGED(s, req_json(json, sizeof(json), "state", 0, "10.0.0.99", 311, ok_args),
           CL_RPC_DROP_NOT_MEMBER);
    FORGED(s, req_json(json, sizeof(json), "format_disk", 9, NULL, 312, ok_args),
           CL_RPC_DROP_UNKNOWN_OP);
    FORGED(s, req_json(json, sizeof(json), "start", -1, NULL, 313, ok_args), CL_RPC_DROP_BAD_FIELD);
    FORGED(s,
           req_json(json, sizeof(json), "start", (long long)(UINT64_C(1) << 62) + 1, NULL, 314,
                    ok_args),
           CL_RPC_DROP_BAD_FIELD);
    FORGED(s, req_json(json, sizeof(json), "start", 9, NULL, 315, "{\"name\":7}"),
           CL_RPC_DROP_BAD_FIELD);
    FORGED(s, req_json(json, sizeof(json), "remove", 9, NULL, 316, ok_args),
           CL_RPC_DROP_BAD_FIELD); /* no grace_ms */
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(args, sizeof(args), "{\"name\":\"%s\"}", name);
    FORGED(s, req_json(json, sizeof(json), "start", 9, NULL, 317, args), CL_RPC_DROP_BAD_FIELD);
    FORGED(s,
           "{\"v\":2,\"op\":\"state\",\"cloud\":\"" CLOUD "\",\"epoch\":0,\"sender\":\"" FORGER
           "\",\"i\":1,\"q\":318,\"args\":{}}",
           CL_RPC_DROP_VERSION);
    FORGED(s,
           "{\"v\":1,\"op\":\"state\",\"cloud\":\"t-rpc-other\",\"epoch\":0,\"sender\":\"" FORGER
           "\",\"i\":1,\"q\":319,\"args\":{\"name\":\"x\"}}",
           CL_RPC_DROP_BAD_FIELD); /* signed for one cloud, naming another */
    FORGED(s,
           "{\"v\":1,\"op\":\"state\",\"cloud\":\"" CLOUD "\",\"epoch\":0,\"sender\":\"" FORGER
           "\",\"i\":1,\"q\":320,\"args\":{\"name\":\"x\",\"name\":\"y\"}}",
           CL_RPC_DROP_BAD_JSON); /* duplicate key, nested */
    FORGED(s, "[1,2,3]", CL_RPC_DROP_BAD_JSON);

    /* not even a header */
    SEND_EXPECT(s, "GET / HTTP/1.0\r\n\r\n", 18, CL_RPC_DROP_BAD_HEADER, out);
    SEND_EXPECT(s, "\x01\xff\x00garbage\n", 11, CL_RPC_DROP_BAD_HEADER, out);
    SEND_EXPECT(s, CL_RPC_MAGIC " " CLOUD " zz x\n", 21, CL_RPC_DROP_BAD_HEADER, out);

    /* no newline within the limit */
    n = CL_RPC_MAX_LINE + 16;
    if (CHECK((big = malloc(n)) != NULL)) {
        memset(big, 'A', n);
        before = drops(s, CL_RPC_DROP_OVERSIZED);
        raw(s->port, big, n, 1, out, sizeof(out));
        CHECK_INT_EQ(drops(s, CL_RPC_DROP_OVERSIZED), before + 1);
    }
    free(big);

    /* a client that connects and says nothing: the read is bounded */
    before = drops(s, CL_RPC_DROP_TIMEOUT);
    t0 = cl_time_now_ms();
    raw(s->port, "", 0, 0, out, sizeof(out));
    CHECK(cl_time_now_ms() - t0 >= IO_MS - 50);
    CHECK(cl_time_now_ms() - t0 < 2000);
    CHECK_INT_EQ(drops(s, CL_RPC_DROP_TIMEOUT), before + 1);
    CHECK_CONTAINS(out, "DROP timeout");

    /* and the server still serves */
    req_json(json, sizeof(json), "alive", 0, NULL, 400, NULL);
    if (CHECK((line = forge(CLOUD, KEY, json, &len)) != NULL))
        SEND_EXPECT(s, line, len, CL_RPC_OK, out);
    CHECK_CONTAINS(out, "\"alive\":true");
    free(line);
    cl_host_free(wrong);
}

/* ========================================================================================= */
/* Answers the client must not believe                                                       */
/* ========================================================================================= */

static void test_answers(server_t *s, cl_host_t *rem)
{
    char json[512], genuine[4096], flipped[4096];
    char *line = NULL;
    size_t len = 0;
    unsigned dead_port;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int bound = -1;
    cl_host_t *dead = NULL;
    cl_err_t err;
    uint64_t t0;

    /* a genuine answer, to a request of FORGER */
    req_json(json, sizeof(json), "state", 0, NULL, 500, "{\"name\":\"" DOM "\"}");
    if (!CHECK((line = forge(CLOUD, KEY, json, &len)) != NULL) ||
        !CHECK(raw(s->port, line, len, 0, genuine, sizeof(genuine)) > 0))
        goto cleanup;
    CHECK_CONTAINS(genuine, "\"q\":500");

    server_stop(s);
    s->mode = CANNED;
    s->canned = genuine; /* replayed to another request: not its answer */
    if (!CHECK_INT_EQ(server_start(s, s->srv), 0))
        goto cleanup;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_PROTO);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.msg, "not the answer to this request");
    snprintf(flipped, sizeof(flipped), "%s", genuine);
    flipped[strlen(flipped) - 3] ^= 0x01;
    s->canned = flipped;
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), -1);
    CHECK_CONTAINS(err.msg, "not signed with the key of cloud " CLOUD);
    s->canned = "";
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), -1);
    CHECK_CONTAINS(err.msg, "no whole answer");
    s->canned = CL_RPC_MAGIC " - DROP replay\n";
    CHECK_INT_EQ(cl_host_start(rem, 9, DOM, &err), -1);
    CHECK_CONTAINS(err.msg, "refused the request: replay");
    CHECK_INT_EQ(cl_host_alive(rem), 0);
    CHECK_INT_EQ(cl_host_free_kib(rem), 0);

    /* a daemon that never answers: bounded by the reply timeout */
    server_stop(s);
    s->mode = SILENT;
    if (!CHECK_INT_EQ(server_start(s, s->srv), 0))
        goto cleanup;
    cl_host_remote_set_timeouts(rem, 0, 200, 0);
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(cl_host_state(rem, DOM, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK(cl_time_now_ms() - t0 < 1500);
    cl_host_remote_set_timeouts(rem, 0, CL_RPC_REPLY_MS, 0);
    server_stop(s);
    s->mode = SERVE;
    CHECK_INT_EQ(server_start(s, s->srv), 0);
    CHECK_INT_EQ(cl_host_alive(rem), 1);

    /* nobody listening (a port bound, never listened on); no host without a numeric address */
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!CHECK((bound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0) ||
        !CHECK(bind(bound, (struct sockaddr *)&sa, sizeof(sa)) == 0) ||
        !CHECK(getsockname(bound, (struct sockaddr *)&sa, &sl) == 0))
        goto cleanup;
    dead_port = ntohs(sa.sin_port);
    dead = cl_host_remote_new(HOST, "127.0.0.1", dead_port, CLOUD, (const unsigned char *)KEY,
                              KEYLEN, LEADER, 1, &err);
    if (CHECK(dead != NULL)) {
        CHECK_INT_EQ(cl_host_alive(dead), 0);
        CHECK_INT_EQ(cl_host_is_test(dead), 0);
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_host_define(dead, 9, DOM, DOM_XML, &err), -1);
        CHECK_INT_EQ(err.domain, CL_ERR_SYS);
        CHECK_STR_EQ(err.host, HOST);
        CHECK_CONTAINS(err.op, "define " DOM);
        CHECK_CONTAINS(err.msg, "cannot reach cloudd at 127.0.0.1:");
    }
    CHECK(cl_host_remote_new(HOST, "host.example", 7946, CLOUD, (const unsigned char *)KEY, KEYLEN,
                             LEADER, 1, &err) == NULL);
    CHECK_CONTAINS(err.msg, "not a numeric IP address");
    CHECK(cl_host_remote_new(HOST, "::1", 7946, CLOUD, (const unsigned char *)KEY, 8, LEADER, 1,
                             &err) == NULL); /* a key too short */
cleanup:
    if (bound >= 0)
        close(bound);
    cl_host_free(dead);
    free(line);
}

/* ========================================================================================= */
/* Cloud-level requests, from members and from outside the pool                              */
/* ========================================================================================= */

static int admin_calls;
static char admin_seen[256];

/* The daemon's admin function: leader says who leads; control echoes the request's op. */
static json_object *admin_fn(void *ud, const char *cloud, int op, uint64_t epoch, json_object *args,
                             cl_err_t *err)
{
    json_object *res, *req = NULL, *v = NULL;

    admin_calls++;
    if (op == CL_RPC_CONTROL && epoch != 7) {
        cl_err_set(err, CL_ERR_ELECTION, CL_RPC_EPOCH_MOVED, SELF, "control", "epoch %d moved",
                   (int)epoch);
        return NULL;
    }
    res = json_object_new_object();
    if (op == CL_RPC_LEADER) {
        json_object_object_add(res, "leader", json_object_new_string(SELF));
        json_object_object_add(res, "epoch", json_object_new_int64(7));
    } else {
        json_object_object_get_ex(args, "request", &req);
        json_object_object_get_ex(req, "op", &v);
        snprintf(admin_seen, sizeof(admin_seen), "%s %s", cloud, json_object_get_string(v));
        json_object_object_add(res, "answer", json_object_get(req));
    }
    return res;
}

static void test_clients(server_t *s)
{
    char json[512], out[4096];
    json_object *res = NULL;
    cl_host_t *client;
    cl_err_t err;
    char *line;
    size_t len;
    uint64_t inc = 5000;

    cl_err_clear(&err);
    client = cl_host_remote_new(HOST, "127.0.0.1", s->port, CLOUD, (const unsigned char *)KEY,
                                KEYLEN, "client:admin-box", inc, &err);
    if (!CHECK(client != NULL))
        return;
    /* no admin function yet: a clear error, not a crash */
    CHECK_INT_EQ(
        cl_host_remote_call(client, CL_RPC_LEADER, 0, json_object_new_object(), 2000, &res, &err),
        -1);
    CHECK_CONTAINS(err.msg, "answers no leader request");
    cl_rpc_server_set_admin(s->srv, admin_fn, NULL);
    admin_calls = 0;
    if (CHECK_INT_EQ(cl_host_remote_call(client, CL_RPC_LEADER, 0, json_object_new_object(), 2000,
                                         &res, &err),
                     0))
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(res, "leader")), SELF);
    json_object_put(res);
    res = NULL;
    {
        json_object *args = json_object_new_object(), *req = json_object_new_object();
        json_object_object_add(req, "op", json_object_new_string("apply"));
        json_object_object_add(args, "request", req);
        if (CHECK_INT_EQ(cl_host_remote_call(client, CL_RPC_CONTROL, 7, args, 2000, &res, &err), 0))
            CHECK_STR_EQ(admin_seen, CLOUD " apply");
        json_object_put(res);
        res = NULL;
        args = json_object_new_object();
        req = json_object_new_object();
        json_object_object_add(args, "request", req);
        CHECK_INT_EQ(cl_host_remote_call(client, CL_RPC_CONTROL, 6, args, 2000, &res, &err), -1);
        CHECK_INT_EQ(err.code, CL_RPC_EPOCH_MOVED);
        CHECK_STR_EQ(err.host, SELF); /* a handed-over request's error keeps its host */
    }
    CHECK_INT_EQ(admin_calls, 3);
    /* a client asks no host operation */
    CHECK_INT_EQ(cl_host_alive(client), 0);
    line = forge(CLOUD, KEY,
                 req_json(json, sizeof(json), "define", 9, "client:x", 1,
                          "{\"name\":\"x\",\"xml\":\"<domain/>\"}"),
                 &len);
    SEND_EXPECT(s, line, len, CL_RPC_DROP_NOT_MEMBER, out);
    free(line);
    /* control needs its request object */
    line = forge(CLOUD, KEY, req_json(json, sizeof(json), "control", 7, "client:y", 2, "{}"), &len);
    SEND_EXPECT(s, line, len, CL_RPC_DROP_BAD_FIELD, out);
    free(line);
    /* one window for every client: what a client sent is not accepted again, from anyone */
    line = forge(CLOUD, KEY, req_json(json, sizeof(json), "leader", 0, "client:z", 1, "{}"), &len);
    SEND_EXPECT(s, line, len, CL_RPC_DROP_REPLAY, out); /* incarnation 1 < the admin box's 5000 */
    free(line);
    /* the clients' floor is persisted with a control request and reloaded */
    {
        cl_rpc_server_t *again = cl_rpc_server_new(fence_dir, &err);
        json_object *doc = NULL;
        if (CHECK(again != NULL) &&
            CHECK_INT_EQ(cl_rpc_server_add_cloud(again, CLOUD, (const unsigned char *)KEY, KEYLEN,
                                                 pool, 3, &err),
                         0) &&
            CHECK_INT_EQ(cl_state_load(fence_dir, CLOUD, &doc, &err), 1)) {
            json_object *c = NULL;
            CHECK(json_object_object_get_ex(doc, "clients", &c));
            CHECK_INT_EQ(json_object_get_int64(json_object_object_get(c, "i")), (long long)inc);
        }
        json_object_put(doc);
        cl_rpc_server_free(again);
    }
    cl_host_free(client);
    cl_rpc_server_set_admin(s->srv, NULL, NULL);
}

int main(void)
{
    server_t s = {.lfd = -1, .mode = SERVE};
    cl_rpc_server_t *srv = NULL;
    cl_virt_t *vs = NULL, *vt = NULL;
    cl_host_t *loc = NULL, *rem = NULL;
    cl_err_t err;

    cl_log_set_stream(NULL);
    cl_virt_global_init();
    cl_err_clear(&err);
    check_tmpdir(tmp, sizeof(tmp), "test-rpc");
    snprintf(fence_dir, sizeof(fence_dir), "%s/fence", tmp);
    if (!CHECK_INT_EQ(cl_virt_open(URI, SELF, 0, &vs, &err), 0) ||
        !CHECK_INT_EQ(cl_virt_open(URI, SELF, 0, &vt, &err), 0) ||
        !CHECK((s.local = cl_host_local_new(vs, SELF, &err)) != NULL) ||
        !CHECK((loc = cl_host_local_new(vt, SELF, &err)) != NULL) ||
        !CHECK((srv = cl_rpc_server_new(fence_dir, &err)) != NULL) ||
        !CHECK_INT_EQ(
            cl_rpc_server_add_cloud(srv, CLOUD, (const unsigned char *)KEY, KEYLEN, pool, 3, &err),
            0))
        goto cleanup;
    cl_rpc_server_set_io_timeout(srv, IO_MS);
    if (!CHECK_INT_EQ(server_start(&s, srv), 0))
        goto cleanup;
    srv = NULL; /* s.srv from now on */
    rem = cl_host_remote_new(HOST, "127.0.0.1", s.port, CLOUD, (const unsigned char *)KEY, KEYLEN,
                             LEADER, 1, &err);
    if (!CHECK(rem != NULL))
        goto cleanup;
    test_roundtrip(&s, rem, loc, vt);
    test_fencing(&s, rem, loc);
    test_drops(&s);
    test_answers(&s, rem);
    test_clients(&s);
cleanup:
    server_stop(&s);
    if (loc)
        cl_host_remove(loc, 0, DOM, 0, &err);
    cl_host_free(rem);
    cl_host_free(loc);
    cl_host_free(s.local);
    cl_rpc_server_free(s.srv ? s.srv : srv);
    if (s.lfd >= 0)
        close(s.lfd);
    cl_virt_close(vs);
    cl_virt_close(vt);
    check_rmtree(tmp);
    return check_summary();
}
