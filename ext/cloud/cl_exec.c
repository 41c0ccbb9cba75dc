/*
 * cl_exec: a command run in every selected guest of a cloud at once (see cl_exec.h).  Targets
 * resolve against the stored spec; the runner takes each slot's session from the leader's
 * cache (cl_guest_sessions), runs the argv once in a thread of its own and gives the session
 * back; the control op wraps it: leadership (a member hands it over), refusals, the audit in
 * the cloud's history, and an answer whose outputs fit a control line and a peer answer.
 */
#include "cl_exec.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cl_ctl.h"
#include "cl_events.h"
#include "cl_log.h"
#include "cl_net.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define NAME_SHOWN 64  /* bytes of a target name or an asker quoted in messages */
#define LIST_SHOWN 400 /* bytes of a list of names in a message or an event */

/* dst (n bytes) gets src's printable ASCII, anything else as '?', cut to n - 1 bytes. */
static const char *printable(char *dst, size_t n, const char *src)
{
    size_t i;

    for (i = 0; src && src[i] && i + 1 < n; i++)
        dst[i] = src[i] >= ' ' && src[i] <= '~' ? src[i] : '?';
    dst[i] = '\0';
    return dst;
}

/* Append ", word" (or "word" first) to buf of n bytes, printable; "..." once it is full. */
static void list_add(char *buf, size_t n, const char *word)
{
    size_t len = strlen(buf);
    char w[NAME_SHOWN];

    if (len + 4 >= n || strcmp(buf + (len >= 3 ? len - 3 : 0), "...") == 0)
        return;
    printable(w, sizeof(w), word);
    if (len + strlen(w) + 3 >= n - 4)
        snprintf(buf + len, n - len, "%s...", len ? ", " : "");
    else
        snprintf(buf + len, n - len, "%s%s", len ? ", " : "", w);
}

/* ========================================================================================== */
/* Targets                                                                                    */
/* ========================================================================================== */

/* Does slot s hold role (declared, or a service of a composite role)? */
static int slot_has(const cl_slot_t *s, const char *role)
{
    size_t j;

    for (j = 0; j < s->nroles; j++)
        if (strcmp(s->roles[j], role) == 0)
            return 1;
    for (j = 0; j < s->nservices; j++)
        if (strcmp(s->services[j], role) == 0)
            return 1;
    return 0;
}

int cl_exec_resolve(const cl_spec_t *spec, const char *const *names, size_t n, unsigned char *sel,
                    cl_err_t *err)
{
    char unknown[LIST_SHOWN] = "", empty[LIST_SHOWN] = "", roles[LIST_SHOWN] = "";
    size_t i, k;
    int count = 0;

    memset(sel, 0, spec->nslots);
    if (n == 0) {
        memset(sel, 1, spec->nslots);
        return (int)spec->nslots;
    }
    for (k = 0; k < n; k++) {
        int si = names[k] ? cl_spec_slot_find(spec, names[k]) : -1, declared = 0, found = 0;
        if (si >= 0) {
            sel[si] = 1;
            continue;
        }
        for (i = 0; names[k] && i < spec->nroles; i++)
            declared |= strcmp(spec->roles[i].name, names[k]) == 0;
        for (i = 0; names[k] && i < spec->nslots; i++)
            if (slot_has(&spec->slots[i], names[k]))
                sel[i] = 1, found = declared = 1;
        if (!declared)
            list_add(unknown, sizeof(unknown), names[k] ? names[k] : "");
        else if (!found)
            list_add(empty, sizeof(empty), names[k]);
    }
    if (unknown[0] || empty[0]) {
        memset(sel, 0, spec->nslots);
        for (i = 0; i < spec->nroles; i++)
            list_add(roles, sizeof(roles), spec->roles[i].name);
        if (unknown[0])
            return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "exec",
                              "cloud %s has no role or slot named %s (its roles: %s; a slot is "
                              "named like %s): nothing run",
                              spec->name, unknown, roles,
                              spec->nslots ? spec->slots[0].name : "<cloud>-<role>-<n>");
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "exec",
                          "cloud %s has no VM of role %s: nothing run", spec->name, empty);
    }
    for (i = 0; i < spec->nslots; i++)
        count += sel[i];
    return count;
}

