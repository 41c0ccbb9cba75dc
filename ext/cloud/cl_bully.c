/*
 * cl_bully: the bully election of doc/ELECTION.md made safe with epochs, quorum and promises,
 * as a pure state machine: time, messages and timer expiries in; messages to send, leadership
 * and acting changes and the next deadline out.  Epochs reach disk (the persist callback)
 * before any message carries them.
 */
#include "cl_bully.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cl_log.h"
#include "cl_timeouts.h"

/*
 * Why two leaders never act at once, even while messages are late, lost or duplicated:
 * - epochs are unique to a member (epoch % npool == its priority), so an epoch names its leader
 *   and an ack for it cannot count for another one;
 * - a leader acts only while acks of a strict majority (itself included) are fresh;
 * - a member that acks a leader promises to ack no other one (nor to count itself) for
 *   quorum_window, and a leader dates an ack by when it sent the round acknowledged, so its
 *   view of a vote ends before the voter's promise does.  A (re)started member promises to
 *   nobody for quorum_window: it may have acked someone just before.
 */
struct cl_bully {
    cl_bully_config_t cfg;
    unsigned npool, me;
    enum cl_bully_state state;
    uint64_t seen;     /* newest epoch seen, persisted: every message carries it as "e" */
    uint64_t epoch;    /* LEADER: its own; FOLLOWER: its leader's */
    int leader;        /* priority of the leader followed, me when LEADER, -1 if none */
    int last_leader;   /* the last one known, for stats.leader_changes */
    uint64_t heard;    /* FOLLOWER: when the leader's last claim arrived */
    uint64_t timer;    /* JOINING, ELECTING, WAITING: when the state times out */
    uint64_t next_hb;  /* LEADER: next heartbeat */
    uint64_t since;    /* LEADER: when this term began */
    int acting, acted; /* LEADER: has a quorum now; had one in this term */
    uint64_t round;    /* last round (HB or COORDINATOR) sent */
    uint64_t ring_round[CL_BULLY_RING], ring_sent[CL_BULLY_RING]; /* round -> when sent */
    uint64_t unfit_until; /* after a failed persist: answers no ELECTION until then */
    int prom;             /* member our acks support (-1: none may be supported yet) */
    uint64_t prom_until;  /* until then, no ack (and no own vote) for another member */
    int owed;             /* FOLLOWER: an ack withheld for a promise, sent when it runs out */
    cl_msg_type_t owed_type;
    uint64_t owed_round;
    uint64_t *ack_until; /* LEADER: per member, when its freshest ack stops counting */
    cl_bully_stats_t stats;
};

static const char *const state_names[] = {
    [CL_BULLY_JOINING] = "joining",   [CL_BULLY_FOLLOWER] = "follower",
    [CL_BULLY_ELECTING] = "electing", [CL_BULLY_WAITING] = "waiting",
    [CL_BULLY_LEADER] = "leader",
};

/* ---------------------------------------------------------------------------------------- */
/* Life cycle and queries                                                                    */
/* ---------------------------------------------------------------------------------------- */

void cl_bully_config_default(cl_bully_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hb_interval_ms = CL_BULLY_HB_INTERVAL_MS;
    cfg->hb_timeout_ms = CL_BULLY_HB_TIMEOUT_MS;
    cfg->answer_timeout_ms = CL_BULLY_ANSWER_TIMEOUT_MS;
    cfg->coord_timeout_ms = CL_BULLY_COORD_TIMEOUT_MS;
    cfg->quorum_window_ms = CL_BULLY_QUORUM_WINDOW_MS;
}

