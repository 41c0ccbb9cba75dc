/*
 * cl_view: the status document for people (see cl_view.h).  Values are sanitised (no control
 * characters reach the terminal: a check's failure text may come from a guest), measured in
 * characters, not bytes, and cut with '~' when a column must shrink to fit the width.
 */
#include "cl_view.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SGR_BOLD "1"
#define SGR_RED "31"
#define SGR_GREEN "32"
#define SGR_YELLOW "33"

/* ========================================================================================== */
/* Small helpers                                                                              */
/* ========================================================================================== */

static const char *str_of(json_object *o, const char *key, const char *dflt)
{
    json_object *v;

    if (o && json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null))
        return json_object_get_string(v);
    return dflt;
}

static int bool_of(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && v && json_object_get_boolean(v);
}

static int has(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && v &&
           !json_object_is_type(v, json_type_null);
}

/* Characters (not bytes) of UTF-8 text. */
static size_t vis_len(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* s into buf with control characters replaced, at most max characters (cut: ends with '~'). */
static const char *cell(const char *s, size_t max, char *buf, size_t len)
{
    size_t n = 0, chars = 0, total = vis_len(s ? s : "");

    s = s ? s : "";
    for (; *s && n + 5 < len; s++) {
        unsigned char c = (unsigned char)*s;
        int start = (c & 0xC0) != 0x80;
        if (start && chars + (total > max ? 1 : 0) >= max)
            break;
        chars += start;
        buf[n++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (total > max && max > 0)
        buf[n++] = '~';
    buf[n] = '\0';
    return buf;
}

/* fp gets s, coloured with sgr when on, padded to width characters (0: no padding). */
static void put(FILE *fp, const cl_view_opts_t *o, const char *sgr, const char *s, size_t width)
{
    size_t l = vis_len(s);

    if (o->color && sgr)
        fprintf(fp, "\033[%sm%s\033[0m", sgr, s);
    else
        fputs(s, fp);
    for (; l < width; l++)
        fputc(' ', fp);
}

static const char *state_color(const char *state)
{
    if (strcmp(state, "running") == 0)
        return SGR_GREEN;
    if (strcmp(state, "paused") == 0 || strcmp(state, "degraded") == 0)
        return SGR_YELLOW;
    if (strcmp(state, "stopped") == 0 || strcmp(state, "-") == 0)
        return NULL;
    return SGR_RED; /* shutoff, crashed, missing, other */
}

static const char *health_color(const char *h)
{
    if (strcmp(h, "ok") == 0)
        return SGR_GREEN;
    if (strcmp(h, "flapping") == 0)
        return SGR_RED;
    if (strcmp(h, "repairing") == 0 || strcmp(h, "failing") == 0 || strcmp(h, "held") == 0)
        return SGR_YELLOW;
    return NULL;
}

const char *cl_view_ago(uint64_t then_ms, uint64_t now_ms, char *buf, size_t len)
{
    uint64_t s = now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;

    if (s < 60)
        snprintf(buf, len, "%us ago", (unsigned)s);
    else if (s < 3600)
        snprintf(buf, len, "%um ago", (unsigned)(s / 60));
    else if (s < 86400 * 2)
        snprintf(buf, len, "%uh ago", (unsigned)(s / 3600));
    else
        snprintf(buf, len, "%ud ago", (unsigned)(s / 86400));
    return buf;
}

/* A header line: "  label:      " then the caller's text. */
static void label(FILE *fp, const char *l)
{
    fprintf(fp, "  %-11s ", l);
}

/* ========================================================================================== */
/* The header                                                                                 */
/* ========================================================================================== */

/* The member's word: this host, alive, alive (the leader hears it), silent [for N s]. */
static void member_word(json_object *m, char *buf, size_t len, int *silent)
{
    json_object *ago;

    *silent = 0;
    if (bool_of(m, "self")) {
        snprintf(buf, len, "this host");
    } else if (!has(m, "alive") || bool_of(m, "alive")) {
        snprintf(buf, len, "%s",
                 strcmp(str_of(m, "seen_by", "direct"), "leader") == 0 ? "alive, says the leader"
                                                                       : "alive");
    } else {
        *silent = 1;
        if (json_object_object_get_ex(m, "last_heard_ms_ago", &ago) && ago &&
            !json_object_is_type(ago, json_type_null))
            snprintf(buf, len, "silent for %.1f s", (double)json_object_get_int64(ago) / 1000.0);
        else
            snprintf(buf, len, "silent");
    }
}

static void print_members(FILE *fp, json_object *c, json_object *el, const cl_view_opts_t *o,
                          unsigned width)
{
    json_object *members = NULL;
    const char *leader = str_of(c, "leader", NULL);
    size_t i, col = 2 + 12;

    if (!(el && json_object_object_get_ex(el, "members", &members) &&
          json_object_is_type(members, json_type_array) && json_object_array_length(members)))
        json_object_object_get_ex(c, "members", &members);
    if (!members || !json_object_is_type(members, json_type_array))
        return;
    label(fp, "members:");
    for (i = 0; i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        char word[64], item[256], host[128];
        int silent;
        member_word(m, word, sizeof(word), &silent);
        cell(str_of(m, "host", "?"), 60, host, sizeof(host));
        snprintf(item, sizeof(item), "%s (%s, priority %s%s)", host, word,
                 str_of(m, "priority", "?"),
                 leader && strcmp(leader, str_of(m, "host", "")) == 0 ? ", leader" : "");
        if (i && col + 2 + vis_len(item) > width) {
            fprintf(fp, "\n%14s", "");
            col = 14;
        } else if (i) {
            fputs("  ", fp);
            col += 2;
        }
        put(fp, o, silent ? SGR_RED : NULL, item, 0);
        col += vis_len(item);
    }
    fputc('\n', fp);
}

static void print_header(FILE *fp, json_object *c, const cl_view_opts_t *o, unsigned width)
{
    json_object *el = NULL, *mon = NULL, *members = NULL;
    const char *leader = str_of(c, "leader", NULL), *state = str_of(c, "state", "?");
    const char *self = NULL;
    size_t i;

    json_object_object_get_ex(c, "election", &el);
    json_object_object_get_ex(c, "monitor", &mon);
    json_object_object_get_ex(c, "members", &members);
    for (i = 0; members && json_object_is_type(members, json_type_array) &&
                i < json_object_array_length(members);
         i++)
        if (bool_of(json_object_array_get_idx(members, i), "self"))
            self = str_of(json_object_array_get_idx(members, i), "host", NULL);

    {
        char name[64], title[80];
        snprintf(title, sizeof(title), "Cloud %s",
                 cell(str_of(c, "name", "?"), 40, name, sizeof(name)));
        put(fp, o, SGR_BOLD, title, 0);
    }
    fprintf(fp, " (%s): ", str_of(c, "type", "?"));
    put(fp, o, state_color(state), state, 0);
    fputc('\n', fp);

    label(fp, "hypervisor:");
    fprintf(fp, "%s\n", str_of(c, "hypervisor", "-"));

    label(fp, "leader:");
    if (!leader) {
        put(fp, o, SGR_RED, "none known", 0);
        fprintf(fp, ", epoch %s", str_of(c, "epoch", "0"));
    } else {
        int is_self = self && strcmp(self, leader) == 0;
        fprintf(fp, "%s%s, epoch %s", leader, is_self ? " (this host)" : "",
                str_of(c, "epoch", "0"));
        if (el) {
            if (bool_of(el, "acting"))
                fputs("; this host acts (leader with a majority)", fp);
            else if (is_self)
                put(fp, o, SGR_YELLOW, "; no majority: this host does not act", 0);
            else
                fputs("; this host follows", fp);
        } else if (is_self) {
            fputs(o->readonly                ? "; this host leads"
                  : bool_of(mon, "watching") ? "; this host acts"
                                             : "; this host leads",
                  fp);
        } else {
            fputs("; this host does not lead", fp);
        }
    }
    fputc('\n', fp);
    print_members(fp, c, el, o, width);
    if (el) {
        json_object *counters = NULL, *drops = NULL;
        long long dropped = 0;
        json_object_object_get_ex(el, "counters", &counters);
        if (counters && json_object_object_get_ex(counters, "drops", &drops) &&
            json_object_is_type(drops, json_type_object)) {
            json_object_object_foreach(drops, k, v)
            {
                (void)k;
                dropped += json_object_get_int64(v);
            }
        }
        long long elections = json_object_get_int64(json_object_object_get(counters, "elections"));
        long long changes =
            json_object_get_int64(json_object_object_get(counters, "leader_changes"));
        label(fp, "election:");
        fprintf(fp, "%s; %lld election%s, %lld leader change%s, %lld dropped message%s\n",
                str_of(el, "state", "?"), elections, elections == 1 ? "" : "s", changes,
                changes == 1 ? "" : "s", dropped, dropped == 1 ? "" : "s");
    }
    label(fp, "monitor:");
    if (o->readonly) {
        put(fp, o, SGR_YELLOW, "unknown (read-only view: no cloudd answers)", 0);
    } else if (!mon) {
        fputs("off (cloudd --no-monitor)", fp);
    } else {
        long long sweep = json_object_get_int64(json_object_object_get(mon, "sweep_ms"));
        const char *repairs = str_of(c, "repairs", "0");
        char line[256], hint[96];
        size_t off;
        off = (size_t)snprintf(line, sizeof(line), "%s, sweep %g s, %s events",
                               bool_of(mon, "watching") ? "watching" : "idle (does not act)",
                               (double)sweep / 1000.0, str_of(mon, "events", "0"));
        if (strcmp(repairs, "0") != 0 && off < sizeof(line))
            off += (size_t)snprintf(line + off, sizeof(line) - off,
                                    "; %s repair%s since the last apply", repairs,
                                    strcmp(repairs, "1") == 0 ? "" : "s");
        snprintf(hint, sizeof(hint), " (cloudctl events %s)", str_of(c, "name", "?"));
        if (strcmp(repairs, "0") != 0 && 14 + vis_len(line) + vis_len(hint) <= width &&
            off < sizeof(line))
            snprintf(line + off, sizeof(line) - off, "%s", hint);
        fputs(line, fp);
    }
    fputc('\n', fp);
}

/* ========================================================================================== */
/* The table                                                                                  */
/* ========================================================================================== */

enum { COL_SLOT, COL_ROLES, COL_HOST, COL_STATE, COL_HEALTH, COL_RESTARTS, COL_FAIL, NCOL };

static const char *const heads[NCOL] = {"SLOT",   "ROLES",    "HOST",        "STATE",
                                        "HEALTH", "RESTARTS", "LAST FAILURE"};

#define CELL_MAX 512

/* The text of one cell of slot s (into buf). */
static const char *slot_cell(json_object *s, int col, uint64_t now, char *buf, size_t len)
{
    json_object *v;
    size_t i, off = 0;

    switch (col) {
    case COL_SLOT: return str_of(s, "name", "?");
    case COL_ROLES:
        buf[0] = '\0';
        if (json_object_object_get_ex(s, "roles", &v) && json_object_is_type(v, json_type_array))
            for (i = 0; i < json_object_array_length(v) && off < len; i++)
                off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "",
                                        json_object_get_string(json_object_array_get_idx(v, i)));
        return buf[0] ? buf : "-";
    case COL_HOST: return str_of(s, "host", "-");
    case COL_STATE: return str_of(s, "state", "?");
    case COL_HEALTH: return str_of(s, "health", "-");
    case COL_RESTARTS: return str_of(s, "restarts", "-");
    default:
        if (json_object_object_get_ex(s, "last_failure", &v) && v &&
            json_object_is_type(v, json_type_object)) {
            char ago[32];
            cl_view_ago((uint64_t)json_object_get_int64(json_object_object_get(v, "time_ms")), now,
                        ago, sizeof(ago));
            snprintf(buf, len, "%s: %s", ago, str_of(v, "text", "?"));
            return buf;
        }
        return "-";
    }
}

/*
 * Column widths: each its widest cell; while the row is wider than width, the last failure,
 * then roles, host and slot give up columns, first down to a comfortable floor each, then down
 * to a hard one (the table then needs 74 columns).
 */
static void fit(size_t w[NCOL], unsigned width)
{
    static const int order[] = {COL_FAIL, COL_ROLES, COL_HOST, COL_SLOT};
    static const size_t floors[2][4] = {{24, 8, 15, 20}, {12, 5, 9, 10}};
    size_t total = 2, i, pass;

    for (i = 0; i < NCOL; i++)
        total += w[i] + (i + 1 < NCOL ? 2 : 0);
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < sizeof(order) / sizeof(order[0]) && total > width; i++) {
            size_t *c = &w[order[i]], cut = total - width;
            if (*c <= floors[pass][i])
                continue;
            if (cut > *c - floors[pass][i])
                cut = *c - floors[pass][i];
            *c -= cut;
            total -= cut;
        }
}

static void print_slots(FILE *fp, json_object *slots, const cl_view_opts_t *o, uint64_t now,
                        unsigned width)
{
    size_t w[NCOL], n = json_object_array_length(slots), i;
    char raw[CELL_MAX], buf[CELL_MAX * 2];
    int col;

    for (col = 0; col < NCOL; col++)
        w[col] = strlen(heads[col]);
    for (i = 0; i < n; i++)
        for (col = 0; col < NCOL; col++) {
            size_t l = vis_len(
                cell(slot_cell(json_object_array_get_idx(slots, i), col, now, raw, sizeof(raw)),
                     CELL_MAX / 2, buf, sizeof(buf)));
            if (l > w[col])
                w[col] = l;
        }
    fit(w, width);
    fputc('\n', fp);
    fputs("  ", fp);
    for (col = 0; col < NCOL; col++) {
        if (col == COL_RESTARTS)
            fprintf(fp, "%*s", (int)w[col], heads[col]);
        else
            put(fp, o, NULL, heads[col], col + 1 < NCOL ? w[col] : 0);
        if (col + 1 < NCOL)
            fputs("  ", fp);
    }
    fputc('\n', fp);
    for (i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(slots, i);
        fputs("  ", fp);
        for (col = 0; col < NCOL; col++) {
            const char *t =
                cell(slot_cell(s, col, now, raw, sizeof(raw)), w[col], buf, sizeof(buf));
            const char *sgr = col == COL_STATE    ? state_color(t)
                              : col == COL_HEALTH ? health_color(t)
                                                  : NULL;
            if (col == COL_RESTARTS) {
                size_t l = vis_len(t);
                for (; l < w[col]; l++)
                    fputc(' ', fp);
                put(fp, o, strcmp(t, "0") != 0 && strcmp(t, "-") != 0 ? SGR_YELLOW : NULL, t, 0);
            } else {
                put(fp, o, sgr, t, col + 1 < NCOL ? w[col] : 0);
            }
            if (col + 1 < NCOL)
                fputs("  ", fp);
        }
        fputc('\n', fp);
    }
}

/* "6/6 slots running, 1 repairing": how many run, then the other states, then the health. */
static void print_summary(FILE *fp, json_object *slots, const cl_view_opts_t *o)
{
    static const char *const states[] = {"paused", "shutoff", "crashed", "missing", "other"};
    static const char *const healths[] = {"repairing", "failing", "held", "flapping"};
    size_t n = slots ? json_object_array_length(slots) : 0, running = 0, i, k;
    size_t nstate[sizeof(states) / sizeof(states[0])] = {0};
    size_t nhealth[sizeof(healths) / sizeof(healths[0])] = {0};
    char line[512], num[64];
    size_t off;

    for (i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(slots, i);
        const char *st = str_of(s, "state", "other"), *h = str_of(s, "health", "");
        if (strcmp(st, "running") == 0) {
            running++;
        } else {
            /* the last entry, "other", takes every state not listed before it */
            for (k = 0; k + 1 < sizeof(states) / sizeof(states[0]); k++)
                if (strcmp(st, states[k]) == 0)
                    break;
            nstate[k]++;
        }
        for (k = 0; k < sizeof(healths) / sizeof(healths[0]); k++)
            if (strcmp(h, healths[k]) == 0)
                nhealth[k]++;
    }
    fputc('\n', fp);
    fputs("  ", fp);
    snprintf(num, sizeof(num), "%zu/%zu slots running", running, n);
    put(fp, o, running == n ? SGR_GREEN : SGR_YELLOW, num, 0);
    off = 0;
    line[0] = '\0';
    for (k = 0; k < sizeof(states) / sizeof(states[0]); k++)
        if (nstate[k])
            off +=
                (size_t)snprintf(line + off, sizeof(line) - off, ", %zu %s", nstate[k], states[k]);
    for (k = 0; k < sizeof(healths) / sizeof(healths[0]) && off < sizeof(line); k++)
        if (nhealth[k])
            off += (size_t)snprintf(line + off, sizeof(line) - off, ", %zu %s", nhealth[k],
                                    healths[k]);
    fprintf(fp, "%s\n", line);
}

/* ========================================================================================== */
/* API                                                                                        */
/* ========================================================================================== */

void cl_view_cloud(FILE *fp, json_object *c, const cl_view_opts_t *o)
{
    json_object *slots = NULL;
    unsigned width = o->width ? o->width : CL_VIEW_WIDTH;
    uint64_t now = o->now_ms;

    if (width < 60)
        width = 60;
    if (!now) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    }
    print_header(fp, c, o, width);
    json_object_object_get_ex(c, "slots", &slots);
    if (!slots || !json_object_is_type(slots, json_type_array) ||
        json_object_array_length(slots) == 0) {
        fputs("\n  no slot declared\n", fp);
        return;
    }
    print_slots(fp, slots, o, now, width);
    print_summary(fp, slots, o);
}

void cl_view_status(FILE *fp, json_object *doc, const cl_view_opts_t *o)
{
    json_object *clouds = NULL;
    size_t i;

    json_object_object_get_ex(doc, "clouds", &clouds);
    if (!clouds || !json_object_is_type(clouds, json_type_array) ||
        json_object_array_length(clouds) == 0) {
        fputs("no cloud on this host\n", fp);
        return;
    }
    for (i = 0; i < json_object_array_length(clouds); i++) {
        if (i)
            fputc('\n', fp);
        cl_view_cloud(fp, json_object_array_get_idx(clouds, i), o);
    }
}
