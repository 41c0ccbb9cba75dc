/*
 * cl_guest_sessions: the leader's SSH sessions to running guests, kept between the monitor's
 * role checks (see cl_guests.h, doc/MONITOR.md §3).  A session is opened as cl_guests_configure
 * opens one (the cloud's ssh_key, root, the host key pinned in <state>/known_hosts/<cloud>) and
 * kept per (cloud, slot) with the address it reached: another address is another session.  A
 * step cut off by a broken transport runs once more over a new session; a check that fails or
 * times out over a live session is a failed check, run again as its role's health says.
 */
#include "cl_guests.h"

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

/* One slot's session and what it was opened for (all owned). */
typedef struct entry {
    char *cloud, *slot;     /* the key */
    char *ip, *key, *known; /* the target: any change means a new session */
    cl_ssh_t *ssh;          /* never NULL in a listed entry */
} entry_t;

struct cl_guest_sessions {
    entry_t *v; /* owned, n used of cap */
    size_t n, cap;
};

static void entry_close(entry_t *en)
{
    cl_ssh_free(en->ssh); /* a polite disconnect, bounded by CL_SSH_CLOSE_MS */
    free(en->cloud);
    free(en->slot);
    free(en->ip);
    free(en->key);
    free(en->known);
    memset(en, 0, sizeof(*en));
}

static entry_t *find(cl_guest_sessions_t *s, const char *cloud, const char *slot)
{
    size_t k;

    for (k = 0; k < s->n; k++)
        if (strcmp(s->v[k].cloud, cloud) == 0 && strcmp(s->v[k].slot, slot) == 0)
            return &s->v[k];
    return NULL;
}

/* Close en (an element of s->v) and take it off the list. */
static void forget(cl_guest_sessions_t *s, entry_t *en, const char *why)
{
    cl_log(CL_LOG_INFO, "-guest-session", "cloud=%s slot=%s ip=%s: %s", en->cloud, en->slot, en->ip,
           why);
    entry_close(en);
    *en = s->v[--s->n];
}

cl_guest_sessions_t *cl_guest_sessions_new(void)
{
    return calloc(1, sizeof(cl_guest_sessions_t));
}

void cl_guest_sessions_free(cl_guest_sessions_t *s)
{
    size_t k;

    if (!s)
        return;
    for (k = 0; k < s->n; k++)
        entry_close(&s->v[k]);
    free(s->v);
    free(s);
}

void cl_guest_sessions_drop(cl_guest_sessions_t *s, const char *cloud, const char *slot)
{
    entry_t *en = s && cloud && slot ? find(s, cloud, slot) : NULL;
    size_t k;

    if (en)
        forget(s, en, "dropped");
    /* slot NULL: every session of the cloud (it was stopped) */
    for (k = 0; s && cloud && !slot && k < s->n;)
        if (strcmp(s->v[k].cloud, cloud) == 0)
            forget(s, &s->v[k], "cloud forgotten");
        else
            k++;
}

size_t cl_guest_sessions_count(const cl_guest_sessions_t *s)
{
    size_t k, n = 0;

    for (k = 0; s && k < s->n; k++)
        n += cl_ssh_connected(s->v[k].ssh) ? 1 : 0;
    return n;
}

/*
 * The session of slot i of spec: the cached one when it was opened for the same address, key
 * and known-hosts file, else a new one (cl_ssh_connect: one attempt, bounded by
 * CL_SSH_CONNECT_MS and CL_SSH_AUTH_MS).  The entry (owned by s) into *out; 0, or -1 and err.
 */
static int session_for(cl_guest_sessions_t *s, const char *state_dir, const cl_spec_t *spec,
                       size_t i, entry_t **out, cl_err_t *err)
{
    const cl_slot_t *sl = &spec->slots[i];
    entry_t *en = find(s, spec->name, sl->name), fresh = {0};
    char known[1024];
    cl_ssh_opts_t o;
    int rc = -1;

    snprintf(known, sizeof(known), "%s/known_hosts/%s", state_dir, spec->name);
    if (en && strcmp(en->ip, sl->ip) == 0 && strcmp(en->key, spec->ssh_key) == 0 &&
        strcmp(en->known, known) == 0) {
        *out = en;
        return 0;
    }
    if (en)
        forget(s, en, "its address or key changed");
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        entry_t *nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return cl_err_sys(err, sl->ip, "connect", "out of memory");
        s->v = nv;
        s->cap = cap;
    }
    memset(&o, 0, sizeof(o));
    o.host = sl->ip;
    o.user = "root";
    o.key = spec->ssh_key;
    o.known_hosts = known;
    fresh.cloud = strdup(spec->name);
    fresh.slot = strdup(sl->name);
    fresh.ip = strdup(sl->ip);
    fresh.key = strdup(spec->ssh_key);
    fresh.known = strdup(known);
    if (!fresh.cloud || !fresh.slot || !fresh.ip || !fresh.key || !fresh.known) {
        cl_err_sys(err, sl->ip, "connect", "out of memory");
        goto cleanup;
    }
    if (!(fresh.ssh = cl_ssh_connect(&o, err)))
        goto cleanup;
    cl_log(CL_LOG_INFO, "+guest-session", "cloud=%s slot=%s ip=%s", spec->name, sl->name, sl->ip);
    s->v[s->n] = fresh;
    *out = &s->v[s->n++];
    memset(&fresh, 0, sizeof(fresh)); /* s owns it now */
    rc = 0;
cleanup:
    entry_close(&fresh);
    return rc;
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
    entry_t *en = NULL;
    cl_err_t e;
    int attempt;

    cl_err_clear(&e);
    for (attempt = 0; attempt < 2; attempt++) {
        cl_ssh_result_free(res);
        if (session_for(s, state_dir, spec, i, &en, &e) < 0)
            break;
        if (run_step(en->ssh, role, step, timeout_ms, res, &e) == 0)
            return RAN;
        if (connect_failed(&e)) /* cl_ssh found the session dead and could not open another */
            break;
        if (e.domain == CL_ERR_TIMEOUT && alive(en->ssh)) {
            if (err)
                *err = e;
            return TIMED_OUT;
        }
        cl_log(CL_LOG_WARN, "-guest-session-lost", "cloud=%s slot=%s ip=%s: %s: %s%s", spec->name,
               en->slot, en->ip, e.op, e.msg, attempt ? "" : "; reconnecting");
        forget(s, en, "broken");
        en = NULL;
    }
    if (en)
        forget(s, en, "unreachable");
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
