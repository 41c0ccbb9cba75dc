/*
 * cl_monitor: the leader's watch and repairs (see cl_monitor.h).  Callers (libvirt's event
 * loop, the peer layer, request threads) only mark a cloud due and signal; the one worker
 * thread does every repair and check, so repairs of one daemon never race each other, and the
 * engine's lock serialises them with Puppet's applies.
 */
#include "cl_monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl_events.h"
#include "cl_guests.h"
#include "cl_log.h"
#include "cl_metrics.h"
#include "cl_policy.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define CL_MONITOR_RETRY_MS 1000 /* a repair run that failed: the next one after this */

/* ========================================================================================== */
/* State                                                                                      */
/* ========================================================================================== */

typedef struct slot_rec {
    char name[128];
    cl_policy_t pol;
    cl_repair_t pending;  /* a repair chosen, waiting for its time (pending_at) */
    uint64_t pending_at;  /* 0: none */
    uint64_t repaired_at; /* the last repair done (0: none since healthy) */
    const char *health;   /* static string */
    char last_failure[CL_EVENT_TEXT_MAX];
    uint64_t last_failure_ms; /* wall clock */
    uint64_t next_check;      /* monotonic: the next role check of a running guest */
    int expect_stop;          /* the monitor stopped it itself (a domain restart) */
    int running;              /* its domain ran at the last run (checks only then) */
    int move;                 /* a check escalated to another host: move it on the next run */
    int check_failing;        /* its last role check failed (a running domain is not healthy) */
    char host[256];           /* where the last run saw it ("": nowhere), for the metrics */
    char state[12];           /* its domain's state at the last run ("running"...) */
    uint64_t seen_run;        /* the cloud's run that saw it last (metrics: slots still declared) */
    uint64_t failures;        /* failures seen (domain, host, check): a counter for the metrics */
} slot_rec_t;

/* What the monitor's repairs did, for cloud_repairs_total{action} (changes of a run, + service) */
enum {
    CL_MON_ACT_START,
    CL_MON_ACT_CREATE,
    CL_MON_ACT_REMOVE,
    CL_MON_ACT_SETUP,
    CL_MON_ACT_SERVICE,
    CL_MON_ACT_OTHER,
    CL_MON_ACT_COUNT
};
static const char *const mon_act_names[] = {"start", "create",  "remove",
                                            "setup", "service", "other"};

typedef struct mcloud {
    char name[CL_NAME_MAX + 1];
    slot_rec_t *slots;
    size_t nslots;
    cl_events_t *events;
    int events_dirty;
    int due;              /* poked: run as soon as the worker is free */
    uint64_t next_at;     /* monotonic: the next run (sweep or a held repair's time) */
    int seen_running;     /* this daemon saw it running while acting: repair it from nothing too */
    int acting;           /* as of the last run */
    uint64_t epoch;       /* as of the last run */
    unsigned repairs;     /* since the last apply (the Puppet report) */
    uint64_t applied_seq; /* the last event before that apply */
    int present;          /* still has a state file (sweep bookkeeping) */
    int fwd; /* a domain stopped here: the leader is told if this daemon does not act */
    char fwd_slot[128];
    uint64_t runs;                         /* repair runs done (slot_rec_t.seen_run) */
    uint64_t repairs_by[CL_MON_ACT_COUNT]; /* every repair since the daemon started */
    char state[16];                        /* the cloud's state at the last run ("" unknown) */
} mcloud_t;

