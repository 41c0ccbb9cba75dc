/*
 * cl_guests: the last part of a converge on a real hypervisor (DESIGN.md §3, §7): each slot's
 * guest, in dependency order, is waited for over SSH (its boot), then its roles run setup,
 * start and check (cl_role).  One SSH session per guest for the whole run; a slot created or
 * recreated (here, or by another leader: its domain's metadata tells) is a new guest, whose
 * host key is pinned afresh.  The wait for a guest ends as soon as its domain stops.  The test
 * driver has no guests: its slots are reported as skipped, never as configured.
 */
#include "cl_guests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cl_log.h"
#include "cl_role.h"
#include "cl_ssh.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"

/* The known-hosts file of a cloud: <state>/known_hosts/<cloud> (cl_ssh makes the directory). */
static void known_hosts(const cl_run_t *r, char *out, size_t n)
{
    snprintf(out, n, "%s/known_hosts/%s", cl_engine_state_dir(r->e), r->spec->name);
}

/*
 * What tells one disk of a slot from the next (cl_ssh_note_incarnation): where and in which
 * epoch its domain was defined, as its ownership metadata says.  A restart keeps both; a
 * recreation changes one (the same leader recreating in its own epoch forgets the pin itself).
 */
static void incarnation(const char *host, unsigned long epoch, char *out, size_t n)
{
    snprintf(out, n, "host=%s epoch=%lu", host, epoch);
}

/* The incarnation of plan p's guest once the run acted: made by this run, or as observed. */
static void slot_incarnation(const cl_run_t *r, const cl_slot_plan_t *p, char *out, size_t n)
{
    const cl_dom_t *d = p->dom >= 0 ? &r->doms.v[p->dom] : NULL;

    if (!d || p->act == CL_ACT_CREATE || p->act == CL_ACT_RECREATE || p->act == CL_ACT_MOVE)
        incarnation(r->hosts[p->host].name, r->epoch, out, n);
    else
        incarnation(d->host[0] ? d->host : r->hosts[r->dom_host[p->dom]].name, d->epoch, out, n);
}

/*
 * A kept guest that this run does not configure (a repair run's, one held or not running): its
 * pin follows its incarnation all the same, so the monitor's checks meet the guest that runs
 * now (a leader back in office finds the slots another one recreated meanwhile).
 */
static void note_kept(cl_run_t *r, const cl_slot_plan_t *p)
{
    const cl_slot_t *sl = &r->spec->slots[p->slot];
    const cl_host_view_t *h = &r->hosts[p->host];
    char kh[1024], id[256];
    size_t k;
    int any = 0;
    cl_err_t e;

    for (k = 0; k < CL_STEP_COUNT; k++)
        any |= cl_role_has_step(r->spec, p->slot, (cl_step_t)k);
    if (p->dom < 0 || !any || !h->host || cl_host_is_test(h->host) || !r->spec->ssh_key ||
        !*r->spec->ssh_key)
        return;
    known_hosts(r, kh, sizeof(kh));
    slot_incarnation(r, p, id, sizeof(id));
    cl_err_clear(&e);
    if (cl_ssh_note_incarnation(kh, sl->ip, 22, id, &e) < 0)
        cl_log(CL_LOG_WARN, "-ssh-incarnation", "cloud=%s slot=%s: %s", r->name, sl->name, e.msg);
}

/* Were p's roles set up in the incarnation of the guest that runs now (by this leader)? */
static int set_up(const cl_run_t *r, const cl_slot_plan_t *p)
{
    json_object *v;
    char id[256];

    if (!r->configured)
        return 1; /* a run that keeps no record (not the engine's): as set up */
    if (!json_object_object_get_ex(r->configured, r->spec->slots[p->slot].name, &v) ||
        !json_object_is_type(v, json_type_string))
        return 0;
    slot_incarnation(r, p, id, sizeof(id));
    return strcmp(json_object_get_string(v), id) == 0;
}

/* What configure's wait for a guest watches: its domain, which must keep running. */
typedef struct boot_watch {
    cl_run_t *r;
    const cl_slot_plan_t *p;
    const char *dom; /* the domain's name */
} boot_watch_t;

