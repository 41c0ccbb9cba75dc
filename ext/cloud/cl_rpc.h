/*
 * cl_rpc: the leader's host operations over TCP (doc/ELECTION.md, "Transport" and "Fencing").
 * One request a connection, one answer, each a line "CLOUDRPC1 <cloud> <hmac-hex> <json>\n"
 * signed with the cloud's key (cl_msg's MAC).  The client side is a cl_host_t whose operations
 * run on another host's cloudd; the server side, for that cloudd, checks the request (MAC,
 * fields, replay, the leader's epoch against the newest it persisted) before acting.
 */
#ifndef CL_RPC_H
#define CL_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"
#include "cl_host.h"

#define CL_RPC_MAGIC "CLOUDRPC1"             /* first word of every request and answer */
#define CL_RPC_VERSION 1                     /* the "v" field */
#define CL_RPC_MAX_LINE (4u * 1024u * 1024u) /* longest line, '\n' excluded: XML travels */
#define CL_RPC_JSON_DEPTH                                                                          \
    16                       /* nesting accepted: a spec or a status document travels in control   \
                              */
#define CL_RPC_NAME_MAX 127  /* a domain name (cl_dom_t.name) */
#define CL_RPC_ID_MAX 255    /* a pool, a volume, a foreign identity */
#define CL_RPC_PATH_MAX 4095 /* a path on the host */
#define CL_RPC_GRACE_MAX_MS (24u * 3600000u) /* longest shutdown grace of a remove */
#define CL_RPC_WINDOW 64                     /* out-of-order sequence numbers accepted */

/* The operations: those of cl_host_ops_t, by the same names on the wire ("op"). */
typedef enum cl_rpc_op {
    CL_RPC_ALIVE,              /* read-only: {} -> {alive, is_test} */
    CL_RPC_IS_TEST,            /* read-only: {} -> {is_test} */
    CL_RPC_FREE_KIB,           /* read-only: {} -> {kib} */
    CL_RPC_SCAN,               /* read-only: {foreign} -> {owned: [dom...], foreign: [id...]} */
    CL_RPC_STATE,              /* read-only: {name} -> {state} */
    CL_RPC_POOL_ENSURE,        /* {pool, path} -> {} */
    CL_RPC_OVERLAY,            /* {pool, vol, backing, fmt} -> {path} */
    CL_RPC_DEFINE,             /* {name, xml} -> {} */
    CL_RPC_START,              /* {name} -> {} */
    CL_RPC_SHUTDOWN_REQUEST,   /* {name} -> {} */
    CL_RPC_REMOVE,             /* {name, grace_ms} -> {} */
    CL_RPC_VOL_DELETE,         /* {pool (optional), path} -> {} */
    CL_RPC_VOL_DELETE_BY_NAME, /* {pool, vol} -> {} */
    CL_RPC_DESTROY,            /* {name} -> {} (stopped at once, kept defined) */
    /*
     * Cloud-level requests, also from machines outside the pool ("clients": any sender name,
     * one shared replay window), answered by the daemon's admin function, not by a cl_host:
     */
    CL_RPC_LEADER,  /* read-only: {} -> {leader (entry or null), epoch, acting, self} */
    CL_RPC_CONTROL, /* {request: a control request (apply, plan, stop, status)} -> {answer, events}
                     */
    CL_RPC_POKE,    /* member -> leader: {slot, why} -> {} (a domain of the cloud stopped there) */
    CL_RPC_INTENT,  /* leader -> member: {set: absent (ask) | "running" | "stopped" | "forget"}
                     * -> {known, ensure, epoch}: the cloud's last ordered state (cl_engine_intent)
                     */
    CL_RPC_OP_COUNT
} cl_rpc_op_t;

/*
 * Why a request was not executed: cl_rpc_serve_fd's answer and the index of
 * cl_rpc_stats_t.drops.  A stale epoch is answered (an authenticated election error); every
 * other reason gets at most the unauthenticated line "CLOUDRPC1 - DROP <reason>\n".
 */
typedef enum cl_rpc_drop {
    CL_RPC_OK = 0,             /* executed and answered (the operation may have failed) */
    CL_RPC_DROP_TIMEOUT,       /* no whole line within the I/O timeout (idle or slow peer) */
    CL_RPC_DROP_IO,            /* the connection failed, or out of memory */
    CL_RPC_DROP_TRUNCATED,     /* the peer closed before the end of the line or the header */
    CL_RPC_DROP_OVERSIZED,     /* no '\n' within CL_RPC_MAX_LINE bytes */
    CL_RPC_DROP_BAD_HEADER,    /* not "CLOUDRPC1 <name> <64 lowercase hex> <json>" */
    CL_RPC_DROP_UNKNOWN_CLOUD, /* no key for that cloud here */
    CL_RPC_DROP_BAD_MAC,       /* wrong key, altered bytes */
    CL_RPC_DROP_BAD_JSON,      /* not one JSON object, too deep, trailing bytes, duplicate keys */
    CL_RPC_DROP_BAD_FIELD,     /* a field missing, mistyped, too long or out of range */
    CL_RPC_DROP_UNKNOWN_OP,    /* "op" is not an operation */
    CL_RPC_DROP_VERSION,       /* "v" is not CL_RPC_VERSION */
    CL_RPC_DROP_REPLAY,        /* (incarnation, seq) already seen or below the window */
    CL_RPC_DROP_NOT_MEMBER,    /* "sender" is not an entry of the cloud's pool */
    CL_RPC_DROP_STALE_EPOCH,   /* a mutation with an epoch older than the newest seen */
    CL_RPC_DROP_COUNT
} cl_rpc_drop_t;

