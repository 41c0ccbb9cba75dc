/*
 * test_guests: what a run does with its guests over SSH (cl_guests_configure), against a real
 * sshd standing for the guest on port 22 of a network namespace of the test's own, and a fake
 * pool host whose domain states the test sets: the wait for a guest is given up as soon as its
 * domain stops, and a repair run's is bounded well below an apply's; a slot recreated behind
 * this leader's back (another disk, another host key) is pinned afresh, while a changed key on
 * the same guest is still refused.  The run is put together by hand (cl_run.h).
 */
#include "check.h"
#include "spec_fixture.h"
#include "sshd_fixture.h"

#include <json-c/json.h>

#include "cl_engine.h"
#include "cl_err.h"
#include "cl_guests.h"
#include "cl_host.h"
#include "cl_log.h"
#include "cl_role.h"
#include "cl_run.h"
#include "cl_spec.h"
#include "cl_ssh.h"
#include "cl_time.h"
#include "cl_timeouts.h"

#define H0 "192.0.2.1" /* the pool: two fake hosts (no hypervisor behind them) */
#define H1 "192.0.2.2"
#define SLOT "gt-web-0"
#define WATCHDOG_S 30 /* a wait that outlives this is one that ignored its domain */

static fx_sshd_t fx;
static cl_engine_t *eng;
static char tmp[64], state[128], guest[128], known[192], p_client[128], p_hostkey1[128],
    p_hostkey2[128];
static char key1_b64[128], key2_b64[128];

/* ========================================================================================= */
/* A fake pool host: its one domain's state as the test says                               */
/* ========================================================================================= */

typedef struct fake {
    int running_for; /* calls of state answered "running"; then "shutoff" (-1: always running) */
    int calls;
    char asked[128]; /* the domain last asked about */
} fake_t;

static fake_t fakes[2];

static const void *fake_backend(const cl_host_t *h)
{
    return cl_host_impl(h);
}
static int fake_alive(cl_host_t *h)
{
    return 1;
}
static int fake_is_test(const cl_host_t *h)
{
    return 0; /* a real hypervisor: its guests are waited for and configured */
}
static unsigned long fake_free_kib(cl_host_t *h)
{
    return 1u << 20;
}
static int fake_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                     cl_err_t *err)
{
    return 0;
}
static int fake_state(cl_host_t *h, const char *name, cl_err_t *err)
{
    fake_t *f = cl_host_impl(h);

    snprintf(f->asked, sizeof(f->asked), "%s", name);
    f->calls++;
    return f->running_for < 0 || f->calls <= f->running_for ? CL_DOM_RUNNING : CL_DOM_SHUTOFF;
}

static const cl_host_ops_t fake_ops = {
    .kind = "fake",
    .backend = fake_backend,
    .alive = fake_alive,
    .is_test = fake_is_test,
    .free_kib = fake_free_kib,
    .scan = fake_scan,
    .state = fake_state,
};

/* ========================================================================================= */
/* A cloud, a run, a plan                                                                    */
/* ========================================================================================= */

/* Cloud gt: one slot at 127.0.0.1 whose role web has a start and a check step. */
static cl_spec_t *make_spec(void)
{
    json_object *o = fx_spec_cloud("gt", "web", fx_strs(H0, H1), p_client),
                *roles = json_object_new_array(), *slots = json_object_new_array(),
                *r = json_object_new_object(), *st = json_object_new_object(),
                *sl = json_object_new_object(), *rl = json_object_new_array();

    json_object_object_add(r, "name", json_object_new_string("web"));
    json_object_object_add(r, "after", json_object_new_array());
    json_object_object_add(st, "start",
                           json_object_new_string("echo start >> \"$CLOUD_DIR/started\""));
    json_object_object_add(st, "check", json_object_new_string("true"));
    json_object_object_add(r, "steps", st);
    json_object_array_add(roles, r);
    json_object_object_add(o, "roles", roles);
    json_object_array_add(rl, json_object_new_string("web"));
    json_object_object_add(sl, "name", json_object_new_string(SLOT));
    json_object_object_add(sl, "roles", rl);
    json_object_object_add(sl, "index", json_object_new_int(0));
    json_object_object_add(sl, "ip", json_object_new_string(FX_HOST));
    json_object_object_add(sl, "image", json_object_new_string("/i"));
    json_object_array_add(slots, sl);
    json_object_object_add(o, "slots", slots);
    return fx_spec_parse(o, "test_guests");
}

