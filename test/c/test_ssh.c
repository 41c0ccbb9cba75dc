/*
 * test_ssh: the SSH layer against a real OpenSSH sshd that the test starts on 127.0.0.1
 * (sshd_fixture.h) with throwaway keys: ed25519 host keys pinned and a changed key refused,
 * argv quoting byte for byte, scripts, stdin, exit status and signal, output caps, uploads, a
 * command timeout, one session for 100 commands and reconnected after its server died, a
 * refused client key, bounded handshakes, readiness waits with backoff (and given up when a
 * watch says so), and the pins of recreated guests.  The guest is this machine, so what a
 * command or an upload did is also checked directly.
 */
#include "check.h"
#include "sshd_fixture.h"

#include <pthread.h>

#include "cl_err.h"
#include "cl_log.h"
#include "cl_ssh.h"
#include "cl_time.h"

#define SECRET_STDIN "s3cret-on-stdin-4711"
#define SECRET_SCRIPT "s3cret-in-script-4712"
#define SECRET_FILE "s3cret-in-file-4713"
#define SECRET_ARG "s3cret-as-argument-4714"

static fx_sshd_t fx;
static char tmp[64], p_ecdsa[128], p_hostkey1[128], p_hostkey2[128], p_client[128], p_nopub[128],
    p_wrong[128], p_known[128], p_log[128], p_remote[128];
static char fp1[64], fp2[64], key1_b64[128], key2_b64[128];
static unsigned dead_port;

/* sshd offering an ECDSA key first, then key (an ed25519 one). */
static int sshd_start(const char *key)
{
    const char *keys[] = {p_ecdsa, key, NULL};
    return fx_sshd_start(&fx, keys);
}

/* Keys, the client's authorization, and sshd with the first host key. */
static int setup(void)
{
    char pub1[160], pub2[160], pubc[160];

#define P(buf, name) snprintf(buf, sizeof(buf), "%s/%s", tmp, name)
    P(p_ecdsa, "hostkey-ecdsa");
    P(p_hostkey1, "hostkey1");
    P(p_hostkey2, "hostkey2");
    P(p_client, "client");
    P(p_nopub, "client-nopub");
    P(p_wrong, "wrong");
    P(p_known, "state/known_hosts/t-ssh");
    P(p_remote, "remote");
    P(pub1, "hostkey1.pub");
    P(pub2, "hostkey2.pub");
    P(pubc, "client.pub");
#undef P
    if (fx_sshd_init(&fx, tmp) < 0)
        return -1;
    if (mkdir(p_remote, 0755) < 0 || fx_keygen("ecdsa", p_ecdsa) != 0 ||
        fx_keygen("ed25519", p_hostkey1) != 0 || fx_keygen("ed25519", p_hostkey2) != 0 ||
        fx_keygen("ed25519", p_client) != 0 || fx_keygen("ed25519", p_wrong) != 0) {
        fprintf(stderr, "test_ssh: ssh-keygen failed\n");
        return -1;
    }
    /* the client's key once more, without a .pub: libssh2 derives the public key */
    if (fx_copy_file(p_client, p_nopub, 0600) < 0 ||
        fx_copy_file(pubc, fx.authorized_keys, 0600) < 0 || fx_key_facts(pub1, fp1, key1_b64) < 0 ||
        fx_key_facts(pub2, fp2, key2_b64) < 0)
        return -1;
    dead_port = fx_free_port();
    if (!dead_port || dead_port == fx.port)
        return -1;
    return sshd_start(p_hostkey1);
}

static cl_ssh_opts_t opts(unsigned p, const char *key)
{
    cl_ssh_opts_t o = {FX_HOST, p, "root", key, p_known, 2000, 5000};
    return o;
}

static void print_err(const char *what, const cl_err_t *err)
{
    char buf[1200];

    fprintf(stderr, "test_ssh: %s: %s: %s\n", what, cl_err_domain_name(err->domain),
            cl_err_format(err, buf, sizeof(buf)));
}

/* cl_ssh_run with the error printed if it fails. */
static int run(cl_ssh_t *s, const char *const *argv, const cl_ssh_run_opts_t *ro,
               cl_ssh_result_t *r)
{
    cl_err_t err;
    int rc = cl_ssh_run(s, argv, ro, r, &err);

    if (rc < 0)
        print_err(argv[0], &err);
    return rc;
}

/* ========================================================================================= */
/* The tests                                                                                 */
/* ========================================================================================= */