cl_bully_t *cl_bully_new(const cl_bully_config_t *cfg, unsigned npool, unsigned me, uint64_t epoch,
                         cl_err_t *err)
{
    const char *op = "start election";
    cl_bully_t *b;

    if (!cfg || !cfg->persist) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "no persist callback for epochs");
        return NULL;
    }
    if (npool == 0 || npool > CL_MSG_POOL_MAX || me >= npool) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "priority %u in a pool of %u members", me,
                   npool);
        return NULL;
    }
    if (!cfg->hb_interval_ms || !cfg->answer_timeout_ms || !cfg->coord_timeout_ms ||
        cfg->hb_timeout_ms <= cfg->hb_interval_ms || cfg->quorum_window_ms <= cfg->hb_interval_ms ||
        cfg->quorum_window_ms / cfg->hb_interval_ms >= CL_BULLY_RING / 2) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op,
                   "timers: hb_interval %" PRIu64 " ms must be > 0 and below hb_timeout %" PRIu64
                   " ms and quorum_window %" PRIu64 " ms (< %d intervals); answer and coord "
                   "timeouts > 0",
                   cfg->hb_interval_ms, cfg->hb_timeout_ms, cfg->quorum_window_ms,
                   CL_BULLY_RING / 2);
        return NULL;
    }
    if (epoch > CL_MSG_NUM_MAX) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "persisted epoch %" PRIu64 " out of range",
                   epoch);
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (b)
        b->ack_until = calloc(npool, sizeof(*b->ack_until));
    if (!b || !b->ack_until) {
        free(b);
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, op, "out of memory");
        return NULL;
    }
    b->cfg = *cfg;
    b->npool = npool;
    b->me = me;
    b->seen = b->epoch = epoch;
    b->leader = b->last_leader = -1;
    b->prom = -1;
    b->state = CL_BULLY_JOINING;
    return b;
}

void cl_bully_free(cl_bully_t *b)
{
    if (!b)
        return;
    free(b->ack_until);
    free(b);
}

enum cl_bully_state cl_bully_state(const cl_bully_t *b)
{
    return b->state;
}

const char *cl_bully_state_name(enum cl_bully_state state)
{
    return (unsigned)state <= CL_BULLY_LEADER ? state_names[state] : "?";
}

int cl_bully_leader(const cl_bully_t *b)
{
    return b->state == CL_BULLY_LEADER || b->state == CL_BULLY_FOLLOWER ? b->leader : -1;
}

uint64_t cl_bully_epoch(const cl_bully_t *b)
{
    return b->state == CL_BULLY_LEADER || b->state == CL_BULLY_FOLLOWER ? b->epoch : b->seen;
}

uint64_t cl_bully_epoch_seen(const cl_bully_t *b)
{
    return b->seen;
}

const cl_bully_stats_t *cl_bully_stats(const cl_bully_t *b)
{
    return &b->stats;
}

/* Whether our acks (or our own vote) may go to member p at now. */
static int may_support(const cl_bully_t *b, int p, uint64_t now)
{
    return now >= b->prom_until || b->prom == p;
}

static unsigned quorum_count(const cl_bully_t *b, uint64_t now)
{
    unsigned m, n = may_support(b, (int)b->me, now) ? 1 : 0;

    for (m = 0; m < b->npool; m++)
        if (m != b->me && b->ack_until[m] > now)
            n++;
    return n;
}

int cl_bully_acting(const cl_bully_t *b, uint64_t now)
{
    return b->state == CL_BULLY_LEADER && 2 * quorum_count(b, now) > b->npool;
}

void cl_bully_log(const cl_bully_t *b, const char *cloud, const cl_bully_out_t *out)
{
    if (out->lost_acting)
        cl_log(CL_LOG_WARN, "-acting", "cloud=%s epoch=%" PRIu64 " quorum lost", cloud,
               out->acted_epoch ? out->acted_epoch : b->epoch);
    if (out->lost_leadership)
        cl_log(CL_LOG_WARN, "-leader-lost", "cloud=%s state=%s leader=%d", cloud,
               cl_bully_state_name(b->state), cl_bully_leader(b));
    if (out->gained_leadership)
        cl_log(CL_LOG_INFO, "+elected", "cloud=%s epoch=%" PRIu64 " priority=%u", cloud, b->epoch,
               b->me);
    if (out->gained_acting)
        cl_log(CL_LOG_INFO, "+acting", "cloud=%s epoch=%" PRIu64, cloud, b->epoch);
}

