/*
 * cl_handover: hands a control request from outside a cloud's pool to its leader (see
 * cl_handover.h).  Every question is a signed cl_rpc request to a pool daemon's peer port, as
 * a "client" sender (not a pool entry: the daemons let clients ask only cloud-level questions,
 * under one replay window per cloud); this machine's incarnation is its wall clock in µs, so a
 * later run is always newer than an earlier one.
 */
#include "cl_handover.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cl_msg.h"
#include "cl_net.h"
#include "cl_rpc.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define CL_HANDOVER_RETRY_MS 100    /* between rounds of questions while no leader acts */
#define CL_HANDOVER_SILENT_ROUNDS 3 /* rounds without any answer before giving up */

typedef struct ctx {
    const cl_spec_t *spec;
    unsigned char key[CL_MSG_KEY_MAX];
    size_t keylen;
    char sender[CL_MSG_SENDER_MAX + 1];
    uint64_t inc;
    char tried[768]; /* the last round's "host: why; host: why" */
    size_t ntried;
    int answered; /* some daemon gave an authenticated answer */
} ctx_t;

static void note(ctx_t *x, const char *entry, const cl_err_t *e)
{
    size_t room = sizeof(x->tried) - x->ntried;
    int n;

    if (room < 2)
        return;
    n = snprintf(x->tried + x->ntried, room, "%s%s: %s", x->ntried ? "; " : "", entry, e->msg);
    x->ntried += n < 0 ? 0 : (size_t)n >= room ? room - 1 : (size_t)n;
}

/* The daemon of pool entry `entry` as a remote host, with these timeouts; NULL and err. */
static cl_host_t *host_for(ctx_t *x, const char *entry, unsigned connect_ms, unsigned reply_ms,
                           cl_err_t *err)
{
    char addr[NI_MAXHOST];
    cl_host_t *h;

    if (cl_net_numeric(entry, addr, sizeof(addr), err) < 0)
        return NULL;
    h = cl_host_remote_new(entry, addr, x->spec->peer_port, x->spec->name, x->key, x->keylen,
                           x->sender, x->inc, err);
    if (h)
        cl_host_remote_set_timeouts(h, connect_ms, reply_ms, connect_ms);
    return h;
}

/* Who leads, as entry's daemon sees it: 1 (leader, epoch), 0 (none yet) or -1 and err. */
static int ask_leader(ctx_t *x, const char *entry, char *leader, size_t cap, uint64_t *epoch,
                      cl_err_t *err)
{
    cl_host_t *h = host_for(x, entry, CL_HANDOVER_ASK_MS, CL_HANDOVER_ASK_MS, err);
    json_object *res = NULL, *v;
    int rc = -1;

    if (!h)
        return -1;
    if (cl_host_remote_call(h, CL_RPC_LEADER, 0, json_object_new_object(), CL_HANDOVER_ASK_MS, &res,
                            err) == 0) {
        x->answered = 1;
        rc = 0;
        if (json_object_object_get_ex(res, "leader", &v) &&
            json_object_is_type(v, json_type_string) && json_object_get_string_len(v) < (int)cap) {
            snprintf(leader, cap, "%s", json_object_get_string(v));
            *epoch =
                json_object_object_get_ex(res, "epoch", &v) && json_object_is_type(v, json_type_int)
                    ? (uint64_t)json_object_get_int64(v)
                    : 0;
            rc = *epoch > 0 ? 1 : 0;
        }
        if (rc == 0)
            cl_err_set(err, CL_ERR_ELECTION, 0, entry, "find leader", "no leader yet");
    }
    json_object_put(res);
    cl_host_free(h);
    return rc;
}

int cl_handover_send(cl_host_t *h, uint64_t epoch, json_object *req, unsigned timeout_ms,
                     json_object **answer, json_object **events, cl_err_t *err)
{
    json_object *args = json_object_new_object(), *res = NULL, *v;
    const char *leader = cl_host_name(h);
    int rc = -1;

    *answer = *events = NULL;
    if (cl_rpc_json_put(args, "request", json_object_get(req)) < 0)
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, leader, "control", "out of memory");
    if (cl_host_remote_call(h, CL_RPC_CONTROL, epoch, args, timeout_ms, &res, err) == 0) {
        if (!json_object_object_get_ex(res, "answer", &v) ||
            !json_object_is_type(v, json_type_object)) {
            cl_err_set(err, CL_ERR_PROTO, 0, leader, "control", "the leader's answer is empty");
        } else {
            *answer = json_object_get(v);
            *events = json_object_object_get_ex(res, "events", &v) &&
                              json_object_is_type(v, json_type_array)
                          ? json_object_get(v)
                          : json_object_new_array();
            rc = 0;
        }
    }
    json_object_put(res);
    return rc;
}