/*
 * First contact pins the key (0600, the full key): the ed25519 one, though sshd offers an
 * ECDSA key first and libssh2 would prefer it; a second contact leaves the file alone.
 */
static cl_ssh_t *test_first_contact(void)
{
    cl_ssh_opts_t o = opts(fx.port, p_client), on = opts(fx.port, p_nopub);
    struct stat st, st2;
    char entry[256], *text;
    cl_ssh_t *s, *s2;
    cl_err_t err;

    CHECK(access(p_known, F_OK) < 0 && errno == ENOENT);
    if (!(s = cl_ssh_connect(&o, &err)))
        print_err("connect", &err);
    if (!CHECK(s != NULL))
        return NULL;
    CHECK(cl_ssh_connected(s));
    CHECK_INT_EQ(cl_ssh_connects(s), 1);
    CHECK_STR_EQ(cl_ssh_fingerprint(s), fp1);
    CHECK(stat(p_known, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(entry, sizeof(entry), "[" FX_HOST "]:%u ssh-ed25519 %s\n", fx.port, key1_b64);
    text = fx_read_file(p_known, NULL);
    CHECK_STR_EQ(text, entry);
    free(text);
    /* again, with the public key derived from the private one */
    if (!(s2 = cl_ssh_connect(&on, &err)))
        print_err("connect without .pub", &err);
    CHECK(s2 != NULL);
    CHECK(stat(p_known, &st2) == 0 && st2.st_ino == st.st_ino && st2.st_size == st.st_size);
    cl_ssh_free(s2);
    cl_ssh_free(NULL);
    return s;
}

static void test_exec(cl_ssh_t *s)
{
    const char *echo[] = {"echo", "hello", NULL};
    const char *three[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    const char *sig[] = {"exec", "sh", "-c", "kill -TERM $$", NULL}; /* sshd's child dies */
    const char *empty[] = {NULL};
    const char *secret[] = {"echo", SECRET_ARG, NULL};
    cl_ssh_result_t r;
    cl_err_t err;

    if (CHECK_INT_EQ(run(s, echo, NULL, &r), 0)) {
        CHECK_STR_EQ(r.out, "hello\n");
        CHECK_INT_EQ(r.out_len, 6);
        CHECK_STR_EQ(r.errout, "");
        CHECK_INT_EQ(r.exit_status, 0);
        CHECK(!r.out_truncated && !r.errout_truncated && r.exit_signal[0] == '\0');
    }
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(run(s, three, NULL, &r), 0)) {
        CHECK_STR_EQ(r.out, "out\n");
        CHECK_STR_EQ(r.errout, "err\n");
        CHECK_INT_EQ(r.exit_status, 3);
    }
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(run(s, sig, NULL, &r), 0)) {
        CHECK_STR_EQ(r.exit_signal, "TERM");
        CHECK_INT_EQ(r.exit_status, -1);
    }
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(cl_ssh_run(s, empty, NULL, &r, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(run(s, secret, NULL, &r), 0)) /* the log must not show the argument */
        CHECK_STR_EQ(r.out, SECRET_ARG "\n");
    cl_ssh_result_free(&r);
}

/* An argument full of shell syntax arrives byte for byte, and none of it runs. */
static void test_quoting(cl_ssh_t *s)
{
    char arg[512], pwned[128], pwned2[128], *q;
    const char *pr[] = {"printf", "%s", arg, NULL};
    const char *two[] = {"printf", "[%s][%s]", "", "x y", NULL};
    const char *qv[] = {"it's", "a b", NULL};
    cl_ssh_result_t r;

    snprintf(pwned, sizeof(pwned), "%s/pwned", tmp);
    snprintf(pwned2, sizeof(pwned2), "%s/pwned2", tmp);
    snprintf(arg, sizeof(arg),
             " a b  'c' \"d\" $(touch %s) `touch %s` ; echo x | & > < \n\ttab \\ $HOME * ? ''"
             " '\\'' \"'\"'\" end\n",
             pwned, pwned2);
    if (CHECK_INT_EQ(run(s, pr, NULL, &r), 0)) {
        CHECK_INT_EQ(r.out_len, strlen(arg));
        CHECK_STR_EQ(r.out, arg);
    }
    cl_ssh_result_free(&r);
    CHECK(access(pwned, F_OK) < 0 && access(pwned2, F_OK) < 0);
    if (CHECK_INT_EQ(run(s, two, NULL, &r), 0))
        CHECK_STR_EQ(r.out, "[][x y]");
    cl_ssh_result_free(&r);
    q = cl_ssh_quote_argv("sh -s --", qv);
    CHECK_STR_EQ(q, "sh -s -- 'it'\\''s' 'a b'");
    free(q);
}

static void test_script(cl_ssh_t *s)
{
    static const char script[] = "set -e\n"
                                 "secret=" SECRET_SCRIPT "\n"
                                 "echo \"first=$1\"\n"
                                 "for a in \"$@\"; do printf '<%s>' \"$a\"; done\n"
                                 "echo\n"
                                 "[ \"$secret\" = " SECRET_SCRIPT " ] && echo secret-ok\n"
                                 "exit 4\n";
    const char *args[] = {"x y", "it's $(no) `no`", NULL};
    cl_ssh_run_opts_t ro = {"input", 5, 0, 0};
    cl_ssh_result_t r;
    cl_err_t err;

    if (CHECK_INT_EQ(cl_ssh_run_script(s, "role-step", script, args, NULL, &r, &err), 0)) {
        CHECK_STR_EQ(r.out, "first=x y\n<x y><it's $(no) `no`>\nsecret-ok\n");
        CHECK_INT_EQ(r.exit_status, 4);
    } else {
        print_err("script", &err);
    }
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(cl_ssh_run_script(s, "count", "echo $#\n", NULL, NULL, &r, &err), 0))
        CHECK_STR_EQ(r.out, "0\n");
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(cl_ssh_run_script(s, "bad", "true\n", NULL, &ro, &r, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_STR_EQ(err.op, "script bad");
    cl_ssh_result_free(&r);
}

static void test_stdin(cl_ssh_t *s)
{
    const char *cat[] = {"cat", NULL}, *wc[] = {"wc", "-c", NULL}, *tru[] = {"true", NULL};
    static const char secret[] = SECRET_STDIN "\nline 2 $(x) 'q'";
    size_t big = 3u << 20;
    char *buf = malloc(big);
    cl_ssh_run_opts_t ro = {secret, sizeof(secret) - 1, 0, 0};
    cl_ssh_result_t r;

    if (!CHECK(buf != NULL))
        return;
    memset(buf, 'z', big);
    if (CHECK_INT_EQ(run(s, cat, &ro, &r), 0))
        CHECK_STR_EQ(r.out, secret);
    cl_ssh_result_free(&r);
    ro.input = buf;
    ro.input_len = 300000;
    if (CHECK_INT_EQ(run(s, wc, &ro, &r), 0))
        CHECK_STR_EQ(r.out, "300000\n");
    cl_ssh_result_free(&r);
    /* more input than a channel window, to a command that never reads it */
    ro.input_len = big;
    ro.timeout_ms = 5000;
    if (CHECK_INT_EQ(run(s, tru, &ro, &r), 0))
        CHECK_INT_EQ(r.exit_status, 0);
    cl_ssh_result_free(&r);
    free(buf);
}

static void test_output_caps(cl_ssh_t *s)
{
    const char *huge[] = {"head", "-c", "1100000", "/dev/zero", NULL};
    const char *small[] = {"head", "-c", "1000", "/dev/zero", NULL};
    const char *both[] = {"sh", "-c", "echo 0123456789abcdef; echo 0123456789ABCDEF >&2", NULL};
    cl_ssh_run_opts_t ro = {NULL, 0, 0, 10};
    cl_ssh_result_t r;

    if (CHECK_INT_EQ(run(s, huge, NULL, &r), 0)) {
        CHECK_INT_EQ(r.out_len, CL_SSH_OUTPUT_MAX);
        CHECK(r.out_truncated);
        CHECK_INT_EQ(r.exit_status, 0);
    }
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(run(s, small, NULL, &r), 0)) {
        CHECK_INT_EQ(r.out_len, 1000);
        CHECK(!r.out_truncated);
    }
    cl_ssh_result_free(&r);
    if (CHECK_INT_EQ(run(s, both, &ro, &r), 0)) {
        CHECK_STR_EQ(r.out, "0123456789");
        CHECK_STR_EQ(r.errout, "0123456789");
        CHECK(r.out_truncated && r.errout_truncated);
    }
    cl_ssh_result_free(&r);
}

static void test_upload(cl_ssh_t *s)
{
    static const char data[] = "line 1\n\0binary\xff\n" SECRET_FILE "\n";
    char path[192], tmpf[200], missing[192], *text;
    const char *st[] = {"stat", "-c", "%a", path, NULL};
    struct stat sb;
    cl_ssh_result_t r;
    cl_err_t err;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/app.conf", p_remote);
    snprintf(tmpf, sizeof(tmpf), "%s.cl-tmp", path);
    snprintf(missing, sizeof(missing), "%s/missing/app.conf", p_remote);
    if (!CHECK_INT_EQ(cl_ssh_upload(s, path, data, sizeof(data) - 1, 0640, &err), 0))
        print_err("upload", &err);
    if (CHECK_INT_EQ(run(s, st, NULL, &r), 0))
        CHECK_STR_EQ(r.out, "640\n");
    cl_ssh_result_free(&r);
    /* the guest is this machine: look at the file directly too */
    text = fx_read_file(path, &len);
    CHECK(text && len == sizeof(data) - 1 && memcmp(text, data, len) == 0);
    free(text);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640);
    CHECK(access(tmpf, F_OK) < 0);
    /* replaced whole, with the new mode */
    CHECK_INT_EQ(cl_ssh_upload(s, path, "new\n", 4, 0600, &err), 0);
    text = fx_read_file(path, &len);
    CHECK_STR_EQ(text, "new\n");
    free(text);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
    CHECK_INT_EQ(cl_ssh_upload(s, path, "", 0, 0644, &err), 0);
    CHECK(stat(path, &sb) == 0 && sb.st_size == 0 && (sb.st_mode & 07777) == 0644);
    /* refusals */
    CHECK_INT_EQ(cl_ssh_upload(s, missing, "x", 1, 0644, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK(strncmp(err.op, "upload ", 7) == 0 && strstr(err.op, "/missing/app.conf"));
    CHECK_CONTAINS(err.msg, "refused to create");
    CHECK_INT_EQ(cl_ssh_upload(s, "relative/path", "x", 1, 0644, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK(cl_ssh_connected(s)); /* refusals leave the session usable */
}

/* A command over its timeout fails fast, and the session goes on. */
static void test_timeout(cl_ssh_t *s)
{
    const char *slp[] = {"sleep", "5", NULL}, *echo[] = {"echo", "after", NULL};
    cl_ssh_run_opts_t ro = {NULL, 0, 300, 0};
    unsigned n0 = cl_ssh_connects(s);
    uint64_t t0 = cl_time_now_ms(), ms;
    cl_ssh_result_t r;
    cl_err_t err;

    CHECK_INT_EQ(cl_ssh_run(s, slp, &ro, &r, &err), -1);
    ms = cl_time_now_ms() - t0;
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_STR_EQ(err.op, "exec sleep");
    CHECK(ms >= 300 && ms < 1000); /* no waiting for sshd's CLOSE, which comes at sleep's end */
    if (CHECK_INT_EQ(run(s, echo, NULL, &r), 0))
        CHECK_STR_EQ(r.out, "after\n");
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(cl_ssh_connects(s), n0); /* the same session went on */
    printf("test_ssh: a 300 ms command timeout returned after %llu ms\n", (unsigned long long)ms);
}

static void test_many(cl_ssh_t *s)
{
    unsigned n0 = cl_ssh_connects(s), i, ok = 0;
    uint64_t t0 = cl_time_real_us();
    char num[16], want[20];
    const char *echo[] = {"echo", num, NULL};
    cl_ssh_result_t r;

    for (i = 0; i < 100; i++) {
        snprintf(num, sizeof(num), "%u", i);
        snprintf(want, sizeof(want), "%u\n", i);
        if (run(s, echo, NULL, &r) == 0 && r.exit_status == 0 && strcmp(r.out, want) == 0)
            ok++;
        cl_ssh_result_free(&r);
    }
    CHECK_INT_EQ(ok, 100);
    CHECK_INT_EQ(cl_ssh_connects(s), n0);
    printf("test_ssh: 100 commands over one session in %llu ms\n",
           (unsigned long long)((cl_time_real_us() - t0) / 1000));
}

/* The server goes away with its sessions (a reboot): the next command reconnects. */
static void test_reconnect(cl_ssh_t *s)
{
    const char *echo[] = {"echo", "again", NULL};
    unsigned n0 = cl_ssh_connects(s);
    cl_ssh_result_t r;

    fx_sshd_stop(&fx);
    if (!CHECK_INT_EQ(sshd_start(p_hostkey1), 0))
        return;
    if (CHECK_INT_EQ(run(s, echo, NULL, &r), 0))
        CHECK_STR_EQ(r.out, "again\n");
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(cl_ssh_connects(s), n0 + 1);
}

/* A new host key on the same address is refused until the host is forgotten. */
static void test_changed_key(cl_ssh_t *s)
{
    const char *echo[] = {"echo", "new", NULL};
    cl_ssh_opts_t o = opts(fx.port, p_client);
    char entry[256], *text;
    struct stat st;
    cl_ssh_result_t r;
    cl_ssh_t *s2;
    cl_err_t err;

    fx_sshd_stop(&fx);
    if (!CHECK_INT_EQ(sshd_start(p_hostkey2), 0))
        return;
    CHECK_INT_EQ(cl_ssh_run(s, echo, NULL, &r, &err), -1); /* the old session's reconnection */
    cl_ssh_result_free(&r);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(err.code, CL_SSH_E_HOSTKEY_CHANGED);
    CHECK_STR_EQ(err.op, "hostkey");
    s2 = cl_ssh_connect(&o, &err);
    CHECK(s2 == NULL);
    cl_ssh_free(s2);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_CONTAINS(err.msg, "host key of " FX_HOST);
    CHECK_CONTAINS(err.msg, fp1);
    CHECK_CONTAINS(err.msg, fp2);
    text = fx_read_file(p_known, NULL);
    CHECK_CONTAINS(text, key1_b64);
    CHECK(text && !strstr(text, key2_b64));
    /* other entries and comments survive forgetting */
    snprintf(entry, sizeof(entry), "%s# kept\n[127.0.0.9]:2222 ssh-ed25519 %s\n", text ? text : "",
             key1_b64);
    free(text);
    CHECK_INT_EQ(fx_write_file(p_known, entry, 0600), 0);
    CHECK_INT_EQ(cl_ssh_forget_host(p_known, FX_HOST, fx.port, &err), 1);
    CHECK_INT_EQ(cl_ssh_forget_host(p_known, FX_HOST, fx.port, &err), 0);
    if (!(s2 = cl_ssh_connect(&o, &err)))
        print_err("connect after forget", &err);
    CHECK(s2 != NULL);
    CHECK_STR_EQ(cl_ssh_fingerprint(s2), fp2);
    cl_ssh_free(s2);
    text = fx_read_file(p_known, NULL);
    CHECK_CONTAINS(text, key2_b64);
    CHECK_CONTAINS(text, "# kept\n[127.0.0.9]:2222 ssh-ed25519 ");
    snprintf(entry, sizeof(entry), "[" FX_HOST "]:%u ssh-ed25519 %s\n", fx.port, key2_b64);
    CHECK_CONTAINS(text, entry);
    free(text);
    CHECK(stat(p_known, &st) == 0 && (st.st_mode & 0777) == 0600);
    if (CHECK_INT_EQ(run(s, echo, NULL, &r), 0)) /* and the old object reconnects too */
        CHECK_STR_EQ(r.out, "new\n");
    cl_ssh_result_free(&r);
}

/* "#cl-incarnation <name> <id>\n" of the test's sshd. */
static void record_line(const char *id, char *out, size_t n)
{
    snprintf(out, n, "#cl-incarnation [" FX_HOST "]:%u %s\n", fx.port, id);
}

/*
 * A pin follows the guest's incarnation: kept (and a changed key refused) while the id stays,
 * dropped and made afresh when it changes; other entries stay, the file stays OpenSSH's.
 * Starts with the key of hostkey2 pinned (test_changed_key), ends with no pin for sshd, which
 * has that key again.
 */
static void test_incarnation(void)
{
    cl_ssh_opts_t o = opts(fx.port, p_client);
    char rec[256], name[64], entry[256], out[1024], *text;
    const char *find[] = {"ssh-keygen", "-F", name, "-f", p_known, NULL};
    struct stat st, st2;
    cl_ssh_t *s2;
    cl_err_t err;

    snprintf(name, sizeof(name), "[" FX_HOST "]:%u", fx.port);
    /* a pin without a recorded id is kept: it is taken as the first id told */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "host=h1 epoch=5", &err), 0);
    text = fx_read_file(p_known, NULL);
    record_line("host=h1 epoch=5", rec, sizeof(rec));
    CHECK_CONTAINS(text, rec);
    CHECK_CONTAINS(text, key2_b64);
    CHECK_CONTAINS(text, "# kept\n[127.0.0.9]:2222 ssh-ed25519 ");
    free(text);
    CHECK(stat(p_known, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* the same id again: nothing to write */
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "host=h1 epoch=5", &err), 0);
    CHECK(stat(p_known, &st2) == 0 && st2.st_ino == st.st_ino);
    /* the same guest with another key: still refused */
    fx_sshd_stop(&fx);
    if (!CHECK_INT_EQ(sshd_start(p_hostkey1), 0))
        return;
    CHECK((s2 = cl_ssh_connect(&o, &err)) == NULL);
    cl_ssh_free(s2);
    CHECK_INT_EQ(err.code, CL_SSH_E_HOSTKEY_CHANGED);
    /* another incarnation (recreated elsewhere, by another leader): its pin goes, and only it */
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "host=h2 epoch=6", &err), 1);
    text = fx_read_file(p_known, NULL);
    CHECK(text && !strstr(text, key2_b64) && !strstr(text, "epoch=5"));
    CHECK_CONTAINS(text, "# kept\n[127.0.0.9]:2222 ssh-ed25519 ");
    free(text);
    if (!(s2 = cl_ssh_connect(&o, &err)))
        print_err("connect after a new incarnation", &err);
    CHECK(s2 != NULL);
    CHECK_STR_EQ(cl_ssh_fingerprint(s2), fp1);
    cl_ssh_free(s2);
    text = fx_read_file(p_known, NULL);
    record_line("host=h2 epoch=6", rec, sizeof(rec));
    snprintf(entry, sizeof(entry), "%s ssh-ed25519 %s\n", name, key1_b64);
    CHECK_CONTAINS(text, rec);
    CHECK_CONTAINS(text, entry);
    free(text);
    CHECK(stat(p_known, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* OpenSSH still reads the file: the record is a comment to it */
    CHECK_INT_EQ(fx_spawn_wait(find, out, sizeof(out)), 0);
    CHECK_CONTAINS(out, key1_b64);
    /* an id must be one printable line */
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "", &err), -1);
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "a\nb", &err), -1);
    CHECK_CONTAINS(err.msg, "incarnation");
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, NULL, &err), -1);
    /* forgetting drops the record with the pin */
    CHECK_INT_EQ(cl_ssh_forget_host(p_known, FX_HOST, fx.port, &err), 1);
    text = fx_read_file(p_known, NULL);
    CHECK(text && !strstr(text, "#cl-incarnation") && !strstr(text, entry));
    CHECK_CONTAINS(text, "# kept\n[127.0.0.9]:2222 ssh-ed25519 ");
    free(text);
    /* a first id with no pin yet: recorded; the first contact then pins */
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "host=h1 epoch=7", &err), 0);
    CHECK_INT_EQ(cl_ssh_note_incarnation(p_known, FX_HOST, fx.port, "host=h1 epoch=8", &err), 0);
    text = fx_read_file(p_known, NULL);
    CHECK(text && !strstr(text, "epoch=7"));
    CHECK_CONTAINS(text, "epoch=8");
    free(text);
    CHECK_INT_EQ(cl_ssh_forget_host(p_known, FX_HOST, fx.port, &err), 0);
    text = fx_read_file(p_known, NULL);
    CHECK(text && !strstr(text, "#cl-incarnation"));
    free(text);
    /* back to the key the next tests expect */
    fx_sshd_stop(&fx);
    CHECK_INT_EQ(sshd_start(p_hostkey2), 0);
}

