/*
 * test_guest_sessions: the monitor's cached guest sessions (cl_guests_check_slot/restart_slot)
 * against a real sshd standing for a guest.  Production connects to port 22 and runs steps in
 * CL_ROLE_DIR, so the test runs in its own network namespace (sshd on port 22 of every loopback
 * address: one guest address per slot) and sshd sees the test's directory at CL_ROLE_DIR.
 * sshd's log tells how many connections were authenticated and how many we closed.
 */
#include "check.h"
#include "spec_fixture.h"
#include "sshd_fixture.h"

#include <json-c/json.h>

#include "cl_err.h"
#include "cl_guests.h"
#include "cl_log.h"
#include "cl_role.h"
#include "cl_spec.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define ACCEPTED "Accepted publickey for root"
#define CLOSED "Received disconnect from" /* our polite close (cl_ssh_free) */

static fx_sshd_t fx;
static char tmp[64], p_client[128], p_hostkey[128], guest[128], state[128];

/* ========================================================================================= */
/* Helpers                                                                                   */
/* ========================================================================================= */

/* A role: its check runs $CLOUD_DIR/check-<role>.sh (the test rewrites it); start logs. */
static json_object *role_obj(const char *name, int steps)
{
    json_object *r = json_object_new_object(), *st = json_object_new_object();

    json_object_object_add(r, "name", json_object_new_string(name));
    json_object_object_add(r, "after", json_object_new_array());
    if (steps) {
        json_object_object_add(st, "check",
                               json_object_new_string("sh \"$CLOUD_DIR/check-$CLOUD_ROLE.sh\""));
        json_object_object_add(
            st, "start",
            json_object_new_string(
                "echo \"start $CLOUD_ROLE $CLOUD_SLOT\" >> \"$CLOUD_DIR/started\"\n"
                "if [ -f \"$CLOUD_DIR/nostart-$CLOUD_ROLE\" ]; then\n"
                "  echo \"some detail\" >&2\n"
                "  echo \"cannot start $CLOUD_ROLE\" >&2; exit 7\n"
                "fi"));
    }
    json_object_object_add(r, "steps", st);
    return r;
}

static json_object *slot_obj(const char *name, const char *role2, const char *ip, int index)
{
    json_object *s = json_object_new_object(), *roles = json_object_new_array();

    json_object_array_add(roles, json_object_new_string(role2 ? "store" : "idle"));
    if (role2)
        json_object_array_add(roles, json_object_new_string(role2));
    json_object_object_add(s, "name", json_object_new_string(name));
    json_object_object_add(s, "roles", roles);
    json_object_object_add(s, "index", json_object_new_int(index));
    json_object_object_add(s, "ip", json_object_new_string(ip));
    json_object_object_add(s, "image", json_object_new_string("/i"));
    return s;
}

/*
 * Cloud gs: slots gs-store-0 (at ip0) and gs-store-1 (127.0.0.3) with the roles store and front
 * (both with check and start steps), gs-idle-0 with a role without steps.  Health: 5 s, no
 * retries.
 */
static cl_spec_t *spec_at(const char *ip0)
{
    /* the pool's host is not a guest */
    json_object *o = fx_spec_cloud("gs", "web", fx_strs("192.0.2.10", NULL), p_client),
                *roles = json_object_new_array(), *slots = json_object_new_array();
    cl_spec_t *s;
    size_t k;

    json_object_array_add(roles, role_obj("store", 1));
    json_object_array_add(roles, role_obj("front", 1));
    json_object_array_add(roles, role_obj("idle", 0));
    json_object_object_add(o, "roles", roles);
    json_object_array_add(slots, slot_obj("gs-store-0", "front", ip0, 0));
    json_object_array_add(slots, slot_obj("gs-store-1", "front", "127.0.0.3", 1));
    json_object_array_add(slots, slot_obj("gs-idle-0", NULL, "127.0.0.4", 0));
    json_object_object_add(o, "slots", slots);
    s = fx_spec_parse(o, "test_guest_sessions");
    for (k = 0; s && k < s->nroles; k++) {
        s->roles[k].health.timeout_ms = 5000;
        s->roles[k].health.retries = 0;
    }
    return s;
}