/* ---------------------------------------------------------------------------------------- */
/* Actions                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static void out_reset(cl_bully_out_t *out)
{
    memset(out, 0, sizeof(*out));
}

static void emit(cl_bully_t *b, cl_bully_out_t *out, cl_msg_type_t type, int dest, uint64_t epoch,
                 int has_ack, uint64_t ack_epoch, int has_round, uint64_t round)
{
    cl_bully_send_t *s;
    unsigned n = dest == CL_BULLY_ALL ? b->npool - 1 : dest == CL_BULLY_HIGHER ? b->me : 1;

    if (n == 0 || out->nsend >= CL_BULLY_OUT_MAX) /* full: cannot happen, 4 at most a call */
        return;
    s = &out->send[out->nsend++];
    s->type = type;
    s->dest = dest;
    s->epoch = epoch;
    s->has_ack = has_ack;
    s->ack_epoch = ack_epoch;
    s->has_round = has_round;
    s->round = round;
    b->stats.sent[type] += n;
}

static uint64_t new_round(cl_bully_t *b, uint64_t now)
{
    b->round++;
    b->ring_round[b->round % CL_BULLY_RING] = b->round;
    b->ring_sent[b->round % CL_BULLY_RING] = now;
    return b->round;
}

/* Raise the newest epoch seen to e, persisted first; -1 (nothing changed) if that failed. */
static int learn(cl_bully_t *b, uint64_t e)
{
    if (e <= b->seen)
        return 0;
    if (b->cfg.persist(b->cfg.persist_ud, e) < 0) {
        b->stats.persist_failures++;
        return -1;
    }
    b->seen = e;
    return 0;
}

/* The smallest epoch above every one seen that is ours: e % npool == me. */
static uint64_t next_epoch(const cl_bully_t *b)
{
    uint64_t e = b->seen + 1;

    return e + (b->me + b->npool - e % b->npool) % b->npool;
}

static void set_leader(cl_bully_t *b, int p)
{
    if (p >= 0 && p != b->last_leader) {
        b->stats.leader_changes++;
        b->last_leader = p;
    }
    b->leader = p;
}

static void leave_leadership(cl_bully_t *b, cl_bully_out_t *out)
{
    if (b->state != CL_BULLY_LEADER)
        return;
    out->lost_leadership = 1;
    if (b->acting) {
        out->lost_acting = 1;
        out->acted_epoch = b->epoch; /* logged as it was, whatever epoch follows */
    }
    b->acting = 0;
}

static void follow(cl_bully_t *b, uint64_t now, int p, uint64_t e, cl_bully_out_t *out)
{
    leave_leadership(b, out);
    b->owed = 0;
    b->state = CL_BULLY_FOLLOWER;
    set_leader(b, p);
    b->epoch = e;
    b->heard = now;
}

/* Ack the claim m of the leader we follow, unless promised to another one. */
static void ack_claim(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    if (!m->has_round)
        return; /* an ack could not be dated by the leader */
    if (!may_support(b, b->leader, now)) {
        /*
         * Promised to the previous leader: owe this one the ack until the promise runs out
         * (the leader dates it by when it sent the round, so a late ack is still safe), rather
         * than making it wait for its next heartbeat.
         */
        b->stats.acks_withheld++;
        b->owed = 1;
        b->owed_type = m->type == CL_MSG_HB ? CL_MSG_HB_ACK : CL_MSG_COORD_ACK;
        b->owed_round = m->round;
        return;
    }
    b->owed = 0;
    b->prom = b->leader;
    b->prom_until = now + b->cfg.quorum_window_ms;
    emit(b, out, m->type == CL_MSG_HB ? CL_MSG_HB_ACK : CL_MSG_COORD_ACK, b->leader, b->seen, 1,
         b->epoch, 1, m->round);
}

