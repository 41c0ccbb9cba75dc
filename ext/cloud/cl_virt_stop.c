/*
 * cl_virt_stop: stopping domains at once (see cl_virt.h): one (cl_virt_destroy, a restart or an
 * injected fault), or every copy of a self-fencing host together (cl_virt_stop_all), paused
 * first so that none runs on while the others are destroyed.  Every stop logs the domain's
 * "-vm-run" line exactly once, which the chaos analysis reads as "no longer runs".
 */
#include "cl_virt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_virt_int.h"

/* ------------------------------------------------------------------------------------------ */
/* One domain                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/*
 * Log "-vm-run" for name, or, if once is not NULL, only if no one has logged it yet (*once,
 * under lock, shared by the threads of one cl_virt_stop_all).  1 if this call logged it.
 */
static int log_stopped(const char *name, const char *why, pthread_mutex_t *lock, int *once)
{
    int first = 1;

    if (once) {
        pthread_mutex_lock(lock);
        first = !*once;
        *once = 1;
        pthread_mutex_unlock(lock);
    }
    if (first) {
        cl_log(CL_LOG_INFO, "-vm-run", "dom=%s why=%s", name, why);
        cl_log_flush();
    }
    return first;
}

/* cl_virt_destroy; its "-vm-run" line at most once a domain with lock and once (see above). */
static int destroy_dom(cl_virt_t *v, const char *name, const char *why, pthread_mutex_t *lock,
                       int *once, cl_err_t *err)
{
    virDomainPtr d;
    int rc = cl_virt_lookup(v, name, &d, err);

    if (rc <= 0)
        return rc;
    rc = -1;
    if (virDomainIsActive(d) == 1) {
        /*
         * Logged before: a repair may start it again before virDomainDestroy returns here, and
         * the lines of one domain must stay in order.  Not again for a domain paused by
         * cl_virt_stop_all: its line went out when it was paused.
         */
        int mine = log_stopped(name, why, lock, once);
        if (virDomainDestroy(d) < 0 && virDomainIsActive(d) == 1) {
            cl_virt_fail(v, err, "destroy %s", name);
            if (mine)
                cl_log(CL_LOG_INFO, "+vm-run", "dom=%s why=destroy-failed", name);
            goto cleanup;
        }
    }
    virResetLastError();
    rc = 0;

cleanup:
    virDomainFree(d);
    return rc;
}

int cl_virt_destroy(cl_virt_t *v, const char *name, const char *why, cl_err_t *err)
{
    return destroy_dom(v, name, why, NULL, NULL, err);
}

/* cl_virt_suspend; its "-vm-run" line at most once a domain with lock and once. */
static int suspend_dom(cl_virt_t *v, const char *name, const char *why, pthread_mutex_t *lock,
                       int *once, cl_err_t *err)
{
    virDomainPtr d;
    int st = 0, reason = 0, rc = cl_virt_lookup(v, name, &d, err);

    if (rc <= 0)
        return rc;
    rc = -1;
    if (virDomainGetState(d, &st, &reason, 0) < 0) {
        cl_virt_fail(v, err, "state of %s", name);
        goto cleanup;
    }
    /* executing guest code (being shut down included); paused, crashed or off: nothing to do */
    if (st != VIR_DOMAIN_RUNNING && st != VIR_DOMAIN_BLOCKED && st != VIR_DOMAIN_SHUTDOWN) {
        rc = 0;
        goto cleanup;
    }
    if (virDomainSuspend(d) < 0) {
        cl_virt_fail(v, err, "suspend %s", name);
        if (virDomainIsActive(d) == 0) { /* it stopped meanwhile: it does not run, no error */
            cl_err_clear(err);
            rc = 0;
        }
        virResetLastError();
        goto cleanup;
    }
    /* logged after: until virDomainSuspend returned it may have run */
    log_stopped(name, why, lock, once);
    rc = 1;

cleanup:
    virDomainFree(d);
    return rc;
}