static void health(cl_spec_t *s, const char *role, unsigned timeout_ms, unsigned retries)
{
    size_t k;

    for (k = 0; k < s->nroles; k++)
        if (strcmp(s->roles[k].name, role) == 0) {
            s->roles[k].health.timeout_ms = timeout_ms;
            s->roles[k].health.retries = retries;
        }
}

static void guest_put(const char *name, const char *text)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", guest, name);
    if (fx_write_file(path, text, 0644) < 0)
        fprintf(stderr, "test_guest_sessions: cannot write %s\n", path);
}

static char *guest_get(const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", guest, name);
    return fx_read_file(path, NULL);
}

static void guest_rm(const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", guest, name);
    unlink(path);
}

static void print_err(const char *what, const cl_err_t *err)
{
    char buf[1200];

    fprintf(stderr, "test_guest_sessions: %s: %s: %s\n", what, cl_err_domain_name(err->domain),
            cl_err_format(err, buf, sizeof(buf)));
}

/* cl_guests_check_slot with its error printed when rc is not the expected one. */
static int check(cl_guest_sessions_t *gs, const cl_spec_t *s, size_t i, int want, cl_err_t *err)
{
    int rc;

    cl_err_clear(err);
    rc = cl_guests_check_slot(gs, state, s, i, err);
    if (rc != want)
        print_err("check_slot", err);
    return rc;
}

/* sshd on 127.0.0.1:22 in our namespace, the test's guest directory at CL_ROLE_DIR. */
static int setup_sshd(void)
{
    char pub[160];
    const char *keys[] = {p_hostkey, NULL};

    snprintf(p_client, sizeof(p_client), "%s/client", tmp);
    snprintf(p_hostkey, sizeof(p_hostkey), "%s/hostkey", tmp);
    snprintf(guest, sizeof(guest), "%s/guest", tmp);
    snprintf(pub, sizeof(pub), "%s/client.pub", tmp);
    if (fx_own_network() < 0) {
        fprintf(stderr, "test_guest_sessions: no network namespace (needs root): %s\n",
                strerror(errno));
        return -1;
    }
    if (fx_sshd_init(&fx, tmp) < 0 || mkdir(guest, 0755) < 0 ||
        fx_keygen("ed25519", p_client) != 0 || fx_keygen("ed25519", p_hostkey) != 0)
        return -1;
    if (fx_sshd_bind(&fx, guest, CL_ROLE_DIR) < 0) {
        fprintf(stderr, "test_guest_sessions: no private mount namespace for sshd (needs root)\n");
        return -1;
    }
    fx.port = 22;
    fx.listen = "0.0.0.0"; /* every loopback address, of our own namespace only */
    return fx_copy_file(pub, fx.authorized_keys, 0600) == 0 ? fx_sshd_start(&fx, keys) : -1;
}

/* The facts a setup would have left in the guest (the steps source them). */
static void put_facts(const cl_spec_t *s)
{
    cl_err_t err;
    char *facts = cl_role_facts(s, 0, &err);

    if (CHECK(facts))
        guest_put("facts.sh", facts);
    free(facts);
}

/* ========================================================================================= */
/* Without a guest                                                                           */
/* ========================================================================================= */