static int gate_go(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                   uint64_t epoch, uint64_t *retry_at)
{
    return CL_GATE_GO;
}
static const cl_engine_gate_t repair_gate = {NULL, gate_go};

/*
 * A run of the leader in epoch over the two fake hosts (their states as fakes[] say), a repair
 * run when repair; slot 0's plan: act, on host `host`.  When dom_epoch is not 0, the slot has a
 * domain there, defined in that epoch, in state dom_state.  Freed by cl_run_free.
 */
static void run_init(cl_run_t *r, cl_slot_plan_t *p, const cl_spec_t *s, unsigned long epoch,
                     int repair, enum cl_slot_action act, int host, unsigned long dom_epoch,
                     int dom_state)
{
    static const char *const names[] = {H0, H1};
    cl_err_t err;
    int i;

    memset(r, 0, sizeof(*r));
    memset(p, 0, sizeof(*p));
    r->e = eng;
    r->spec = s;
    r->name = s->name;
    r->epoch = epoch;
    r->gate = repair ? &repair_gate : NULL;
    r->changes = json_object_new_array();
    r->held = NULL;
    r->hosts = calloc(2, sizeof(*r->hosts));
    r->nhosts = 2;
    for (i = 0; i < 2; i++) {
        r->hosts[i].name = names[i];
        r->hosts[i].host = cl_host_new(&fake_ops, names[i], &fakes[i], &err);
        r->hosts[i].primary = 1;
    }
    p->slot = 0;
    p->host = host;
    p->act = act;
    p->dom = -1;
    if (dom_epoch) {
        cl_dom_t *d = calloc(1, sizeof(*d));
        r->doms.v = d;
        r->doms.n = r->doms.cap = 1;
        r->dom_host = calloc(1, sizeof(int));
        r->dom_host[0] = host;
        snprintf(d->name, sizeof(d->name), "%s", SLOT);
        snprintf(d->cloud, sizeof(d->cloud), "gt");
        snprintf(d->slot, sizeof(d->slot), "%s", SLOT);
        snprintf(d->host, sizeof(d->host), "%s", names[host]);
        snprintf(d->ip, sizeof(d->ip), "%s", FX_HOST);
        d->epoch = dom_epoch;
        d->state = dom_state;
        p->dom = 0;
    }
}

/* cl_guests_configure of a run made by run_init; its error printed when rc is not want. */
static int configure(const cl_spec_t *s, unsigned long epoch, int repair, enum cl_slot_action act,
                     int host, unsigned long dom_epoch, int want, cl_err_t *err)
{
    cl_run_t r;
    cl_slot_plan_t p;
    char buf[1200];
    int rc;

    run_init(&r, &p, s, epoch, repair, act, host, dom_epoch, CL_DOM_RUNNING);
    cl_err_clear(err);
    alarm(WATCHDOG_S);
    rc = cl_guests_configure(&r, &p, err);
    alarm(0);
    if (rc != want)
        fprintf(stderr, "test_guests: configure: %s: %s\n", cl_err_domain_name(err->domain),
                cl_err_format(err, buf, sizeof(buf)));
    cl_run_free(&r);
    return rc;
}

/* The monitor's check of the slot over sessions gs; its error printed when rc is not want. */
static int check(cl_guest_sessions_t *gs, const cl_spec_t *s, int want, cl_err_t *err)
{
    char buf[1200];
    int rc;

    cl_err_clear(err);
    rc = cl_guests_check_slot(gs, state, s, 0, err);
    if (rc != want)
        fprintf(stderr, "test_guests: check: %s: %s\n", cl_err_domain_name(err->domain),
                cl_err_format(err, buf, sizeof(buf)));
    return rc;
}

static void on_watchdog(int sig)
{
    static const char msg[] = "test_guests: FAILED: a wait for a guest outlived the watchdog "
                              "(it did not notice that the domain stopped)\n";
    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(2);
    _exit(1);
}

