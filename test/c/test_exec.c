/*
 * test_exec: `cloudctl exec`'s core (cl_exec): target resolution, output as JSON text, the
 * answer, the parallel runner against a real sshd standing for the guests (as in
 * test_guest_sessions: the test's own network namespace, sshd on port 22 of every loopback
 * address, one address per slot), and cloudctl's printing and exit status against a fake
 * daemon that answers with the runner's results.
 */
#include "check.h"
#include "spec_fixture.h"
#include "sshd_fixture.h"

#include <json-c/json.h>
#include <pthread.h>
#include <sys/un.h>

#include "cl_ctl.h"
#include "cl_err.h"
#include "cl_exec.h"
#include "cl_guests.h"
#include "cl_log.h"
#include "cl_monitor.h"
#include "cl_spec.h"
#include "cl_ssh.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define ACCEPTED "Accepted publickey for root"
#define UNREACHABLE_IP "10.255.0.1" /* no route in the test's namespace: refused at once */

static fx_sshd_t fx;
static char tmp[64], p_client[128], p_hostkey[128], state[128];

/* ========================================================================================= */
/* Helpers                                                                                   */
/* ========================================================================================= */

static json_object *slot_obj(const char *name, const char *role, const char *service,
                             const char *ip, int index)
{
    json_object *s = json_object_new_object();

    json_object_object_add(s, "name", json_object_new_string(name));
    json_object_object_add(s, "roles", fx_strs(role, NULL));
    if (service)
        json_object_object_add(s, "services", fx_strs(role, service));
    json_object_object_add(s, "index", json_object_new_int(index));
    json_object_object_add(s, "ip", json_object_new_string(ip));
    json_object_object_add(s, "image", json_object_new_string("/i"));
    return s;
}

static json_object *role_obj(const char *name)
{
    json_object *r = json_object_new_object();

    json_object_object_add(r, "name", json_object_new_string(name));
    json_object_object_add(r, "after", json_object_new_array());
    return r;
}

/*
 * Cloud ex: ex-front-0 (127.0.0.2), ex-front-1 (127.0.0.3), ex-back-0 (127.0.0.4, also the
 * service "store"), ex-back-1 (UNREACHABLE_IP); the role "spare" has no VM.
 */
static cl_spec_t *make_spec(void)
{
    /* the pool's host is not a guest */
    json_object *o = fx_spec_cloud("ex", "cloud", fx_strs("192.0.2.10", NULL), p_client),
                *roles = json_object_new_array(), *slots = json_object_new_array();

    json_object_array_add(roles, role_obj("front"));
    json_object_array_add(roles, role_obj("back"));
    json_object_array_add(roles, role_obj("spare"));
    json_object_object_add(o, "roles", roles);
    json_object_array_add(slots, slot_obj("ex-front-0", "front", NULL, "127.0.0.2", 0));
    json_object_array_add(slots, slot_obj("ex-front-1", "front", NULL, "127.0.0.3", 1));
    json_object_array_add(slots, slot_obj("ex-back-0", "back", "store", "127.0.0.4", 0));
    json_object_array_add(slots, slot_obj("ex-back-1", "back", NULL, UNREACHABLE_IP, 1));
    json_object_object_add(o, "slots", slots);
    return fx_spec_parse(o, "test_exec");
}

/* The selection of slot indices idx (n of them), as the control op prepares it. */
static cl_exec_slot_t *select_slots(const size_t *idx, size_t n)
{
    cl_exec_slot_t *s = calloc(n, sizeof(*s));
    size_t k;

    for (k = 0; s && k < n; k++) {
        s[k].slot = idx[k];
        snprintf(s[k].host, sizeof(s[k].host), "192.0.2.10");
        snprintf(s[k].state, sizeof(s[k].state), "running");
    }
    return s;
}

static cl_exec_opts_t opts(const cl_spec_t *spec, cl_guest_sessions_t *gs, const char *const *argv,
                           unsigned timeout_ms)
{
    cl_exec_opts_t o;

    memset(&o, 0, sizeof(o));
    o.spec = spec;
    o.argv = argv;
    o.deadline = cl_time_now_ms() + timeout_ms;
    o.sessions = gs;
    o.state_dir = state;
    return o;
}

/* sshd on 0.0.0.0:22 in our own network namespace (every 127.x is a guest). */
static int setup_sshd(void)
{
    char pub[160];
    const char *keys[] = {p_hostkey, NULL};

    snprintf(p_hostkey, sizeof(p_hostkey), "%s/hostkey", tmp);
    snprintf(pub, sizeof(pub), "%s/client.pub", tmp);
    if (fx_own_network() < 0) {
        fprintf(stderr, "test_exec: no network namespace (needs root): %s\n", strerror(errno));
        return -1;
    }
    if (fx_sshd_init(&fx, tmp) < 0 || fx_keygen("ed25519", p_client) != 0 ||
        fx_keygen("ed25519", p_hostkey) != 0)
        return -1;
    fx.port = 22;
    fx.listen = "0.0.0.0";
    return fx_copy_file(pub, fx.authorized_keys, 0600) == 0 ? fx_sshd_start(&fx, keys) : -1;
}