static void test_no_guest(void)
{
    cl_guest_sessions_t *gs = cl_guest_sessions_new();
    cl_spec_t *s = spec_at("127.0.0.9");
    cl_err_t err;

    if (!CHECK(gs) || !CHECK(s))
        goto cleanup;
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(NULL), 0);
    cl_guest_sessions_drop(gs, "gs", "gs-store-0"); /* nothing to drop */
    cl_guest_sessions_drop(NULL, "gs", "gs-store-0");
    cl_guest_sessions_free(NULL);
    /* a slot without check (or start) steps: nothing to reach */
    CHECK_INT_EQ(check(gs, s, 2, 0, &err), 0);
    CHECK_INT_EQ(cl_guests_restart_slot(gs, state, s, 2, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 0);
    /* no such slot */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_guests_check_slot(gs, state, s, 3, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    /* steps to run but no key */
    s->ssh_key = NULL;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_guests_check_slot(gs, state, s, 0, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_CONTAINS(err.msg, "ssh_key");
    CHECK_INT_EQ(cl_guests_restart_slot(gs, state, s, 0, &err), -1);
cleanup:
    cl_spec_free(s);
    cl_guest_sessions_free(gs);
}

/* ========================================================================================= */
/* Against the guest                                                                         */
/* ========================================================================================= */

/* Passing checks over one session; failures, timeouts and retries over the same one. */
static void test_checks(cl_guest_sessions_t *gs, cl_spec_t *s)
{
    char known[256], *text, *runs;
    uint64_t t0;
    cl_err_t err;
    int acc0 = fx_log_count(&fx, ACCEPTED);

    guest_put("check-store.sh", "echo store fine\n");
    guest_put("check-front.sh", "echo front fine\n");
    /* the first check opens the session, pinning the host key where configure pins it */
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 1), acc0 + 1);
    snprintf(known, sizeof(known), "%s/known_hosts/gs", state);
    text = fx_read_file(known, NULL);
    CHECK_CONTAINS(text, FX_HOST " ssh-ed25519 ");
    free(text);
    /* the second one reuses it: no new connection, no new authentication */
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0 + 1);

    /* a failing check: 1, the role, its status and its last line; the session stays */
    guest_put("check-front.sh", "echo on stdout\necho 'not the last line' >&2\n"
                                "echo 'front is down: code 3' >&2\nexit 3\n");
    CHECK_INT_EQ(check(gs, s, 0, 1, &err), 1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(err.code, 3);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_STR_EQ(err.op, "check front");
    CHECK_CONTAINS(err.msg, "role front");
    CHECK_CONTAINS(err.msg, "exit 3");
    CHECK_CONTAINS(err.msg, "front is down: code 3");
    CHECK(!strstr(err.msg, "not the last line"));
    CHECK(!strstr(err.msg, "role store"));
    CHECK(!strstr(err.msg, "CLOUD_DIR")); /* the step's text is not shown */
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);

    /* a check outliving its role's timeout: a failed check (1), not an unreachable guest */
    guest_put("check-front.sh", "sleep 5\n");
    health(s, "front", 300, 0);
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(check(gs, s, 0, 1, &err), 1);
    CHECK(cl_time_now_ms() - t0 < 3000);
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK_CONTAINS(err.msg, "role front");
    CHECK_CONTAINS(err.msg, "timed out after 300 ms");
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0 + 1);

    /* retries: fails the first time, passes the second (a marker in the guest) */
    guest_put("check-front.sh", "m=\"$CLOUD_DIR/flaky\"\n"
                                "if [ -f \"$m\" ]; then rm -f \"$m\"; exit 0; fi\n"
                                ": > \"$m\"\necho 'not yet' >&2\nexit 4\n");
    health(s, "front", 5000, 1);
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK(cl_time_now_ms() - t0 >= CL_GUEST_CHECK_RETRY_MS); /* the pause between the two */
    health(s, "front", 5000, 0);
    CHECK_INT_EQ(check(gs, s, 0, 1, &err), 1);
    CHECK_INT_EQ(err.code, 4);
    CHECK_CONTAINS(err.msg, "not yet");
    guest_rm("flaky");
    /* always failing with retries=2: run three times, then 1 */
    guest_put("check-front.sh", "echo run >> \"$CLOUD_DIR/runs\"\nexit 6\n");
    health(s, "front", 5000, 2);
    CHECK_INT_EQ(check(gs, s, 0, 1, &err), 1);
    CHECK_CONTAINS(err.msg, "failed 3 times");
    runs = guest_get("runs");
    CHECK_STR_EQ(runs, "run\nrun\nrun\n");
    free(runs);
    guest_rm("runs");
    health(s, "front", 5000, 0);
    /* still one session, still one authentication */
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0 + 1);
}