/* cl_err_t codes of a refused control request (domain CL_ERR_ELECTION): ask who leads again */
#define CL_RPC_NOT_LEADER 100  /* the daemon asked does not lead the cloud (or not yet acts) */
#define CL_RPC_EPOCH_MOVED 101 /* the request named an epoch that is no longer the leader's */

const char *cl_rpc_op_name(int op);          /* "define"...; "?" out of range */
int cl_rpc_op_from_name(const char *name);   /* -1 if not an operation */
int cl_rpc_op_mutates(int op);               /* 1 if the epoch is checked (fenced) */
int cl_rpc_op_admin(int op);                 /* 1 for cloud-level ops: clients may send them */
const char *cl_rpc_drop_name(int reason);    /* "bad_mac"...; "ok"; "?" out of range */
int cl_rpc_drop_from_name(const char *name); /* -1 if not a reason */

/* ========================================================================================= */
/* Client: a pool host reached through its cloudd                                            */
/* ========================================================================================= */

/*
 * A cl_host_t named host_name (the pool entry: errors carry it) whose operations are sent to
 * the cloudd at addr (a numeric IPv4 or IPv6 address: resolve pool entries first, so that no
 * DNS wait hides in an operation) and port, for cloud, signed with key (copied; wiped with
 * the host), as sender (this daemon's pool entry) in its incarnation.  Each mutation carries
 * the epoch the engine gives it; reads carry 0.  Sequence numbers come from one counter per
 * process, so every client of this process and incarnation sends increasing ones.  No I/O
 * here; NULL and err on a bad argument or out of memory.
 */
cl_host_t *cl_host_remote_new(const char *host_name, const char *addr, unsigned port,
                              const char *cloud, const unsigned char *key, size_t keylen,
                              const char *sender, uint64_t incarnation, cl_err_t *err);
/* Override CL_RPC_CONNECT_MS, CL_RPC_REPLY_MS, CL_RPC_PING_MS for h (0 keeps a value). */
void cl_host_remote_set_timeouts(cl_host_t *h, unsigned connect_ms, unsigned reply_ms,
                                 unsigned ping_ms);
/*
 * A request that is not a cl_host operation (CL_RPC_LEADER, CL_RPC_CONTROL) to h's daemon:
 * args is taken; answered within timeout_ms.  0 and *result (the caller puts it), or -1 and err
 * naming h (the daemon's own error, or why its answer is not believed).
 */
struct json_object;
int cl_host_remote_call(cl_host_t *h, int op, uint64_t epoch, struct json_object *args,
                        unsigned timeout_ms, struct json_object **result, cl_err_t *err);

/* ========================================================================================= */
/* Server: what a host daemon runs for each accepted connection of its peer port             */
/* ========================================================================================= */

typedef struct cl_rpc_server cl_rpc_server_t;

typedef struct cl_rpc_stats {
    uint64_t served;                   /* executed and answered (an answer may be an error) */
    uint64_t failed;                   /* of those, the operation failed */
    uint64_t unanswered;               /* executed, but the answer could not be written */
    uint64_t drops[CL_RPC_DROP_COUNT]; /* indexed by cl_rpc_drop_t (drops[0] unused) */
} cl_rpc_stats_t;

/*
 * The host's local cl_host for cloud (borrowed: it must outlive the call), or NULL and err
 * (the answer is then that error).  Called only for authenticated, well-formed requests.
 */
typedef cl_host_t *(*cl_rpc_local_fn)(void *ud, const char *cloud, cl_err_t *err);

/*
 * A server persisting the newest epoch per cloud, and the replay floor of each sender, under
 * fence_dir (in <fence_dir>/clouds/<cloud>.json through cl_state: give it a directory of its
 * own, e.g. <state>/fence, not the state directory, whose files have the same names).  Made
 * if missing.  NULL and err on failure.  Free with cl_rpc_server_free.
 */
cl_rpc_server_t *cl_rpc_server_new(const char *fence_dir, cl_err_t *err);
void cl_rpc_server_free(cl_rpc_server_t *srv); /* NULL-safe; wipes the keys */
/*
 * Serve cloud: key (copied, CL_MSG_KEY_MIN..CL_MSG_KEY_MAX bytes) and the pool whose entries
 * may send requests (copied).  The persisted epoch and replay floors are reloaded (an
 * unreadable fence file is an error: a fence is never silently reset).  Adding a cloud again
 * replaces its key and pool, keeping the epoch and what is known of senders still in the pool.
 */