/* cl_ssh_watch_fn: 0 while the domain runs (or its state is unknown: the wait is bounded). */
static int still_running(void *ud, cl_err_t *err)
{
    boot_watch_t *w = ud;
    const cl_slot_t *sl = &w->r->spec->slots[w->p->slot];
    const cl_host_view_t *h = &w->r->hosts[w->p->host];
    cl_err_t e;
    int st;

    cl_err_clear(&e);
    st = h->host ? cl_host_state(h->host, w->dom, &e) : -1;
    if (st < 0)
        cl_log(CL_LOG_DEBUG, "-guest-state", "cloud=%s slot=%s host=%s: %s", w->r->name, sl->name,
               h->name, e.msg);
    /* paused or in transition: it may yet boot */
    if (st < 0 || st == CL_DOM_RUNNING || st == CL_DOM_PAUSED || st == CL_DOM_OTHER)
        return 0;
    cl_run_progress(w->r, "-guest-stopped", sl->name, h->name,
                    "domain %s is %s: not waiting for %s any longer", w->dom, cl_dom_state_name(st),
                    sl->ip);
    return cl_err_set(err, CL_ERR_VIRT, 0, h->name, "wait for guest",
                      "%s: its domain %s on %s is %s while the leader waited for its SSH at %s "
                      "(the guest stopped before it answered)",
                      sl->name, w->dom, h->name, cl_dom_state_name(st), sl->ip);
}

/* check, retried: a service just started may need a moment (bounded by CL_GUEST_CHECK_MS). */
static int check_until(cl_ssh_t *s, const cl_spec_t *spec, size_t slot, cl_err_t *err)
{
    uint64_t deadline = cl_time_now_ms() + CL_GUEST_CHECK_MS;
    unsigned pause = CL_GUEST_CHECK_RETRY_MS;
    cl_role_opts_t ro = {NULL, CL_GUEST_CHECK_STEP_MS, NULL, 0};
    cl_err_t e;

    for (;;) {
        cl_err_clear(&e);
        if (cl_role_run(s, spec, slot, CL_STEP_CHECK, &ro, NULL, &e) == 0)
            return 0;
        if (e.domain != CL_ERR_SSH || e.code <= 0 || cl_time_now_ms() + pause > deadline) {
            if (err)
                *err = e;
            return -1;
        }
        usleep(pause * 1000u);
        pause = pause * 2 > CL_GUEST_CHECK_RETRY_MAX_MS ? CL_GUEST_CHECK_RETRY_MAX_MS : pause * 2;
    }
}

/* One slot: wait for its guest, then setup, start and check its roles. */
static int configure(cl_run_t *r, const cl_slot_plan_t *p, cl_err_t *err)
{
    const cl_slot_t *sl = &r->spec->slots[p->slot];
    const char *host = r->hosts[p->host].name;
    char kh[1024];
    cl_ssh_opts_t o;
    cl_ssh_t *s = NULL;
    cl_role_report_t rep;
    cl_role_opts_t ro = {0};
    char gk[2 * CL_ROLE_GUEST_KEY_LEN + 1] = "", id[256];
    /* a repair run holds the engine's lock for the others: a guest that boots at all does soon */
    unsigned boot_ms = r->gate ? CL_GUEST_REPAIR_BOOT_MS : CL_GUEST_BOOT_MS;
    int made = p->act == CL_ACT_CREATE || p->act == CL_ACT_RECREATE || p->act == CL_ACT_MOVE;
    boot_watch_t w = {r, p, made || p->dom < 0 ? sl->name : r->doms.v[p->dom].name};
    uint64_t t0 = cl_time_now_ms();
    int rc = -1;

    known_hosts(r, kh, sizeof(kh));
    if (made)
        cl_ssh_forget_host(kh, sl->ip, 22, NULL); /* a new disk: a new host key */
    slot_incarnation(r, p, id, sizeof(id));
    if (cl_ssh_note_incarnation(kh, sl->ip, 22, id, err) < 0)
        goto cleanup;
    memset(&o, 0, sizeof(o));
    o.host = sl->ip;
    o.user = "root";
    o.key = r->spec->ssh_key;
    o.known_hosts = kh;
    cl_run_progress(r, "~guest-wait", sl->name, host,
                    "waiting up to %u s for %s to answer over SSH", boot_ms / 1000, sl->ip);
    cl_run_flush(r, &r->hosts[p->host]);
    if (!(s = cl_ssh_wait_ready_watch(&o, t0 + boot_ms, still_running, &w, CL_GUEST_STATE_POLL_MS,
                                      err)))
        goto cleanup;
    cl_run_progress(r, "+guest-up", sl->name, host, "%s answers over SSH after %llu ms", sl->ip,
                    (unsigned long long)(cl_time_now_ms() - t0));
    if (cl_role_guest_key(r->spec->ssh_key, r->spec->name, gk, err) < 0)
        goto cleanup;
    ro.guest_key = (const unsigned char *)gk;
    ro.guest_key_len = strlen(gk);
    if (cl_role_run(s, r->spec, p->slot, CL_STEP_SETUP, &ro, &rep, err) < 0)
        goto cleanup;
    if (rep.ran) {
        cl_run_progress(r, "+role-setup", sl->name, host, "set up in %llu ms",
                        (unsigned long long)rep.ms);
        cl_run_change(r, "setup", sl->name, host);
    }
    if (cl_role_run(s, r->spec, p->slot, CL_STEP_START, &ro, &rep, err) < 0 ||
        check_until(s, r->spec, p->slot, err) < 0)
        goto cleanup;
    cl_run_progress(r, "+roles", sl->name, host, "roles %s: set up, started, checked",
                    sl->nroles ? sl->roles[0] : "");
    rc = 0;
cleanup:
    OPENSSL_cleanse(gk, sizeof(gk));
    cl_ssh_free(s);
    return rc;
}