/* ========================================================================================== */
/* The runner                                                                                 */
/* ========================================================================================== */

typedef struct runner {
    const cl_exec_opts_t *o;
    cl_exec_slot_t *slots;
    size_t n, next; /* next: the first slot no thread took yet */
    pthread_mutex_t lock;
} runner_t;

/* Slot s's command, over a session taken from the cache and given back. */
static void run_slot(const cl_exec_opts_t *o, cl_exec_slot_t *s)
{
    const cl_slot_t *sl = &o->spec->slots[s->slot];
    uint64_t t0 = cl_time_now_ms(), now;
    cl_guest_session_t *g = NULL;
    cl_ssh_run_opts_t ro;
    cl_ssh_t *ssh;

    if (t0 >= o->deadline) {
        cl_err_set(&s->err, CL_ERR_TIMEOUT, 0, sl->ip, "exec",
                   "not started: the exec's time ran out before its turn");
        goto done;
    }
    if (!(g = cl_guest_sessions_take(o->sessions, o->state_dir, o->spec, s->slot, &s->err))) {
        /* a refused or unroutable port is the guest's unreachability, not a local failure */
        if (s->err.domain == CL_ERR_SYS && strcmp(s->err.op, "connect") == 0)
            s->err.domain = CL_ERR_SSH;
        goto done;
    }
    ssh = cl_guest_session_ssh(g);
    if ((now = cl_time_now_ms()) >= o->deadline) {
        cl_guest_sessions_give(o->sessions, g, NULL);
        cl_err_set(&s->err, CL_ERR_TIMEOUT, 0, sl->ip, "exec",
                   "not started: reaching the guest took the exec's whole time");
        goto done;
    }
    memset(&ro, 0, sizeof(ro));
    ro.timeout_ms = o->deadline - now > UINT_MAX ? UINT_MAX : (unsigned)(o->deadline - now);
    ro.max_output = o->max_output ? o->max_output : CL_EXEC_OUTPUT_MAX;
    /* sent once: cl_ssh resends only a command that never started (a session found dead) */
    if (cl_ssh_run(ssh, o->argv, &ro, &s->res, &s->err) == 0)
        s->ran = 1;
    cl_guest_sessions_give(o->sessions, g, cl_ssh_connected(ssh) ? NULL : "broken");
done:
    s->ms = cl_time_now_ms() - t0;
}

static void *runner_main(void *arg)
{
    runner_t *r = arg;

    for (;;) {
        size_t k;
        pthread_mutex_lock(&r->lock);
        while (r->next < r->n && r->slots[r->next].err.domain != CL_ERR_NONE)
            r->next++; /* not to be run (not running): reported as it is */
        k = r->next < r->n ? r->next++ : r->n;
        pthread_mutex_unlock(&r->lock);
        if (k >= r->n)
            return NULL;
        run_slot(r->o, &r->slots[k]);
    }
}

