/*
 * ssh_cmds: the cost of N commands in a guest (issue 4's SSH benchmark), three ways side by
 * side, interleaved over ROUNDS rounds: over one persistent libssh2 session (cl_ssh, what the
 * leader does), one `ssh` process per command (the seed's way), and `ssh` through an OpenSSH
 * ControlMaster connection (the best a user could do by hand).  Every command must exit 0, or
 * the run fails rather than reporting a time.
 *
 *   build/bench/ssh_cmds HOST KEY [N [ROUNDS]]      (root@HOST, ed25519 KEY; N=100, ROUNDS=3)
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cl_log.h"
#include "cl_ssh.h"

extern char **environ;

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Run argv, wait; its exit status (-1 if it could not run). */
static int run(char *const argv[])
{
    pid_t pid;
    int st;

    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
        return -1;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *host, *key;
    char target[128], known[128], ctl[128], tmpl[] = "/tmp/ssh-bench-XXXXXX", *dir;
    int n, rounds, r, i;
    double t, lib[16], one[16], mux[16], connect_ms = 0;
    cl_ssh_opts_t o;
    cl_ssh_t *s = NULL;
    cl_err_t err;

    if (argc < 3) {
        fprintf(stderr, "usage: ssh_cmds HOST KEY [N [ROUNDS]]\n");
        return 2;
    }
    host = argv[1];
    key = argv[2];
    n = argc > 3 ? atoi(argv[3]) : 100;
    rounds = argc > 4 ? atoi(argv[4]) : 3;
    if (n < 1 || rounds < 1 || rounds > 16 || !(dir = mkdtemp(tmpl)))
        return 2;
    snprintf(target, sizeof(target), "root@%s", host);
    snprintf(known, sizeof(known), "%s/known_hosts", dir);
    snprintf(ctl, sizeof(ctl), "%s/ctl", dir);
    cl_log_set_stream(NULL);

    char *one_argv[] = {"ssh",
                        "-i",
                        (char *)key,
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "LogLevel=ERROR",
                        target,
                        "true",
                        NULL};
    char *master_argv[] = {"ssh",
                           "-i",
                           (char *)key,
                           "-o",
                           "StrictHostKeyChecking=no",
                           "-o",
                           "UserKnownHostsFile=/dev/null",
                           "-o",
                           "BatchMode=yes",
                           "-o",
                           "LogLevel=ERROR",
                           "-M",
                           "-S",
                           ctl,
                           "-o",
                           "ControlPersist=yes",
                           "-fN",
                           target,
                           NULL};
    char *mux_argv[] = {"ssh",           "-S",   ctl,    "-o", "ControlMaster=no", "-o",
                        "BatchMode=yes", target, "true", NULL};
    char *exit_argv[] = {"ssh", "-S", ctl, "-O", "exit", target, NULL};
    const char *true_argv[] = {"true", NULL};

    memset(&o, 0, sizeof(o));
    o.host = host;
    o.user = "root";
    o.key = key;
    o.known_hosts = known;
    cl_err_clear(&err);
    t = now_ms();
    if (!(s = cl_ssh_connect(&o, &err))) {
        fprintf(stderr, "ssh_cmds: libssh2 connect: %s\n", err.msg);
        return 1;
    }
    connect_ms = now_ms() - t;
    if (run(master_argv) != 0) {
        fprintf(stderr, "ssh_cmds: ControlMaster did not start\n");
        cl_ssh_free(s);
        return 1;
    }
    for (r = 0; r < rounds; r++) {
        t = now_ms();
        for (i = 0; i < n; i++) {
            cl_ssh_result_t res;
            memset(&res, 0, sizeof(res));
            if (cl_ssh_run(s, true_argv, NULL, &res, &err) < 0 || res.exit_status != 0) {
                fprintf(stderr, "ssh_cmds: libssh2 command %d failed: %s\n", i, err.msg);
                return 1;
            }
            cl_ssh_result_free(&res);
        }
        lib[r] = now_ms() - t;
        t = now_ms();
        for (i = 0; i < n; i++)
            if (run(mux_argv) != 0) {
                fprintf(stderr, "ssh_cmds: ControlMaster command %d failed\n", i);
                return 1;
            }
        mux[r] = now_ms() - t;
        t = now_ms();
        for (i = 0; i < n; i++)
            if (run(one_argv) != 0) {
                fprintf(stderr, "ssh_cmds: ssh command %d failed\n", i);
                return 1;
            }
        one[r] = now_ms() - t;
        fprintf(stderr, "  round %d: libssh2 %.0f ms, ControlMaster %.0f ms, ssh each %.0f ms\n",
                r + 1, lib[r], mux[r], one[r]);
    }
    run(exit_argv);
    cl_ssh_free(s);
    unlink(known);
    rmdir(dir);
    {
        double ml = median(lib, rounds), mm = median(mux, rounds), mo = median(one, rounds);
        printf("| method | %d commands (median of %d rounds) | per command |\n", n, rounds);
        printf("|---|---|---|\n");
        printf("| libssh2, one persistent session (cl_ssh) | %.0f ms | %.1f ms |\n", ml, ml / n);
        printf("| OpenSSH ControlMaster | %.0f ms | %.1f ms |\n", mm, mm / n);
        printf("| one ssh process per command | %.0f ms | %.1f ms |\n", mo, mo / n);
        printf("(libssh2 session set-up, once: %.0f ms)\n", connect_ms);
        printf("ssh_cmds host=%s n=%d libssh2_ms=%.0f controlmaster_ms=%.0f ssh_each_ms=%.0f "
               "vs_ssh_each=%.1fx vs_controlmaster=%.2fx\n",
               host, n, ml, mm, mo, mo / ml, mm / ml);
    }
    return 0;
}
