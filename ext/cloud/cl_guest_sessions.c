/*
 * cl_guest_sessions: the leader's SSH sessions to running guests, kept between the monitor's
 * role checks (see cl_guests.h, doc/MONITOR.md §3).  A session is opened as cl_guests_configure
 * opens one (the cloud's ssh_key, root, the host key pinned in <state>/known_hosts/<cloud>) and
 * kept per (cloud, slot) with the address it reached: another address is another session.  A
 * step cut off by a broken transport runs once more over a new session; a check that fails or
 * times out over a live session is a failed check, run again as its role's health says.  The
 * cache is shared by the monitor's thread and `cloudctl exec`'s (cl_exec): a session is taken
 * out for one thread's use and given back, so each cl_ssh_t has one user at a time.
 */
#include "cl_guests.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_log.h"
#include "cl_role.h"
#include "cl_ssh.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define LINE_MAX_SHOWN 200 /* bytes of a failed step's last output line kept in the error */

/* ========================================================================================= */
/* The cache                                                                                 */
/* ========================================================================================= */

/*
 * One session and what it was opened for (all owned).  An entry is in the list from its
 * opening to its closing; `busy` while one thread uses it (taken out, cl_guest_sessions_take).
 */
struct cl_guest_session {
    char *cloud, *slot;     /* the key */
    char *ip, *key, *known; /* the target: any change means a new session */
    cl_ssh_t *ssh;          /* never NULL in a listed entry */
    int busy;               /* a thread uses it: nobody else may */
    int dropped;            /* dropped while busy: closed when given back */
};
typedef struct cl_guest_session entry_t;

/*
 * The list holds pointers, so an entry stays where it is while its thread uses it without the
 * lock.  Several entries of one slot exist only while more than one thread needs its guest at
 * once (a check during a `cloudctl exec`); one is kept when they are given back.
 */
struct cl_guest_sessions {
    pthread_mutex_t lock; /* v and n, every entry's busy and dropped */
    entry_t **v;          /* owned, n used of cap */
    size_t n, cap;
};

static void entry_free(entry_t *en)
{
    if (!en)
        return;
    cl_ssh_free(en->ssh); /* a polite disconnect, bounded by CL_SSH_CLOSE_MS */
    free(en->cloud);
    free(en->slot);
    free(en->ip);
    free(en->key);
    free(en->known);
    free(en);
}

static int same_slot(const entry_t *en, const char *cloud, const char *slot)
{
    return strcmp(en->cloud, cloud) == 0 && strcmp(en->slot, slot) == 0;
}

/* Were a and b opened for the same guest (slot, address, key and known-hosts file)? */
static int same_target(const entry_t *a, const entry_t *b)
{
    return same_slot(a, b->cloud, b->slot) && strcmp(a->ip, b->ip) == 0 &&
           strcmp(a->key, b->key) == 0 && strcmp(a->known, b->known) == 0;
}

/* Under the lock: take en off the list (the caller closes it, after unlocking). */
static void unlist(cl_guest_sessions_t *s, entry_t *en)
{
    size_t k;

    for (k = 0; k < s->n; k++)
        if (s->v[k] == en) {
            s->v[k] = s->v[--s->n];
            return;
        }
}

/* Close an entry that is off the list, saying why. */
static void close_entry(entry_t *en, const char *why)
{
    cl_log(CL_LOG_INFO, "-guest-session", "cloud=%s slot=%s ip=%s: %s", en->cloud, en->slot, en->ip,
           why);
    entry_free(en);
}

cl_guest_sessions_t *cl_guest_sessions_new(void)
{
    cl_guest_sessions_t *s = calloc(1, sizeof(cl_guest_sessions_t));

    if (s)
        pthread_mutex_init(&s->lock, NULL);
    return s;
}