struct cl_monitor {
    cl_engine_t *engine;
    uint64_t sweep_ms;
    int no_sweep;
    int (*forward)(void *ud, const char *cloud, const char *slot);
    void *forward_ud;
    pthread_mutex_t lock; /* clouds and everything in them, stats */
    pthread_cond_t cond;
    pthread_t thread;
    int started, quit;
    mcloud_t **clouds;
    size_t nclouds;
    uint64_t next_scan;            /* monotonic: look for new clouds in the state directory */
    cl_guest_sessions_t *sessions; /* the checks' and cloudctl exec's (locks its own) */
    struct {
        uint64_t repairs, runs, events, checks, check_failures;
    } stats;
    cl_metrics_hist_t run_seconds;    /* every repair run (cl_engine_repair) */
    cl_metrics_hist_t repair_seconds; /* the runs that repaired something, and service repairs */
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Under the lock: cloud name's record, made if missing (NULL: out of memory). */
static mcloud_t *cloud_get(cl_monitor_t *m, const char *name)
{
    mcloud_t *c, **nv;
    size_t i;

    for (i = 0; i < m->nclouds; i++)
        if (strcmp(m->clouds[i]->name, name) == 0)
            return m->clouds[i];
    if (!cl_spec_name_ok(name))
        return NULL;
    c = calloc(1, sizeof(*c));
    nv = realloc(m->clouds, (m->nclouds + 1) * sizeof(*nv));
    if (!c || !nv) {
        free(c);
        if (nv)
            m->clouds = nv;
        return NULL;
    }
    m->clouds = nv;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->events = cl_events_new(0, NULL);
    /* the history survives restarts and leaders: reload what this host kept */
    {
        char path[4096];
        json_object *arr;
        snprintf(path, sizeof(path), "%s/events/%s.json", cl_engine_state_dir(m->engine), name);
        arr = json_object_from_file(path);
        if (arr && c->events)
            cl_events_load(c->events, arr, NULL);
        json_object_put(arr);
    }
    c->next_at = cl_time_now_ms();
    m->clouds[m->nclouds++] = c;
    return c;
}

static slot_rec_t *slot_get(mcloud_t *c, const char *name)
{
    slot_rec_t *nv;
    size_t i;

    for (i = 0; i < c->nslots; i++)
        if (strcmp(c->slots[i].name, name) == 0)
            return &c->slots[i];
    nv = realloc(c->slots, (c->nslots + 1) * sizeof(*nv));
    if (!nv)
        return NULL;
    c->slots = nv;
    memset(&c->slots[c->nslots], 0, sizeof(*nv));
    snprintf(c->slots[c->nslots].name, sizeof(nv->name), "%s", name);
    cl_policy_init(&c->slots[c->nslots].pol);
    c->slots[c->nslots].health = "unknown";
    return &c->slots[c->nslots++];
}

static void cloud_free(mcloud_t *c)
{
    if (!c)
        return;
    cl_events_free(c->events);
    free(c->slots);
    free(c);
}

/* Under the lock: one event into c's history (and the log, with the epoch). */
static void note_locked(cl_monitor_t *m, mcloud_t *c, uint64_t epoch, const char *type,
                        const char *slot, const char *host, const char *text)
{
    if (!epoch)
        epoch = c->epoch;
    if (c->events)
        cl_events_add(c->events, wall_ms(), epoch, type, slot, host, text);
    c->events_dirty = 1;
    m->stats.events++;
    cl_log(type[0] == '-' ? CL_LOG_WARN : CL_LOG_INFO, type,
           "cloud=%s%s%s%s%s epoch=%" PRIu64 " %s", c->name, slot ? " slot=" : "", slot ? slot : "",
           host ? " host=" : "", host ? host : "", epoch, text);
}

/* Lock m and find or make cloud's record: NULL (unlocked) if m is NULL or out of memory. */
static mcloud_t *lock_cloud(cl_monitor_t *m, const char *cloud)
{
    mcloud_t *c;

    if (!m)
        return NULL;
    pthread_mutex_lock(&m->lock);
    c = cloud_get(m, cloud);
    if (!c)
        pthread_mutex_unlock(&m->lock);
    return c;
}

void cl_monitor_note(cl_monitor_t *m, const char *cloud, uint64_t epoch, const char *type,
                     const char *slot, const char *host, const char *fmt, ...)
{
    char text[CL_EVENT_TEXT_MAX];
    mcloud_t *c;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if ((c = lock_cloud(m, cloud)) != NULL) {
        note_locked(m, c, epoch, type, slot, host, text);
        pthread_mutex_unlock(&m->lock);
    }
}

/*
 * Write cloud's history to <state>/events/<cloud>.json (atomically), if it changed.  From the
 * worker and from request threads (cl_monitor_save): one writer at a time, so the file never
 * goes back to an older snapshot.
 */
static void save_events(cl_monitor_t *m, const char *cloud)
{
    static pthread_mutex_t save_lock = PTHREAD_MUTEX_INITIALIZER;
    char dir[4096], path[4200], tmp[4300];
    json_object *arr = NULL;
    size_t i;

    pthread_mutex_lock(&save_lock);
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nclouds && !arr; i++)
        if (strcmp(m->clouds[i]->name, cloud) == 0 && m->clouds[i]->events_dirty &&
            m->clouds[i]->events) {
            m->clouds[i]->events_dirty = 0;
            arr = cl_events_json(m->clouds[i]->events, 0, 0);
        }
    pthread_mutex_unlock(&m->lock);
    if (!arr)
        goto cleanup;
    snprintf(dir, sizeof(dir), "%s/events", cl_engine_state_dir(m->engine));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        goto cleanup;
    snprintf(path, sizeof(path), "%s/%s.json", dir, cloud);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (json_object_to_file_ext(tmp, arr, JSON_C_TO_STRING_PLAIN) == 0)
        rename(tmp, path);
    else
        unlink(tmp);

cleanup:
    pthread_mutex_unlock(&save_lock);
    json_object_put(arr);
}

/* ========================================================================================== */
/* The restart policy, asked by the engine for each slot of a repair run                      */
/* ========================================================================================== */

typedef struct run_ctx {
    cl_monitor_t *m;
    mcloud_t *c;
} run_ctx_t;

static void policy_cfg(const cl_spec_t *spec, size_t slot, cl_policy_cfg_t *cfg)
{
    const cl_slot_t *sl = &spec->slots[slot];
    size_t i;

    cl_policy_cfg_default(cfg);
    for (i = 0; i < spec->nroles; i++)
        if (sl->nroles && strcmp(spec->roles[i].name, sl->roles[0]) == 0) {
            const cl_health_t *h = &spec->roles[i].health;
            if (h->max_restarts)
                cfg->max_failures = h->max_restarts;
            if (h->window_ms)
                cfg->window_ms = h->window_ms;
            cfg->backoff_ms = h->backoff_ms;
            if (h->backoff_max_ms)
                cfg->backoff_max_ms = h->backoff_max_ms;
        }
}