size_t cl_exec_run(const cl_exec_opts_t *o, cl_exec_slot_t *slots, size_t n)
{
    runner_t r;
    pthread_t *th;
    size_t k, todo = 0, nth, started = 0, ran = 0;

    for (k = 0; k < n; k++)
        todo += slots[k].err.domain == CL_ERR_NONE;
    nth = o->parallel ? o->parallel : CL_EXEC_PARALLEL;
    nth = nth < todo ? nth : todo;
    memset(&r, 0, sizeof(r));
    r.o = o;
    r.slots = slots;
    r.n = n;
    pthread_mutex_init(&r.lock, NULL);
    th = nth ? calloc(nth, sizeof(*th)) : NULL;
    for (k = 0; th && k < nth; k++)
        if (pthread_create(&th[started], NULL, runner_main, &r) == 0)
            started++;
    if (todo && !started)
        runner_main(&r); /* no thread to be had: one after the other, here */
    for (k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    free(th);
    pthread_mutex_destroy(&r.lock);
    for (k = 0; k < n; k++)
        ran += slots[k].ran ? 1 : 0;
    return ran;
}

void cl_exec_slots_free(cl_exec_slot_t *slots, size_t n)
{
    size_t k;

    for (k = 0; slots && k < n; k++)
        cl_ssh_result_free(&slots[k].res);
    free(slots);
}

/* ========================================================================================== */
/* Output as JSON text                                                                        */
/* ========================================================================================== */

char *cl_exec_text(const char *src, size_t n, size_t *len)
{
    const unsigned char *p = (const unsigned char *)src;
    unsigned char *o = malloc(n * 3 + 1);
    size_t i = 0, j = 0;

    if (!o)
        return NULL;
    while (i < n) {
        unsigned c = p[i], cp = 0, l, k, ok;
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
                memcpy(o + j, "\xef\xbf\xbd", 3);
                j += 3;
            } else {
                o[j++] = (unsigned char)c;
            }
            i++;
            continue;
        }
        l = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        ok = l && i + l <= n;
        if (ok)
            cp = c & (0xff >> (l + 1));
        for (k = 1; ok && k < l; k++) {
            ok = (p[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* no overlong form, no surrogate, nothing past U+10FFFF */
        ok = ok && !(l == 2 && cp < 0x80) && !(l == 3 && cp < 0x800) && !(l == 4 && cp < 0x10000) &&
             !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
        if (ok && cp >= 0x80 && cp <= 0x9f) { /* a C1 control: one character replaced */
            memcpy(o + j, "\xef\xbf\xbd", 3);
            j += 3;
            i += l;
        } else if (ok) {
            memcpy(o + j, p + i, l);
            j += l;
            i += l;
        } else {
            memcpy(o + j, "\xef\xbf\xbd", 3);
            j += 3;
            i++;
        }
    }
    o[j] = '\0';
    *len = j;
    return (char *)o;
}

/* What byte c costs in a JSON string (json-c's escapes, '/' included). */
static size_t json_cost(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '/' || c == '\n' || c == '\r' || c == '\t' || c == '\b' ||
        c == '\f')
        return 2;
    return c < 0x20 ? 6 : 1;
}

typedef struct text {
    char *p; /* owned: cl_exec_text's */
    size_t len;
    int truncated;
} text_t;

/*
 * Cut the texts (m of them) so that all of them together cost at most budget as JSON: when
 * they do not already, each gets an equal share, cut at a character's start, marked truncated.
 */
static void fit(text_t *t, size_t m, size_t budget)
{
    size_t k, i, total = 0, share;

    for (k = 0; k < m; k++)
        for (i = 0; i < t[k].len; i++)
            total += json_cost((unsigned char)t[k].p[i]);
    if (total <= budget || !m)
        return;
    share = budget / m;
    for (k = 0; k < m; k++) {
        size_t cost = 0;
        for (i = 0; i < t[k].len && cost + json_cost((unsigned char)t[k].p[i]) <= share; i++)
            cost += json_cost((unsigned char)t[k].p[i]);
        if (i == t[k].len)
            continue;
        while (i > 0 && ((unsigned char)t[k].p[i] & 0xc0) == 0x80)
            i--; /* not inside a character */
        t[k].len = i;
        t[k].p[i] = '\0';
        t[k].truncated = 1;
    }
}

/* ========================================================================================== */
/* The control op                                                                             */
/* ========================================================================================== */

typedef struct exec_req {
    const char *name;
    const char **argv; /* NULL-terminated, the strings borrowed from the request */
    size_t argc;
    const char **targets; /* the same; ntargets 0: every slot */
    size_t ntargets;
    unsigned timeout_ms;
    char origin[NAME_SHOWN]; /* who asked */
    char cmd[NAME_SHOWN];    /* argv[0] up to its first blank, for the audit */
    char targets_text[LIST_SHOWN];
} exec_req_t;

static void req_free(exec_req_t *q)
{
    free(q->argv);
    free(q->targets);
}

/* A JSON array of strings (none empty, none with a NUL) into *out (NULL-terminated). */
static int strings(json_object *arr, const char *field, size_t max, const char ***out, size_t *n,
                   cl_err_t *err)
{
    size_t i, len = json_object_array_length(arr);

    *n = 0;
    if (len > max)
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec", "%s: more than %zu words", field,
                          max);
    if (!(*out = calloc(len + 1, sizeof(**out))))
        return cl_err_sys(err, NULL, "exec", "out of memory");
    for (i = 0; i < len; i++) {
        json_object *w = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(w, json_type_string) || json_object_get_string_len(w) == 0 ||
            strlen(json_object_get_string(w)) != (size_t)json_object_get_string_len(w))
            return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec",
                              "%s[%zu]: not a non-empty string without NUL bytes", field, i);
        (*out)[i] = json_object_get_string(w);
    }
    *n = len;
    return 0;
}