static void test_refusals(void)
{
    cl_ssh_opts_t o = opts(fx.port, p_wrong);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    uint64_t t0;
    cl_ssh_t *s;
    cl_err_t err;
    int lfd;

    s = cl_ssh_connect(&o, &err);
    CHECK(s == NULL);
    cl_ssh_free(s);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(err.code, CL_SSH_E_AUTH_REFUSED);
    CHECK_STR_EQ(err.op, "auth");
    CHECK_STR_EQ(err.host, FX_HOST);
    o.key = "/nonexistent/key";
    CHECK(cl_ssh_connect(&o, &err) == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_SYS);
    CHECK_STR_EQ(err.op, "auth");
    /* nobody on the port: refused at once */
    o = opts(dead_port, p_client);
    t0 = cl_time_now_ms();
    CHECK(cl_ssh_connect(&o, &err) == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_SYS);
    CHECK_INT_EQ(err.sys_errno, ECONNREFUSED);
    CHECK_STR_EQ(err.op, "connect");
    CHECK(cl_time_now_ms() - t0 < 1000);
    /* a port that accepts but never speaks: the handshake bound */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
               listen(lfd, 4) == 0 && getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0)) {
        if (lfd >= 0)
            close(lfd);
        return;
    }
    o = opts(ntohs(sa.sin_port), p_client);
    o.auth_ms = 300;
    t0 = cl_time_now_ms();
    CHECK(cl_ssh_connect(&o, &err) == NULL);
    CHECK(cl_time_now_ms() - t0 >= 300 && cl_time_now_ms() - t0 < 1500);
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK_STR_EQ(err.op, "connect");
    CHECK_CONTAINS(err.msg, "handshake");
    close(lfd);
}

