/*
 * cl_client: embedded-mode daemon start-up and in-process read-only answers (see cl_client.h).
 */
#include "cl_client.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cl_ctl.h"
#include "cl_engine.h"
#include "cl_time.h"
#include "cl_timeouts.h"

extern char **environ;

const char *cl_client_state_dir(const cl_client_opts_t *o)
{
    const char *env = getenv("CLOUD_STATE_DIR");

    if (o->state_dir && *o->state_dir)
        return o->state_dir;
    return env && *env ? env : "/var/lib/cloud";
}

int cl_client_daemon_up(const cl_client_opts_t *o)
{
    cl_err_t err;
    int fd;

    if (cl_ctl_connect(cl_ctl_socket_path(o->socket), CL_CTL_CONNECT_MS, &fd, &err) < 0)
        return 0;
    close(fd);
    return 1;
}

static int executable(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* $CLOUDD, else ../bin/cloudd relative to the shared object holding this code, else "cloudd". */
static const char *daemon_path(const cl_client_opts_t *o, char *buf, size_t len)
{
    const char *env = getenv("CLOUDD");
    Dl_info info;

    if (o->daemon && *o->daemon)
        return o->daemon;
    if (env && *env)
        return env;
    if (dladdr((void *)daemon_path, &info) && info.dli_fname) {
        char dir[PATH_MAX], *slash;
        snprintf(dir, sizeof(dir), "%s", info.dli_fname);
        slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/../bin/cloudd", dir);
            if (executable(buf))
                return buf;
        }
    }
    return "cloudd";
}

/*
 * A socket file nobody answers on is stale, or belongs to an embedded daemon that is leaving
 * (its last cloud stopped): it finishes the requests it accepted (up to 5 s), then removes the
 * file, so a daemon started before that would lose its socket and run on unreachable.  Wait for
 * it, bounded (a stale file after a crash costs this once; the new daemon replaces it).
 */
static void wait_released(const char *sock)
{
    uint64_t deadline = cl_time_now_ms() + CL_DAEMON_START_MS;
    struct timespec ts = {0, 10 * 1000 * 1000};

    while (access(sock, F_OK) == 0 && cl_time_now_ms() < deadline)
        nanosleep(&ts, NULL);
}