/* ========================================================================================= */
/* Without a guest                                                                           */
/* ========================================================================================= */

static void test_resolve(const cl_spec_t *s)
{
    unsigned char sel[8];
    cl_err_t err;
    const char *one[] = {"front"}, *two[] = {"front", "ex-front-0"}, *slot[] = {"ex-back-1"},
               *svc[] = {"store"}, *mix[] = {"back", "ex-front-1"},
               *bad[] = {"front", "nosuch", "ex-front-9"}, *empty[] = {"spare"},
               *ugly[] = {"bad\x1bname"};

    /* none named: every slot */
    CHECK_INT_EQ(cl_exec_resolve(s, NULL, 0, sel, &err), 4);
    CHECK(sel[0] && sel[1] && sel[2] && sel[3]);
    /* a role: each slot holding it */
    CHECK_INT_EQ(cl_exec_resolve(s, one, 1, sel, &err), 2);
    CHECK(sel[0] && sel[1] && !sel[2] && !sel[3]);
    /* a slot named twice (by its role and by its name) runs once */
    CHECK_INT_EQ(cl_exec_resolve(s, two, 2, sel, &err), 2);
    CHECK_INT_EQ(cl_exec_resolve(s, slot, 1, sel, &err), 1);
    CHECK(!sel[0] && !sel[1] && !sel[2] && sel[3]);
    /* a service of a composite role */
    CHECK_INT_EQ(cl_exec_resolve(s, svc, 1, sel, &err), 1);
    CHECK(sel[2] && !sel[3]);
    CHECK_INT_EQ(cl_exec_resolve(s, mix, 2, sel, &err), 3);
    CHECK(!sel[0] && sel[1] && sel[2] && sel[3]);
    /* unknown names: an error naming each, nothing selected */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_exec_resolve(s, bad, 3, sel, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_CONTAINS(err.msg, "no role or slot named nosuch, ex-front-9");
    CHECK_CONTAINS(err.msg, "its roles: front, back, spare");
    CHECK_CONTAINS(err.msg, "nothing run");
    CHECK(!sel[0] && !sel[1] && !sel[2] && !sel[3]);
    /* a declared role without a VM */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_exec_resolve(s, empty, 1, sel, &err), -1);
    CHECK_CONTAINS(err.msg, "no VM of role spare");
    /* what the client sent is shown printable */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_exec_resolve(s, ugly, 1, sel, &err), -1);
    CHECK_CONTAINS(err.msg, "named bad?name");
}

#define R "\xef\xbf\xbd" /* U+FFFD */