/* A socket on 127.0.0.1:22 that accepts connections and never says a word (a booting guest). */
static int silent_guest(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(22)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ========================================================================================= */
/* The wait for a guest                                                                      */
/* ========================================================================================= */

/*
 * A repair run started the slot's domain, which stops again while the guest has not answered
 * (the listener accepts and stays silent: the wait sits in a handshake): the run gives up at
 * the next look at the domain, naming the slot and the host, not after CL_GUEST_REPAIR_BOOT_MS
 * (before the fix: CL_GUEST_BOOT_MS, the engine's lock held all along).
 */
static void test_stops_while_waiting(const cl_spec_t *s)
{
    uint64_t t0;
    cl_err_t err;
    int lfd = silent_guest();

    if (!CHECK(lfd >= 0))
        return;
    memset(fakes, 0, sizeof(fakes));
    fakes[1].running_for = 2; /* running at the first two looks, then shut off */
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_START, 1, 6, -1, &err), -1);
    CHECK(cl_time_now_ms() - t0 >= 2 * CL_GUEST_STATE_POLL_MS - 100);
    CHECK(cl_time_now_ms() - t0 < 3 * CL_GUEST_STATE_POLL_MS + 1500);
    CHECK_INT_EQ(fakes[1].calls, 3);
    CHECK_STR_EQ(fakes[1].asked, SLOT);
    CHECK_INT_EQ(fakes[0].calls, 0);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, H1);
    CHECK_CONTAINS(err.msg, SLOT ": its domain " SLOT " on " H1 " is shutoff");
    CHECK_CONTAINS(err.msg, "its SSH at " FX_HOST);
    close(lfd);

    /* an apply's new domain that is already gone: given up at the first look, no attempt made */
    memset(fakes, 0, sizeof(fakes));
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(configure(s, 7, 0, CL_ACT_CREATE, 0, 0, -1, &err), -1);
    CHECK(cl_time_now_ms() - t0 < 1000);
    CHECK_INT_EQ(fakes[0].calls, 1);
    CHECK_STR_EQ(err.host, H0);
    CHECK_CONTAINS(err.msg, SLOT ": its domain " SLOT " on " H0 " is shutoff");
}

/* A clock 1000 times as fast as the monotonic one (the waits' bounds pass in real ms). */
static uint64_t fast_base;
static uint64_t fast_clock(void *ud)
{
    (void)ud;
    return 1000000u + (cl_time_real_us() - fast_base); /* one real microsecond: one ms */
}

/*
 * A guest whose domain runs but whose sshd never answers: a repair run gives up after
 * CL_GUEST_REPAIR_BOOT_MS (well before CL_GUEST_BOOT_MS), an apply only after CL_GUEST_BOOT_MS.
 */
static void test_repair_bound(const cl_spec_t *s)
{
    uint64_t t0, took;
    cl_err_t err;

    memset(fakes, 0, sizeof(fakes));
    fakes[0].running_for = -1;
    fast_base = cl_time_real_us();
    cl_time_set_source(fast_clock, NULL);
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_START, 0, 6, -1, &err), -1);
    took = cl_time_now_ms() - t0;
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK_STR_EQ(err.op, "wait ready");
    if (!CHECK(took >= CL_GUEST_REPAIR_BOOT_MS && took < CL_GUEST_BOOT_MS))
        fprintf(stderr, "test_guests: a repair run waited %llu ms\n", (unsigned long long)took);
    CHECK(fakes[0].calls >= 2); /* the domain was looked at while waiting */
    t0 = cl_time_now_ms();
    CHECK_INT_EQ(configure(s, 7, 0, CL_ACT_START, 0, 6, -1, &err), -1);
    took = cl_time_now_ms() - t0;
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK(took >= CL_GUEST_BOOT_MS);
    cl_time_set_source(NULL, NULL);
}

/* ========================================================================================= */
/* Pins of recreated guests                                                                  */
/* ========================================================================================= */

static int sshd_with(const char *hostkey)
{
    const char *keys[] = {hostkey, NULL};

    fx_sshd_stop(&fx);
    return fx_sshd_start(&fx, keys);
}

/* Is key (base64) the one pinned for the guest? */
static int pinned(const char *key)
{
    char entry[256], *text = fx_read_file(known, NULL);
    int yes;

    snprintf(entry, sizeof(entry), FX_HOST " ssh-ed25519 %s\n", key);
    yes = text && strstr(text, entry) != NULL;
    free(text);
    return yes;
}

/*
 * The chaos run's scenario: this leader pins the slot's guest, loses the cloud, another leader
 * recreates the slot on the other host (a new disk: a new host key), this one leads again.  Its
 * first run sees the domain's new incarnation and its checks reach the new guest (before the
 * fix: a host-key mismatch at every check, and a domain restart after each, for ever).  The
 * same guest with another key stays refused, in checks and in a repair run's wait.
 */
