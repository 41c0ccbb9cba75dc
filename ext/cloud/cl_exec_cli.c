/*
 * cl_exec_cli: cloudctl's `exec` (see cl_exec.h): its arguments into an "exec" control request
 * to the local cloudd (which hands it to the cloud's leader when it does not lead), then each
 * slot's result grouped under a header line (host, exit status, time), its output indented,
 * and a summary.  Kept out of cloudctl.c, which only dispatches to it.
 */
#include "cl_exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_ctl.h"
#include "cl_timeouts.h"

#define EXEC_USAGE                                                                                 \
    "usage: cloudctl exec NAME [ROLE|SLOT...] [--json] [--timeout S] -- COMMAND [ARG...]"

static const char *field(json_object *o, const char *key, const char *dflt)
{
    json_object *v;

    if (o && json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null))
        return json_object_get_string(v);
    return dflt;
}

static int flag(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}

/* text's lines, each indented by four spaces; a marker when it was cut. */
static void print_text(const char *text, int truncated, const char *what)
{
    const char *p = text, *eol;

    while (p && *p) {
        eol = strchr(p, '\n');
        printf("    %.*s\n", (int)(eol ? eol - p : (int)strlen(p)), p);
        p = eol ? eol + 1 : NULL;
    }
    if (truncated)
        printf("    [... %s truncated]\n", what);
}

static void print_slot(json_object *s)
{
    json_object *roles = NULL, *err = NULL;
    const char *out = field(s, "stdout", ""), *eout = field(s, "stderr", "");
    char rbuf[256] = "";
    size_t i, off = 0;

    json_object_object_get_ex(s, "roles", &roles);
    for (i = 0; roles && i < json_object_array_length(roles) && off < sizeof(rbuf); i++)
        off += (size_t)snprintf(rbuf + off, sizeof(rbuf) - off, "%s%s", i ? "," : "",
                                json_object_get_string(json_object_array_get_idx(roles, i)));
    printf("==> %s [%s] %s on %s: ", field(s, "slot", "?"), rbuf, field(s, "ip", "?"),
           field(s, "host", "?"));
    if (flag(s, "ran") && field(s, "signal", NULL))
        printf("killed by signal %s", field(s, "signal", "?"));
    else if (flag(s, "ran"))
        printf("exit %s", field(s, "exit", "?"));
    else if (json_object_object_get_ex(s, "error", &err) && err)
        printf("%s: %s", strcmp(field(err, "domain", ""), "state") == 0 ? "not run" : "error",
               field(err, "message", "?"));
    else
        printf("not run");
    printf(" (%s ms)\n", field(s, "ms", "?"));
    print_text(out, flag(s, "stdout_truncated"), "stdout");
    if (*eout || flag(s, "stderr_truncated")) {
        printf("  stderr:\n");
        print_text(eout, flag(s, "stderr_truncated"), "stderr");
    }
}

/* 0 when every selected slot ran the command and it exited 0 (at least one slot), else 1. */
static int all_succeeded(json_object *res)
{
    json_object *slots = NULL;
    size_t i, n;

    if (!json_object_object_get_ex(res, "slots", &slots) || !slots ||
        !(n = json_object_array_length(slots)))
        return 1;
    for (i = 0; i < n; i++) {
        json_object *s = json_object_array_get_idx(slots, i);
        if (!flag(s, "ran") || field(s, "signal", NULL) || strcmp(field(s, "exit", "?"), "0") != 0)
            return 1;
    }
    return 0;
}

static int usage_error(const char *why)
{
    fprintf(stderr, "cloudctl: exec: %s\n%s\n", why, EXEC_USAGE);
    return 2;
}

int cl_exec_cli(const char *socket, int json, int argc, char **argv)
{
    json_object *req = NULL, *res = NULL, *targets, *words;
    const char *name = NULL;
    unsigned timeout_ms = CL_EXEC_TIMEOUT_MS;
    cl_err_t err;
    int k, dash = -1, rc = 1;

    cl_err_clear(&err);
    targets = json_object_new_array();
    for (k = 0; k < argc && dash < 0; k++) {
        const char *a = argv[k], *val = NULL;
        if (strcmp(a, "--") == 0) {
            dash = k;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
            char *end;
            double s;
            val = a[9] == '=' ? a + 10 : k + 1 < argc ? argv[++k] : "";
            errno = 0;
            s = strtod(val, &end);
            if (!*val || *end || errno || !(s * 1000 >= CL_EXEC_TIMEOUT_MIN_MS) ||
                !(s * 1000 <= CL_EXEC_TIMEOUT_MAX_MS)) {
                char why[160];
                snprintf(why, sizeof(why),
                         "--timeout: '%.40s' is not a number of seconds in %g..%g", val,
                         CL_EXEC_TIMEOUT_MIN_MS / 1000.0, CL_EXEC_TIMEOUT_MAX_MS / 1000.0);
                rc = usage_error(why);
                goto out;
            }
            timeout_ms = (unsigned)(s * 1000 + 0.5);
        } else if (a[0] == '-') {
            char why[160];
            snprintf(why, sizeof(why), "unknown option '%.40s' (the command goes after --)", a);
            rc = usage_error(why);
            goto out;
        } else if (!name) {
            name = a;
        } else {
            json_object_array_add(targets, json_object_new_string(a));
        }
    }
    if (!name) {
        rc = usage_error("no cloud name");
        goto out;
    }
    if (dash < 0 || dash + 1 >= argc) {
        rc = usage_error("no command: put it after --");
        goto out;
    }
    words = json_object_new_array();
    for (k = dash + 1; k < argc; k++)
        json_object_array_add(words, json_object_new_string(argv[k]));
    req = json_object_new_object();
    json_object_object_add(req, "v", json_object_new_int(CL_CTL_VERSION));
    json_object_object_add(req, "op", json_object_new_string("exec"));
    json_object_object_add(req, "name", json_object_new_string(name));
    json_object_object_add(req, "targets", targets);
    targets = NULL;
    json_object_object_add(req, "argv", words);
    json_object_object_add(req, "timeout_ms", json_object_new_int64(timeout_ms));
    if (cl_ctl_call(cl_ctl_socket_path(socket), req, timeout_ms + CL_EXEC_SLACK_MS, NULL, NULL,
                    &res, &err) < 0) {
        char buf[1200];
        fprintf(stderr, "cloudctl: %s\n", cl_err_format(&err, buf, sizeof(buf)));
        rc = 1;
        goto out;
    }
    if (json) {
        json_object_object_del(res, "ok");
        printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_SPACED |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        json_object *slots = NULL;
        size_t i;
        json_object_object_get_ex(res, "slots", &slots);
        for (i = 0; slots && i < json_object_array_length(slots); i++)
            print_slot(json_object_array_get_idx(slots, i));
        printf("exec %s on %s (epoch %s, leader %s): %s slot(s): %s exited 0, %s failed, %s not "
               "run\n",
               field(res, "id", "?"), field(res, "name", name), field(res, "epoch", "?"),
               field(res, "leader", "?"), field(res, "selected", "0"), field(res, "succeeded", "0"),
               field(res, "failed", "0"), field(res, "not_run", "0"));
    }
    rc = all_succeeded(res);

out:
    fflush(stdout);
    json_object_put(targets);
    json_object_put(req);
    json_object_put(res);
    return rc;
}