/* The guest's end of the connection killed while idle, then in the middle of a check. */
static void test_broken(cl_guest_sessions_t *gs, cl_spec_t *s)
{
    char script[1024];
    uint64_t t0;
    cl_err_t err;
    int acc0 = fx_log_count(&fx, ACCEPTED);

    guest_put("check-front.sh", "echo front fine\n");
    /* idle: every process below the listening sshd (the per-connection ones), by PID */
    CHECK(fx_signal_tree(&fx, fx.pid, 0, SIGKILL) > 0);
    t0 = fx_now_ms();
    while (fx_signal_tree(&fx, fx.pid, 0, 0) > 0 && fx_now_ms() - t0 < 3000)
        poll(NULL, 0, 10);
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 1), acc0 + 1);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    /* mid-check: the check kills its own sshd processes, the first time only */
    snprintf(script, sizeof(script),
             "m=\"$CLOUD_DIR/cut\"\n"
             "if [ -f \"$m\" ]; then rm -f \"$m\"; exit 0; fi\n"
             ": > \"$m\"\n"
             "p=$$\n"
             "while [ \"$p\" -gt 1 ] && [ \"$p\" != %d ]; do\n"
             "  pp=$(sed 's/.*) //' \"/proc/$p/stat\" | cut -d' ' -f2)\n"
             "  case \"$(cat \"/proc/$p/comm\")\" in sshd*) kill -9 \"$p\" ;; esac\n"
             "  p=$pp\n"
             "done\n"
             "sleep 3\n",
             (int)fx.pid);
    guest_put("check-front.sh", script);
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0); /* reopened once, run once more */
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 2), acc0 + 2);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    guest_rm("cut");
    guest_put("check-front.sh", "echo front fine\n");
}

/* The service repair: the start steps in the slot's role order; a failing one named. */
static void test_restart(cl_guest_sessions_t *gs, cl_spec_t *s)
{
    cl_err_t err;
    char *started;
    int acc0 = fx_log_count(&fx, ACCEPTED);

    guest_rm("started");
    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_guests_restart_slot(gs, state, s, 0, &err), 0))
        print_err("restart_slot", &err);
    started = guest_get("started");
    CHECK_STR_EQ(started, "start store gs-store-0\nstart front gs-store-0\n");
    free(started);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0); /* over the cached session */
    guest_put("nostart-front", "");
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_guests_restart_slot(gs, state, s, 0, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(err.code, 7);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_CONTAINS(err.msg, "role front: start exited 7: cannot start front");
    CHECK(!strstr(err.msg, "some detail"));
    guest_rm("nostart-front");
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
}