static void test_text(void)
{
    size_t len;
    char *t;

    t = cl_exec_text("plain\ttext\r\nline 2\n", 19, &len);
    CHECK_STR_EQ(t, "plain\ttext\r\nline 2\n");
    CHECK_INT_EQ(len, 19);
    free(t);
    /* valid UTF-8 kept: é (2 bytes), € (3), 😀 (4) */
    t = cl_exec_text("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, &len);
    CHECK_STR_EQ(t, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    free(t);
    /* NUL, ESC, DEL, a C1 control, a lone continuation, an overlong '/', a surrogate, a cut
       sequence: each becomes U+FFFD */
    t = cl_exec_text("a\0b\x1b[31mc\x7f\xc2\x9b\x80\xc0\xaf\xed\xa0\x80\xe2\x82", 20, &len);
    CHECK_STR_EQ(t, "a" R "b" R "[31mc" /* DEL, C1 */ R R /* \x80 */ R /* overlong */ R R
                        /* surrogate */ R R R /* cut */ R R);
    CHECK_INT_EQ(len, strlen(t));
    free(t);
    t = cl_exec_text("", 0, &len);
    CHECK_STR_EQ(t, "");
    free(t);
}

/* An answer from made-up results: counts, errors, and outputs cut to fit a budget. */
static void test_answer(const cl_spec_t *s)
{
    size_t idx[] = {0, 1, 2, 3};
    cl_exec_slot_t *sl = select_slots(idx, 4);
    cl_exec_info_t info = {"0badcafe", "192.0.2.10", "192.0.2.11", "uptime", 7, 60000};
    json_object *a, *arr, *o, *v;
    const char *out;
    size_t k;

    if (!CHECK(sl))
        return;
    sl[0].ran = 1;
    sl[0].res.out = strdup("ok\n");
    sl[0].res.out_len = 3;
    sl[1].ran = 1;
    sl[1].res.exit_status = 3;
    sl[1].res.errout = malloc(3000);
    for (k = 0; k < 1500; k++)
        memcpy(sl[1].res.errout + 2 * k, "\xc3\xa9", 2); /* é: cut between characters only */
    sl[1].res.errout_len = 3000;
    sl[2].ran = 1;
    sl[2].res.exit_status = -1;
    snprintf(sl[2].res.exit_signal, sizeof(sl[2].res.exit_signal), "KILL");
    snprintf(sl[3].state, sizeof(sl[3].state), "shutoff");
    cl_err_set(&sl[3].err, CL_ERR_STATE, 0, UNREACHABLE_IP, "exec",
               "not running: its domain is shutoff");

    a = cl_exec_answer(&info, s, sl, 4, 0);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(a, "id")), "0badcafe");
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(a, "origin")), "192.0.2.11");
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(a, "command")), "uptime");
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "epoch")), 7);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "selected")), 4);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "ran")), 3);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "succeeded")), 1);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "failed")), 2);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(a, "not_run")), 1);
    CHECK(!json_object_get_boolean(json_object_object_get(a, "all_succeeded")));
    arr = json_object_object_get(a, "slots");
    o = json_object_array_get_idx(arr, 0);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "slot")), "ex-front-0");
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "stdout")), "ok\n");
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(o, "exit")), 0);
    CHECK(json_object_object_get_ex(o, "error", &v) && v == NULL);
    o = json_object_array_get_idx(arr, 1);
    CHECK_INT_EQ(json_object_get_int(json_object_object_get(o, "exit")), 3);
    CHECK_INT_EQ(json_object_get_string_len(json_object_object_get(o, "stderr")), 3000);
    o = json_object_array_get_idx(arr, 2);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "signal")), "KILL");
    o = json_object_array_get_idx(arr, 3);
    CHECK(!json_object_get_boolean(json_object_object_get(o, "ran")));
    CHECK(json_object_object_get_ex(o, "exit", &v) && v == NULL);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "state")), "shutoff");
    v = json_object_object_get(o, "error");
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(v, "domain")), "state");
    CHECK_CONTAINS(json_object_get_string(json_object_object_get(v, "message")), "shutoff");
    json_object_put(a);

    /* a budget of 800 bytes for 8 streams: the long one is cut to 100, between characters */
    a = cl_exec_answer(&info, s, sl, 4, 800);
    o = json_object_array_get_idx(json_object_object_get(a, "slots"), 1);
    out = json_object_get_string(json_object_object_get(o, "stderr"));
    CHECK_INT_EQ(json_object_get_string_len(json_object_object_get(o, "stderr")), 100);
    CHECK(out && (unsigned char)out[0] == 0xc3 && (unsigned char)out[99] == 0xa9);
    CHECK(json_object_get_boolean(json_object_object_get(o, "stderr_truncated")));
    o = json_object_array_get_idx(json_object_object_get(a, "slots"), 0);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "stdout")), "ok\n");
    CHECK(!json_object_get_boolean(json_object_object_get(o, "stdout_truncated")));
    json_object_put(a);
    cl_exec_slots_free(sl, 4);
}

/* ========================================================================================= */
/* The runner against the guests                                                            */
/* ========================================================================================= */

/* Every guest runs the command: status 0, its output; words reach it unchanged. */
static void test_all_succeed(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"printf", "%s|", "a b", "it's", "$HOME", ";", "rm -rf /x", "`id`", NULL};
    size_t idx[] = {0, 1, 2}, k;
    cl_exec_slot_t *sl = select_slots(idx, 3);
    cl_exec_opts_t o = opts(s, gs, argv, 10000);
    int acc0 = fx_log_count(&fx, ACCEPTED);

    if (!CHECK(sl))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 3), 3);
    for (k = 0; k < 3; k++) {
        CHECK(sl[k].ran);
        CHECK_INT_EQ(sl[k].res.exit_status, 0);
        CHECK_STR_EQ(sl[k].res.out, "a b|it's|$HOME|;|rm -rf /x|`id`|");
        CHECK_INT_EQ(sl[k].err.domain, CL_ERR_NONE);
    }
    /* one session per guest, kept; a second exec opens none */
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 3), acc0 + 3);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 3);
    cl_exec_slots_free(sl, 3);
    sl = select_slots(idx, 3);
    o = opts(s, gs, argv, 10000);
    CHECK_INT_EQ(cl_exec_run(&o, sl, 3), 3);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0 + 3);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 3);
    cl_exec_slots_free(sl, 3);
}

/*
 * One exits 3, one is unreachable, one is not running: each reported as such, the others
 * still run.  The guest tells itself by the address it was reached at ($SSH_CONNECTION).
 */
static void test_failures(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"sh", "-c",
                          "case \"$SSH_CONNECTION\" in *' 127.0.0.3 '*) echo 'front-1 is sick' >&2;"
                          " exit 3;; esac; echo fine",
                          NULL};
    size_t idx[] = {0, 1, 2, 3};
    cl_exec_slot_t *sl = select_slots(idx, 4);
    cl_exec_opts_t o = opts(s, gs, argv, 10000);
    uint64_t t0 = cl_time_now_ms();

    if (!CHECK(sl))
        return;
    cl_err_set(&sl[2].err, CL_ERR_STATE, 0, "127.0.0.4", "exec",
               "not running: its domain is shutoff");
    CHECK_INT_EQ(cl_exec_run(&o, sl, 4), 2);
    CHECK(cl_time_now_ms() - t0 < 5000);
    CHECK(sl[0].ran);
    CHECK_INT_EQ(sl[0].res.exit_status, 0);
    CHECK_STR_EQ(sl[0].res.out, "fine\n");
    CHECK(sl[1].ran);
    CHECK_INT_EQ(sl[1].res.exit_status, 3);
    CHECK_STR_EQ(sl[1].res.errout, "front-1 is sick\n");
    /* not running: left as it was, nothing run */
    CHECK(!sl[2].ran);
    CHECK_INT_EQ(sl[2].err.domain, CL_ERR_STATE);
    CHECK(sl[2].res.out == NULL);
    /* unreachable: the guest's error, naming its address */
    CHECK(!sl[3].ran);
    CHECK_INT_EQ(sl[3].err.domain, CL_ERR_SSH);
    CHECK_STR_EQ(sl[3].err.host, UNREACHABLE_IP);
    CHECK_STR_EQ(sl[3].err.op, "connect");
    cl_exec_slots_free(sl, 4);
}