typedef struct waiter {
    cl_ssh_opts_t o;
    uint64_t deadline_ms, took_ms;
    cl_ssh_t *s;
    cl_err_t err;
} waiter_t;

static void *wait_thread(void *ud)
{
    waiter_t *w = ud;
    uint64_t t0 = cl_time_now_ms();

    w->s = cl_ssh_wait_ready(&w->o, t0 + w->deadline_ms, &w->err);
    w->took_ms = cl_time_now_ms() - t0;
    return NULL;
}

/* Waiting for a guest that boots: sshd comes 500 ms late; a port that stays dead times out. */
static void test_wait_ready(void)
{
    const char *echo[] = {"echo", "ready", NULL};
    struct timespec half = {0, 500 * 1000000L};
    waiter_t w = {opts(fx.port, p_client), 5000, 0, NULL, {0}};
    cl_ssh_result_t r;
    pthread_t th;

    fx_sshd_stop(&fx);
    CHECK(!fx_port_open(fx.port));
    if (!CHECK(pthread_create(&th, NULL, wait_thread, &w) == 0))
        return;
    nanosleep(&half, NULL); /* the scenario itself: sshd starts half a second late */
    CHECK_INT_EQ(sshd_start(p_hostkey2), 0);
    pthread_join(th, NULL);
    if (!w.s)
        print_err("wait ready", &w.err);
    if (CHECK(w.s != NULL)) {
        CHECK(w.took_ms >= 450 && w.took_ms < 3000);
        if (CHECK_INT_EQ(run(w.s, echo, NULL, &r), 0))
            CHECK_STR_EQ(r.out, "ready\n");
        cl_ssh_result_free(&r);
    }
    cl_ssh_free(w.s);
    memset(&w, 0, sizeof(w));
    w.o = opts(dead_port, p_client);
    w.deadline_ms = 300;
    wait_thread(&w);
    CHECK(w.s == NULL);
    cl_ssh_free(w.s);
    CHECK_INT_EQ(w.err.domain, CL_ERR_TIMEOUT);
    CHECK_STR_EQ(w.err.host, FX_HOST);
    CHECK_STR_EQ(w.err.op, "wait ready");
    CHECK_CONTAINS(w.err.msg, "Connection refused");
    CHECK(w.took_ms >= 300 && w.took_ms < 1200);
}