/* FOLLOWER: pay an owed ack once the promise that withheld it has run out. */
static void pay_ack(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    if (!b->owed || b->state != CL_BULLY_FOLLOWER || !may_support(b, b->leader, now))
        return;
    b->owed = 0;
    b->prom = b->leader;
    b->prom_until = now + b->cfg.quorum_window_ms;
    emit(b, out, b->owed_type, b->leader, b->seen, 1, b->epoch, 1, b->owed_round);
}

static void update_quorum(cl_bully_t *b, uint64_t now, cl_bully_out_t *out);
static void start_election(cl_bully_t *b, uint64_t now, cl_bully_out_t *out, int silent);

/* No ANSWER: take the next own epoch, persist it, then announce it. */
static void win(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    uint64_t e = next_epoch(b);

    if (e > CL_MSG_NUM_MAX || learn(b, e) < 0) {
        /*
         * Cannot lead without persisting.  Try again after answer_timeout, and meanwhile let
         * lower members win: answering their ELECTION would keep every member from leading.
         */
        b->state = CL_BULLY_ELECTING;
        b->timer = now + b->cfg.answer_timeout_ms;
        b->unfit_until = now + b->cfg.hb_timeout_ms;
        return;
    }
    b->state = CL_BULLY_LEADER;
    set_leader(b, (int)b->me);
    b->epoch = e;
    b->since = now;
    b->acting = b->acted = 0;
    memset(b->ack_until, 0, b->npool * sizeof(*b->ack_until));
    out->gained_leadership = 1;
    emit(b, out, CL_MSG_COORDINATOR, CL_BULLY_ALL, e, 0, 0, 1, new_round(b, now));
    b->next_hb = now + b->cfg.hb_interval_ms;
    update_quorum(b, now, out);
}

/*
 * A leader learned a newer epoch from a member it outranks: it takes a newer one of its own
 * and announces it, keeping its term (acks stay valid: those members are promised to it).
 */
static void reassert(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    uint64_t e = next_epoch(b);

    if (e > CL_MSG_NUM_MAX || learn(b, e) < 0) {
        start_election(b, now, out, -1);
        return;
    }
    b->epoch = e;
    emit(b, out, CL_MSG_COORDINATOR, CL_BULLY_ALL, e, 0, 0, 1, new_round(b, now));
    b->next_hb = now + b->cfg.hb_interval_ms;
}

/*
 * silent: the leader whose heartbeats stopped for hb_timeout, or -1.  When it was the only member
 * above us nobody is left to answer: win at once instead of after answer_timeout (a leader that
 * was merely slow outbids our COORDINATOR with a newer epoch of its own, as after any election).
 */
static void start_election(cl_bully_t *b, uint64_t now, cl_bully_out_t *out, int silent)
{
    leave_leadership(b, out);
    b->state = CL_BULLY_ELECTING;
    b->leader = -1;
    b->stats.elections++;
    if (b->me == 0 || (b->me == 1 && silent == 0)) { /* nobody (else) to ask */
        win(b, now, out);
        return;
    }
    emit(b, out, CL_MSG_ELECTION, CL_BULLY_HIGHER, b->seen, 0, 0, 0, 0);
    b->timer = now + b->cfg.answer_timeout_ms;
}

/*
 * LEADER: acting iff a strict majority supports it now.  Losing that steps down; so does never
 * reaching it within quorum_window + hb_timeout of winning (time for the members' promises to
 * a previous leader to run out and a heartbeat to be acked).
 */