int cl_rpc_server_add_cloud(cl_rpc_server_t *srv, const char *cloud, const unsigned char *key,
                            size_t keylen, const char *const *pool, size_t npool, cl_err_t *err);
/*
 * The answer to an authenticated cloud-level request (cl_rpc_op_admin) for cloud: a new result
 * object, or NULL and err.  epoch is the request's, args its "args" (borrowed).  A control
 * request's replay floors are persisted before this is called.
 */
typedef struct json_object *(*cl_rpc_admin_fn)(void *ud, const char *cloud, int op, uint64_t epoch,
                                               struct json_object *args, cl_err_t *err);
/* Without one, cloud-level requests are answered with an error. */
void cl_rpc_server_set_admin(cl_rpc_server_t *srv, cl_rpc_admin_fn fn, void *ud);
/* Bound on reading a request and on writing its answer (default CL_RPC_IO_MS; 0 keeps it). */
void cl_rpc_server_set_io_timeout(cl_rpc_server_t *srv, unsigned ms);

/*
 * Read one request from fd (an accepted TCP connection; made non-blocking; still the
 * caller's to close), check it, execute it on local_for(ud, cloud)'s host, write the answer.
 * Returns CL_RPC_OK or the drop reason (counted).  Never blocks longer than the I/O timeout
 * for the request and again for the answer, plus the operation itself.  Thread-safe: a
 * daemon may serve connections on several threads (the fence check and its persistence are
 * serialised; operations run concurrently).
 */
int cl_rpc_serve_fd(cl_rpc_server_t *srv, int fd, cl_rpc_local_fn local_for, void *ud);

/*
 * The fence, for the daemon's own use: epoch against the newest seen for cloud.  Older: -1 and
 * a CL_ERR_ELECTION error naming self (this host).  Newer: persisted (atomically) before 0 is
 * returned.  For epochs learned by the election, and for a leader's operations on its own host.
 */
int cl_rpc_server_fence(cl_rpc_server_t *srv, const char *cloud, uint64_t epoch, const char *self,
                        cl_err_t *err);
/* The newest epoch seen for cloud (0 if none, or not served). */
uint64_t cl_rpc_server_epoch(cl_rpc_server_t *srv, const char *cloud);
void cl_rpc_server_stats(cl_rpc_server_t *srv, cl_rpc_stats_t *out);

/* ========================================================================================= */
/* Framing, shared by both sides (and by tests that forge requests)                          */
/* ========================================================================================= */

typedef struct cl_rpc_header {
    const char *cloud; /* not NUL-terminated: cloud_len bytes */
    size_t cloud_len;
    const char *mac_hex; /* CL_MSG_MAC_HEX bytes */
    const char *json;    /* json_len bytes, up to the end of the line */
    size_t json_len;
} cl_rpc_header_t;

/*
 * "CLOUDRPC1 <cloud> <mac of json> <json>\n" into a malloc'ed *line (NUL-terminated; *len
 * counts the '\n').  -1 and err if json holds a newline or the line would be too long.
 */
int cl_rpc_frame(const char *cloud, const unsigned char *key, size_t keylen, const char *json,
                 size_t json_len, char **line, size_t *len, cl_err_t *err);
/* Split line[0..len) ('\n' excluded): CL_RPC_OK, CL_RPC_DROP_TRUNCATED or _BAD_HEADER. */
int cl_rpc_parse_header(const char *line, size_t len, cl_rpc_header_t *h);
/*
 * Read from fd (non-blocking) up to the first '\n' before deadline (ms, cl_time_now_ms),
 * accepting at most max bytes before it.  CL_RPC_OK with *line (malloc'ed; the '\n' replaced
 * by a NUL; the caller frees) and *len, or _TIMEOUT, _IO, _TRUNCATED, _OVERSIZED.
 */
int cl_rpc_read_line(int fd, uint64_t deadline, size_t max, char **line, size_t *len);
/* poll fd for events until deadline: 0 when ready, 1 when the deadline passed, -1 (errno). */
int cl_rpc_wait(int fd, short events, uint64_t deadline);
/* Write buf[0..len) to fd (non-blocking) before deadline; 0, or -1 with errno (ETIMEDOUT). */
int cl_rpc_write_all(int fd, const char *buf, size_t len, uint64_t deadline);

/*
 * o[k] = v (or append v to array a), v's reference passing to the container, or put here if it
 * cannot be: so a NULL v (a failed json_object_new_*) is one failure to check.  0 or -1.
 */
struct json_object;
int cl_rpc_json_put(struct json_object *o, const char *k, struct json_object *v);
int cl_rpc_json_push(struct json_object *a, struct json_object *v);
/* o[key] as an integer in 0..CL_MSG_NUM_MAX into *out: 0, or -1 (absent, mistyped, out of range).
 */
int cl_rpc_json_num(struct json_object *o, const char *key, uint64_t *out);

#endif