/* Output beyond the cap is dropped and marked, stdout and stderr each. */
static void test_truncation(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"sh", "-c",
                          "head -c 200000 /dev/zero | tr '\\0' o; head -c 70000 /dev/zero | tr "
                          "'\\0' e >&2; head -c 100 /dev/zero | tr '\\0' e >&2",
                          NULL};
    size_t idx[] = {0};
    cl_exec_slot_t *sl = select_slots(idx, 1);
    cl_exec_opts_t o = opts(s, gs, argv, 10000);

    if (!CHECK(sl))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 1), 1);
    CHECK_INT_EQ(sl[0].res.exit_status, 0);
    CHECK_INT_EQ(sl[0].res.out_len, CL_EXEC_OUTPUT_MAX);
    CHECK(sl[0].res.out_truncated);
    CHECK(sl[0].res.out[0] == 'o' && sl[0].res.out[CL_EXEC_OUTPUT_MAX - 1] == 'o');
    CHECK_INT_EQ(sl[0].res.errout_len, CL_EXEC_OUTPUT_MAX);
    CHECK(sl[0].res.errout_truncated);
    cl_exec_slots_free(sl, 1);
    /* a smaller cap */
    sl = select_slots(idx, 1);
    o = opts(s, gs, argv, 10000);
    o.max_output = 10;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 1), 1);
    CHECK_STR_EQ(sl[0].res.out, "oooooooooo");
    CHECK(sl[0].res.out_truncated);
    cl_exec_slots_free(sl, 1);
}

/* The commands run at once: three sleeps of 1 s end well before their sum; one at a time not. */
static void test_parallel(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"sleep", "1", NULL};
    size_t idx[] = {0, 1, 2}, k;
    cl_exec_slot_t *sl = select_slots(idx, 3);
    cl_exec_opts_t o = opts(s, gs, argv, 10000);
    uint64_t t0 = cl_time_now_ms(), at_once, one_by_one;

    if (!CHECK(sl))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 3), 3);
    at_once = cl_time_now_ms() - t0;
    for (k = 0; k < 3; k++)
        CHECK(sl[k].ms >= 1000);
    cl_exec_slots_free(sl, 3);
    sl = select_slots(idx, 3);
    o = opts(s, gs, argv, 10000);
    o.parallel = 1;
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(cl_exec_run(&o, sl, 3), 3);
    one_by_one = cl_time_now_ms() - t0;
    cl_exec_slots_free(sl, 3);
    if (!CHECK(at_once < 2500) || !CHECK(one_by_one >= 3000))
        fprintf(stderr, "test_exec: 3 x sleep 1: %llu ms at once, %llu ms one by one\n",
                (unsigned long long)at_once, (unsigned long long)one_by_one);
}

/* The exec's bound: a command still running is abandoned (its output so far kept). */
static void test_deadline(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"sh", "-c", "echo before; sleep 5; echo after", NULL};
    size_t idx[] = {0, 1};
    cl_exec_slot_t *sl = select_slots(idx, 2);
    cl_exec_opts_t o = opts(s, gs, argv, 800);
    uint64_t t0 = cl_time_now_ms();

    if (!CHECK(sl))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 2), 0);
    CHECK(cl_time_now_ms() - t0 < 3000);
    CHECK(!sl[0].ran);
    CHECK_INT_EQ(sl[0].err.domain, CL_ERR_TIMEOUT);
    CHECK_CONTAINS(sl[0].err.msg, "may still run");
    CHECK_STR_EQ(sl[0].res.out, "before\n");
    cl_exec_slots_free(sl, 2);
    /* a slot whose turn comes after the bound is not started */
    sl = select_slots(idx, 2);
    o = opts(s, gs, argv, 800);
    o.parallel = 1;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 2), 0);
    CHECK_INT_EQ(sl[1].err.domain, CL_ERR_TIMEOUT);
    CHECK_CONTAINS(sl[1].err.msg, "not started");
    cl_exec_slots_free(sl, 2);
    /* the sessions still work */
    sl = select_slots(idx, 2);
    argv[2] = "echo again";
    o = opts(s, gs, argv, 5000);
    CHECK_INT_EQ(cl_exec_run(&o, sl, 2), 2);
    CHECK_STR_EQ(sl[0].res.out, "again\n");
    cl_exec_slots_free(sl, 2);
}