/* The request's fields into q (borrowing req's strings).  0, or -1 and err. */
static int req_parse(json_object *req, exec_req_t *q, cl_err_t *err)
{
    json_object *v;
    size_t i;

    memset(q, 0, sizeof(*q));
    q->timeout_ms = CL_EXEC_TIMEOUT_MS;
    if (!json_object_object_get_ex(req, "name", &v) || !json_object_is_type(v, json_type_string) ||
        !cl_spec_name_ok(json_object_get_string(v)))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec", "no valid cloud name in the request");
    q->name = json_object_get_string(v);
    if (!json_object_object_get_ex(req, "argv", &v) || !json_object_is_type(v, json_type_array) ||
        json_object_array_length(v) == 0)
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec",
                          "argv: the command (an array of words, the program first) is missing");
    if (strings(v, "argv", CL_EXEC_ARGV_MAX, &q->argv, &q->argc, err) < 0)
        return -1;
    if (json_object_object_get_ex(req, "targets", &v) && !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_array))
            return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec",
                              "targets: not an array of role and slot names");
        if (strings(v, "targets", 1024, &q->targets, &q->ntargets, err) < 0)
            return -1;
    }
    if (json_object_object_get_ex(req, "timeout_ms", &v) &&
        !json_object_is_type(v, json_type_null)) {
        int64_t t = json_object_get_int64(v);
        if (!json_object_is_type(v, json_type_int) || t < CL_EXEC_TIMEOUT_MIN_MS ||
            t > CL_EXEC_TIMEOUT_MAX_MS)
            return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "exec",
                              "timeout_ms: '%.40s' is not a number of ms in %d..%d",
                              json_object_get_string(v), CL_EXEC_TIMEOUT_MIN_MS,
                              CL_EXEC_TIMEOUT_MAX_MS);
        q->timeout_ms = (unsigned)t;
    }
    /* the program only, cut at a blank or '=' (VAR=secret): an argument is never recorded */
    printable(q->cmd, sizeof(q->cmd), q->argv[0]);
    q->cmd[strcspn(q->cmd, " \t?=")] = '\0';
    if (!q->cmd[0])
        snprintf(q->cmd, sizeof(q->cmd), "?");
    for (i = 0; i < q->ntargets; i++)
        list_add(q->targets_text, sizeof(q->targets_text), q->targets[i]);
    if (!q->ntargets)
        snprintf(q->targets_text, sizeof(q->targets_text), "all");
    return 0;
}

