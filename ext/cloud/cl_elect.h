/*
 * cl_elect: the election runtime of one daemon (doc/ELECTION.md): one UDP socket on the
 * daemon's address, one cl_bully per cloud joined, cl_msg on the wire, epochs and the
 * incarnation persisted under <state>/election/.  It never blocks, sleeps or starts a thread:
 * an external event loop watches cl_elect_fd() and calls cl_elect_on_readable(), and calls
 * cl_elect_on_timer() once cl_elect_next_deadline_ms() has passed.  Time is cl_time_now_ms()
 * (cl_time_set_source injects a clock).
 */
#ifndef CL_ELECT_H
#define CL_ELECT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cl_bully.h"
#include "cl_err.h"

#define CL_ELECT_PORT 7946      /* default UDP peer port */
#define CL_ELECT_DRAIN_MAX 512  /* most datagrams one cl_elect_on_readable() call handles */
#define CL_ELECT_STATE_MAX 4096 /* longest persisted election file read back */
/* <state>/election/<cloud>.json: {"epoch":N}; <state>/election/incarnation: {"incarnation":N} */
#define CL_ELECT_SUBDIR "election"

/*
 * Called when, for a cloud, the leader this daemon knows, its epoch or whether this daemon acts
 * changes: leader is its pool entry (NULL: none known), epoch the leader's (or the newest seen
 * when there is none), acting whether this daemon may mutate the cloud as of that event (ask
 * cl_elect_acting() again right before each mutation).  It must not call cl_elect_join, _leave,
 * _forget or _free; queries are fine.  Not called by _join, _leave, _forget or _free themselves.
 */
typedef void (*cl_elect_change_fn)(void *ud, const char *cloud, const char *leader, uint64_t epoch,
                                   int acting);

/*
 * Map a pool entry to the UDP destination of its daemon (family: this daemon's, AF_INET or
 * AF_INET6; port: the peer port).  0 and *sa, *salen filled, or -1 with err naming host.  Called
 * once per entry at join time, this daemon's own entry included (to recognise it).
 */
typedef int (*cl_elect_resolve_fn)(void *ud, const char *host, int family, unsigned port,
                                   struct sockaddr_storage *sa, socklen_t *salen, cl_err_t *err);

typedef struct cl_elect_opts {
    const char *address;   /* required: this daemon's identity in pools, a numeric IPv4/IPv6 */
    unsigned port;         /* UDP port bound and sent to; 0: CL_ELECT_PORT */
    const char *state_dir; /* required: must exist or its parent must; election/ made in it */
    cl_elect_change_fn on_change; /* optional */
    void *on_change_ud;
    cl_elect_resolve_fn resolve; /* optional: NULL resolves with getaddrinfo */
    void *resolve_ud;
} cl_elect_opts_t;

typedef struct cl_elect cl_elect_t;

/*
 * Bind the socket (non-blocking, close-on-exec), then bump the persisted incarnation (fsync'ed:
 * before any message).  NULL and err on failure (not a numeric address, port in use, state dir
 * not writable, its incarnation file corrupt).  Free with cl_elect_free.
 */
cl_elect_t *cl_elect_new(const cl_elect_opts_t *opts, cl_err_t *err);
/* Closes the socket, forgets every cloud (their persisted epochs stay), wipes the keys. */
void cl_elect_free(cl_elect_t *e);
int cl_elect_fd(const cl_elect_t *e);
/* This daemon's incarnation (persisted, bumped at each cl_elect_new). */
uint64_t cl_elect_incarnation(const cl_elect_t *e);

/*
 * Join cloud: pool[] in priority order (earlier leads; the same on every member), this daemon
 * being one entry (by string or by resolved address).  key (copied) is the cloud's secret
 * (CL_MSG_KEY_MIN..CL_MSG_KEY_MAX bytes).  timers: NULL for the defaults of cl_timeouts.h; its
 * persist fields are ignored.  The persisted epoch is reloaded; the member starts JOINING.
 * Joining again with the same pool and timers only replaces the key; with another pool or
 * other timers it replaces the instance (which starts JOINING again).  -1 and err (naming the
 * cloud, and the host that does not resolve or the addresses that are not this daemon).
 */
int cl_elect_join(cl_elect_t *e, const char *cloud, const char *const *pool, size_t npool,
                  const unsigned char *key, size_t keylen, const cl_bully_config_t *timers,
                  cl_err_t *err);
/*
 * Stop taking part, silently: peers see a dead member.  Its datagrams are dropped from then on
 * (unknown_cloud); the receiver keeps the key and the replay floors until a rejoin or _free.
 * 0, or -1 if not joined.
 */
int cl_elect_leave(cl_elect_t *e, const char *cloud);
/* Leave if joined and remove the persisted epoch: the next join starts from 0. */
int cl_elect_forget(cl_elect_t *e, const char *cloud, cl_err_t *err);

/*
 * The socket is readable: receive up to CL_ELECT_DRAIN_MAX datagrams (until EAGAIN), verify
 * each, feed the election with the time read after receiving it, send what it answers.
 * Garbage is dropped and counted.  Re-read the deadline afterwards.
 */
void cl_elect_on_readable(cl_elect_t *e);
/* Absolute ms on cl_time_now_ms()'s clock of the next timer, UINT64_MAX if none. */
uint64_t cl_elect_next_deadline_ms(const cl_elect_t *e);
/* Ms from now to that deadline (0 if passed), -1 if none: for poll() or virEventUpdateTimeout. */
int cl_elect_timeout_ms(const cl_elect_t *e);
/* Run the timers that are due (calling it early is harmless).  Re-read the deadline afterwards. */
void cl_elect_on_timer(cl_elect_t *e);

/*
 * The leader this daemon knows for cloud: 1 with *leader_index (its priority) and *epoch,
 * 0 if none is known (*leader_index -1, *epoch the newest seen), -1 if not joined.  Either
 * pointer may be NULL.
 */
int cl_elect_leader(const cl_elect_t *e, const char *cloud, int *leader_index, uint64_t *epoch);
/* Whether this daemon may mutate cloud now (fresh clock): leader with a majority.  0 if not. */
int cl_elect_acting(const cl_elect_t *e, const char *cloud);
/*
 * A new object (the caller puts it).  For a cloud: {cloud, state, self, priority, leader (null
 * if none), epoch, epoch_seen, acting, incarnation, members: [{host, priority, self, alive
 * (heard within hb_timeout), last_heard_ms_ago (null: never)}], counters: {sent: {HB: n...},
 * received: {...}, drops: {bad_mac: n...}, send_errors, recv_errors, elections, leader_changes,
 * persist_failures, acks_withheld}}.  With cloud NULL, the daemon's: {address, port,
 * incarnation, clouds: {name: the above}, counters: every cloud's, and drops of datagrams that
 * name no cloud joined}.  NULL if the cloud is not joined or on allocation failure.
 */
json_object *cl_elect_status_json(const cl_elect_t *e, const char *cloud);

#endif