static void test_recreated_elsewhere(const cl_spec_t *s)
{
    cl_guest_sessions_t *gs = cl_guest_sessions_new();
    char *text;
    cl_err_t err;

    if (!CHECK(gs) || !CHECK_INT_EQ(sshd_with(p_hostkey1), 0))
        goto cleanup;
    memset(fakes, 0, sizeof(fakes));
    fakes[0].running_for = fakes[1].running_for = -1;
    /* epoch 5: this leader creates the slot on H0, configures it, checks it */
    CHECK_INT_EQ(configure(s, 5, 0, CL_ACT_CREATE, 0, 0, 0, &err), 0);
    CHECK(pinned(key1_b64));
    text = fx_read_file(known, NULL);
    CHECK_CONTAINS(text, "#cl-incarnation " FX_HOST " host=" H0 " epoch=5\n");
    free(text);
    CHECK_INT_EQ(check(gs, s, 0, &err), 0);

    /* epoch 6, another leader: the slot recreated on H1 */
    CHECK_INT_EQ(sshd_with(p_hostkey2), 0);
    CHECK_INT_EQ(check(gs, s, -1, &err), -1); /* what the monitor saw before any run */
    CHECK_INT_EQ(err.code, CL_SSH_E_HOSTKEY_CHANGED);

    /* epoch 7, this leader again: its first repair run observes the domain (running: no wait) */
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_NONE, 1, 6, 0, &err), 0);
    CHECK_INT_EQ(fakes[1].calls, 0);
    CHECK(!pinned(key1_b64));
    CHECK_INT_EQ(check(gs, s, 0, &err), 0);
    CHECK(pinned(key2_b64));
    text = fx_read_file(known, NULL);
    CHECK_CONTAINS(text, "#cl-incarnation " FX_HOST " host=" H1 " epoch=6\n");
    CHECK(text && !strstr(text, "epoch=5"));
    free(text);
    /* the next runs leave the pin alone */
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_NONE, 1, 6, 0, &err), 0);
    CHECK(pinned(key2_b64));
    CHECK_INT_EQ(check(gs, s, 0, &err), 0);

    /* the same guest (same incarnation) with another key: refused at every check... */
    CHECK_INT_EQ(sshd_with(p_hostkey1), 0);
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_NONE, 1, 6, 0, &err), 0);
    CHECK_INT_EQ(check(gs, s, -1, &err), -1);
    CHECK_INT_EQ(err.code, CL_SSH_E_HOSTKEY_CHANGED);
    /* ...and in the repair run that starts its domain again after a restart */
    CHECK_INT_EQ(configure(s, 7, 1, CL_ACT_START, 1, 6, -1, &err), -1);
    CHECK_INT_EQ(err.code, CL_SSH_E_HOSTKEY_CHANGED);
    CHECK_STR_EQ(err.op, "hostkey");
    CHECK(pinned(key2_b64));

    /* epoch 8, the other leader recreated it on H0 and it stopped: this leader's repair starts it
     */
    CHECK_INT_EQ(configure(s, 9, 1, CL_ACT_START, 0, 8, 0, &err), 0);
    CHECK(pinned(key1_b64) && !pinned(key2_b64));
    CHECK_INT_EQ(check(gs, s, 0, &err), 0);
    text = fx_read_file(known, NULL);
    CHECK_CONTAINS(text, "#cl-incarnation " FX_HOST " host=" H0 " epoch=8\n");
    free(text);

cleanup:
    cl_guest_sessions_free(gs);
}

/* ========================================================================================= */

/* sshd (not started yet) on 0.0.0.0:22 of our namespace, the guest's directory at CL_ROLE_DIR. */
static int setup(const cl_spec_t *s)
{
    char pub[160], fp[64], *facts;
    cl_err_t err;
    int ok;

    snprintf(pub, sizeof(pub), "%s/client.pub", tmp);
    if (fx_sshd_init(&fx, tmp) < 0 || mkdir(guest, 0755) < 0 ||
        fx_keygen("ed25519", p_client) != 0 || fx_keygen("ed25519", p_hostkey1) != 0 ||
        fx_keygen("ed25519", p_hostkey2) != 0)
        return -1;
    if (fx_sshd_bind(&fx, guest, CL_ROLE_DIR) < 0) {
        fprintf(stderr, "test_guests: no private mount namespace for sshd (needs root)\n");
        return -1;
    }
    fx.port = 22;
    fx.listen = "0.0.0.0";
    ok = fx_copy_file(pub, fx.authorized_keys, 0600) == 0;
    snprintf(pub, sizeof(pub), "%s.pub", p_hostkey1);
    ok = ok && fx_key_facts(pub, fp, key1_b64) == 0;
    snprintf(pub, sizeof(pub), "%s.pub", p_hostkey2);
    ok = ok && fx_key_facts(pub, fp, key2_b64) == 0;
    /* the facts a setup would have left in the guest (the steps source them) */
    facts = s ? cl_role_facts(s, 0, &err) : NULL;
    snprintf(pub, sizeof(pub), "%s/facts.sh", guest);
    ok = ok && facts && fx_write_file(pub, facts, 0644) == 0;
    free(facts);
    return ok ? 0 : -1;
}