/* A session the monitor is using: the exec opens another, and one is kept afterwards. */
static void test_busy_session(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    const char *argv[] = {"echo", "busy", NULL};
    size_t idx[] = {0};
    cl_exec_slot_t *sl = select_slots(idx, 1);
    cl_exec_opts_t o = opts(s, gs, argv, 5000);
    cl_guest_session_t *held;
    cl_err_t err;
    int acc0 = fx_log_count(&fx, ACCEPTED), n0 = (int)cl_guest_sessions_count(gs);

    cl_err_clear(&err);
    held = cl_guest_sessions_take(gs, state, s, 0, &err);
    if (!CHECK(sl) || !CHECK(held))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 1), 1);
    CHECK_STR_EQ(sl[0].res.out, "busy\n");
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 1), acc0 + 1);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), n0 + 1);
    cl_guest_sessions_give(gs, held, NULL);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), n0);
    cl_exec_slots_free(sl, 1);
    /* dropped while in use (its domain was recreated): closed when given back, not kept */
    held = cl_guest_sessions_take(gs, state, s, 1, &err);
    if (!CHECK(held))
        return;
    cl_guest_sessions_drop(gs, "ex", "ex-front-1");
    CHECK_INT_EQ(cl_guest_sessions_count(gs), n0);
    cl_guest_sessions_give(gs, held, NULL);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), n0 - 1);
}