static int decide(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                  uint64_t epoch, uint64_t *retry_at)
{
    run_ctx_t *x = ud;
    cl_monitor_t *m = x->m;
    slot_rec_t *s;
    cl_policy_cfg_t cfg;
    uint64_t now = cl_time_now_ms(), at = 0;
    cl_repair_t r;
    int verdict = CL_GATE_GO;
    char text[CL_EVENT_TEXT_MAX];

    policy_cfg(spec, slot, &cfg);
    pthread_mutex_lock(&m->lock);
    s = slot_get(x->c, spec->slots[slot].name);
    if (epoch)
        x->c->epoch = epoch; /* the events of this run carry it */
    if (!s)
        goto cleanup;
    if (!failing) {
        x->c->seen_running = 1;
        if (s->move) {
            s->move = 0;
            verdict = CL_GATE_MOVE;
            goto cleanup;
        }
        /* stable for a while, and its checks (if any) pass again: the escalation starts over */
        if (s->repaired_at && now - s->repaired_at >= CL_MONITOR_STABLE_MS && !s->check_failing) {
            cl_policy_healthy(&s->pol);
            s->repaired_at = 0;
        }
        if (!cl_policy_flapping(&s->pol, now))
            s->health = s->repaired_at ? "repairing" : "ok";
        goto cleanup;
    }
    if (s->expect_stop && failing == CL_FAIL_DOMAIN) {
        s->expect_stop = 0; /* stopped by the monitor itself: start it, no new failure */
        goto cleanup;
    }
    if (s->pending_at) {
        if (now < s->pending_at) {
            *retry_at = s->pending_at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
        r = s->pending;
        s->pending_at = 0;
    } else if (cl_policy_flapping(&s->pol, now)) {
        *retry_at = s->pol.flapping_until;
        s->health = "flapping";
        verdict = CL_GATE_HOLD;
        goto cleanup;
    } else {
        snprintf(text, sizeof(text), "%s",
                 failing == CL_FAIL_HOST ? "its host is gone (fenced)"
                                         : "its domain is not running");
        snprintf(s->last_failure, sizeof(s->last_failure), "%s", text);
        s->last_failure_ms = wall_ms();
        s->failures++;
        note_locked(m, x->c, 0, "-failure", s->name, host, text);
        r = cl_policy_failure(&s->pol, &cfg, failing, now, &at);
        if (r == CL_REPAIR_NONE) {
            s->health = "flapping";
            note_locked(m, x->c, 0, "-flapping", s->name, host,
                        "too many failures in the window: repairs paused");
            *retry_at = at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
        if (at > now) {
            s->pending = r;
            s->pending_at = at;
            s->health = "failing";
            snprintf(text, sizeof(text), "%s repair in %" PRIu64 " ms (backoff)", cl_repair_name(r),
                     at - now);
            note_locked(m, x->c, 0, "=backoff", s->name, host, text);
            *retry_at = at;
            verdict = CL_GATE_HOLD;
            goto cleanup;
        }
    }
    verdict = r == CL_REPAIR_REPLACE ? CL_GATE_MOVE : CL_GATE_GO;
    s->repaired_at = now;
    s->health = "repairing";

cleanup:
    pthread_mutex_unlock(&m->lock);
    return verdict;
}

/* ========================================================================================== */
/* The worker                                                                                 */
/* ========================================================================================== */

/* The clouds with a state file are watched; the others are forgotten (a stop). */
static void scan_clouds(cl_monitor_t *m)
{
    char **names = NULL;
    size_t n = 0, i, k;

    if (cl_state_list(cl_engine_state_dir(m->engine), &names, &n, NULL) < 0)
        return;
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nclouds; i++)
        m->clouds[i]->present = 0;
    for (i = 0; i < n; i++) {
        mcloud_t *c = cloud_get(m, names[i]);
        if (c)
            c->present = 1;
    }
    for (i = k = 0; i < m->nclouds; i++) {
        if (m->clouds[i]->present || m->clouds[i]->due) {
            m->clouds[k++] = m->clouds[i];
        } else {
            cl_guest_sessions_drop(m->sessions, m->clouds[i]->name, NULL);
            cloud_free(m->clouds[i]);
        }
    }
    m->nclouds = k;
    pthread_mutex_unlock(&m->lock);
    cl_state_names_free(names);
}

/* cloud_repairs_total's action for a change of a repair run */
static int mon_act(const char *action)
{
    int i;

    for (i = 0; i < CL_MON_ACT_OTHER; i++)
        if (strcmp(action, mon_act_names[i]) == 0)
            return i;
    return CL_MON_ACT_OTHER;
}

/* A repair run took since t0 (cl_time_real_us); res: its result, NULL if it failed. */
static void timed_run(cl_monitor_t *m, json_object *res, uint64_t t0)
{
    double secs = (double)(cl_time_real_us() - t0) / 1e6;
    json_object *v;

    cl_metrics_hist_observe(&m->run_seconds, secs);
    if (res && json_object_object_get_ex(res, "changed", &v) && json_object_get_int(v) > 0)
        cl_metrics_hist_observe(&m->repair_seconds, secs);
}

/* After a run: what it changed, into the history; held slots decide the next run. */
static void digest(cl_monitor_t *m, mcloud_t *c, json_object *res, uint64_t now)
{
    json_object *v, *arr, *st;
    uint64_t next = m->no_sweep ? UINT64_MAX : now + m->sweep_ms;
    size_t i;

    pthread_mutex_lock(&m->lock);
    c->runs++;
    c->acting = !(json_object_object_get_ex(res, "acting", &v) && !json_object_get_boolean(v));
    if (!c->acting)
        c->seen_running = 0;
    if (json_object_object_get_ex(res, "epoch", &v))
        c->epoch = (uint64_t)json_object_get_int64(v);
    if (json_object_object_get_ex(res, "changes", &arr))
        for (i = 0; i < json_object_array_length(arr); i++) {
            json_object *ch = json_object_array_get_idx(arr, i), *a, *sl, *h;
            char text[CL_EVENT_TEXT_MAX];
            json_object_object_get_ex(ch, "action", &a);
            json_object_object_get_ex(ch, "slot", &sl);
            json_object_object_get_ex(ch, "host", &h);
            snprintf(text, sizeof(text), "%s", a ? json_object_get_string(a) : "repair");
            note_locked(m, c, 0, "+repair", sl ? json_object_get_string(sl) : NULL,
                        h ? json_object_get_string(h) : NULL, text);
            c->repairs++;
            m->stats.repairs++;
            c->repairs_by[mon_act(text)]++;
            if (sl) {
                slot_rec_t *s = slot_get(c, json_object_get_string(sl));
                if (s)
                    cl_guest_sessions_drop(m->sessions, c->name, json_object_get_string(sl));
            }
        }
    if (json_object_object_get_ex(res, "status", &v) && json_object_object_get_ex(v, "state", &st))
        snprintf(c->state, sizeof(c->state), "%s", json_object_get_string(st));
    if (json_object_object_get_ex(res, "status", &v) && json_object_object_get_ex(v, "slots", &arr))
        for (i = 0; i < json_object_array_length(arr); i++) {
            json_object *so = json_object_array_get_idx(arr, i), *nm, *h;
            slot_rec_t *s;
            if (json_object_object_get_ex(so, "name", &nm) &&
                json_object_object_get_ex(so, "state", &st) &&
                (s = slot_get(c, json_object_get_string(nm))) != NULL) {
                s->running = strcmp(json_object_get_string(st), "running") == 0;
                /* the last known state, for the metrics endpoint (no libvirt call there) */
                snprintf(s->state, sizeof(s->state), "%s", json_object_get_string(st));
                snprintf(s->host, sizeof(s->host), "%s",
                         json_object_object_get_ex(so, "host", &h) && h ? json_object_get_string(h)
                                                                        : "");
                s->seen_run = c->runs;
            }
        }
    if (json_object_object_get_ex(res, "held", &arr))
        for (i = 0; i < json_object_array_length(arr); i++) {
            json_object *h = json_object_array_get_idx(arr, i), *at, *sl;
            if (json_object_object_get_ex(h, "retry_at_ms", &at) &&
                (uint64_t)json_object_get_int64(at) < next)
                next = (uint64_t)json_object_get_int64(at);
            if (json_object_object_get_ex(h, "slot", &sl)) {
                slot_rec_t *s = slot_get(c, json_object_get_string(sl));
                if (s && strcmp(s->health, "flapping") != 0)
                    s->health = "held";
            }
        }
    /* a repaired slot is declared healthy by a run once it has been stable (even without sweeps) */
    for (i = 0; i < c->nslots; i++)
        if (c->slots[i].repaired_at && c->slots[i].repaired_at + CL_MONITOR_STABLE_MS + 1 < next)
            next = c->slots[i].repaired_at + CL_MONITOR_STABLE_MS + 1;
    if (next < now + 10)
        next = now + 10;
    c->next_at = next;
    m->stats.runs++;
    pthread_mutex_unlock(&m->lock);
}

/*
 * The role checks of c's running guests that are due (real hypervisors only), each failure
 * escalated by the slot's policy: the service (start step again), the domain (stopped here,
 * started by the next run), another host (moved by the next run).
 */
static void run_checks(cl_monitor_t *m, mcloud_t *c, uint64_t now)
{
    json_object *state = NULL, *v, *placed = NULL;
    cl_spec_t *spec = NULL;
    size_t i;
    int poke = 0;

    if (cl_state_load(cl_engine_state_dir(m->engine), c->name, &state, NULL) <= 0 ||
        !json_object_object_get_ex(state, "spec", &v) || cl_spec_parse(v, &spec, NULL) < 0)
        goto cleanup;
    if (strncmp(spec->hypervisor, "test:", 5) == 0 || strncmp(spec->hypervisor, "test+", 5) == 0)
        goto cleanup; /* the test driver's domains have no guests */
    json_object_object_get_ex(state, "placement", &placed);
    for (i = 0; i < spec->nslots; i++) {
        const cl_slot_t *sl = &spec->slots[i];
        slot_rec_t *s;
        cl_policy_cfg_t cfg;
        unsigned interval = CL_HEALTH_INTERVAL_MS;
        size_t k;
        int rc, has_check = 0;
        cl_err_t err;
        uint64_t at = 0;
        cl_repair_t r;
        const char *host = NULL;

        for (k = 0; k < spec->nroles; k++)
            if (sl->nroles && strcmp(spec->roles[k].name, sl->roles[0]) == 0)
                interval = spec->roles[k].health.interval_ms;
        for (k = 0; k < spec->nroles; k++) {
            size_t j;
            for (j = 0; j < sl->nroles; j++)
                if (strcmp(spec->roles[k].name, sl->roles[j]) == 0 &&
                    spec->roles[k].steps[CL_STEP_CHECK])
                    has_check = 1;
        }
        if (!has_check)
            continue;
        pthread_mutex_lock(&m->lock);
        if (c->due) {
            /* an event came: the repair run goes first, the checks wait */
            pthread_mutex_unlock(&m->lock);
            break;
        }
        s = slot_get(c, sl->name);
        rc = s && s->running && s->next_check <= now && strcmp(s->health, "ok") == 0;
        if (s && s->next_check <= now)
            s->next_check = now + interval;
        pthread_mutex_unlock(&m->lock);
        if (!rc)
            continue;
        if (placed && json_object_object_get_ex(placed, sl->name, &v))
            host = json_object_get_string(v);
        cl_err_clear(&err);
        rc = cl_guests_check_slot(m->sessions, cl_engine_state_dir(m->engine), spec, i, &err);
        pthread_mutex_lock(&m->lock);
        m->stats.checks++;
        if (rc == 0) {
            s->check_failing = 0;
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        s->check_failing = 1;
        m->stats.check_failures++;
        s->failures++;
        snprintf(s->last_failure, sizeof(s->last_failure), "check: %.200s", err.msg);
        s->last_failure_ms = wall_ms();
        note_locked(m, c, 0, "-check", sl->name, host, s->last_failure);
        policy_cfg(spec, i, &cfg);
        r = cl_policy_flapping(&s->pol, now)
                ? CL_REPAIR_NONE
                : cl_policy_failure(&s->pol, &cfg, rc < 0 ? CL_FAIL_DOMAIN : CL_FAIL_CHECK, now,
                                    &at); /* no answer at all: the domain, not the service */
        if (r == CL_REPAIR_NONE) {
            s->health = "flapping";
            note_locked(m, c, 0, "-flapping", sl->name, host,
                        "too many failures in the window: repairs paused");
            s->next_check = s->pol.flapping_until;
            pthread_mutex_unlock(&m->lock);
            continue;
        }
        s->health = "repairing";
        s->repaired_at = now;
        if (at > now)
            s->next_check = at; /* the backoff: the repair waits for the next check */
        pthread_mutex_unlock(&m->lock);
        if (at > now)
            continue;
        if (r == CL_REPAIR_SERVICE) {
            cl_err_clear(&err);
            uint64_t t0 = cl_time_real_us();
            rc = cl_guests_restart_slot(m->sessions, cl_engine_state_dir(m->engine), spec, i, &err);
            cl_metrics_hist_observe(&m->repair_seconds, (double)(cl_time_real_us() - t0) / 1e6);
            cl_monitor_note(m, c->name, 0, rc == 0 ? "+repair" : "-repair", sl->name, host,
                            "service: start step run again%s%s", rc == 0 ? "" : ": ",
                            rc == 0 ? "" : err.msg);
            pthread_mutex_lock(&m->lock);
            c->repairs++;
            m->stats.repairs++;
            c->repairs_by[CL_MON_ACT_SERVICE]++;
            s->health = "ok"; /* the next check says whether it worked */
            s->next_check = cl_time_now_ms() + CL_GUEST_CHECK_RETRY_MS;
            pthread_mutex_unlock(&m->lock);
        } else if (r == CL_REPAIR_DOMAIN) {
            pthread_mutex_lock(&m->lock);
            s->expect_stop = 1;
            pthread_mutex_unlock(&m->lock);
            cl_err_clear(&err);
            if (cl_engine_destroy_slot(m->engine, c->name, sl->name, &err) < 0)
                cl_monitor_note(m, c->name, 0, "-repair", sl->name, host, "domain: %s", err.msg);
            cl_guest_sessions_drop(m->sessions, c->name, sl->name);
            poke = 1;
        } else {
            pthread_mutex_lock(&m->lock);
            s->move = 1;
            pthread_mutex_unlock(&m->lock);
            cl_guest_sessions_drop(m->sessions, c->name, sl->name);
            poke = 1;
        }
    }

cleanup:
    if (poke) {
        pthread_mutex_lock(&m->lock);
        c->due = 1;
        pthread_mutex_unlock(&m->lock);
    }
    cl_spec_free(spec);
    json_object_put(state);
}

/* The next check due among c's slots (monotonic), UINT64_MAX if none. */
static uint64_t next_check(const mcloud_t *c)
{
    uint64_t t = UINT64_MAX;
    size_t i;

    for (i = 0; i < c->nslots; i++)
        if (c->slots[i].next_check && c->slots[i].next_check < t)
            t = c->slots[i].next_check;
    return t;
}

static void *worker(void *arg)
{
    cl_monitor_t *m = arg;

    pthread_mutex_lock(&m->lock);
    while (!m->quit) {
        uint64_t now = cl_time_now_ms(), wake = UINT64_MAX;
        mcloud_t *c = NULL;
        size_t i;

        if (!m->no_sweep && now >= m->next_scan) {
            pthread_mutex_unlock(&m->lock);
            scan_clouds(m);
            pthread_mutex_lock(&m->lock);
            m->next_scan = now + m->sweep_ms;
        }
        for (i = 0; i < m->nclouds && !c; i++)
            if (m->clouds[i]->due)
                c = m->clouds[i];
        for (i = 0; i < m->nclouds && !c; i++)
            if (m->clouds[i]->next_at <= now ||
                (m->clouds[i]->acting && next_check(m->clouds[i]) <= now))
                c = m->clouds[i];
        if (!c) {
            struct timespec ts;
            for (i = 0; i < m->nclouds; i++) {
                uint64_t t = m->clouds[i]->next_at;
                if (m->clouds[i]->acting && next_check(m->clouds[i]) < t)
                    t = next_check(m->clouds[i]);
                if (t < wake)
                    wake = t;
            }
            if (!m->no_sweep && m->next_scan < wake)
                wake = m->next_scan;
            if (wake == UINT64_MAX)
                wake = now + 60000;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            {
                uint64_t d = wake > now ? wake - now : 0;
                ts.tv_sec += (time_t)(d / 1000);
                ts.tv_nsec += (long)(d % 1000) * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
            }
            pthread_cond_timedwait(&m->cond, &m->lock, &ts);
            continue;
        }
        {
            run_ctx_t x = {m, c};
            cl_engine_gate_t gate = {&x, decide};
            json_object *res = NULL;
            cl_err_t err;
            int adopt_only = !c->seen_running, rc;
            int due = c->due;

            c->due = 0;
            pthread_mutex_unlock(&m->lock);
            uint64_t t0 = cl_time_real_us();
            cl_err_clear(&err);
            rc = cl_engine_repair(m->engine, c->name, adopt_only, &gate, NULL, NULL, &res, &err);
            timed_run(m, rc == 0 ? res : NULL, t0);
            now = cl_time_now_ms();
            if (rc < 0 && err.domain == CL_ERR_STATE) {
                /* stopped and forgotten meanwhile: the next scan drops it */
                pthread_mutex_lock(&m->lock);
                c->next_at = now + m->sweep_ms;
                pthread_mutex_unlock(&m->lock);
            } else if (rc < 0) {
                cl_monitor_note(m, c->name, 0, "-repair", NULL, err.host[0] ? err.host : NULL,
                                "%s: %s", err.op, err.msg);
                pthread_mutex_lock(&m->lock);
                c->next_at = now + CL_MONITOR_RETRY_MS;
                pthread_mutex_unlock(&m->lock);
            } else {
                char slot[128] = "";
                int fwd;
                digest(m, c, res, now);
                pthread_mutex_lock(&m->lock);
                fwd = c->fwd && !c->acting;
                c->fwd = 0;
                snprintf(slot, sizeof(slot), "%s", c->fwd_slot);
                pthread_mutex_unlock(&m->lock);
                if (fwd && m->forward && m->forward(m->forward_ud, c->name, slot) == 0)
                    cl_log(CL_LOG_INFO, "+forward", "cloud=%s slot=%s told the leader", c->name,
                           slot);
                if (c->acting)
                    run_checks(m, c, now);
            }
            (void)due;
            json_object_put(res);
            save_events(m, c->name);
            pthread_mutex_lock(&m->lock);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ========================================================================================== */
/* API                                                                                        */
/* ========================================================================================== */

cl_monitor_t *cl_monitor_new(const cl_monitor_opts_t *o, cl_err_t *err)
{
    cl_monitor_t *m = calloc(1, sizeof(*m));
    pthread_condattr_t ca;

    if (!m) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "monitor", "out of memory");
        return NULL;
    }
    m->engine = o->engine;
    m->sweep_ms = o->sweep_ms ? o->sweep_ms : CL_MONITOR_SWEEP_MS;
    m->no_sweep = o->no_sweep;
    m->forward = o->forward;
    m->forward_ud = o->forward_ud;
    m->sessions = cl_guest_sessions_new();
    cl_metrics_hist_init(&m->run_seconds, cl_metrics_duration_bounds, cl_metrics_duration_nbounds,
                         NULL);
    cl_metrics_hist_init(&m->repair_seconds, cl_metrics_duration_bounds,
                         cl_metrics_duration_nbounds, NULL);
    pthread_mutex_init(&m->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thread, NULL, worker, m) != 0) {
        cl_err_sys(err, NULL, "monitor", "cannot start the monitor thread");
        cl_monitor_free(m);
        return NULL;
    }
    m->started = 1;
    return m;
}

void cl_monitor_free(cl_monitor_t *m)
{
    size_t i;

    if (!m)
        return;
    if (m->started) {
        pthread_mutex_lock(&m->lock);
        m->quit = 1;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    for (i = 0; i < m->nclouds; i++) {
        save_events(m, m->clouds[i]->name);
        cloud_free(m->clouds[i]);
    }
    free(m->clouds);
    cl_guest_sessions_free(m->sessions);
    cl_metrics_hist_destroy(&m->run_seconds);
    cl_metrics_hist_destroy(&m->repair_seconds);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}

void cl_monitor_poke(cl_monitor_t *m, const char *cloud, const char *slot, const char *why)
{
    mcloud_t *c = lock_cloud(m, cloud);

    if (c) {
        c->due = 1;
        cl_log(CL_LOG_DEBUG, "=poke", "cloud=%s%s%s %s", cloud, slot ? " slot=" : "",
               slot ? slot : "", why ? why : "");
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
    }
}

void cl_monitor_on_domain(void *ud, cl_virt_t *v, const cl_dom_t *d, int event)
{
    cl_monitor_t *m = ud;
    mcloud_t *c;

    (void)v;
    if (event == CL_VIRT_EV_STARTED || !d->cloud[0])
        return; /* a start is the monitor's own doing, or an apply's; no owner: not ours */
    if ((c = lock_cloud(m, d->cloud)) != NULL) {
        c->fwd = 1;
        snprintf(c->fwd_slot, sizeof(c->fwd_slot), "%s", d->slot);
        pthread_mutex_unlock(&m->lock);
    }
    cl_monitor_poke(m, d->cloud, d->slot,
                    event == CL_VIRT_EV_CRASHED ? "domain crashed" : "domain stopped");
}

json_object *cl_monitor_events(cl_monitor_t *m, const char *cloud, uint64_t after, size_t limit)
{
    json_object *arr = NULL;
    mcloud_t *c;

    if ((c = lock_cloud(m, cloud)) != NULL) {
        if (c->events)
            arr = cl_events_json(c->events, after, limit);
        pthread_mutex_unlock(&m->lock);
    }
    return arr ? arr : json_object_new_array();
}

cl_guest_sessions_t *cl_monitor_sessions(cl_monitor_t *m)
{
    return m ? m->sessions : NULL;
}

void cl_monitor_save(cl_monitor_t *m, const char *cloud)
{
    if (m && cloud)
        save_events(m, cloud);
}

void cl_monitor_annotate(cl_monitor_t *m, json_object *st)
{
    json_object *nm, *slots, *mon;
    mcloud_t *c = NULL;
    size_t i, k;
    uint64_t now = cl_time_now_ms();

    if (!m || !json_object_object_get_ex(st, "name", &nm))
        return;
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nclouds; i++)
        if (strcmp(m->clouds[i]->name, json_object_get_string(nm)) == 0)
            c = m->clouds[i];
    if (json_object_object_get_ex(st, "slots", &slots))
        for (i = 0; i < json_object_array_length(slots); i++) {
            json_object *o = json_object_array_get_idx(slots, i), *sn, *ss, *lf = NULL;
            const slot_rec_t *s = NULL;
            const char *health;
            if (!json_object_object_get_ex(o, "name", &sn))
                json_object_object_get_ex(o, "slot", &sn);
            for (k = 0; c && sn && k < c->nslots; k++)
                if (strcmp(c->slots[k].name, json_object_get_string(sn)) == 0)
                    s = &c->slots[k];
            json_object_object_get_ex(o, "state", &ss);
            health = s && strcmp(s->health, "unknown") != 0 ? s->health : NULL;
            if (s && cl_policy_flapping(&s->pol, now))
                health = "flapping";
            if (!health)
                health =
                    ss && strcmp(json_object_get_string(ss), "running") == 0 ? "ok" : "unknown";
            json_object_object_add(o, "health", json_object_new_string(health));
            json_object_object_add(o, "restarts",
                                   json_object_new_int(s ? (int)s->pol.restarts : 0));
            if (s && s->last_failure_ms) {
                lf = json_object_new_object();
                json_object_object_add(lf, "time_ms",
                                       json_object_new_int64((int64_t)s->last_failure_ms));
                json_object_object_add(lf, "text", json_object_new_string(s->last_failure));
            }
            json_object_object_add(o, "last_failure", lf);
        }
    json_object_object_add(st, "repairs", json_object_new_int(c ? (int)c->repairs : 0));
    {
        /* what drifted and was repaired since the last apply, for the next Puppet run */
        json_object *all = c && c->events ? cl_events_json(c->events, c->applied_seq, 0) : NULL,
                    *out = json_object_new_array();
        size_t n = all ? json_object_array_length(all) : 0;
        for (i = n > 200 ? n - 200 : 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(all, i), *t;
            const char *ty =
                json_object_object_get_ex(e, "type", &t) ? json_object_get_string(t) : "";
            if (strcmp(ty, "+repair") == 0 || strcmp(ty, "-failure") == 0 ||
                strcmp(ty, "-flapping") == 0 || strcmp(ty, "-check") == 0 ||
                strcmp(ty, "-repair") == 0)
                json_object_array_add(out, json_object_get(e));
        }
        json_object_put(all);
        json_object_object_add(st, "repaired", out);
    }
    mon = json_object_new_object();
    json_object_object_add(mon, "watching", json_object_new_boolean(c && c->acting));
    json_object_object_add(mon, "sweep_ms", json_object_new_int64((int64_t)m->sweep_ms));
    json_object_object_add(
        mon, "events",
        json_object_new_int64(c && c->events ? (int64_t)cl_events_count(c->events) : 0));
    json_object_object_add(st, "monitor", mon);
    pthread_mutex_unlock(&m->lock);
}

void cl_monitor_applied(cl_monitor_t *m, const char *cloud)
{
    mcloud_t *c = lock_cloud(m, cloud);

    if (c) {
        json_object *last = c->events ? cl_events_json(c->events, c->applied_seq, 0) : NULL;
        size_t n = last ? json_object_array_length(last) : 0;
        if (n)
            c->applied_seq = (uint64_t)json_object_get_int64(
                json_object_object_get(json_object_array_get_idx(last, n - 1), "seq"));
        json_object_put(last);
        c->repairs = 0;
        c->seen_running = 1; /* converged by this daemon: from now on it is kept running */
        c->due = 1;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
    }
}

json_object *cl_monitor_stats(cl_monitor_t *m)
{
    json_object *o = json_object_new_object();

    pthread_mutex_lock(&m->lock);
    json_object_object_add(o, "repairs", json_object_new_int64((int64_t)m->stats.repairs));
    json_object_object_add(o, "runs", json_object_new_int64((int64_t)m->stats.runs));
    json_object_object_add(o, "events", json_object_new_int64((int64_t)m->stats.events));
    json_object_object_add(o, "checks", json_object_new_int64((int64_t)m->stats.checks));
    json_object_object_add(o, "check_failures",
                           json_object_new_int64((int64_t)m->stats.check_failures));
    json_object_object_add(o, "clouds", json_object_new_int64((int64_t)m->nclouds));
    pthread_mutex_unlock(&m->lock);
    return o;
}

/* ========================================================================================== */
/* Metrics (issue 6): from the monitor's counters and the last run's view, no libvirt call    */
/* ========================================================================================== */

/* The health word of cl_monitor_annotate, from the record alone. */
static const char *slot_health(const slot_rec_t *s, uint64_t now)
{
    if (cl_policy_flapping(&s->pol, now))
        return "flapping";
    if (strcmp(s->health, "unknown") != 0)
        return s->health;
    return s->running ? "ok" : "unknown";
}

/* Whether the cloud's slot metrics are this daemon's to give: it acts, and s is still declared */
static int slot_shown(const mcloud_t *c, const slot_rec_t *s)
{
    return c->acting && c->runs && s->seen_run == c->runs;
}

void cl_monitor_metrics(cl_monitor_t *m, cl_metrics_buf_t *b)
{
    uint64_t now = cl_time_now_ms();
    size_t i, k;
    int a;

    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    cl_metrics_family(b, "cloud_monitor_runs_total", "counter",
                      "Repair runs of the monitor (events, sweeps, held repairs).");
    cl_metrics_sample(b, "cloud_monitor_runs_total", NULL, (double)m->stats.runs);
    cl_metrics_family(b, "cloud_monitor_checks_total", "counter",
                      "Role checks run in guests by the monitor.");
    cl_metrics_sample(b, "cloud_monitor_checks_total", NULL, (double)m->stats.checks);
    cl_metrics_family(b, "cloud_monitor_check_failures_total", "counter",
                      "Role checks that failed.");
    cl_metrics_sample(b, "cloud_monitor_check_failures_total", NULL,
                      (double)m->stats.check_failures);
    cl_metrics_family(b, "cloud_monitor_events_total", "counter",
                      "Events added to the clouds' histories (failures, repairs, backoff...).");
    cl_metrics_sample(b, "cloud_monitor_events_total", NULL, (double)m->stats.events);
    cl_metrics_family(b, "cloud_monitor_watching", "gauge",
                      "1 if this daemon acted on the cloud at the monitor's last run.");
    for (i = 0; i < m->nclouds; i++)
        cl_metrics_sample(b, "cloud_monitor_watching",
                          (const char *[]){"cloud", m->clouds[i]->name, NULL},
                          m->clouds[i]->acting);
    cl_metrics_family(b, "cloud_state", "gauge",
                      "The cloud's state (running, degraded, stopped) at the monitor's last run, "
                      "on the daemon that acts on it.");
    for (i = 0; i < m->nclouds; i++)
        if (m->clouds[i]->acting && m->clouds[i]->state[0])
            cl_metrics_sample(
                b, "cloud_state",
                (const char *[]){"cloud", m->clouds[i]->name, "state", m->clouds[i]->state, NULL},
                1);
    cl_metrics_family(b, "cloud_repairs_total", "counter",
                      "Repairs by this daemon's monitor, by action (start, create, remove, setup: "
                      "a repair run's changes; service: a role's start step run again).");
    for (i = 0; i < m->nclouds; i++)
        for (a = 0; a < CL_MON_ACT_COUNT; a++)
            cl_metrics_sample(
                b, "cloud_repairs_total",
                (const char *[]){"cloud", m->clouds[i]->name, "action", mon_act_names[a], NULL},
                (double)m->clouds[i]->repairs_by[a]);
    cl_metrics_family(b, "cloud_slot_up", "gauge",
                      "1 if the slot's domain ran at the monitor's last run, else 0 (on the daemon "
                      "that acts on the cloud).");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const slot_rec_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(b, "cloud_slot_up",
                                  (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name,
                                                   "host", s->host, NULL},
                                  s->running);
        }
    cl_metrics_family(b, "cloud_slot_health", "gauge",
                      "1 for the slot's health as the monitor says it (ok, repairing, failing, "
                      "flapping, held, unknown).");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const slot_rec_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(b, "cloud_slot_health",
                                  (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name,
                                                   "health", slot_health(s, now), NULL},
                                  1);
        }
    cl_metrics_family(b, "cloud_slot_restarts_total", "counter",
                      "Repairs chosen for the slot by its restart policy.");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const slot_rec_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(
                    b, "cloud_slot_restarts_total",
                    (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name, NULL},
                    s->pol.restarts);
        }
    cl_metrics_family(b, "cloud_slot_failures_total", "counter",
                      "Failures seen for the slot: its domain stopped, its host gone, a check.");
    for (i = 0; i < m->nclouds; i++)
        for (k = 0; k < m->clouds[i]->nslots; k++) {
            const slot_rec_t *s = &m->clouds[i]->slots[k];
            if (slot_shown(m->clouds[i], s))
                cl_metrics_sample(
                    b, "cloud_slot_failures_total",
                    (const char *[]){"cloud", m->clouds[i]->name, "slot", s->name, NULL},
                    (double)s->failures);
        }
    pthread_mutex_unlock(&m->lock);
    cl_metrics_family(b, "cloud_monitor_run_duration_seconds", "histogram",
                      "Duration of the monitor's repair runs.");
    cl_metrics_hist_write(b, "cloud_monitor_run_duration_seconds", NULL, &m->run_seconds);
    cl_metrics_family(b, "cloud_repair_duration_seconds", "histogram",
                      "Duration of the repair runs that repaired a slot, and of service repairs.");
    cl_metrics_hist_write(b, "cloud_repair_duration_seconds", NULL, &m->repair_seconds);
}