/* A watch that gives up after `after` calls (-1: never), counting them. */
typedef struct watch_rec {
    int calls, after;
} watch_rec_t;

static int watch_fn(void *ud, cl_err_t *err)
{
    watch_rec_t *w = ud;

    if (w->after >= 0 && ++w->calls > w->after)
        return cl_err_set(err, CL_ERR_VIRT, 0, "h9", "wait for guest", "the domain stopped");
    if (w->after < 0)
        w->calls++;
    return 0;
}

/*
 * cl_ssh_wait_ready_watch gives up as soon as its watch does: before any attempt, between
 * attempts (a refused port), inside one (a port that accepts and never speaks), with the
 * watch's error; a watch that lets it go on changes nothing, and is not called after the wait.
 */
static void test_wait_watch(void)
{
    const char *echo[] = {"echo", "watched", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    cl_ssh_opts_t o = opts(dead_port, p_client);
    watch_rec_t w = {0, 0};
    cl_ssh_result_t r;
    uint64_t t0;
    cl_ssh_t *s;
    cl_err_t err;
    int lfd;

    /* stopped already: no attempt at all */
    t0 = cl_time_now_ms();
    s = cl_ssh_wait_ready_watch(&o, t0 + 10000, watch_fn, &w, 100, &err);
    CHECK(s == NULL);
    cl_ssh_free(s);
    CHECK(cl_time_now_ms() - t0 < 200);
    CHECK_INT_EQ(w.calls, 1);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, "h9");
    CHECK_STR_EQ(err.msg, "the domain stopped");
    /* refused, refused...: given up between attempts, at the watch's pace */
    w.calls = 0;
    w.after = 3;
    t0 = cl_time_now_ms();
    s = cl_ssh_wait_ready_watch(&o, t0 + 10000, watch_fn, &w, 100, &err);
    CHECK(s == NULL);
    CHECK(cl_time_now_ms() - t0 >= 250 && cl_time_now_ms() - t0 < 1000);
    CHECK_INT_EQ(w.calls, 4);
    CHECK_STR_EQ(err.msg, "the domain stopped");
    /* accepted but silent: the handshake (bound 5 s) is cut short too */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              listen(lfd, 4) == 0 && getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0)) {
        o = opts(ntohs(sa.sin_port), p_client);
        w.calls = 0;
        w.after = 5;
        t0 = cl_time_now_ms();
        s = cl_ssh_wait_ready_watch(&o, t0 + 10000, watch_fn, &w, 100, &err);
        CHECK(s == NULL);
        CHECK(cl_time_now_ms() - t0 >= 400 && cl_time_now_ms() - t0 < 1500);
        CHECK_INT_EQ(w.calls, 6);
        CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
        CHECK_STR_EQ(err.msg, "the domain stopped");
    }
    if (lfd >= 0)
        close(lfd);
    /* a guest that answers: the watch asked first, and never again once the wait is over */
    o = opts(fx.port, p_client);
    w.calls = 0;
    w.after = -1;
    if (!(s = cl_ssh_wait_ready_watch(&o, cl_time_now_ms() + 5000, watch_fn, &w, 100, &err)))
        print_err("wait ready, watched", &err);
    if (CHECK(s != NULL)) {
        int calls = w.calls;
        CHECK(calls >= 1);
        if (CHECK_INT_EQ(run(s, echo, NULL, &r), 0))
            CHECK_STR_EQ(r.out, "watched\n");
        cl_ssh_result_free(&r);
        CHECK_INT_EQ(w.calls, calls);
    }
    cl_ssh_free(s);
}