/* A connection lost in the middle of a command: reported, and the command never sent again. */
static void test_lost(const cl_spec_t *s, cl_guest_sessions_t *gs)
{
    char script[1024], runs[160], *text;
    const char *argv[] = {"sh", "-c", script, "sh", runs, NULL};
    size_t idx[] = {0};
    cl_exec_slot_t *sl = select_slots(idx, 1);
    cl_exec_opts_t o;

    snprintf(runs, sizeof(runs), "%s/runs", tmp);
    snprintf(script, sizeof(script),
             "echo run >> \"$1\"\n"
             "p=$$\n"
             "while [ \"$p\" -gt 1 ] && [ \"$p\" != %d ]; do\n"
             "  pp=$(sed 's/.*) //' \"/proc/$p/stat\" | cut -d' ' -f2)\n"
             "  case \"$(cat \"/proc/$p/comm\")\" in sshd*) kill -9 \"$p\" ;; esac\n"
             "  p=$pp\n"
             "done\n"
             "sleep 3\n",
             (int)fx.pid);
    o = opts(s, gs, argv, 10000);
    if (!CHECK(sl))
        return;
    CHECK_INT_EQ(cl_exec_run(&o, sl, 1), 0);
    CHECK_INT_EQ(sl[0].err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(sl[0].err.code, CL_SSH_E_LOST);
    text = fx_read_file(runs, NULL);
    CHECK_STR_EQ(text, "run\n");
    free(text);
    cl_exec_slots_free(sl, 1);
    /* the next exec reaches it again over a new session */
    sl = select_slots(idx, 1);
    argv[2] = "echo back";
    o = opts(s, gs, argv, 5000);
    CHECK_INT_EQ(cl_exec_run(&o, sl, 1), 1);
    CHECK_STR_EQ(sl[0].res.out, "back\n");
    cl_exec_slots_free(sl, 1);
}

/* ========================================================================================= */
/* cloudctl exec against a fake daemon                                                       */
/* ========================================================================================= */

typedef struct fake {
    int lfd;
    char *answer; /* the final line */
    json_object *request;
} fake_t;

static void *serve_one(void *ud)
{
    fake_t *f = ud;
    struct pollfd pfd = {f->lfd, POLLIN, 0};
    cl_ctl_reader_t rd;
    cl_err_t err;
    int fd = -1;

    if (poll(&pfd, 1, 5000) == 1)
        fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    cl_ctl_reader_init(&rd, fd);
    cl_err_clear(&err);
    if (cl_ctl_read(&rd, 2000, &f->request, &err) == 1 && f->answer &&
        write(fd, f->answer, strlen(f->answer)) < 0)
        perror("test_exec: write");
    cl_ctl_reader_free(&rd);
    close(fd);
    return NULL;
}

static char *cli_err; /* what the last cli() wrote on stderr */

/*
 * cl_exec_cli with args, answered by f (NULL: no daemon), its stdout into out (malloc'ed) and
 * its stderr into cli_err.
 */
static int cli(const char *sock, fake_t *f, char **out, int argc, const char **args)
{
    char path[160], epath[160];
    pthread_t th;
    int saved, esaved, fd, rc;

    snprintf(path, sizeof(path), "%s/cli.out", tmp);
    snprintf(epath, sizeof(epath), "%s/cli.err", tmp);
    if (f)
        pthread_create(&th, NULL, serve_one, f);
    fflush(stdout);
    fflush(stderr);
    saved = dup(1);
    esaved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    close(fd);
    fd = open(epath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    rc = cl_exec_cli(sock, 0, argc, (char **)args);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(esaved, 2);
    close(saved);
    close(esaved);
    if (f)
        pthread_join(th, NULL);
    *out = fx_read_file(path, NULL);
    free(cli_err);
    cli_err = fx_read_file(epath, NULL);
    return rc;
}

static void test_cli(const cl_spec_t *s)
{
    char sock[100], *out = NULL;
    struct sockaddr_un sa;
    size_t idx[] = {0, 1, 3};
    cl_exec_slot_t *sl = select_slots(idx, 3);
    cl_exec_info_t info = {"0badcafe", "192.0.2.10", "192.0.2.11", "sh", 4, 2500};
    json_object *a, *v;
    fake_t f;
    const char *run[] = {"ex", "front", "ex-back-1", "--timeout", "2.5", "--", "sh", "-c", "x y"};
    const char *ok1[] = {"ex", "--", "true"};

    memset(&f, 0, sizeof(f));
    snprintf(sock, sizeof(sock), "%s/cloudd.sock", tmp);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!CHECK(sl) || !CHECK(f.lfd >= 0) ||
        !CHECK(bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) ||
        !CHECK(listen(f.lfd, 4) == 0))
        goto cleanup;
    /* front-0 exits 0, front-1 exits 2 (stderr, truncated), back-1 is unreachable */
    sl[0].ran = 1;
    sl[0].res.out = strdup("line one\nline two");
    sl[0].res.out_len = strlen(sl[0].res.out);
    sl[1].ran = 1;
    sl[1].res.exit_status = 2;
    sl[1].res.errout = strdup("oops\n");
    sl[1].res.errout_len = 5;
    sl[1].res.errout_truncated = 1;
    sl[1].ms = 42;
    cl_err_set(&sl[2].err, CL_ERR_SSH, 0, UNREACHABLE_IP, "connect", "connection refused");
    a = cl_exec_answer(&info, s, sl, 3, 0);
    json_object_object_add(a, "ok", json_object_new_boolean(1));
    if (asprintf(&f.answer, "%s\n", json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN)) < 0)
        f.answer = NULL;
    json_object_put(a);

    CHECK_INT_EQ(cli(sock, &f, &out, 9, run), 1);
    /* the request */
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(f.request, "op")), "exec");
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(f.request, "name")), "ex");
    CHECK_STR_EQ(json_object_to_json_string_ext(json_object_object_get(f.request, "targets"),
                                                JSON_C_TO_STRING_PLAIN),
                 "[\"front\",\"ex-back-1\"]");
    CHECK_STR_EQ(json_object_to_json_string_ext(json_object_object_get(f.request, "argv"),
                                                JSON_C_TO_STRING_PLAIN),
                 "[\"sh\",\"-c\",\"x y\"]");
    CHECK(json_object_object_get_ex(f.request, "timeout_ms", &v) && json_object_get_int(v) == 2500);
    /* the output: grouped by slot, indented, a summary */
    CHECK_CONTAINS(out, "==> ex-front-0 [front] 127.0.0.2 on 192.0.2.10: exit 0 (0 ms)\n"
                        "    line one\n    line two\n");
    CHECK_CONTAINS(out, "==> ex-front-1 [front] 127.0.0.3 on 192.0.2.10: exit 2 (42 ms)\n"
                        "  stderr:\n    oops\n    [... stderr truncated]\n");
    CHECK_CONTAINS(out, "==> ex-back-1 [back] " UNREACHABLE_IP
                        " on 192.0.2.10: error: connection refused (0 ms)\n");
    CHECK_CONTAINS(out, "exec 0badcafe on ex (epoch 4, leader 192.0.2.10): 3 slot(s): 1 exited 0, "
                        "1 failed, 1 not run\n");
    free(out);
    json_object_put(f.request);
    f.request = NULL;
    free(f.answer);

    /* every slot exited 0: status 0 */
    sl[1].res.exit_status = 0;
    cl_err_clear(&sl[2].err);
    sl[2].ran = 1;
    a = cl_exec_answer(&info, s, sl, 3, 0);
    json_object_object_add(a, "ok", json_object_new_boolean(1));
    if (asprintf(&f.answer, "%s\n", json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN)) < 0)
        f.answer = NULL;
    json_object_put(a);
    CHECK_INT_EQ(cli(sock, &f, &out, 3, ok1), 0);
    CHECK(json_object_object_get_ex(f.request, "targets", &v) && json_object_array_length(v) == 0);
    CHECK(json_object_object_get_ex(f.request, "timeout_ms", &v) &&
          json_object_get_int(v) == CL_EXEC_TIMEOUT_MS);
    CHECK_CONTAINS(out, "3 exited 0, 0 failed, 0 not run");
    free(out);
    json_object_put(f.request);
    f.request = NULL;
    free(f.answer);

    /* the daemon's error: status 1 */
    f.answer = strdup("{\"ok\": false, \"error\": {\"domain\": \"state\", \"code\": 0, \"host\": "
                      "\"\", \"operation\": \"exec\", \"message\": \"the test driver has no "
                      "guests\"}}\n");
    CHECK_INT_EQ(cli(sock, &f, &out, 3, ok1), 1);
    CHECK_STR_EQ(out, "");
    CHECK_CONTAINS(cli_err, "cloudctl: exec: the test driver has no guests");
    free(out);
    json_object_put(f.request);
    f.request = NULL;

    /* usage errors: status 2, no request sent */
    {
        const char *none[] = {"--", "true"}, *nocmd[] = {"ex", "front"}, *empty[] = {"ex", "--"},
                   *badt[] = {"ex", "--timeout", "0", "--", "true"},
                   *badt2[] = {"ex", "--timeout=x", "--", "true"},
                   *unk[] = {"ex", "-x", "--", "true"};
        CHECK_INT_EQ(cli(sock, NULL, &out, 2, none), 2);
        CHECK_CONTAINS(cli_err, "no cloud name\nusage: cloudctl exec NAME");
        free(out);
        CHECK_INT_EQ(cli(sock, NULL, &out, 2, nocmd), 2);
        CHECK_CONTAINS(cli_err, "no command: put it after --");
        free(out);
        CHECK_INT_EQ(cli(sock, NULL, &out, 2, empty), 2);
        CHECK_CONTAINS(cli_err, "no command");
        free(out);
        CHECK_INT_EQ(cli(sock, NULL, &out, 5, badt), 2);
        CHECK_CONTAINS(cli_err, "--timeout: '0' is not a number of seconds in 0.1..3600");
        free(out);
        CHECK_INT_EQ(cli(sock, NULL, &out, 4, badt2), 2);
        CHECK_CONTAINS(cli_err, "--timeout: 'x'");
        free(out);
        CHECK_INT_EQ(cli(sock, NULL, &out, 4, unk), 2);
        CHECK_CONTAINS(cli_err, "unknown option '-x'");
        free(out);
    }