int cl_guests_configure(cl_run_t *r, const cl_slot_plan_t *p, cl_err_t *err)
{
    size_t i, k;
    int any;

    for (i = 0; i < r->spec->nslots; i++) {
        const cl_slot_t *sl = &r->spec->slots[p[i].slot];
        const cl_host_view_t *h = &r->hosts[p[i].host];
        /*
         * A repair run sets up what it repaired, and any running guest whose roles were never
         * set up in its incarnation (a run that failed half-way, a slot another leader made);
         * no run waits for a guest whose domain does not run (a slot held for later).
         */
        if (p[i].act == CL_ACT_NONE &&
            (p[i].dom < 0 || r->doms.v[p[i].dom].state != CL_DOM_RUNNING ||
             (r->gate && set_up(r, &p[i])))) {
            note_kept(r, &p[i]);
            continue;
        }
        for (k = 0, any = 0; k < CL_STEP_COUNT; k++)
            any |= cl_role_has_step(r->spec, p[i].slot, (cl_step_t)k);
        if (cl_host_is_test(h->host)) {
            if (p[i].act != CL_ACT_NONE)
                cl_run_progress(r, "~roles-skipped", sl->name, h->name,
                                "role setup skipped: the test driver has no guests");
            continue;
        }
        if (!any) {
            if (p[i].act != CL_ACT_NONE)
                cl_run_progress(r, "~roles-skipped", sl->name, h->name,
                                "no role of %s has steps: nothing to run in the guest", sl->name);
            continue;
        }
        if (!r->spec->ssh_key || !*r->spec->ssh_key)
            return cl_err_set(err, CL_ERR_SPEC, 0, h->name, "configure",
                              "ssh_key: %s has role steps to run but the cloud has no ssh_key",
                              sl->name);
        if (configure(r, &p[i], err) < 0)
            return -1;
        if (r->configured) {
            char id[256];
            slot_incarnation(r, &p[i], id, sizeof(id));
            json_object_object_add(r->configured, sl->name, json_object_new_string(id));
        }
    }
    return 0;
}

void cl_guests_stop(cl_run_t *r, const cl_spec_t *spec, const cl_dom_t *d, int host)
{
    const cl_host_view_t *h = &r->hosts[host];
    int slot = spec ? cl_spec_slot_find(spec, d->slot) : -1;
    cl_role_opts_t ro = {NULL, CL_GUEST_STOP_MS, NULL, 0};
    char kh[1024];
    char id[256];
    cl_ssh_opts_t o;
    cl_ssh_t *s;
    cl_err_t err;

    if (slot < 0 || d->state != CL_DOM_RUNNING || cl_host_is_test(h->host) ||
        !cl_role_has_step(spec, (size_t)slot, CL_STEP_STOP) || !spec->ssh_key || !*spec->ssh_key)
        return;
    known_hosts(r, kh, sizeof(kh));
    incarnation(d->host[0] ? d->host : h->name, d->epoch, id, sizeof(id));
    cl_err_clear(&err);
    cl_ssh_note_incarnation(kh, spec->slots[slot].ip, 22, id, &err); /* on failure: as before */
    memset(&o, 0, sizeof(o));
    o.host = spec->slots[slot].ip;
    o.user = "root";
    o.key = spec->ssh_key;
    o.known_hosts = kh;
    o.auth_ms = CL_GUEST_STOP_MS;
    cl_err_clear(&err);
    /* best effort: the VM is shut down next whatever its services say */
    if (!(s = cl_ssh_connect(&o, &err)) ||
        cl_role_run(s, spec, (size_t)slot, CL_STEP_STOP, &ro, NULL, &err) < 0)
        cl_run_progress(r, "-role-stop", d->slot, h->name, "stop step not done: %s", err.msg);
    else
        cl_run_progress(r, "+role-stop", d->slot, h->name, "roles stopped in the guest");
    cl_ssh_free(s);
}
