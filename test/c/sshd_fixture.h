/*
 * sshd_fixture.h: a throwaway OpenSSH sshd on 127.0.0.1 for the C tests, header-only like
 * check.h.  It lives in the test's directory (config, log, a home), is started as a child with
 * an argv (no shell), polled until it accepts connections, and stopped by PID together with
 * everything below it (its sessions and their commands: a rebooted guest).
 *
 * Root's login shell would source /root/.bashrc for every command (about 100 ms here).  So sshd
 * runs in a private mount namespace where /etc/passwd gives root /bin/sh and a home in the
 * test's directory, and a tmpfs on /run holds /run/sshd: nothing outside the test changes, and
 * no user is created.  Without the rights for a namespace sshd runs as is, only slower.
 * The test becomes a child subreaper, so what sshd leaves comes to it and is ended by PID; sshd
 * dies with the test (PR_SET_PDEATHSIG), and a janitor child removes the directory even when
 * the test is killed.  A test may also have sshd listen elsewhere (listen) and show one of its
 * directories at a fixed path to sshd's sessions (fx_sshd_bind), inside the namespace only,
 * and move into a network namespace of its own first (fx_own_network: port 22 is free there),
 * and count what sshd logged (fx_log_count, fx_log_wait: connections accepted, closed...).
 */
#ifndef SSHD_FIXTURE_H
#define SSHD_FIXTURE_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define FX_SSHD "/usr/sbin/sshd"
#define FX_HOST "127.0.0.1"

extern char **environ;

typedef struct fx_sshd {
    char dir[64]; /* the test's directory (from check_tmpdir) */
    char config[160], pidfile[160], log[160], passwd[160], home[160];
    char authorized_keys[160]; /* the test writes the client's public key there */
    unsigned port;             /* a free loopback port, the same across restarts */
    pid_t pid, janitor;
    int use_ns, made_run_sshd;
    /* optional (fx_sshd_bind): a directory of the test seen at a fixed path by sshd's sessions */
    char bind_src[160], bind_dst[160], bind_parent[160];
    const char *listen; /* optional: sshd's ListenAddress (NULL: FX_HOST) */
} fx_sshd_t;

static inline uint64_t fx_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline int fx_write_file(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    int ok = fp && fputs(text, fp) >= 0;

    if (fp && fclose(fp) != 0)
        ok = 0;
    return ok && chmod(path, mode) == 0 ? 0 : -1;
}