/* One event of the cloud's history (the audit), or the log alone without a monitor. */
static void audit(const cl_exec_ctx_t *x, const char *cloud, uint64_t epoch, const char *type,
                  const char *slot, const char *host, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static void audit(const cl_exec_ctx_t *x, const char *cloud, uint64_t epoch, const char *type,
                  const char *slot, const char *host, const char *fmt, ...)
{
    char text[CL_EVENT_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (x->monitor)
        cl_monitor_note(x->monitor, cloud, epoch, type, slot, host, "%s", text);
    else
        cl_log(type[0] == '-' ? CL_LOG_WARN : CL_LOG_INFO, type,
               "cloud=%s%s%s%s%s epoch=%" PRIu64 " %s", cloud, slot ? " slot=" : "",
               slot ? slot : "", host ? " host=" : "", host ? host : "", epoch, text);
}

/* An exec's id: CL_EXEC_ID_LEN hex digits, random (the clock's when none is to be had). */
static void new_id(char *out, size_t n)
{
    static unsigned counter;
    uint32_t r;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)(cl_time_now_ms() * 2654435761u) ^ __atomic_add_fetch(&counter, 1, 0);
    snprintf(out, n, "%08" PRIx32, r);
}

/* The sessions without a monitor: a cache of cl_exec's own, for the daemon's life. */
static cl_guest_sessions_t *own_sessions;
static void own_sessions_make(void)
{
    own_sessions = cl_guest_sessions_new();
}

/* This host as an asker: its first address (its pool address with --address). */
static const char *self_name(const cl_exec_ctx_t *x)
{
    const cl_addrs_t *self = cl_engine_self(x->engine);

    return self && self->n ? self->v[0] : "local";
}

/* A member that does not lead: req goes to the leader with the spec and the asker. */
static json_object *hand_over(const cl_exec_ctx_t *x, const cl_spec_t *spec, json_object *req,
                              cl_err_t *err)
{
    static const char *const keys[] = {"v", "op", "name", "targets", "argv", "timeout_ms"};
    json_object *fwd = json_object_new_object(), *answer = NULL, *events = NULL, *v;
    size_t k;
    int rc;

    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if (json_object_object_get_ex(req, keys[k], &v))
            json_object_object_add(fwd, keys[k], json_object_get(v));
    json_object_object_add(fwd, "spec", json_object_get(spec->json));
    json_object_object_add(fwd, "origin", json_object_new_string(self_name(x)));
    rc = cl_peers_forward(x->peers, spec, fwd, &answer, &events, err);
    json_object_put(fwd);
    json_object_put(events);
    return rc < 0 ? NULL : answer;
}

/*
 * May this daemon run spec's exec?  1: yes (*epoch: its leader's, *leader: this host), 0: a
 * member that hands it over, -1 and err: nobody here may (not the leader, no majority...).
 */
static int leads(const cl_exec_ctx_t *x, const cl_spec_t *spec, json_object *state, int handed_over,
                 uint64_t *epoch, const char **leader, cl_err_t *err)
{
    json_object *v;
    int li, acting = 0;

    if (!cl_engine_is_member(x->engine, spec))
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "exec",
                          "this host is not in the pool of cloud %s", spec->name);
    if (cl_engine_elected(x->engine, spec)) {
        li = cl_engine_leader(x->engine, spec, epoch, &acting);
        if (acting && li >= 0) {
            *leader = spec->pool[li];
            return 1;
        }
        if (li >= 0 && cl_net_is_self(cl_engine_self(x->engine), spec->pool[li]))
            return cl_err_set(err, CL_ERR_ELECTION, 0, spec->pool[li], "exec",
                              "this host leads cloud %s but reaches no majority of its pool "
                              "now: nothing run",
                              spec->name);
        if (handed_over || !x->peers)
            return cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? spec->pool[li] : NULL, "exec",
                              "this host does not lead cloud %s (the leader is %s)", spec->name,
                              li >= 0 ? spec->pool[li] : "unknown");
        return 0;
    }
    if (spec->npool > 1)
        return cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "exec",
                          "cloud %s has a pool of %zu hosts but this cloudd has no peer layer "
                          "(cloudd --address)",
                          spec->name, spec->npool);
    li = cl_engine_leader_index(x->engine, spec);
    if (li < 0 || !cl_net_is_self(cl_engine_self(x->engine), spec->pool[li]))
        return cl_err_set(err, CL_ERR_ELECTION, 0, li >= 0 ? spec->pool[li] : NULL, "exec",
                          "this host does not lead cloud %s", spec->name);
    *epoch = json_object_object_get_ex(state, "epoch", &v) ? (uint64_t)json_object_get_int64(v) : 0;
    *leader = spec->pool[li];
    return 1;
}