int cl_virt_suspend(cl_virt_t *v, const char *name, const char *why, cl_err_t *err)
{
    return suspend_dom(v, name, why, NULL, NULL, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Stopping several domains at once (self-fencing)                                            */
/* ------------------------------------------------------------------------------------------ */

/*
 * One cl_virt_stop_all: a thread per domain pauses it, then (once every pause has returned, or
 * after CL_FENCE_PAUSE_MS) a thread per domain destroys it.  Each domain's "-vm-run"
 * line is logged once, by whichever of its pause or destroy gets there first.
 */
typedef struct stop_ctx {
    cl_virt_t *v;
    const char *why;
    cl_virt_stop_t *s;
    int *logged;    /* per domain: its "-vm-run" line is out (under lock) */
    int *paused;    /* per domain: suspend_dom's result (written by its pause thread) */
    cl_err_t *perr; /* per domain: why it could not be paused */
    cl_err_t *derr; /* per domain: why it could not be destroyed */
    int *drc;       /* per domain: destroy_dom's result */
    size_t pausing; /* pauses not returned yet (under lock; done signalled at 0) */
    pthread_mutex_t lock;
    pthread_cond_t done;
} stop_ctx_t;

typedef struct stop_arg {
    stop_ctx_t *c;
    size_t i;
    pthread_t tid;
    int running; /* tid was started (joined at the end) */
} stop_arg_t;

static void *pause_one(void *p)
{
    stop_arg_t *a = p;
    stop_ctx_t *c = a->c;

    cl_err_clear(&c->perr[a->i]);
    c->paused[a->i] =
        suspend_dom(c->v, c->s[a->i].name, c->why, &c->lock, &c->logged[a->i], &c->perr[a->i]);
    pthread_mutex_lock(&c->lock);
    if (--c->pausing == 0)
        pthread_cond_signal(&c->done);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void *destroy_one(void *p)
{
    stop_arg_t *a = p;
    stop_ctx_t *c = a->c;

    cl_err_clear(&c->derr[a->i]);
    c->drc[a->i] =
        destroy_dom(c->v, c->s[a->i].name, c->why, &c->lock, &c->logged[a->i], &c->derr[a->i]);
    return NULL;
}

/* Start fn(arg) in a thread of its own, or run it here if none can be started. */
static void run_async(stop_arg_t *a, void *(*fn)(void *))
{
    a->running = pthread_create(&a->tid, NULL, fn, a) == 0;
    if (!a->running)
        fn(a);
}

/* Wait until every pause has returned, or until CL_FENCE_PAUSE_MS from now. */
static void wait_paused(stop_ctx_t *c)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CL_FENCE_PAUSE_MS / 1000;
    until.tv_nsec += (long)(CL_FENCE_PAUSE_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->lock);
    while (c->pausing > 0)
        if (pthread_cond_timedwait(&c->done, &c->lock, &until) != 0)
            break;
    pthread_mutex_unlock(&c->lock);
}

size_t cl_virt_stop_all(cl_virt_t *v, cl_virt_stop_t *s, size_t n, const char *why)
{
    stop_ctx_t c = {0};
    stop_arg_t *pa, *da;
    pthread_condattr_t ca;
    uint64_t t0 = cl_time_real_us(), t1;
    size_t i, stopped = 0, npaused = 0;

    if (n == 0)
        return 0;
    pa = calloc(n, sizeof(*pa));
    da = calloc(n, sizeof(*da));
    c.v = v;
    c.why = why;
    c.s = s;
    c.pausing = n;
    c.logged = calloc(n, sizeof(*c.logged));
    c.paused = calloc(n, sizeof(*c.paused));
    c.drc = calloc(n, sizeof(*c.drc));
    c.perr = calloc(n, sizeof(*c.perr));
    c.derr = calloc(n, sizeof(*c.derr));
    pthread_mutex_init(&c.lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c.done, &ca);
    pthread_condattr_destroy(&ca);
    if (!pa || !da || !c.logged || !c.paused || !c.drc || !c.perr || !c.derr) {
        /* no memory for the threads: destroy them here, one after the other */
        for (i = 0; i < n; i++) {
            cl_err_clear(&s[i].err);
            s[i].state = cl_virt_destroy(v, s[i].name, why, &s[i].err) == 0 ? CL_DOM_SHUTOFF
                                                                            : CL_DOM_RUNNING;
            stopped += s[i].state == CL_DOM_SHUTOFF;
        }
        goto cleanup;
    }
    /* 1: pause them all, at once (each is instant: the vCPUs stop) */
    for (i = 0; i < n; i++) {
        pa[i].c = &c;
        pa[i].i = i;
        run_async(&pa[i], pause_one);
    }
    /*
     * 2: then destroy them, at once (a real guest's destroy takes 1-2 s).  A pause that has not
     * returned by the bound (a stuck monitor) does not hold up the destroys, its own included.
     */
    wait_paused(&c);
    t1 = cl_time_real_us();
    for (i = 0; i < n; i++) {
        da[i].c = &c;
        da[i].i = i;
        run_async(&da[i], destroy_one);
    }
    for (i = 0; i < n; i++) {
        if (da[i].running)
            pthread_join(da[i].tid, NULL);
        if (pa[i].running)
            pthread_join(pa[i].tid, NULL);
    }
    for (i = 0; i < n; i++) {
        cl_err_clear(&s[i].err);
        npaused += c.paused[i] == 1;
        if (c.paused[i] < 0) /* then destroyed running, or not at all (below) */
            cl_log(CL_LOG_WARN, "-suspend", "dom=%s %s", s[i].name, c.perr[i].msg);
        if (c.drc[i] == 0) {
            s[i].state = CL_DOM_SHUTOFF;
            stopped++;
            continue;
        }
        /* not destroyed: paused (it does nothing) or still running, libvirt says which */
        s[i].err = c.derr[i];
        switch (cl_virt_state(v, s[i].name, NULL)) {
        case CL_DOM_MISSING:
        case CL_DOM_SHUTOFF: /* gone after all */
            s[i].state = CL_DOM_SHUTOFF;
            stopped++;
            break;
        case CL_DOM_PAUSED: s[i].state = CL_DOM_PAUSED; break;
        default: s[i].state = CL_DOM_RUNNING; /* running, or libvirt cannot say */
        }
    }
    cl_log(CL_LOG_INFO, "=stop-all",
           "host=%s why=%s domains=%zu paused=%zu in %llu us, stopped=%zu in %llu us", v->host, why,
           n, npaused, (unsigned long long)(t1 - t0), stopped,
           (unsigned long long)(cl_time_real_us() - t0));

cleanup:
    pthread_cond_destroy(&c.done);
    pthread_mutex_destroy(&c.lock);
    free(pa);
    free(da);
    free(c.logged);
    free(c.paused);
    free(c.drc);
    free(c.perr);
    free(c.derr);
    return stopped;
}