static void update_quorum(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    int q;

    if (b->state != CL_BULLY_LEADER)
        return;
    q = 2 * quorum_count(b, now) > b->npool;
    if (q && !b->acting) {
        b->acting = b->acted = 1;
        out->gained_acting = 1;
    } else if (!q && b->acting) {
        start_election(b, now, out, -1);
    } else if (!q && !b->acted &&
               now >= b->since + b->cfg.quorum_window_ms + b->cfg.hb_timeout_ms) {
        start_election(b, now, out, -1);
    }
}

static void set_deadline(const cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    uint64_t d;
    unsigned m;

    switch (b->state) {
    case CL_BULLY_FOLLOWER:
        d = b->heard + b->cfg.hb_timeout_ms;
        if (b->owed && b->prom_until > now && b->prom_until < d)
            d = b->prom_until;
        break;
    case CL_BULLY_LEADER:
        d = b->next_hb;
        if (b->prom != (int)b->me && b->prom_until > now && b->prom_until < d)
            d = b->prom_until; /* our own vote starts counting */
        if (!b->acted && b->since + b->cfg.quorum_window_ms + b->cfg.hb_timeout_ms < d)
            d = b->since + b->cfg.quorum_window_ms + b->cfg.hb_timeout_ms;
        for (m = 0; b->acting && m < b->npool; m++)
            if (b->ack_until[m] > now && b->ack_until[m] < d)
                d = b->ack_until[m]; /* an ack expires: maybe the quorum with it */
        break;
    default: d = b->timer; break;
    }
    out->deadline = d;
}

/* ---------------------------------------------------------------------------------------- */
/* Events                                                                                    */
/* ---------------------------------------------------------------------------------------- */

void cl_bully_start(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    out_reset(out);
    leave_leadership(b, out);
    b->state = CL_BULLY_JOINING;
    b->leader = -1;
    b->timer = now + b->cfg.hb_timeout_ms;
    /* a restarted member may have acked someone just before: no ack or vote for a window */
    b->prom = -1;
    b->prom_until = now + b->cfg.quorum_window_ms;
    set_deadline(b, now, out);
}

/* HB or COORDINATOR: a claim of leadership by p in epoch e. */
static void on_claim(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    int p = (int)m->prio;
    uint64_t e = m->epoch;
    int live = b->state == CL_BULLY_FOLLOWER && now < b->heard + b->cfg.hb_timeout_ms;

    if (e < b->seen) {
        b->stats.ignored_stale++;
        if (b->state == CL_BULLY_LEADER) /* tell it: it follows us or outbids us */
            emit(b, out, CL_MSG_COORDINATOR, p, b->epoch, 0, 0, 1, new_round(b, now));
        return;
    }
    if (b->state == CL_BULLY_LEADER) {
        if (e == b->epoch) { /* ours: only with pools of different sizes */
            b->stats.ignored_claims++;
            return;
        }
        if (learn(b, e) < 0)
            return;
        if (p < (int)b->me) {
            follow(b, now, p, e, out);
            ack_claim(b, now, m, out);
        } else {
            reassert(b, now, out);
        }
        return;
    }
    if (live && p > b->leader) {
        b->stats.ignored_claims++; /* below our live leader: it will outbid it */
        return;
    }
    if (learn(b, e) < 0)
        return;
    if (live && p == b->leader) {
        b->epoch = e;
        b->heard = now;
        ack_claim(b, now, m, out);
    } else if (p < (int)b->me) {
        follow(b, now, p, e, out);
        ack_claim(b, now, m, out);
    } else if (b->state == CL_BULLY_JOINING || b->state == CL_BULLY_FOLLOWER) {
        start_election(b, now, out, -1); /* a lower member leads while we live: take over */
    }
}