/*
 * The selected slots (sel) with where their domains are and whether they run, as the engine
 * observes them now; a slot not running gets its err (not run).  A new array, or NULL and err.
 */
static cl_exec_slot_t *observe(const cl_exec_ctx_t *x, const cl_spec_t *spec,
                               const unsigned char *sel, size_t *n, cl_err_t *err)
{
    json_object *st = NULL, *slots = NULL;
    cl_exec_slot_t *out = calloc(spec->nslots ? spec->nslots : 1, sizeof(*out));
    size_t i, k;

    *n = 0;
    if (!out) {
        cl_err_sys(err, NULL, "exec", "out of memory");
        return NULL;
    }
    if (cl_engine_status(x->engine, spec->name, NULL, &st, err) < 0) {
        free(out);
        return NULL;
    }
    json_object_object_get_ex(json_object_array_get_idx(json_object_object_get(st, "clouds"), 0),
                              "slots", &slots);
    for (i = 0; i < spec->nslots; i++) {
        cl_exec_slot_t *s;
        const char *state = "missing", *host = "";
        if (!sel[i])
            continue;
        s = &out[(*n)++];
        s->slot = i;
        for (k = 0; slots && k < json_object_array_length(slots); k++) {
            json_object *o = json_object_array_get_idx(slots, k), *v;
            if (!json_object_object_get_ex(o, "name", &v) ||
                strcmp(json_object_get_string(v), spec->slots[i].name) != 0)
                continue;
            if (json_object_object_get_ex(o, "state", &v) && json_object_get_string(v))
                state = json_object_get_string(v);
            if (json_object_object_get_ex(o, "host", &v) && json_object_get_string(v))
                host = json_object_get_string(v);
        }
        snprintf(s->state, sizeof(s->state), "%s", state);
        snprintf(s->host, sizeof(s->host), "%s", host);
        if (strcmp(state, "missing") == 0)
            cl_err_set(&s->err, CL_ERR_STATE, 0, spec->slots[i].ip, "exec",
                       "not running: it has no domain");
        else if (strcmp(state, "running") != 0)
            cl_err_set(&s->err, CL_ERR_STATE, 0, spec->slots[i].ip, "exec",
                       "not running: its domain is %s%s%s", state, host[0] ? " on " : "", host);
    }
    json_object_put(st);
    return out;
}

static json_object *error_json(const cl_err_t *e)
{
    json_object *o = cl_ctl_error_json(e), *inner = NULL;

    json_object_object_get_ex(o, "error", &inner);
    json_object_get(inner);
    json_object_put(o);
    return inner;
}