int cl_client_spawn(const cl_client_opts_t *o, cl_err_t *err)
{
    char buf[PATH_MAX];
    const char *path = daemon_path(o, buf, sizeof(buf));
    const char *sock = cl_ctl_socket_path(o->socket), *state = cl_client_state_dir(o);
    char *argv[] = {(char *)path, "--embedded",  "--daemonize", "--socket",
                    (char *)sock, "--state-dir", (char *)state, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;

    wait_released(sock);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", 0, 0);
    rc = strchr(path, '/') ? posix_spawn(&pid, path, &fa, NULL, argv, environ)
                           : posix_spawnp(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return cl_err_sys(err, NULL, "start cloudd",
                          "cannot run %s (build it with `rake compile`, or set CLOUDD)", path);
    }
    /* cloudd --daemonize returns once its socket answers, or fails. */
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cl_err_sys(err, NULL, "start cloudd", "waitpid");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    /* Another run may have started one at the same moment: that is fine. */
    if (cl_client_daemon_up(o))
        return 0;
    return cl_err_set(err, CL_ERR_SYS, 0, NULL, "start cloudd",
                      "%s exited with status %d; see %s/cloudd.log", path,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, state);
}

int cl_client_gone(const cl_err_t *err)
{
    return err && err->domain == CL_ERR_SYS &&
           (err->sys_errno == ECONNRESET || err->sys_errno == EPIPE || err->sys_errno == ENOENT ||
            err->sys_errno == ECONNREFUSED);
}

typedef struct seen {
    int (*fn)(void *, json_object *);
    void *ud;
    int lines;
} seen_t;

static int count_lines(void *ud, json_object *line)
{
    seen_t *s = ud;

    s->lines++;
    return s->fn ? s->fn(s->ud, line) : 0;
}

int cl_client_call(const cl_client_opts_t *o, json_object *req, int autostart, unsigned timeout_ms,
                   int (*fn)(void *, json_object *), void *ud, volatile int *cancel,
                   json_object **final, cl_err_t *err)
{
    const char *sock = cl_ctl_socket_path(o->socket);
    seen_t s = {fn, ud, 0};
    int rc;

    rc = cl_ctl_call_ex(sock, req, timeout_ms, count_lines, &s, cancel, final, err);
    /*
     * No daemon (no socket, refused), or an embedded one that was just leaving (its last cloud
     * stopped) and dropped a request it never started: start one and ask again, once, if
     * nothing was answered.
     */
    if (rc < 0 && autostart && s.lines == 0 && cl_client_gone(err)) {
        if (!cl_client_daemon_up(o) && cl_client_spawn(o, err) < 0)
            return -1;
        rc = cl_ctl_call_ex(sock, req, timeout_ms, count_lines, &s, cancel, final, err);
    }
    return rc;
}

int cl_client_read(const cl_client_opts_t *o, json_object *req, const char *name,
                   const cl_spec_t *spec, int plan, volatile int *cancel, json_object **result,
                   cl_err_t *err)
{
    int attempt;

    *result = NULL;
    for (attempt = 0; attempt < 2 && cl_client_daemon_up(o); attempt++) {
        if (cl_client_call(o, req, 0, CL_CTL_STATUS_MS, NULL, NULL, cancel, result, err) == 0)
            return 0;
        /* A daemon leaving (embedded mode, its last cloud stopped) dropped the call. */
        if (!cl_client_gone(err))
            return -1;
        cl_err_clear(err);
    }
    return plan ? cl_client_local_plan(o, spec, result, err)
                : cl_client_local_status(o, name, spec, result, err);
}

static int local_engine(const cl_client_opts_t *o, cl_engine_t **e, cl_err_t *err)
{
    cl_engine_opts_t eo;

    memset(&eo, 0, sizeof(eo));
    eo.state_dir = cl_client_state_dir(o);
    eo.readonly = 1;
    return cl_engine_new(&eo, e, err);
}

int cl_client_local_status(const cl_client_opts_t *o, const char *name, const cl_spec_t *spec,
                           json_object **result, cl_err_t *err)
{
    cl_engine_t *e = NULL;
    int rc;

    if (local_engine(o, &e, err) < 0)
        return -1;
    rc = cl_engine_status(e, name, spec, result, err);
    cl_engine_free(e);
    return rc;
}

int cl_client_local_plan(const cl_client_opts_t *o, const cl_spec_t *spec, json_object **result,
                         cl_err_t *err)
{
    cl_engine_t *e = NULL;
    int rc;

    if (local_engine(o, &e, err) < 0)
        return -1;
    rc = cl_engine_apply(e, spec, 1, NULL, NULL, result, err);
    cl_engine_free(e);
    return rc;
}

int cl_client_self(const cl_client_opts_t *o, json_object **addrs, cl_err_t *err)
{
    json_object *req = json_object_new_object(), *fin = NULL, *v;
    cl_addrs_t a = {0};
    size_t i;

    *addrs = NULL;
    json_object_object_add(req, "v", json_object_new_int(CL_CTL_VERSION));
    json_object_object_add(req, "op", json_object_new_string("hello"));
    if (cl_client_daemon_up(o) &&
        cl_ctl_call(cl_ctl_socket_path(o->socket), req, CL_CTL_STATUS_MS, NULL, NULL, &fin, err) ==
            0 &&
        json_object_object_get_ex(fin, "addresses", &v)) {
        *addrs = json_object_get(v);
        json_object_put(fin);
        json_object_put(req);
        return 0;
    }
    json_object_put(fin);
    json_object_put(req);
    if (cl_net_local_addrs(&a, err) < 0)
        return -1;
    *addrs = json_object_new_array();
    for (i = 0; i < a.n; i++)
        json_object_array_add(*addrs, json_object_new_string(a.v[i]));
    cl_addrs_free(&a);
    return 0;
}