static void on_election(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    int p = (int)m->prio;
    int live = b->state == CL_BULLY_FOLLOWER && now < b->heard + b->cfg.hb_timeout_ms;

    if (p < (int)b->me || now < b->unfit_until)
        return; /* ELECTION goes up only; an unfit member keeps quiet */
    if (!live && learn(b, m->epoch) < 0)
        return;
    emit(b, out, CL_MSG_ANSWER, p, b->seen, 0, 0, 0, 0);
    switch (b->state) {
    case CL_BULLY_LEADER:
        if (b->seen > b->epoch)
            reassert(b, now, out);
        else
            emit(b, out, CL_MSG_COORDINATOR, p, b->epoch, 0, 0, 1, new_round(b, now));
        break;
    case CL_BULLY_JOINING: start_election(b, now, out, -1); break;
    case CL_BULLY_FOLLOWER:
        if (!live) /* our leader went silent too, we had not looked yet */
            start_election(b, now, out, b->leader);
        break;
    default: break; /* already electing or waiting for a higher member */
    }
}

static void on_answer(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    if (b->state != CL_BULLY_ELECTING || (int)m->prio > (int)b->me)
        return;
    if (learn(b, m->epoch) < 0)
        return;
    b->state = CL_BULLY_WAITING;
    b->timer = now + b->cfg.coord_timeout_ms;
}

static void on_ack(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    unsigned slot;
    uint64_t until;

    if (b->state != CL_BULLY_LEADER) {
        b->stats.ignored_acks++;
        return;
    }
    if (m->epoch > b->seen) { /* the member knows a newer epoch than ours: outbid it */
        if (learn(b, m->epoch) == 0)
            reassert(b, now, out);
        b->stats.ignored_acks++;
        return;
    }
    slot = (unsigned)(m->round % CL_BULLY_RING);
    if (!m->has_ack || m->ack_epoch != b->epoch || !m->has_round || m->round > b->round ||
        b->ring_round[slot] != m->round) {
        b->stats.ignored_acks++;
        return;
    }
    until = b->ring_sent[slot] + b->cfg.quorum_window_ms;
    if (until > b->ack_until[m->prio])
        b->ack_until[m->prio] = until;
}

void cl_bully_on_msg(cl_bully_t *b, uint64_t now, const cl_msg_t *m, cl_bully_out_t *out)
{
    out_reset(out);
    if (m && m->prio < b->npool && m->prio != b->me && m->epoch <= CL_MSG_NUM_MAX) {
        switch (m->type) {
        case CL_MSG_HB:
        case CL_MSG_COORDINATOR: on_claim(b, now, m, out); break;
        case CL_MSG_ELECTION: on_election(b, now, m, out); break;
        case CL_MSG_ANSWER: on_answer(b, now, m, out); break;
        case CL_MSG_HB_ACK:
        case CL_MSG_COORD_ACK: on_ack(b, now, m, out); break;
        default: break;
        }
        update_quorum(b, now, out);
    }
    set_deadline(b, now, out);
}

void cl_bully_on_timer(cl_bully_t *b, uint64_t now, cl_bully_out_t *out)
{
    out_reset(out);
    switch (b->state) {
    case CL_BULLY_JOINING:
        if (now >= b->timer)
            start_election(b, now, out, -1);
        break;
    case CL_BULLY_FOLLOWER:
        if (now >= b->heard + b->cfg.hb_timeout_ms)
            start_election(b, now, out, b->leader); /* the leader went silent */
        else
            pay_ack(b, now, out);
        break;
    case CL_BULLY_ELECTING:
        if (now >= b->timer)
            win(b, now, out);
        break;
    case CL_BULLY_WAITING:
        if (now >= b->timer)
            start_election(b, now, out, -1); /* it answered but never announced */
        break;
    case CL_BULLY_LEADER:
        update_quorum(b, now, out);
        if (b->state == CL_BULLY_LEADER && now >= b->next_hb) {
            emit(b, out, CL_MSG_HB, CL_BULLY_ALL, b->epoch, 0, 0, 1, new_round(b, now));
            b->next_hb = now + b->cfg.hb_interval_ms;
        }
        break;
    }
    set_deadline(b, now, out);
}