json_object *cl_exec_answer(const cl_exec_info_t *info, const cl_spec_t *spec,
                            const cl_exec_slot_t *s, size_t n, size_t budget)
{
    json_object *res = json_object_new_object(), *arr = json_object_new_array();
    text_t *t = calloc(2 * n + 1, sizeof(*t));
    size_t k, j, ran = 0, ok = 0;

    for (k = 0; t && k < n; k++) {
        t[2 * k].p =
            cl_exec_text(s[k].res.out ? s[k].res.out : "", s[k].res.out_len, &t[2 * k].len);
        t[2 * k].truncated = s[k].res.out_truncated;
        t[2 * k + 1].p = cl_exec_text(s[k].res.errout ? s[k].res.errout : "", s[k].res.errout_len,
                                      &t[2 * k + 1].len);
        t[2 * k + 1].truncated = s[k].res.errout_truncated;
        if (!t[2 * k].p || !t[2 * k + 1].p)
            t[2 * k].len = t[2 * k + 1].len = 0;
    }
    if (t)
        fit(t, 2 * n, budget ? budget : CL_EXEC_ANSWER_MAX);
    for (k = 0; k < n; k++) {
        const cl_slot_t *sl = &spec->slots[s[k].slot];
        json_object *o = json_object_new_object(), *roles = json_object_new_array();
        for (j = 0; j < sl->nroles; j++)
            json_object_array_add(roles, json_object_new_string(sl->roles[j]));
        json_object_object_add(o, "slot", json_object_new_string(sl->name));
        json_object_object_add(o, "roles", roles);
        json_object_object_add(o, "ip", json_object_new_string(sl->ip));
        json_object_object_add(o, "host", s[k].host[0] ? json_object_new_string(s[k].host) : NULL);
        json_object_object_add(o, "state", json_object_new_string(s[k].state));
        json_object_object_add(o, "ran", json_object_new_boolean(s[k].ran));
        json_object_object_add(o, "exit",
                               s[k].ran ? json_object_new_int(s[k].res.exit_status) : NULL);
        json_object_object_add(o, "signal",
                               s[k].ran && s[k].res.exit_signal[0]
                                   ? json_object_new_string(s[k].res.exit_signal)
                                   : NULL);
        for (j = 0; j < 2; j++) {
            text_t *x = t ? &t[2 * k + j] : NULL;
            json_object_object_add(
                o, j ? "stderr" : "stdout",
                json_object_new_string_len(x && x->p ? x->p : "", x && x->p ? (int)x->len : 0));
            json_object_object_add(o, j ? "stderr_truncated" : "stdout_truncated",
                                   json_object_new_boolean(x && x->truncated));
        }
        json_object_object_add(o, "ms", json_object_new_int64((int64_t)s[k].ms));
        json_object_object_add(o, "error", s[k].ran ? NULL : error_json(&s[k].err));
        json_object_array_add(arr, o);
        ran += s[k].ran ? 1 : 0;
        ok += s[k].ran && s[k].res.exit_status == 0 ? 1 : 0;
    }
    json_object_object_add(res, "name", json_object_new_string(spec->name));
    json_object_object_add(res, "id", json_object_new_string(info->id));
    json_object_object_add(res, "epoch", json_object_new_int64((int64_t)info->epoch));
    json_object_object_add(res, "leader", json_object_new_string(info->leader));
    json_object_object_add(res, "origin", json_object_new_string(info->origin));
    json_object_object_add(res, "command", json_object_new_string(info->command));
    json_object_object_add(res, "timeout_ms", json_object_new_int64(info->timeout_ms));
    json_object_object_add(res, "slots", arr);
    json_object_object_add(res, "selected", json_object_new_int64((int64_t)n));
    json_object_object_add(res, "ran", json_object_new_int64((int64_t)ran));
    json_object_object_add(res, "succeeded", json_object_new_int64((int64_t)ok));
    json_object_object_add(res, "failed", json_object_new_int64((int64_t)(ran - ok)));
    json_object_object_add(res, "not_run", json_object_new_int64((int64_t)(n - ran)));
    json_object_object_add(res, "all_succeeded", json_object_new_boolean(n > 0 && ok == n));
    for (k = 0; t && k < 2 * n; k++)
        free(t[k].p);
    free(t);
    return res;
}

