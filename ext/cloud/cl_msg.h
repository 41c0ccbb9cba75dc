/*
 * cl_msg: the peer wire format of doc/ELECTION.md, "CLOUD1 <cloud> <hmac-hex> <json>", one
 * datagram a message.  Encoding signs with the cloud's key; decoding checks the header, the
 * HMAC (constant time), then the JSON (bounded depth and size, typed and range-checked fields),
 * the sender's membership, replays and stale epochs.  Every drop is a reason and a counter.
 */
#ifndef CL_MSG_H
#define CL_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"
#include "cl_spec.h"

struct json_tokener;

#define CL_MSG_MAX 1200        /* longest datagram, header included: never fragments on a LAN */
#define CL_MSG_MAGIC "CLOUD1"  /* first word of every message */
#define CL_MSG_VERSION 1       /* the "v" field */
#define CL_MSG_MAC_HEX 64      /* HMAC-SHA256 in lowercase hex */
#define CL_MSG_SENDER_MAX 255  /* longest "s" (a pool entry: host name or address) */
#define CL_MSG_POOL_MAX 1024   /* "p" is below this (and below the cloud's pool size) */
#define CL_MSG_LIVE_HEX_MAX 64 /* "l": members a leader reports live, 4 a hex digit (256) */
#define CL_MSG_NUM_MAX (UINT64_C(1) << 62) /* every number on the wire is in 0..this */
#define CL_MSG_JSON_DEPTH 8                /* nesting accepted in the JSON (unknown fields) */
#define CL_MSG_KEY_MIN 16                  /* shortest secret accepted */
#define CL_MSG_KEY_MAX 4096                /* longest secret accepted */

typedef enum cl_msg_type {
    CL_MSG_HB,          /* leader -> all: heartbeat */
    CL_MSG_HB_ACK,      /* member -> leader: x = the epoch acknowledged, r = the HB's round */
    CL_MSG_ELECTION,    /* candidate -> each higher-priority member */
    CL_MSG_ANSWER,      /* higher-priority member -> candidate: "I am alive, wait" */
    CL_MSG_COORDINATOR, /* winner -> all: "I lead in epoch e" */
    CL_MSG_COORD_ACK,   /* member -> leader: x = the epoch acknowledged, r = the round */
    CL_MSG_TYPE_COUNT
} cl_msg_type_t;

/* Why a datagram was dropped: cl_msg_decode's answer and the index of cl_msg_rx_t.drops. */
enum cl_msg_drop {
    CL_MSG_OK = 0,             /* accepted (not a drop) */
    CL_MSG_DROP_TRUNCATED,     /* ended inside the header, or no JSON after it */
    CL_MSG_DROP_OVERSIZED,     /* longer than CL_MSG_MAX */
    CL_MSG_DROP_BAD_HEADER,    /* not "CLOUD1 <name> <64 lowercase hex> " */
    CL_MSG_DROP_UNKNOWN_CLOUD, /* no key for that cloud here */
    CL_MSG_DROP_BAD_MAC,       /* HMAC does not verify: wrong key, altered bytes */
    CL_MSG_DROP_BAD_JSON,      /* not one JSON object, too deep, trailing bytes, duplicate keys */
    CL_MSG_DROP_BAD_FIELD,     /* a field missing, of the wrong type, too long or out of range */
    CL_MSG_DROP_UNKNOWN_TYPE,  /* "t" is not a known message type */
    CL_MSG_DROP_VERSION,       /* "v" is not CL_MSG_VERSION */
    CL_MSG_DROP_REPLAY,        /* (incarnation, seq) not above the last accepted from the sender */
    CL_MSG_DROP_NOT_MEMBER,    /* "s"/"p" is not an entry of the cloud's pool */
    CL_MSG_DROP_STALE_EPOCH,   /* "e" below the newest epoch accepted from that sender */
    CL_MSG_DROP_COUNT
};
typedef enum cl_msg_drop cl_msg_drop_t;

typedef struct cl_msg {
    cl_msg_type_t type;
    uint64_t epoch;                     /* "e": the sender's newest epoch (leader: its own) */
    char sender[CL_MSG_SENDER_MAX + 1]; /* "s" */
    unsigned prio;                      /* "p": the sender's index in the pool */
    uint64_t inc;                       /* "i": the sender's incarnation */
    uint64_t seq;                       /* "q": strictly increasing within an incarnation */
    int has_ack;                        /* "x" present (required on HB_ACK/COORD_ACK) */
    uint64_t ack_epoch;                 /* "x": the epoch acknowledged */
    int has_round;                      /* "r" present */
    uint64_t round;                     /* "r": leader's round (HB/COORDINATOR), echoed in acks */
    int has_live;                       /* "l" present (HB: the leader's view of its members) */
    char live[CL_MSG_LIVE_HEX_MAX + 1]; /* "l": hex digits; digit k, bit b: member 4k+b is live */
    char cloud[CL_NAME_MAX + 1];        /* filled by cl_msg_decode from the header */
} cl_msg_t;