cleanup:
    free(f.answer);
    if (f.lfd >= 0)
        close(f.lfd);
    cl_exec_slots_free(sl, 3);
}

/* ========================================================================================= */
/* The control op on a leader                                                                */
/* ========================================================================================= */

/* A JSON array's events of type, in text form "slot|text" joined by newlines (malloc'ed). */
static char *events_of(json_object *evs, const char *type)
{
    char *out = strdup(""), *n;
    size_t i;

    for (i = 0; out && i < json_object_array_length(evs); i++) {
        json_object *e = json_object_array_get_idx(evs, i);
        if (strcmp(json_object_get_string(json_object_object_get(e, "type")), type) != 0)
            continue;
        if (asprintf(&n, "%s%s|%s|%s|%d\n", out,
                     json_object_get_string(json_object_object_get(e, "slot")),
                     json_object_get_string(json_object_object_get(e, "host")),
                     json_object_get_string(json_object_object_get(e, "text")),
                     json_object_get_int(json_object_object_get(e, "epoch"))) < 0)
            n = NULL;
        free(out);
        out = n;
    }
    return out;
}

/*
 * cl_exec_serve on the only pool host of a cloud whose hypervisor does not answer: its slots
 * have no domain, so each is reported not run; the request and each slot are audited in the
 * cloud's history with the leader's epoch, on disk at once.  Then the refusals.
 */