json_object *cl_exec_serve(const cl_exec_ctx_t *x, json_object *req, int handed_over, cl_err_t *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    json_object *state = NULL, *v, *res = NULL;
    cl_spec_t *spec = NULL;
    cl_exec_slot_t *slots = NULL;
    unsigned char *sel = NULL;
    exec_req_t q;
    cl_exec_opts_t o;
    const char *leader = NULL, *state_dir = cl_engine_state_dir(x->engine);
    char id[CL_EXEC_ID_LEN + 1];
    uint64_t epoch = 0;
    size_t n = 0, k;
    int rc;

    if (req_parse(req, &q, err) < 0)
        goto cleanup;
    if (!handed_over)
        printable(q.origin, sizeof(q.origin), self_name(x));
    else if (json_object_object_get_ex(req, "origin", &v) &&
             json_object_is_type(v, json_type_string))
        printable(q.origin, sizeof(q.origin), json_object_get_string(v));
    else
        snprintf(q.origin, sizeof(q.origin), "a peer");
    rc = cl_state_load(state_dir, q.name, &state, err);
    if (rc < 0)
        goto cleanup;
    if (rc == 0 || !json_object_object_get_ex(state, "spec", &v)) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "exec",
                   "cloud %s is not known here (run cloudctl exec on a pool host where its "
                   "manifest was applied)",
                   q.name);
        goto cleanup;
    }
    if (cl_spec_parse(v, &spec, err) < 0)
        goto cleanup;
    if ((rc = leads(x, spec, state, handed_over, &epoch, &leader, err)) < 0)
        goto cleanup;
    if (rc == 0) {
        res = hand_over(x, spec, req, err);
        goto cleanup;
    }

    /* the leader: refused with a reason (audited), or run */
    new_id(id, sizeof(id));
    if (!(sel = calloc(spec->nslots + 1, 1))) {
        cl_err_sys(err, NULL, "exec", "out of memory");
        goto cleanup;
    }
    if (cl_exec_resolve(spec, q.targets, q.ntargets, sel, err) < 0)
        goto refused;
    if (strncmp(spec->hypervisor, "test:", 5) == 0 || strncmp(spec->hypervisor, "test+", 5) == 0) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "exec",
                   "cloud %s runs on the test driver (%s), which has no guests: no command "
                   "can run in its VMs",
                   spec->name, spec->hypervisor);
        goto refused;
    }
    if (!spec->ssh_key || !*spec->ssh_key) {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "exec",
                   "ssh_key: cloud %s has no ssh_key to reach its guests with", spec->name);
        goto refused;
    }
    if (!(slots = observe(x, spec, sel, &n, err)))
        goto refused;
    audit(x, spec->name, epoch, "+exec", NULL, q.origin,
          "id=%s by=%s cmd=%s args=%zu targets=%s slots=%zu timeout_ms=%u", id, q.origin, q.cmd,
          q.argc - 1, q.targets_text, n, q.timeout_ms);
    if (x->monitor)
        cl_monitor_save(x->monitor, spec->name); /* the request is on record before it runs */

    memset(&o, 0, sizeof(o));
    o.spec = spec;
    o.argv = q.argv;
    o.deadline = cl_time_now_ms() + q.timeout_ms;
    o.state_dir = state_dir;
    o.sessions = cl_monitor_sessions(x->monitor);
    if (!o.sessions) {
        pthread_once(&once, own_sessions_make);
        o.sessions = own_sessions;
    }
    cl_exec_run(&o, slots, n);

    for (k = 0; k < n; k++) {
        const cl_exec_slot_t *s = &slots[k];
        const char *name = spec->slots[s->slot].name, *host = s->host[0] ? s->host : NULL;
        if (s->ran && s->res.exit_signal[0])
            audit(x, spec->name, epoch, "-exec-slot", name, host, "id=%s signal=%s ms=%" PRIu64, id,
                  s->res.exit_signal, s->ms);
        else if (s->ran)
            audit(x, spec->name, epoch, s->res.exit_status == 0 ? "+exec-slot" : "-exec-slot", name,
                  host, "id=%s exit=%d ms=%" PRIu64, id, s->res.exit_status, s->ms);
        else if (s->err.domain == CL_ERR_STATE)
            audit(x, spec->name, epoch, "-exec-slot", name, host, "id=%s not run: %s", id,
                  s->err.msg);
        else
            audit(x, spec->name, epoch, "-exec-slot", name, host, "id=%s error: %s: %s: %s", id,
                  cl_err_domain_name(s->err.domain), s->err.op, s->err.msg);
    }
    if (x->monitor)
        cl_monitor_save(x->monitor, spec->name);
    {
        cl_exec_info_t info = {id, leader, q.origin, q.cmd, epoch, q.timeout_ms};
        res = cl_exec_answer(&info, spec, slots, n, 0);
    }
    goto cleanup;

refused:
    audit(x, spec->name, epoch, "-exec", NULL, q.origin,
          "id=%s by=%s cmd=%s args=%zu targets=%s refused: %.120s", id, q.origin, q.cmd, q.argc - 1,
          q.targets_text, err ? err->msg : "");
    if (x->monitor)
        cl_monitor_save(x->monitor, spec->name);

cleanup:
    cl_exec_slots_free(slots, n);
    free(sel);
    cl_spec_free(spec);
    json_object_put(state);
    req_free(&q);
    return res;
}
