/*
 * cl_view_cli: `cloudctl status [NAME] [--json] [--watch [SECONDS]]` (issue 6).  Asks the
 * daemon for the status document, or -- when none answers -- reads the state directory and the
 * hypervisor read-only, and prints it with cl_view.  --watch redraws every SECONDS (clearing the
 * screen on a terminal, a separator line otherwise) until SIGINT or SIGTERM, and keeps going
 * while the daemon is away, saying so.
 */
#include "cl_view.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cl_ctl.h"
#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define WATCH_DEFAULT_S 2.0
#define WATCH_MIN_S 0.1
#define WATCH_MAX_S 86400.0

static volatile int stopping; /* set by SIGINT/SIGTERM while watching */

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

/*
 * The status document: 1 from the daemon, 0 read-only (no daemon answers), -1 and err (the
 * daemon refused, or did not answer in time).  *res: the caller puts.
 */
static int fetch(const cl_client_opts_t *o, const char *name, json_object **res, cl_err_t *err)
{
    json_object *req = json_object_new_object();
    int rc;

    json_object_object_add(req, "v", json_object_new_int(CL_CTL_VERSION));
    json_object_object_add(req, "op", json_object_new_string("status"));
    if (name)
        json_object_object_add(req, "name", json_object_new_string(name));
    *res = NULL;
    rc = cl_client_call(o, req, 0, CL_CTL_STATUS_MS, NULL, NULL, &stopping, res, err);
    json_object_put(req);
    if (rc == 0) {
        json_object_object_del(*res, "ok");
        return 1;
    }
    if (!cl_client_gone(err) || stopping)
        return -1;
    cl_err_clear(err);
    return cl_client_local_status(o, name, NULL, res, err) < 0 ? -1 : 0;
}

/* The width to fit: a terminal's own, else CL_VIEW_WIDTH (100 columns: files, pipes). */
static unsigned term_width(int tty)
{
    struct winsize ws;

    if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return CL_VIEW_WIDTH;
}

static void print_json(FILE *fp, json_object *doc)
{
    fprintf(fp, "%s\n",
            json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
}

/* A frame of --watch, whole, into fp: its title line, then the status or why there is none. */
static void frame(FILE *fp, const cl_client_opts_t *o, const char *name, int json, double every,
                  int tty, int color)
{
    cl_view_opts_t vo = {color, term_width(tty), 0, 0};
    json_object *doc = NULL;
    char when[64], buf[1200];
    time_t now = time(NULL);
    struct tm tm;
    cl_err_t err;
    int rc;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    if (tty)
        fprintf(fp, "Every %gs: cloudctl status%s%s   %s\n\n", every, name ? " " : "",
                name ? name : "", when);
    else
        fprintf(fp, "\n--- %s: cloudctl status%s%s, every %g s ---\n", when, name ? " " : "",
                name ? name : "", every);
    cl_err_clear(&err);
    rc = fetch(o, name, &doc, &err);
    if (rc < 0 && err.domain != CL_ERR_TIMEOUT && err.domain != CL_ERR_SYS) {
        /* it answered, with an error (a bad name...): say it, and try again */
        fprintf(fp, "cloudd: %s\n\n", cl_err_format(&err, buf, sizeof(buf)));
    } else if (rc <= 0) {
        const char *why = rc < 0 ? cl_err_format(&err, buf, sizeof(buf)) : "no daemon";
        fprintf(fp, "%scloudd not answering on %s (%s); trying again every %g s%s\n",
                color ? "\033[33m" : "", cl_ctl_socket_path(o->socket), why, every,
                color ? "\033[0m" : "");
        if (rc == 0)
            fputs("read-only view from the state directory and the hypervisor:\n", fp);
        fputc('\n', fp);
    }
    if (rc >= 0) {
        vo.readonly = rc == 0;
        if (json)
            print_json(fp, doc);
        else
            cl_view_status(fp, doc, &vo);
    }
    json_object_put(doc);
}

/* Sleep s seconds, or less if asked to stop. */
static void pause_for(double s)
{
    uint64_t end = cl_time_real_us() + (uint64_t)(s * 1e6);

    while (!stopping) {
        uint64_t now = cl_time_real_us(), d;
        struct timespec ts;
        if (now >= end)
            break;
        d = end - now < 100000 ? end - now : 100000;
        ts.tv_sec = 0;
        ts.tv_nsec = (long)d * 1000L;
        nanosleep(&ts, NULL); /* a signal ends it early */
    }
}

static int watch(const cl_client_opts_t *o, const char *name, int json, double every)
{
    struct sigaction sa;
    int tty = isatty(STDOUT_FILENO);
    const char *nc = getenv("NO_COLOR");
    int color = tty && !(nc && *nc);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop; /* no SA_RESTART: a wait in progress ends at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stopping) {
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        if (!fp)
            return 1;
        if (tty)
            fputs("\033[H\033[2J", fp); /* home, clear: the frame replaces the last one */
        frame(fp, o, name, json, every, tty, color);
        fclose(fp);
        if (!stopping) {
            /* one write per frame: no half-drawn screen */
            if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
                free(text);
                return 1; /* stdout closed */
            }
        }
        free(text);
        pause_for(every);
    }
    return 0;
}

/* SECONDS of --watch: a number in range, else -1. */
static double parse_every(const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= WATCH_MIN_S && v <= WATCH_MAX_S))
        return -1;
    return v;
}

/* Whether s reads as a number (then it is --watch's interval, not a cloud's name). */
static int is_number(const char *s)
{
    char *end;

    strtod(s, &end);
    return end != s && !*end;
}

int cl_view_cli(const cl_client_opts_t *o, int json, int argc, char **argv)
{
    const char *name = NULL, *nc = getenv("NO_COLOR");
    double every = 0;
    json_object *doc = NULL;
    cl_err_t err;
    int i, rc;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--watch") == 0 || strncmp(argv[i], "--watch=", 8) == 0) {
            const char *v = argv[i][7] == '=' ? argv[i] + 8 : NULL;
            every = WATCH_DEFAULT_S;
            if (!v && i + 1 < argc && is_number(argv[i + 1]))
                v = argv[++i]; /* "--watch 5": a number after --watch is its interval */
            if (v && (every = parse_every(v)) < 0) {
                fprintf(stderr, "cloudctl: --watch: '%s' is not a number of seconds (%g..%g)\n", v,
                        WATCH_MIN_S, WATCH_MAX_S);
                return 2;
            }
        } else if (argv[i][0] == '-' || name) {
            fprintf(stderr, "cloudctl: status: unexpected argument '%s'\n", argv[i]);
            return 2;
        } else {
            name = argv[i];
        }
    }
    cl_log_set_level(CL_LOG_WARN); /* the read-only view's connection notes are not news */
    if (every > 0)
        return watch(o, name, json, every);
    cl_err_clear(&err);
    rc = fetch(o, name, &doc, &err);
    if (rc < 0) {
        char buf[1200];
        fprintf(stderr, "cloudctl: %s\n", cl_err_format(&err, buf, sizeof(buf)));
        return 1;
    }
    if (json) {
        print_json(stdout, doc);
    } else {
        int tty = isatty(STDOUT_FILENO);
        cl_view_opts_t vo = {tty && !(nc && *nc), term_width(tty), 0, rc == 0};
        cl_view_status(stdout, doc, &vo);
    }
    json_object_put(doc);
    return 0;
}