/* A new address, another slot, drop, and a guest that does not answer. */
static void test_lifecycle(cl_guest_sessions_t *gs, cl_spec_t *s)
{
    cl_spec_t *moved = spec_at("127.0.0.2");
    int acc0 = fx_log_count(&fx, ACCEPTED), closed0 = fx_log_count(&fx, CLOSED);
    char known[256], *text;
    cl_err_t err;

    if (!CHECK(moved))
        return;
    /* slot 0 at another address: the old session closed, a new one opened there */
    CHECK_INT_EQ(check(gs, moved, 0, 0, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_wait(&fx, CLOSED, closed0 + 1), closed0 + 1);
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 1), acc0 + 1);
    snprintf(known, sizeof(known), "%s/known_hosts/gs", state);
    text = fx_read_file(known, NULL);
    CHECK_CONTAINS(text, "127.0.0.2 ssh-ed25519 ");
    free(text);
    /* and back */
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK_INT_EQ(fx_log_wait(&fx, CLOSED, closed0 + 2), closed0 + 2);
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 2), acc0 + 2);
    /* one session per slot */
    CHECK_INT_EQ(check(gs, s, 1, 0, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 2);
    CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 3), acc0 + 3);
    CHECK_INT_EQ(check(gs, s, 1, 0, &err), 0);
    CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
    CHECK_INT_EQ(fx_log_count(&fx, ACCEPTED), acc0 + 3);
    /* a slot without checks does not need one */
    CHECK_INT_EQ(check(gs, s, 2, 0, &err), 0);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 2);
    /* drop closes (politely: sshd hears it); an unknown slot or cloud is nothing to drop */
    cl_guest_sessions_drop(gs, "gs", "gs-store-1");
    cl_guest_sessions_drop(gs, "other", "gs-store-0");
    cl_guest_sessions_drop(gs, "gs", "gs-store-9");
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
    CHECK_INT_EQ(fx_log_wait(&fx, CLOSED, closed0 + 3), closed0 + 3);
    /* the guest's sshd gone: unreachable (-1), naming its address; its session closed */
    fx_sshd_stop(&fx);
    CHECK_INT_EQ(check(gs, s, 0, -1, &err), -1);
    CHECK(err.domain == CL_ERR_SSH || err.domain == CL_ERR_TIMEOUT);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 0);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_guests_restart_slot(gs, state, s, 0, &err), -1);
    CHECK(err.domain == CL_ERR_SSH || err.domain == CL_ERR_TIMEOUT);
    CHECK_STR_EQ(err.host, FX_HOST);
    CHECK_INT_EQ(cl_guest_sessions_count(gs), 0);
    /* it answers again: a new session */
    if (CHECK_INT_EQ(fx_sshd_start(&fx, (const char *[]){p_hostkey, NULL}), 0)) {
        CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
        CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
        CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 4), acc0 + 4);
        /* a stopped cloud: every session of it goes (slot NULL), another cloud's stays */
        cl_guest_sessions_drop(gs, "other", NULL);
        CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
        cl_guest_sessions_drop(gs, "gs", NULL);
        CHECK_INT_EQ(cl_guest_sessions_count(gs), 0);
        CHECK_INT_EQ(fx_log_wait(&fx, CLOSED, closed0 + 4), closed0 + 4);
    }
    cl_spec_free(moved);
}

int main(void)
{
    cl_guest_sessions_t *gs = NULL;
    cl_spec_t *s = NULL;

    cl_log_set_stream(getenv("TEST_DEBUG") ? stderr : NULL);
    check_tmpdir(tmp, sizeof(tmp), "test-guest-sessions");
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(p_client, sizeof(p_client), "%s/client", tmp);
    test_no_guest();
    if (!CHECK_INT_EQ(setup_sshd(), 0))
        goto cleanup;
    if (!CHECK(s = spec_at(FX_HOST)) || !CHECK(gs = cl_guest_sessions_new()))
        goto cleanup;
    put_facts(s);
    test_checks(gs, s);
    test_broken(gs, s);
    test_restart(gs, s);
    test_lifecycle(gs, s);
    /* free closes what is open (a session opened for it: the tests above closed theirs) */
    {
        cl_err_t err;
        int closed0 = fx_log_count(&fx, CLOSED), acc0 = fx_log_count(&fx, ACCEPTED);
        CHECK_INT_EQ(check(gs, s, 0, 0, &err), 0);
        CHECK_INT_EQ(fx_log_wait(&fx, ACCEPTED, acc0 + 1), acc0 + 1);
        CHECK_INT_EQ(cl_guest_sessions_count(gs), 1);
        cl_guest_sessions_free(gs);
        gs = NULL;
        CHECK_INT_EQ(fx_log_wait(&fx, CLOSED, closed0 + 1), closed0 + 1);
    }
cleanup:
    cl_guest_sessions_free(gs);
    cl_spec_free(s);
    fx_sshd_fini(&fx);
    check_rmtree(tmp);
    return check_summary();
}