/*
 * The lab chaos run's scenario: a repair run recreated the balancer, and its set-up failed
 * half-way (the guest was cut off); the later repair runs set up only what they repaired, so
 * the running guest was never set up (its checks failed for ever: no facts.sh).  Now the
 * engine's record of set-up incarnations (r->configured) makes a repair run set up a running
 * guest whose roles were not set up in its incarnation, and only that.
 */
static int configure_rec(const cl_spec_t *s, unsigned long dom_epoch, json_object *rec, int want,
                         cl_err_t *err)
{
    cl_run_t r;
    cl_slot_plan_t p;
    char buf[1200];
    int rc;

    run_init(&r, &p, s, 9, 1, CL_ACT_NONE, 1, dom_epoch, CL_DOM_RUNNING);
    r.configured = rec;
    cl_err_clear(err);
    alarm(WATCHDOG_S);
    rc = cl_guests_configure(&r, &p, err);
    alarm(0);
    if (rc != want)
        fprintf(stderr, "test_guests: configure_rec: %s: %s\n", cl_err_domain_name(err->domain),
                cl_err_format(err, buf, sizeof(buf)));
    r.configured = NULL;
    cl_run_free(&r);
    return rc;
}

static void test_setup_resumed(const cl_spec_t *s)
{
    json_object *rec = json_object_new_object(), *v;
    cl_err_t err;

    memset(fakes, 0, sizeof(fakes));
    fakes[0].running_for = fakes[1].running_for = -1;
    if (!CHECK_INT_EQ(sshd_with(p_hostkey1), 0))
        goto cleanup;
    /* no record of the running guest: the repair run sets it up and records its incarnation */
    CHECK_INT_EQ(configure_rec(s, 6, rec, 0, &err), 0);
    CHECK(json_object_object_get_ex(rec, s->slots[0].name, &v) &&
          strcmp(json_object_get_string(v), "host=" H1 " epoch=6") == 0);
    /* recorded: the next repair run does not touch it (a set-up would meet the changed key) */
    CHECK_INT_EQ(sshd_with(p_hostkey2), 0);
    CHECK_INT_EQ(configure_rec(s, 6, rec, 0, &err), 0);
    /* the slot recreated meanwhile (epoch 8): set up again, its new guest pinned afresh */
    CHECK_INT_EQ(configure_rec(s, 8, rec, 0, &err), 0);
    CHECK(json_object_object_get_ex(rec, s->slots[0].name, &v) &&
          strcmp(json_object_get_string(v), "host=" H1 " epoch=8") == 0);
    CHECK(pinned(key2_b64));
cleanup:
    json_object_put(rec);
}

int main(void)
{
    cl_engine_opts_t eo;
    cl_spec_t *s = NULL;
    cl_err_t err;

    cl_log_set_stream(getenv("TEST_DEBUG") ? stderr : NULL);
    check_tmpdir(tmp, sizeof(tmp), "test-guests");
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(guest, sizeof(guest), "%s/guest", tmp);
    snprintf(known, sizeof(known), "%s/known_hosts/gt", state);
    snprintf(p_client, sizeof(p_client), "%s/client", tmp);
    snprintf(p_hostkey1, sizeof(p_hostkey1), "%s/hostkey1", tmp);
    snprintf(p_hostkey2, sizeof(p_hostkey2), "%s/hostkey2", tmp);
    signal(SIGALRM, on_watchdog);
    if (fx_own_network() < 0) {
        fprintf(stderr, "test_guests: no network namespace (needs root): %s\n", strerror(errno));
        CHECK(0);
        goto cleanup;
    }
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = state;
    cl_err_clear(&err);
    if (!CHECK(s = make_spec()) || !CHECK_INT_EQ(setup(s), 0) ||
        !CHECK_INT_EQ(cl_engine_new(&eo, &eng, &err), 0))
        goto cleanup;
    test_stops_while_waiting(s);
    test_repair_bound(s);
    test_recreated_elsewhere(s);
    test_setup_resumed(s);
cleanup:
    cl_engine_free(eng);
    cl_spec_free(s);
    fx_sshd_fini(&fx);
    check_rmtree(tmp);
    return check_summary();
}