/* The log has the events, and none of the secrets. */
static void test_log(void)
{
    static const char *const events[] = {"+ssh-pin",    "+ssh-connect",       "+ssh-exec",
                                         "-ssh-exec",   "+ssh-upload",        "-ssh-hostkey",
                                         "+ssh-forget", "-ssh-session-lost",  "+ssh-ready",
                                         "+ssh-unpin",  "-ssh-wait-abandoned"};
    static const char *const secrets[] = {SECRET_STDIN, SECRET_SCRIPT, SECRET_FILE, SECRET_ARG};
    char *text;
    size_t i;

    cl_log_flush();
    text = fx_read_file(p_log, NULL);
    if (!CHECK(text != NULL))
        return;
    for (i = 0; i < sizeof(events) / sizeof(events[0]); i++)
        CHECK_CONTAINS(text, events[i]);
    CHECK_CONTAINS(text, "cmd=echo ");
    for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (!CHECK(strstr(text, secrets[i]) == NULL))
            fprintf(stderr, "test_ssh: the log shows %s\n", secrets[i]);
    free(text);
}

int main(void)
{
    cl_ssh_t *s = NULL;
    FILE *log;

    check_tmpdir(tmp, sizeof(tmp), "test-ssh");
    snprintf(p_log, sizeof(p_log), "%s/cloud.log", tmp);
    log = fopen(p_log, "w");
    cl_log_set_stream(log);
    cl_log_set_level(CL_LOG_DEBUG);
    if (CHECK(log != NULL) && CHECK_INT_EQ(setup(), 0) && (s = test_first_contact())) {
        test_exec(s);
        test_quoting(s);
        test_script(s);
        test_stdin(s);
        test_output_caps(s);
        test_upload(s);
        test_timeout(s);
        test_many(s);
        test_reconnect(s);
        test_changed_key(s);
        test_incarnation();
        test_refusals();
        test_wait_ready();
        test_wait_watch();
        test_log();
    }
    cl_ssh_free(s);
    fx_sshd_fini(&fx);
    if (check_failed) {
        char *text = fx_read_file(fx.log, NULL);
        fprintf(stderr, "test_ssh: sshd's log:\n%s\n", text ? text : "(none)");
        free(text);
    }
    cl_log_set_stream(NULL);
    if (log)
        fclose(log);
    check_rmtree(tmp);
    return check_summary(); /* the fixture's janitor finds nothing left to do */
}
