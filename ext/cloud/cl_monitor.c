/*
 * cl_monitor: the leader's watch and repairs (see cl_monitor.h): the clouds' records and
 * histories, the worker and the API.  Callers only mark a cloud due and signal; the one worker
 * does every repair and check (so repairs never race), the engine's lock serialising them with
 * Puppet's applies.  The policy and checks: cl_monitor_policy.c; metrics: cl_monitor_metrics.c.
 */
#include "cl_monitor_int.h"

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

#include "cl_guests.h"
#include "cl_log.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define CL_MONITOR_RETRY_MS 1000 /* a repair run that failed: the next one after this */

/* ========================================================================================== */
/* State                                                                                      */
/* ========================================================================================== */

uint64_t cl_monitor_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Under the lock: cloud name's record, made if missing (NULL: out of memory). */
static cl_monitor_cloud_t *cloud_get(cl_monitor_t *m, const char *name)
{
    cl_monitor_cloud_t *c, **nv;
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

cl_monitor_slot_t *cl_monitor_slot_get(cl_monitor_cloud_t *c, const char *name)
{
    cl_monitor_slot_t *nv;
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

static void cloud_free(cl_monitor_cloud_t *c)
{
    if (!c)
        return;
    cl_events_free(c->events);
    free(c->slots);
    free(c);
}

/* Under the lock: one event into c's history (and the log, with the epoch). */
void cl_monitor_note_locked(cl_monitor_t *m, cl_monitor_cloud_t *c, uint64_t epoch,
                            const char *type, const char *slot, const char *host, const char *text)
{
    if (!epoch)
        epoch = c->epoch;
    if (c->events)
        cl_events_add(c->events, cl_monitor_wall_ms(), epoch, type, slot, host, text);
    c->events_dirty = 1;
    m->stats.events++;
    cl_log(type[0] == '-' ? CL_LOG_WARN : CL_LOG_INFO, type,
           "cloud=%s%s%s%s%s epoch=%" PRIu64 " %s", c->name, slot ? " slot=" : "", slot ? slot : "",
           host ? " host=" : "", host ? host : "", epoch, text);
}

/* Lock m and find or make cloud's record: NULL (unlocked) if m is NULL or out of memory. */
static cl_monitor_cloud_t *lock_cloud(cl_monitor_t *m, const char *cloud)
{
    cl_monitor_cloud_t *c;

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
    cl_monitor_cloud_t *c;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if ((c = lock_cloud(m, cloud)) != NULL) {
        cl_monitor_note_locked(m, c, epoch, type, slot, host, text);
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
        cl_monitor_cloud_t *c = cloud_get(m, names[i]);
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

/* A repair run took since t0 (cl_time_real_us); res: its result, NULL if it failed. */
static void timed_run(cl_monitor_t *m, json_object *res, uint64_t t0)
{
    double secs = (double)(cl_time_real_us() - t0) / 1e6;
    json_object *v;

    cl_metrics_hist_observe(&m->run_seconds, secs);
    if (res && json_object_object_get_ex(res, "changed", &v) && json_object_get_int(v) > 0)
        cl_metrics_hist_observe(&m->repair_seconds, secs);
}

/* After a run: what it changed, into the history; held slots cl_monitor_decide the next run. */
static void digest(cl_monitor_t *m, cl_monitor_cloud_t *c, json_object *res, uint64_t now)
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
            cl_monitor_note_locked(m, c, 0, "+repair", sl ? json_object_get_string(sl) : NULL,
                                   h ? json_object_get_string(h) : NULL, text);
            c->repairs++;
            m->stats.repairs++;
            c->repairs_by[cl_monitor_act(text)]++;
            if (sl) {
                cl_monitor_slot_t *s = cl_monitor_slot_get(c, json_object_get_string(sl));
                if (s)
                    cl_guest_sessions_drop(m->sessions, c->name, json_object_get_string(sl));
            }
        }
    if (json_object_object_get_ex(res, "status", &v) && json_object_object_get_ex(v, "state", &st))
        snprintf(c->state, sizeof(c->state), "%s", json_object_get_string(st));
    if (json_object_object_get_ex(res, "status", &v) && json_object_object_get_ex(v, "slots", &arr))
        for (i = 0; i < json_object_array_length(arr); i++) {
            json_object *so = json_object_array_get_idx(arr, i), *nm, *h;
            cl_monitor_slot_t *s;
            if (json_object_object_get_ex(so, "name", &nm) &&
                json_object_object_get_ex(so, "state", &st) &&
                (s = cl_monitor_slot_get(c, json_object_get_string(nm))) != NULL) {
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
                cl_monitor_slot_t *s = cl_monitor_slot_get(c, json_object_get_string(sl));
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

/* The next check due among c's slots (monotonic), UINT64_MAX if none. */
static uint64_t next_check(const cl_monitor_cloud_t *c)
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
        cl_monitor_cloud_t *c = NULL;
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
            cl_monitor_run_t x = {m, c};
            cl_engine_gate_t gate = {&x, cl_monitor_decide};
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
                    cl_monitor_run_checks(m, c, now);
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
    cl_monitor_cloud_t *c = lock_cloud(m, cloud);

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
    cl_monitor_cloud_t *c;

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
    cl_monitor_cloud_t *c;

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
    cl_monitor_cloud_t *c = NULL;
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
            const cl_monitor_slot_t *s = NULL;
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
    cl_monitor_cloud_t *c = lock_cloud(m, cloud);

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