static void test_serve(void)
{
    const char *dir_name = "serve";
    char dir[128], path[200], *text;
    json_object *doc, *sj, *req, *res, *evs, *o;
    cl_engine_opts_t eo;
    cl_monitor_opts_t mo;
    cl_engine_t *eng = NULL;
    cl_monitor_t *mon = NULL;
    cl_exec_ctx_t x;
    cl_err_t err;
    cl_spec_t *spec = make_spec();

    snprintf(dir, sizeof(dir), "%s/%s", tmp, dir_name);
    cl_err_clear(&err);
    if (!CHECK(spec) || !CHECK_INT_EQ(cl_state_init(dir, &err), 0))
        goto cleanup;
    /* the stored spec: this host (127.0.0.1) is its pool; nothing answers on the hypervisor */
    sj = json_tokener_parse(json_object_to_json_string(spec->json));
    json_object_object_add(sj, "pool", fx_strs("127.0.0.1", NULL));
    json_object_object_add(sj, "hypervisor",
                           json_object_new_string("qemu+tcp://127.0.0.1:1/system"));
    doc = json_object_new_object();
    json_object_object_add(doc, "spec", sj);
    json_object_object_add(doc, "epoch", json_object_new_int(3));
    CHECK_INT_EQ(cl_state_save(dir, "ex", doc, &err), 0);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = dir;
    memset(&mo, 0, sizeof(mo));
    mo.no_sweep = 1;
    if (!CHECK_INT_EQ(cl_engine_new(&eo, &eng, &err), 0))
        goto cleanup_doc;
    mo.engine = eng;
    if (!CHECK(mon = cl_monitor_new(&mo, &err)))
        goto cleanup_doc;
    x.engine = eng;
    x.monitor = mon;
    x.peers = NULL;

    req = json_tokener_parse("{\"v\": 1, \"op\": \"exec\", \"name\": \"ex\", \"targets\": "
                             "[\"front\"], \"argv\": [\"uname\", \"-a\"], \"timeout_ms\": 5000}");
    cl_err_clear(&err);
    res = cl_exec_serve(&x, req, 0, &err);
    if (CHECK(res)) {
        CHECK_INT_EQ(json_object_get_int(json_object_object_get(res, "selected")), 2);
        CHECK_INT_EQ(json_object_get_int(json_object_object_get(res, "not_run")), 2);
        CHECK_INT_EQ(json_object_get_int(json_object_object_get(res, "epoch")), 3);
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(res, "leader")), "127.0.0.1");
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(res, "command")), "uname");
        CHECK(!json_object_get_boolean(json_object_object_get(res, "all_succeeded")));
        o = json_object_array_get_idx(json_object_object_get(res, "slots"), 1);
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "slot")), "ex-front-1");
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(o, "state")), "missing");
        CHECK_CONTAINS(json_object_to_json_string(json_object_object_get(o, "error")),
                       "not running: it has no domain");
    } else {
        fprintf(stderr, "test_exec: serve: %s\n", err.msg);
    }
    json_object_put(res);
    evs = cl_monitor_events(mon, "ex", 0, 0);
    text = events_of(evs, "+exec");
    CHECK_CONTAINS(text, "cmd=uname args=1 targets=front slots=2 timeout_ms=5000|3\n");
    free(text);
    text = events_of(evs, "-exec-slot");
    CHECK_CONTAINS(text, "ex-front-0|(null)|id=");
    CHECK_CONTAINS(text, " not run: not running: it has no domain|3\n");
    CHECK_CONTAINS(text, "ex-front-1|");
    free(text);
    json_object_put(evs);
    snprintf(path, sizeof(path), "%s/events/ex.json", dir);
    text = fx_read_file(path, NULL);
    CHECK_CONTAINS(text, "cmd=uname args=1");
    CHECK(!strstr(text ? text : "", "-a"));
    free(text);
    json_object_put(req);

    /* handed over by a member: its origin is recorded */
    req = json_tokener_parse("{\"v\": 1, \"op\": \"exec\", \"name\": \"ex\", \"targets\": "
                             "[\"ex-back-0\"], \"argv\": [\"true\"], \"origin\": \"192.0.2.77\"}");
    res = cl_exec_serve(&x, req, 1, &err);
    CHECK(res);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(res, "origin")), "192.0.2.77");
    json_object_put(res);
    json_object_put(req);
    evs = cl_monitor_events(mon, "ex", 0, 0);
    text = events_of(evs, "+exec");
    CHECK_CONTAINS(text, "|192.0.2.77|id=");
    CHECK_CONTAINS(text,
                   "by=192.0.2.77 cmd=true args=0 targets=ex-back-0 slots=1 timeout_ms=60000");
    free(text);
    json_object_put(evs);

    /* refused: an unknown target (audited, nothing run); no such cloud (not audited) */
    req = json_tokener_parse("{\"v\": 1, \"op\": \"exec\", \"name\": \"ex\", \"targets\": "
                             "[\"nosuch\"], \"argv\": [\"true\"]}");
    cl_err_clear(&err);
    CHECK(cl_exec_serve(&x, req, 0, &err) == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_CONTAINS(err.msg, "no role or slot named nosuch");
    json_object_put(req);
    evs = cl_monitor_events(mon, "ex", 0, 0);
    text = events_of(evs, "-exec");
    CHECK_CONTAINS(text, "targets=nosuch refused: cloud ex has no role or slot named nosuch");
    free(text);
    json_object_put(evs);
    req = json_tokener_parse(
        "{\"v\": 1, \"op\": \"exec\", \"name\": \"nope\", \"argv\": [\"true\"]}");
    cl_err_clear(&err);
    CHECK(cl_exec_serve(&x, req, 0, &err) == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_STATE);
    CHECK_CONTAINS(err.msg, "cloud nope is not known here");
    json_object_put(req);

cleanup_doc:
    json_object_put(doc);
cleanup:
    cl_monitor_free(mon);
    cl_engine_free(eng);
    cl_spec_free(spec);
}

int main(void)
{
    cl_guest_sessions_t *gs = NULL;
    cl_spec_t *s = NULL;

    cl_log_set_stream(getenv("TEST_DEBUG") ? stderr : NULL);
    check_tmpdir(tmp, sizeof(tmp), "test-exec");
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(p_client, sizeof(p_client), "%s/client", tmp);
    if (!CHECK(s = make_spec()))
        goto cleanup;
    test_resolve(s);
    test_text();
    test_answer(s);
    test_cli(s);
    if (!CHECK_INT_EQ(setup_sshd(), 0) || !CHECK(gs = cl_guest_sessions_new()))
        goto cleanup;
    test_all_succeed(s, gs);
    test_failures(s, gs);
    test_truncation(s, gs);
    test_parallel(s, gs);
    test_deadline(s, gs);
    test_busy_session(s, gs);
    test_lost(s, gs);
    test_serve();
cleanup:
    cl_guest_sessions_free(gs);
    cl_spec_free(s);
    fx_sshd_fini(&fx);
    check_rmtree(tmp);
    free(cli_err);
    return check_summary();
}