/* The whole file, malloc'ed and NUL-terminated (NULL if unreadable); its size into *len. */
static inline char *fx_read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL, *nb;
    size_t n = 0, cap = 0, r = 0;

    if (!fp)
        return NULL;
    do {
        if (n + 4096 + 1 > cap) {
            if (!(nb = realloc(buf, cap = cap * 2 + 8192)))
                break;
            buf = nb;
        }
        n += r = fread(buf + n, 1, 4096, fp);
    } while (r > 0);
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Copy the file from to the file to, with mode (a client's public key into authorized_keys). */
static inline int fx_copy_file(const char *from, const char *to, mode_t mode)
{
    char *text = fx_read_file(from, NULL);
    int rc = text ? fx_write_file(to, text, mode) : -1;

    free(text);
    return rc;
}

/* Run argv (no shell) and wait; its stdout into out (NUL-terminated) if out.  Exit status. */
static inline int fx_spawn_wait(const char *const *argv, char *out, size_t cap)
{
    posix_spawn_file_actions_t fa;
    char drop[64];
    int fds[2] = {-1, -1}, st = 0;
    size_t got = 0;
    ssize_t n;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    while (pid > 0 &&
           (n = read(fds[0], out ? out + got : drop, out ? cap - 1 - got : sizeof(drop))) > 0)
        if (out && (got += (size_t)n) + 1 >= cap)
            break;
    if (out)
        out[got] = '\0';
    close(fds[0]);
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ssh-keygen -t type with no passphrase: path and path.pub.  0 on success. */
static inline int fx_keygen(const char *type, const char *path)
{
    const char *argv[] = {"ssh-keygen", "-q",      "-t", type, "-N", "",
                          "-C",         "fixture", "-f", path, NULL};
    return fx_spawn_wait(argv, NULL, 0);
}

/* "SHA256:..." of a public key file as ssh-keygen -l prints it, and the key's base64 field. */
static inline int fx_key_facts(const char *pub, char fp[64], char b64[128])
{
    const char *argv[] = {"ssh-keygen", "-l", "-E", "sha256", "-f", pub, NULL};
    char out[512], *text = fx_read_file(pub, NULL);
    int ok = fx_spawn_wait(argv, out, sizeof(out)) == 0 && sscanf(out, "%*u %63s", fp) == 1 &&
             text && sscanf(text, "%*s %127s", b64) == 1;

    free(text);
    return ok ? 0 : -1;
}

/* A loopback port nobody listens on (bound, read, closed). */
static inline unsigned fx_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    unsigned p = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        p = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return p;
}

static inline int fx_port_open(unsigned p)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* The parent PID of pid from /proc (0 if gone). */
static inline pid_t fx_parent_of(pid_t pid)
{
    char path[64], buf[512], *rp;
    int fd, ppid = 0;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    if ((rp = strrchr(buf, ')')) && sscanf(rp + 1, " %*c %d", &ppid) == 1)
        return (pid_t)ppid;
    return 0;
}

/* Signal every descendant of root (and root if with_root) but the janitor, by PID.  How many. */
static inline int fx_signal_tree(const fx_sshd_t *fx, pid_t root, int with_root, int sig)
{
    pid_t set[256];
    int n = 1, i, grew = 1, hit = 0;
    struct dirent *de;
    DIR *d;

    set[0] = root;
    while (grew && n < 256) { /* until a scan finds no new descendant */
        grew = 0;
        if (!(d = opendir("/proc")))
            break;
        while ((de = readdir(d)) && n < 256) {
            pid_t pid = (pid_t)atoi(de->d_name), pp;
            int known = 0;
            if (pid <= 0 || !(pp = fx_parent_of(pid)))
                continue;
            for (i = 0; i < n && !known; i++)
                known = set[i] == pid;
            for (i = 0; i < n && !known; i++)
                if (set[i] == pp) {
                    set[n++] = pid;
                    grew = 1;
                    break;
                }
        }
        closedir(d);
    }
    for (i = with_root ? 0 : 1; i < n; i++)
        if (set[i] != fx->janitor)
            hit += kill(set[i], sig) == 0;
    return hit;
}

/* End every process still below the test (what sshd left comes to us), by PID. */
static inline void fx_reap_children(const fx_sshd_t *fx)
{
    uint64_t t0 = fx_now_ms();

    while (fx_now_ms() - t0 < 3000) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (fx_signal_tree(fx, getpid(), 0, fx_now_ms() - t0 < 1000 ? SIGTERM : SIGKILL) == 0)
            break;
        poll(NULL, 0, 10);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/*
 * A child that outlives a killed test: it waits for the end of a pipe whose other end only
 * the test holds (closed however the test ends), then removes the test's directory.
 */
static inline void fx_start_janitor(fx_sshd_t *fx)
{
    int fds[2];
    char c;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return;
    if ((fx->janitor = fork()) == 0) {
        close(fds[1]);
        while (read(fds[0], &c, 1) < 0 && errno == EINTR)
            ;
        check_rmtree(fx->dir);
        _exit(0);
    }
    close(fds[0]);
}

/*
 * Enter a private mount namespace where root has /bin/sh and a clean home, and /run/sshd
 * exists (and bind_src shows at bind_dst, if asked: a tmpfs on its parent when bind_dst does
 * not exist).  In a forked child before exec (system calls only); 0 or -1.
 */
static inline int fx_private_root(const fx_sshd_t *fx)
{
    struct stat st;

    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount(fx->passwd, "/etc/passwd", NULL, MS_BIND, NULL) < 0 ||
        mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=1m") < 0 || mkdir("/run/sshd", 0755) < 0)
        return -1;
    if (fx->bind_src[0] && stat(fx->bind_dst, &st) < 0 &&
        (mount("tmpfs", fx->bind_parent, "tmpfs", 0, "mode=0755,size=1m") < 0 ||
         mkdir(fx->bind_dst, 0755) < 0))
        return -1;
    if (fx->bind_src[0] && mount(fx->bind_src, fx->bind_dst, NULL, MS_BIND, NULL) < 0)
        return -1;
    return 0;
}

/*
 * After fx_sshd_init, before fx_sshd_start: sshd's sessions see the test's directory src at the
 * absolute path dst (code that writes to a fixed place in a guest).  Only in the private mount
 * namespace: nothing outside the test changes.  0, or -1 if there is no namespace.
 */
static inline int fx_sshd_bind(fx_sshd_t *fx, const char *src, const char *dst)
{
    char *slash;

    if (!fx->use_ns || dst[0] != '/')
        return -1;
    snprintf(fx->bind_src, sizeof(fx->bind_src), "%s", src);
    snprintf(fx->bind_dst, sizeof(fx->bind_dst), "%s", dst);
    snprintf(fx->bind_parent, sizeof(fx->bind_parent), "%s", dst);
    slash = strrchr(fx->bind_parent, '/');
    if (slash == fx->bind_parent)
        slash[1] = '\0'; /* "/x": its parent is "/" */
    else
        *slash = '\0';
    return 0;
}

/*
 * Move the test into a network namespace of its own with loopback up (needs root): every
 * 127.x address and port 22 are the test's, sshd may listen on 0.0.0.0:22.  0, or -1.
 */
static inline int fx_own_network(void)
{
    struct ifreq ifr;
    int fd, rc = -1;

    if (unshare(CLONE_NEWNET) < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc;
}

/* A passwd where root has /bin/sh and the fixture's home (for the private namespace). */
static inline int fx_write_passwd(const fx_sshd_t *fx)
{
    char *text = fx_read_file("/etc/passwd", NULL), *line, *eol, *out;
    size_t n = 0;
    int rc;

    if (!text || !(out = malloc(strlen(text) + 512))) {
        free(text);
        return -1;
    }
    for (line = text; *line; line = *eol ? eol + 1 : eol) {
        eol = line + strcspn(line, "\n");
        if (strncmp(line, "root:", 5) == 0)
            n += (size_t)sprintf(out + n, "root:x:0:0:root:%s:/bin/sh\n", fx->home);
        else
            n += (size_t)sprintf(out + n, "%.*s\n", (int)(eol - line), line);
    }
    rc = fx_write_file(fx->passwd, out, 0644);
    free(text);
    free(out);
    return rc;
}

/*
 * Prepare an sshd in dir (which the test made): paths, a free port, the janitor, the private
 * namespace if possible.  0, or -1 with a message on stderr.
 */
static inline int fx_sshd_init(fx_sshd_t *fx, const char *dir)
{
    int st = 0;
    pid_t probe;

    memset(fx, 0, sizeof(*fx));
    fx->pid = fx->janitor = -1;
    snprintf(fx->dir, sizeof(fx->dir), "%s", dir);
#define FX_P(buf, name) snprintf(buf, sizeof(buf), "%s/%s", dir, name)
    FX_P(fx->config, "sshd_config");
    FX_P(fx->pidfile, "sshd.pid");
    FX_P(fx->log, "sshd.log");
    FX_P(fx->passwd, "passwd");
    FX_P(fx->home, "home");
    FX_P(fx->authorized_keys, "authorized_keys");
#undef FX_P
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    fx_start_janitor(fx);
    if (access(FX_SSHD, X_OK) < 0) {
        fprintf(stderr, "sshd fixture: %s missing (apt-get install openssh-server)\n", FX_SSHD);
        return -1;
    }
    if (mkdir(fx->home, 0700) < 0 || fx_write_passwd(fx) < 0 || !(fx->port = fx_free_port()))
        return -1;
    if ((probe = fork()) == 0) /* can this process make the private namespace? */
        _exit(fx_private_root(fx) == 0 ? 0 : 1);
    fx->use_ns =
        probe > 0 && waitpid(probe, &st, 0) == probe && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!fx->use_ns) {
        fprintf(stderr, "sshd fixture: no private mount namespace; root's own shell runs\n");
        if (access("/run/sshd", F_OK) < 0 && mkdir("/run/sshd", 0755) == 0)
            fx->made_run_sshd = 1;
    }
    return 0;
}

/*
 * Start sshd with the host keys (NULL-terminated, offered in this order) and wait, polling and
 * bounded, until it accepts connections.  0, or -1 with sshd's log on stderr.
 */
static inline int fx_sshd_start(fx_sshd_t *fx, const char *const *hostkeys)
{
    const char *argv[] = {FX_SSHD, "-D", "-e", "-f", fx->config, NULL};
    uint64_t t0 = fx_now_ms();
    pid_t self = getpid();
    char text[2048];
    size_t n;
    int logfd, nullfd, i;

    n = (size_t)snprintf(text, sizeof(text), "ListenAddress %s\nPort %u\n",
                         fx->listen ? fx->listen : FX_HOST, fx->port);
    for (i = 0; hostkeys[i] && n < sizeof(text); i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "HostKey %s\n", hostkeys[i]);
    if (n < sizeof(text))
        snprintf(text + n, sizeof(text) - n,
                 "AuthorizedKeysFile %s\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                 "KbdInteractiveAuthentication no\nUsePAM no\nPidFile %s\nStrictModes no\n"
                 "PermitRootLogin prohibit-password\nUseDNS no\nX11Forwarding no\n"
                 "PrintMotd no\nLogLevel VERBOSE\n",
                 fx->authorized_keys, fx->pidfile);
    if (fx_write_file(fx->config, text, 0600) < 0)
        return -1;
    logfd = open(fx->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0 || (fx->pid = fork()) < 0) {
        fprintf(stderr, "sshd fixture: cannot start sshd: %s\n", strerror(errno));
        return -1;
    }
    if (fx->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* sshd does not outlive a crashed test */
        if (getppid() != self || dup2(nullfd, 0) < 0 || dup2(nullfd, 1) < 0 || dup2(logfd, 2) < 0 ||
            (fx->use_ns && fx_private_root(fx) < 0))
            _exit(126);
        execv(FX_SSHD, (char *const *)argv);
        _exit(127);
    }
    close(logfd);
    close(nullfd);
    while (!fx_port_open(fx->port)) {
        if (waitpid(fx->pid, NULL, WNOHANG) == fx->pid || fx_now_ms() - t0 > 5000) {
            char *log = fx_read_file(fx->log, NULL);
            fprintf(stderr, "sshd fixture: sshd did not come up; its log:\n%s\n", log ? log : "");
            free(log);
            return -1;
        }
        poll(NULL, 0, 5);
    }
    return 0;
}

/* Stop sshd and whatever runs below it, by PID, and reap them. */
static inline void fx_sshd_stop(fx_sshd_t *fx)
{
    uint64_t t0 = fx_now_ms();

    if (fx->pid <= 0)
        return;
    fx_signal_tree(fx, fx->pid, 1, SIGTERM);
    while (waitpid(fx->pid, NULL, WNOHANG) == 0) {
        if (fx_now_ms() - t0 > 1000)
            kill(fx->pid, SIGKILL);
        poll(NULL, 0, 5);
    }
    fx->pid = -1;
    fx_reap_children(fx);
}

/* How many times needle stands in sshd's log. */
static inline int fx_log_count(const fx_sshd_t *fx, const char *needle)
{
    char *text = fx_read_file(fx->log, NULL), *p;
    int n = 0;

    for (p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* fx_log_count, polled for up to 3 s until it reaches want (sshd writes asynchronously). */
static inline int fx_log_wait(const fx_sshd_t *fx, const char *needle, int want)
{
    uint64_t t0 = fx_now_ms();
    int n;

    while ((n = fx_log_count(fx, needle)) < want && fx_now_ms() - t0 < 3000)
        poll(NULL, 0, 10);
    return n;
}

/* Stop everything; what is outside the test's directory (a /run/sshd it made) goes too. */
static inline void fx_sshd_fini(fx_sshd_t *fx)
{
    fx_sshd_stop(fx);
    fx_reap_children(fx);
    if (fx->made_run_sshd)
        rmdir("/run/sshd");
}

#endif