int cl_handover_retry(const cl_err_t *err)
{
    return err->domain == CL_ERR_ELECTION &&
           (err->code == CL_RPC_NOT_LEADER || err->code == CL_RPC_EPOCH_MOVED);
}

/* The request to leader (epoch): 0 with the answer, -1 and err. */
static int send_control(ctx_t *x, const char *leader, uint64_t epoch, json_object *req,
                        unsigned timeout_ms, json_object **answer, json_object **events,
                        cl_err_t *err)
{
    cl_host_t *h = host_for(x, leader, CL_RPC_CONNECT_MS, timeout_ms, err);
    int rc;

    if (!h)
        return -1;
    rc = cl_handover_send(h, epoch, req, timeout_ms, answer, events, err);
    cl_host_free(h);
    return rc;
}

int cl_handover(const cl_spec_t *spec, json_object *req, unsigned timeout_ms, unsigned elect_ms,
                volatile int *cancel, json_object **answer, json_object **events, cl_err_t *err)
{
    char leader[CL_MSG_SENDER_MAX + 1], host[256];
    uint64_t epoch = 0, deadline;
    ctx_t x;
    cl_err_t e;
    size_t i;
    int rc = -1, r, rounds = 0;

    *answer = *events = NULL;
    if (!elect_ms)
        elect_ms = CL_HANDOVER_ELECT_MS;
    deadline = cl_time_now_ms() + elect_ms;
    memset(&x, 0, sizeof(x));
    x.spec = spec;
    if (!spec->secret_file || !*spec->secret_file)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "find leader",
                          "secret_file: this host is outside the pool of cloud %s; to hand the "
                          "spec to its leader it needs the cloud's secret (the same key file as "
                          "on the pool hosts)",
                          spec->name);
    if (cl_msg_key_load(spec->secret_file, x.key, sizeof(x.key), &x.keylen, &e) < 0)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "find leader", "secret_file: %s", e.msg);
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(x.sender, sizeof(x.sender), "client:%.*s", (int)sizeof(x.sender) - 8, host);
    x.inc = cl_time_real_us();

    for (;;) {
        x.ntried = 0;
        x.tried[0] = '\0';
        for (i = 0, r = 0; i < spec->npool && r != 1; i++) {
            cl_err_clear(&e);
            r = ask_leader(&x, spec->pool[i], leader, sizeof(leader), &epoch, &e);
            if (r != 1)
                note(&x, spec->pool[i], &e);
        }
        if (r == 1) {
            cl_err_clear(&e);
            if (send_control(&x, leader, epoch, req, timeout_ms, answer, events, &e) == 0) {
                rc = 0;
                break;
            }
            if (!cl_handover_retry(&e)) {
                if (err)
                    *err = e; /* the leader's own error */
                break;
            }
            note(&x, leader, &e); /* the leader changed on the way: ask again */
        }
        /* an election in progress is waited for; a pool where nobody answers is not */
        if ((cancel && *cancel) || cl_time_now_ms() + CL_HANDOVER_RETRY_MS > deadline ||
            (!x.answered && ++rounds >= CL_HANDOVER_SILENT_ROUNDS)) {
            if (!x.answered)
                cl_err_set(err, CL_ERR_ELECTION, 0, spec->pool[0], "find leader",
                           "this host is not in the pool of cloud %s and no daemon of the pool "
                           "answered on port %u (%s): check that cloudd runs on the pool hosts "
                           "with --address and --peer-port %u, that this host reaches them, and "
                           "that the cloud's manifest was applied there",
                           spec->name, spec->peer_port, x.tried, spec->peer_port);
            else
                cl_err_set(err, CL_ERR_ELECTION, 0, spec->pool[0], "find leader",
                           "no leader of cloud %s acts after %u ms (%s): a majority of its pool "
                           "must run cloudd with the cloud applied",
                           spec->name, elect_ms, x.tried);
            break;
        }
        usleep(CL_HANDOVER_RETRY_MS * 1000);
    }
    OPENSSL_cleanse(x.key, sizeof(x.key));
    return rc;
}
