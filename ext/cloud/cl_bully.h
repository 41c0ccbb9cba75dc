/*
 * cl_bully: the election of one cloud's leader as a pure state machine (doc/ELECTION.md).  It
 * does no I/O and reads no clock: it is fed the time, the messages cl_msg accepted and timer
 * expiries, and answers with actions (messages to send, leadership and acting gained or lost,
 * the next deadline).  The only side effect is the synchronous persist callback of new epochs.
 */
#ifndef CL_BULLY_H
#define CL_BULLY_H

#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"
#include "cl_msg.h"

enum cl_bully_state {
    CL_BULLY_JOINING,  /* just started: listens for a leader for hb_timeout before electing   */
    CL_BULLY_FOLLOWER, /* a leader is known and heard within hb_timeout                      */
    CL_BULLY_ELECTING, /* sent ELECTION to every higher-priority member; await ANSWER        */
    CL_BULLY_WAITING,  /* a higher-priority member answered; await its COORDINATOR           */
    CL_BULLY_LEADER,   /* won: heartbeats out; acts only while it has a quorum               */
};

#define CL_BULLY_ALL (-1)    /* destination: every other member of the pool */
#define CL_BULLY_HIGHER (-2) /* destination: every member of higher priority (lower index) */
#define CL_BULLY_OUT_MAX 8   /* most messages one call asks for */
#define CL_BULLY_RING 64     /* rounds remembered by a leader to date acks (> window/interval) */

/* Persist the newest epoch (fsync'ed) before returning 0; -1 if it could not. */
typedef int (*cl_bully_persist_fn)(void *ud, uint64_t epoch);

typedef struct cl_bully_config {
    uint64_t hb_interval_ms;     /* CL_BULLY_HB_INTERVAL_MS */
    uint64_t hb_timeout_ms;      /* CL_BULLY_HB_TIMEOUT_MS */
    uint64_t answer_timeout_ms;  /* CL_BULLY_ANSWER_TIMEOUT_MS */
    uint64_t coord_timeout_ms;   /* CL_BULLY_COORD_TIMEOUT_MS */
    uint64_t quorum_window_ms;   /* CL_BULLY_QUORUM_WINDOW_MS */
    cl_bully_persist_fn persist; /* required */
    void *persist_ud;
} cl_bully_config_t;

/* One message to send; the caller fills s, p, i, q and encodes it with cl_msg_encode. */
typedef struct cl_bully_send {
    cl_msg_type_t type;
    int dest;           /* a priority, CL_BULLY_ALL or CL_BULLY_HIGHER */
    uint64_t epoch;     /* "e" */
    int has_ack;        /* "x" present */
    uint64_t ack_epoch; /* "x" */
    int has_round;      /* "r" present */
    uint64_t round;     /* "r" */
} cl_bully_send_t;

/* What one call asks of the caller.  Every call resets it. */
typedef struct cl_bully_out {
    cl_bully_send_t send[CL_BULLY_OUT_MAX];
    size_t nsend;
    int gained_leadership; /* became LEADER ("+elected") */
    int lost_leadership;   /* was LEADER, is not any more ("-leader-lost") */
    int gained_acting;     /* may mutate the cloud from now on ("+acting") */
    int lost_acting;       /* must stop mutating the cloud now ("-acting") */
    uint64_t acted_epoch;  /* lost_acting: the epoch it acted in */
    uint64_t deadline;     /* call cl_bully_on_timer at this time (or soon after) */
} cl_bully_out_t;

typedef struct cl_bully_stats {
    uint64_t elections;               /* elections started here */
    uint64_t leader_changes;          /* times the leader known here changed (self included) */
    uint64_t sent[CL_MSG_TYPE_COUNT]; /* datagrams asked for, one per destination */
    uint64_t ignored_stale;           /* claims below the newest epoch seen */
    uint64_t ignored_claims;          /* claims of a member below our live leader */
    uint64_t ignored_acks;            /* acks of another epoch or of a forgotten round */
    uint64_t acks_withheld;           /* acks not sent: promised to another leader */
    uint64_t persist_failures;        /* the persist callback said -1 */
} cl_bully_stats_t;

typedef struct cl_bully cl_bully_t;

/* The defaults of cl_timeouts.h, no persist callback. */
void cl_bully_config_default(cl_bully_config_t *cfg);
/*
 * An instance for the member of priority me (its index) in a pool of npool members; epoch is
 * the newest epoch this member persisted (0 the first time).  Free with cl_bully_free.
 */
cl_bully_t *cl_bully_new(const cl_bully_config_t *cfg, unsigned npool, unsigned me, uint64_t epoch,
                         cl_err_t *err);
void cl_bully_free(cl_bully_t *b);

/* Start (JOINING): listen for a leader.  Also what a restarted member does. */
void cl_bully_start(cl_bully_t *b, uint64_t now, cl_bully_out_t *out);
/* A message accepted by cl_msg_decode for this cloud. */
void cl_bully_on_msg(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out);
/* The deadline of the last out has come. */
void cl_bully_on_timer(cl_bully_t *b, uint64_t now, cl_bully_out_t *out);

enum cl_bully_state cl_bully_state(const cl_bully_t *b);
const char *cl_bully_state_name(enum cl_bully_state state);
/* The leader followed (or this member when LEADER), -1 if none. */
int cl_bully_leader(const cl_bully_t *b);
/* LEADER: its epoch; FOLLOWER: its leader's; otherwise the newest seen. */
uint64_t cl_bully_epoch(const cl_bully_t *b);
/* The newest epoch seen (and persisted). */
uint64_t cl_bully_epoch_seen(const cl_bully_t *b);
/* Whether this member may mutate the cloud at now: LEADER with a strict-majority quorum. */
int cl_bully_acting(const cl_bully_t *b, uint64_t now);
const cl_bully_stats_t *cl_bully_stats(const cl_bully_t *b);
/* The events of out as log lines ("+elected", "-leader-lost", "+acting", "-acting"). */
void cl_bully_log(const cl_bully_t *b, const char *cloud, const cl_bully_out_t *out);

#endif