/* One pool member as seen by a receiver: for replay and stale-epoch checks. */
typedef struct cl_msg_peer {
    int seen;       /* a message of it was accepted */
    uint64_t inc;   /* highest (inc, seq) accepted */
    uint64_t seq;   /*   "   */
    uint64_t epoch; /* newest epoch accepted from it */
} cl_msg_peer_t;

typedef struct cl_msg_cloud {
    char name[CL_NAME_MAX + 1];
    unsigned char *key; /* owned, wiped on free */
    size_t keylen;
    char **pool;          /* owned copies of the pool entries */
    cl_msg_peer_t *peers; /* one per pool entry */
    size_t npool;
} cl_msg_cloud_t;

/* The receiver side: keys, pools and per-sender state of every cloud; counters. */
typedef struct cl_msg_rx {
    cl_msg_cloud_t *clouds; /* owned */
    size_t nclouds;
    struct json_tokener *tok; /* owned, reused by every decode */
    uint64_t accepted;
    uint64_t drops[CL_MSG_DROP_COUNT]; /* indexed by enum cl_msg_drop (drops[0] unused) */
} cl_msg_rx_t;

const char *cl_msg_type_name(cl_msg_type_t type);
/* -1 if name is not a type name */
int cl_msg_type_from_name(const char *name);
/* "truncated", "bad_mac"... ("ok" for CL_MSG_OK, "?" out of range) */
const char *cl_msg_drop_name(int reason);

/*
 * Encode m for cloud, signed with key, into buf (NUL-terminated when room is left; *len
 * excludes it).  The caller fills every field but cloud; -1 if a field is out of range or the
 * message would exceed min(cap, CL_MSG_MAX).
 */
int cl_msg_encode(const cl_msg_t *m, const char *cloud, const unsigned char *key, size_t keylen,
                  char *buf, size_t cap, size_t *len, cl_err_t *err);

/* A receiver with no cloud yet; NULL (and err) on allocation failure.  Free with _free. */
cl_msg_rx_t *cl_msg_rx_new(cl_err_t *err);
void cl_msg_rx_free(cl_msg_rx_t *rx);
/*
 * Add a cloud (or replace its key and pool: per-sender state is kept for entries still in the
 * pool, by name).  key is copied (CL_MSG_KEY_MIN..CL_MSG_KEY_MAX bytes), pool entries too.
 */
int cl_msg_rx_add_cloud(cl_msg_rx_t *rx, const char *cloud, const unsigned char *key, size_t keylen,
                        const char *const *pool, size_t npool, cl_err_t *err);
/*
 * Decode and verify the datagram buf[0..len) (not NUL-terminated).  Returns CL_MSG_OK (0) and
 * fills *out, or the drop reason (> 0) after counting it in rx->drops; *out is then undefined.
 * Never reads past len, never allocates more than a bounded amount (CL_MSG_MAX of JSON).
 */
int cl_msg_decode(cl_msg_rx_t *rx, const char *buf, size_t len, cl_msg_t *out);

/*
 * Read a secret file into buf (a trailing "\n" or "\r\n" is not part of the key).  Refused
 * when it is not a regular file, is accessible by group or others, is larger than cap or
 * shorter than CL_MSG_KEY_MIN bytes; the error names the path.
 */
int cl_msg_key_load(const char *path, unsigned char *buf, size_t cap, size_t *len, cl_err_t *err);

/*
 * Shared with cl_rpc, the TCP transport of the same clouds (same keys, same MAC, same checks).
 * cl_msg_mac_hex: HMAC-SHA256 of data[0..n) under key as 64 lowercase hex digits and a NUL
 * into hex; -1 if the key is out of CL_MSG_KEY_MIN..CL_MSG_KEY_MAX or OpenSSL fails.
 * cl_msg_mac_ok: 1 if hex[0..64) is that MAC (lowercase only; constant-time compare), else 0.
 */
int cl_msg_mac_hex(const unsigned char *key, size_t keylen, const char *data, size_t n,
                   char hex[CL_MSG_MAC_HEX + 1]);
int cl_msg_mac_ok(const unsigned char *key, size_t keylen, const char *data, size_t n,
                  const char *hex);
/*
 * Parse authenticated (still untrusted) text[0..n) as one JSON object with tok, whose creator
 * set the depth limit: strict, valid UTF-8, no NUL, nothing after the object, no duplicate key
 * at any depth.  CL_MSG_OK and *out (the caller puts it), or CL_MSG_DROP_BAD_JSON and NULL.
 */
int cl_msg_parse_object(struct json_tokener *tok, const char *text, size_t n,
                        struct json_object **out);

#endif