void cl_guest_sessions_free(cl_guest_sessions_t *s)
{
    size_t k;

    if (!s)
        return;
    for (k = 0; k < s->n; k++)
        entry_free(s->v[k]);
    free(s->v);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void cl_guest_sessions_drop(cl_guest_sessions_t *s, const char *cloud, const char *slot)
{
    entry_t **gone = NULL;
    size_t k, ngone = 0;

    if (!s || !cloud)
        return;
    pthread_mutex_lock(&s->lock);
    gone = calloc(s->n + 1, sizeof(*gone));
    /* slot NULL: every session of the cloud (it was stopped) */
    for (k = 0; k < s->n;) {
        entry_t *en = s->v[k];
        if (strcmp(en->cloud, cloud) != 0 || (slot && strcmp(en->slot, slot) != 0)) {
            k++;
        } else if (en->busy) {
            en->dropped = 1; /* its thread gives it back: closed then */
            k++;
        } else if (!gone) {
            s->v[k] = s->v[--s->n]; /* out of memory: closed here, under the lock */
            close_entry(en, "dropped");
        } else {
            gone[ngone++] = en;
            s->v[k] = s->v[--s->n];
        }
    }
    pthread_mutex_unlock(&s->lock);
    for (k = 0; k < ngone; k++)
        close_entry(gone[k], slot ? "dropped" : "cloud forgotten");
    free(gone);
}

size_t cl_guest_sessions_count(const cl_guest_sessions_t *cs)
{
    cl_guest_sessions_t *s = (cl_guest_sessions_t *)cs; /* the lock only */
    size_t k, n = 0;

    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    for (k = 0; k < s->n; k++)
        n += cl_ssh_connected(s->v[k]->ssh) ? 1 : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

cl_guest_session_t *cl_guest_sessions_take(cl_guest_sessions_t *s, const char *state_dir,
                                           const cl_spec_t *spec, size_t i, cl_err_t *err)
{
    const cl_slot_t *sl;
    entry_t *en = NULL, *stale = NULL, *fresh = NULL, **nv;
    char known[1024];
    cl_ssh_opts_t o;
    size_t k;

    if (!s || !state_dir || !spec || i >= spec->nslots || !spec->ssh_key || !*spec->ssh_key) {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "connect",
                   "no session cache, state directory, slot %zu or ssh_key", i);
        return NULL;
    }
    sl = &spec->slots[i];
    snprintf(known, sizeof(known), "%s/known_hosts/%s", state_dir, spec->name);
    pthread_mutex_lock(&s->lock);
    for (k = 0; k < s->n && !en; k++) {
        entry_t *c = s->v[k];
        if (c->busy || c->dropped || !same_slot(c, spec->name, sl->name))
            continue;
        if (strcmp(c->ip, sl->ip) == 0 && strcmp(c->key, spec->ssh_key) == 0 &&
            strcmp(c->known, known) == 0) {
            en = c;
            en->busy = 1;
        } else if (!stale) {
            stale = c; /* its slot is somewhere else now: closed below */
        }
    }
    if (stale)
        unlist(s, stale);
    pthread_mutex_unlock(&s->lock);
    if (stale)
        close_entry(stale, "its address or key changed");
    if (en)
        return en;

    memset(&o, 0, sizeof(o));
    o.host = sl->ip;
    o.user = "root";
    o.key = spec->ssh_key;
    o.known_hosts = known;
    if (!(fresh = calloc(1, sizeof(*fresh))) || !(fresh->cloud = strdup(spec->name)) ||
        !(fresh->slot = strdup(sl->name)) || !(fresh->ip = strdup(sl->ip)) ||
        !(fresh->key = strdup(spec->ssh_key)) || !(fresh->known = strdup(known))) {
        cl_err_sys(err, sl->ip, "connect", "out of memory");
        goto fail;
    }
    /* one attempt, bounded by CL_SSH_CONNECT_MS and CL_SSH_AUTH_MS; without the lock */
    if (!(fresh->ssh = cl_ssh_connect(&o, err)))
        goto fail;
    cl_log(CL_LOG_INFO, "+guest-session", "cloud=%s slot=%s ip=%s", spec->name, sl->name, sl->ip);
    fresh->busy = 1;
    pthread_mutex_lock(&s->lock);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        if (!(nv = realloc(s->v, cap * sizeof(*nv)))) {
            pthread_mutex_unlock(&s->lock);
            cl_err_sys(err, sl->ip, "connect", "out of memory");
            goto fail;
        }
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = fresh; /* s owns it now */
    pthread_mutex_unlock(&s->lock);
    return fresh;
fail:
    entry_free(fresh);
    return NULL;
}

cl_ssh_t *cl_guest_session_ssh(cl_guest_session_t *g)
{
    return g ? g->ssh : NULL;
}

void cl_guest_sessions_give(cl_guest_sessions_t *s, cl_guest_session_t *g, const char *why)
{
    size_t k;
    int spare = 0;

    if (!s || !g)
        return;
    pthread_mutex_lock(&s->lock);
    g->busy = 0;
    /* another session of the slot is kept already (two threads needed it at once) */
    for (k = 0; !why && !g->dropped && k < s->n; k++)
        if (s->v[k] != g && !s->v[k]->busy && !s->v[k]->dropped && same_target(s->v[k], g))
            spare = 1;
    if (why || g->dropped || spare)
        unlist(s, g);
    else
        g = NULL; /* kept */
    pthread_mutex_unlock(&s->lock);
    if (g)
        close_entry(g, why ? why : g->dropped ? "dropped" : "another one is kept");
}

/* ========================================================================================= */
/* Running one role's step                                                                   */
/* ========================================================================================= */

/* A here-document delimiter that is no line of body: CLOUD_STEP_<n>, the smallest n. */
static void delimiter(const char *body, char *out, size_t n)
{
    unsigned k;
    const char *p;
    size_t len;
    int clash;

    for (k = 0;; k++) {
        snprintf(out, n, "CLOUD_STEP_%u", k);
        len = strlen(out);
        for (clash = 0, p = body; !clash && (p = strstr(p, out)) != NULL; p += len)
            clash = (p == body || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0');
        if (!clash)
            return;
    }
}

/*
 * Run role's step on the guest the way cl_role_run does (its wrapper: keep the two alike): the
 * facts the last setup left in CL_ROLE_DIR, CLOUD_DIR and CLOUD_ROLE exported, the step's text
 * in a here-document run by `sh -e` in / with stdin on /dev/null, bounded by timeout_ms.
 * 0 when it ran to its end (res: its exit status and output), or -1 and err (cl_ssh's).
 */
static int run_step(cl_ssh_t *ssh, const cl_role_t *role, cl_step_t step, unsigned timeout_ms,
                    cl_ssh_result_t *res, cl_err_t *err)
{
    const char *dir_argv[] = {CL_ROLE_DIR, NULL}, *role_argv[] = {role->name, NULL};
    cl_ssh_run_opts_t ro = {NULL, 0, timeout_ms, 0};
    char *qdir = cl_ssh_quote_argv(NULL, dir_argv), *qrole = cl_ssh_quote_argv(NULL, role_argv);
    char *script = NULL, delim[32], what[160];
    int rc = -1;

    memset(res, 0, sizeof(*res));
    delimiter(role->steps[step], delim, sizeof(delim));
    if (!qdir || !qrole ||
        asprintf(&script,
                 "set -e\nexport CLOUD_DIR=%s\nd=\"$CLOUD_DIR\"\n. \"$d/facts.sh\"\n"
                 "export CLOUD_ROLE=%s\nbody=$(cat <<'%s'\n%s\n%s\n)\ncd /\n"
                 "sh -ec \"$body\" </dev/null\n",
                 qdir, qrole, delim, role->steps[step], delim) < 0) {
        script = NULL;
        cl_err_sys(err, cl_ssh_host(ssh), cl_step_name(step), "out of memory");
        goto cleanup;
    }
    snprintf(what, sizeof(what), "%s %s", cl_step_name(step), role->name);
    rc = cl_ssh_run_script(ssh, what, script, NULL, &ro, res, err);
cleanup:
    free(script);
    free(qdir);
    free(qrole);
    return rc;
}

/* The connection ops of cl_ssh (cl_ssh.h): a failure there was a fresh connection's. */
static int connect_failed(const cl_err_t *e)
{
    return strcmp(e->op, "connect") == 0 || strcmp(e->op, "hostkey") == 0 ||
           strcmp(e->op, "auth") == 0;
}

/* After a step timed out: does its session still carry a command (`true`, CL_GUEST_PROBE_MS)? */
static int alive(cl_ssh_t *ssh)
{
    const char *argv[] = {"true", NULL};
    cl_ssh_run_opts_t ro = {NULL, 0, CL_GUEST_PROBE_MS, 0};
    cl_ssh_result_t res;
    cl_err_t e;
    int ok;

    if (!cl_ssh_connected(ssh))
        return 0;
    ok = cl_ssh_run(ssh, argv, &ro, &res, &e) == 0 && res.exit_status == 0;
    cl_ssh_result_free(&res);
    return ok && cl_ssh_connected(ssh);
}

enum { RAN = 0, TIMED_OUT = 1, UNREACHABLE = -1 };

/*
 * role's step in slot i's guest over s's session: RAN (res: status and output), TIMED_OUT (err:
 * the step outlived timeout_ms over a session that still works), or UNREACHABLE (err: the guest
 * could not be reached; its session is closed).  A session found broken (connection lost,
 * transport timed out) is closed and a new one opened, once, and the step run once more.
 */
static int guest_run(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec, size_t i,
                     const cl_role_t *role, cl_step_t step, unsigned timeout_ms,
                     cl_ssh_result_t *res, cl_err_t *err)
{
    cl_guest_session_t *en = NULL;
    cl_err_t e;
    int attempt;

    cl_err_clear(&e);
    for (attempt = 0; attempt < 2; attempt++) {
        cl_ssh_result_free(res);
        if (!(en = cl_guest_sessions_take(s, state_dir, spec, i, &e)))
            break;
        if (run_step(en->ssh, role, step, timeout_ms, res, &e) == 0) {
            cl_guest_sessions_give(s, en, NULL);
            return RAN;
        }
        if (connect_failed(&e)) { /* cl_ssh found the session dead and could not open another */
            cl_guest_sessions_give(s, en, "unreachable");
            break;
        }
        if (e.domain == CL_ERR_TIMEOUT && alive(en->ssh)) {
            cl_guest_sessions_give(s, en, NULL);
            if (err)
                *err = e;
            return TIMED_OUT;
        }
        cl_log(CL_LOG_WARN, "-guest-session-lost", "cloud=%s slot=%s ip=%s: %s: %s%s", spec->name,
               en->slot, en->ip, e.op, e.msg, attempt ? "" : "; reconnecting");
        cl_guest_sessions_give(s, en, "broken");
    }
    /* a refused or unroutable port is the guest's unreachability, not a local failure */
    if (e.domain == CL_ERR_SYS && strcmp(e.op, "connect") == 0)
        e.domain = CL_ERR_SSH;
    if (err)
        *err = e;
    return UNREACHABLE;
}

/* The last non-empty line of what a step said (stderr, else stdout), printable, shortened. */
static void last_line(const cl_ssh_result_t *r, char *out, size_t n)
{
    const char *t = r->errout_len ? r->errout : r->out ? r->out : "";
    size_t len = r->errout_len ? r->errout_len : r->out_len, start, k, j = 0;

    while (len && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
        len--;
    for (start = len; start && t[start - 1] != '\n'; start--)
        ;
    if (len - start > LINE_MAX_SHOWN)
        start = len - LINE_MAX_SHOWN;
    for (k = start; k < len && j + 1 < n; k++)
        out[j++] = t[k] >= ' ' && t[k] <= '~' ? t[k] : '?';
    out[j] = '\0';
    if (!j)
        snprintf(out, n, "(no output)");
}

/* The role of spec named name (a slot's role), or NULL. */
static const cl_role_t *role_named(const cl_spec_t *spec, const char *name)
{
    size_t k;

    for (k = 0; k < spec->nroles; k++)
        if (strcmp(spec->roles[k].name, name) == 0)
            return &spec->roles[k];
    return NULL;
}

/* What every call needs: a cache, a slot, and a key when there is a step to run. */
static int usable(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec, size_t i,
                  cl_step_t step, cl_err_t *err)
{
    if (!s || !state_dir || !spec || i >= spec->nslots)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, cl_step_name(step),
                          "no session cache, state directory or slot %zu", i);
    if (!cl_role_has_step(spec, i, step))
        return 0;
    if (!spec->ssh_key || !*spec->ssh_key)
        return cl_err_set(err, CL_ERR_SPEC, 0, spec->slots[i].ip, cl_step_name(step),
                          "ssh_key: %s has %s steps to run but the cloud has no ssh_key",
                          spec->slots[i].name, cl_step_name(step));
    return 1;
}

/* ========================================================================================= */
/* Checks and restarts                                                                       */
/* ========================================================================================= */

int cl_guests_check_slot(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec,
                         size_t i, cl_err_t *err)
{
    const cl_slot_t *sl;
    cl_ssh_result_t res = {0};
    char line[LINE_MAX_SHOWN + 1], op[160];
    size_t r;
    unsigned a, tries, timeout;
    int rc, ok = usable(s, state_dir, spec, i, CL_STEP_CHECK, err);

    if (ok <= 0)
        return ok;
    sl = &spec->slots[i];
    line[0] = '\0';
    for (r = 0; r < sl->nroles; r++) {
        const cl_role_t *role = role_named(spec, sl->roles[r]);
        cl_err_t e;
        if (!role || !role->steps[CL_STEP_CHECK])
            continue;
        tries = role->health.retries + 1;
        timeout = role->health.timeout_ms ? role->health.timeout_ms : CL_HEALTH_TIMEOUT_MS;
        snprintf(op, sizeof(op), "check %s", role->name);
        for (a = 0, rc = -1; a < tries; a++) {
            if (a)
                usleep(CL_GUEST_CHECK_RETRY_MS * 1000u);
            cl_err_clear(&e);
            rc = guest_run(s, state_dir, spec, i, role, CL_STEP_CHECK, timeout, &res, &e);
            if (rc == UNREACHABLE) {
                if (err)
                    *err = e;
                cl_ssh_result_free(&res);
                return -1;
            }
            if (rc == RAN && res.exit_status == 0)
                break;
            if (rc == RAN)
                last_line(&res, line, sizeof(line));
            cl_log(CL_LOG_WARN, "-guest-check", "cloud=%s slot=%s role=%s try=%u/%u %s=%d",
                   spec->name, sl->name, role->name, a + 1, tries,
                   rc == RAN ? "exit" : "timeout_ms", rc == RAN ? res.exit_status : (int)timeout);
        }
        if (a == tries) {
            if (rc == TIMED_OUT)
                cl_err_set(err, CL_ERR_TIMEOUT, 0, sl->ip, op,
                           "%s: role %s: check failed %u time%s: timed out after %u ms (the "
                           "guest still answers)",
                           sl->name, role->name, tries, tries > 1 ? "s" : "", timeout);
            else
                cl_err_set(err, CL_ERR_SSH, res.exit_status, sl->ip, op,
                           "%s: role %s: check failed %u time%s: exit %d%s%s: %s", sl->name,
                           role->name, tries, tries > 1 ? "s" : "", res.exit_status,
                           res.exit_signal[0] ? " by SIG" : "", res.exit_signal, line);
            cl_ssh_result_free(&res);
            return 1;
        }
        cl_log(CL_LOG_DEBUG, "+guest-check", "cloud=%s slot=%s role=%s try=%u ms=%llu", spec->name,
               sl->name, role->name, a + 1, (unsigned long long)res.ms);
        cl_ssh_result_free(&res);
    }
    return 0;
}

int cl_guests_restart_slot(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec,
                           size_t i, cl_err_t *err)
{
    const cl_slot_t *sl;
    cl_ssh_result_t res = {0};
    char line[LINE_MAX_SHOWN + 1], op[160];
    size_t r;
    int rc = -1, ok = usable(s, state_dir, spec, i, CL_STEP_START, err);

    if (ok <= 0)
        return ok;
    sl = &spec->slots[i];
    for (r = 0; r < sl->nroles; r++) {
        const cl_role_t *role = role_named(spec, sl->roles[r]);
        int got;
        if (!role || !role->steps[CL_STEP_START])
            continue;
        snprintf(op, sizeof(op), "start %s", role->name);
        got = guest_run(s, state_dir, spec, i, role, CL_STEP_START, CL_GUEST_RESTART_STEP_MS, &res,
                        err);
        if (got == UNREACHABLE) /* err: cl_ssh's, naming the guest */
            goto cleanup;
        if (got == TIMED_OUT) {
            cl_err_set(err, CL_ERR_TIMEOUT, 0, sl->ip, op,
                       "%s: role %s: start not finished within %u ms", sl->name, role->name,
                       CL_GUEST_RESTART_STEP_MS);
            goto cleanup;
        }
        if (res.exit_status != 0) {
            last_line(&res, line, sizeof(line));
            cl_err_set(err, CL_ERR_SSH, res.exit_status, sl->ip, op,
                       "%s: role %s: start exited %d%s%s: %s", sl->name, role->name,
                       res.exit_status, res.exit_signal[0] ? " by SIG" : "", res.exit_signal, line);
            goto cleanup;
        }
        cl_log(CL_LOG_INFO, "+guest-restart", "cloud=%s slot=%s role=%s ms=%llu", spec->name,
               sl->name, role->name, (unsigned long long)res.ms);
        cl_ssh_result_free(&res);
    }
    rc = 0;
cleanup:
    cl_ssh_result_free(&res);
    return rc;
}
