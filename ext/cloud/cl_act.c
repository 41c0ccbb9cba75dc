/*
 * cl_act: the plan of a run (what each slot needs: nothing, start, create, recreate; which
 * domains go; where new ones are placed) and the actions that carry it out: identities, the
 * per-slot overlay, the rendered definition with its ownership metadata, removal.
 */
#include "cl_run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cl_ident.h"
#include "cl_log.h"
#include "cl_place.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_tmpl.h"

/* ========================================================================================== */
/* Planning                                                                                   */
/* ========================================================================================== */

const char *const cl_act_names[] = {"none", "start", "create", "recreate", "move"};

/* Index of pool host name in the run, or -1. */
static int host_index(const cl_run_t *r, const char *name)
{
    size_t i;

    for (i = 0; name && i < r->nhosts; i++)
        if (strcmp(r->hosts[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A slot left for later: into r->held, with why and when to look again. */
static void hold(cl_run_t *r, const char *slot, const char *host, uint64_t retry_at,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void hold(cl_run_t *r, const char *slot, const char *host, uint64_t retry_at,
                 const char *fmt, ...)
{
    json_object *o;
    char why[256];
    va_list ap;

    if (!r->held)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    o = json_object_new_object();
    json_object_object_add(o, "slot", json_object_new_string(slot));
    json_object_object_add(o, "host", host ? json_object_new_string(host) : NULL);
    json_object_object_add(o, "why", json_object_new_string(why));
    json_object_object_add(o, "retry_at_ms", json_object_new_int64((int64_t)retry_at));
    json_object_array_add(r->held, o);
}

/*
 * How many of the cloud's slots run nowhere this run sees: as many copies as a silent host may
 * hold, each destroyed in turn there if its daemon died (libvirtd's autodestroy).
 */
static size_t unseen_slots(const cl_run_t *r)
{
    size_t i, j, n = 0;

    for (i = 0; i < r->spec->nslots; i++) {
        int seen = 0;
        for (j = 0; j < r->doms.n && !seen; j++)
            seen = r->doms.v[j].state == CL_DOM_RUNNING &&
                   strcmp(r->doms.v[j].slot, r->spec->slots[i].name) == 0;
        n += !seen;
    }
    return n;
}

/*
 * Why slot i (planned p) needs a repair, and whether it may have it now: a slot whose host is
 * gone waits until that host has been silent for the fencing wait (it has fenced itself by
 * then); then the gate (a repair run's policy) decides.  Adjusts p->act and ps.
 */
static void gate_slot(cl_run_t *r, size_t i, cl_slot_plan_t *p, cl_place_slot_t *ps)
{
    const cl_slot_t *sl = &r->spec->slots[i];
    json_object *v = NULL;
    const char *was = NULL, *where;
    uint64_t now = cl_time_now_ms(), retry = 0;
    int wh, verdict;

    if (r->placed && json_object_object_get_ex(r->placed, sl->name, &v) &&
        json_object_is_type(v, json_type_string))
        was = json_object_get_string(v);
    wh = host_index(r, was);
    p->failing = 0;
    if ((p->act == CL_ACT_CREATE || p->act == CL_ACT_START) && cl_engine_elected(r->e, r->spec)) {
        /*
         * Running nowhere to be seen: it may run on any host that does not answer, whatever the
         * placement recorded here says (a new leader's may be stale: the slot may have moved
         * since it last led), even when a stopped copy of it is here (a fenced old leader's,
         * back from a partition).  Wait for the fencing of every such host.
         */
        uint64_t wait = cl_engine_fence_wait_host_ms(r->e, r->spec, unseen_slots(r)), left = 0;
        size_t k;
        int kk = -1;
        for (k = 0; k < r->nhosts; k++)
            if (!r->hosts[k].host) {
                uint64_t silent = cl_engine_silent_ms(r->e, r->spec, r->hosts[k].name);
                if (silent < wait && wait - silent > left) {
                    left = wait - silent;
                    kk = (int)k; /* the one silent for the shortest time decides */
                }
            }
        if (kk >= 0) {
            p->act = CL_ACT_NONE;
            p->failing = CL_FAIL_HOST;
            hold(r, sl->name, r->hosts[kk].name, now + left,
                 "waiting for %s to fence itself (silent %llu of %llu ms)", r->hosts[kk].name,
                 (unsigned long long)(wait - left), (unsigned long long)wait);
            return;
        }
    }
    if (p->act == CL_ACT_START) {
        p->failing = CL_FAIL_DOMAIN;
    } else if (p->act == CL_ACT_CREATE && was) {
        p->failing = wh >= 0 && !r->hosts[wh].host ? CL_FAIL_HOST : CL_FAIL_DOMAIN;
    } else if (p->act != CL_ACT_NONE) {
        return; /* a new slot, or a changed definition: not a failure */
    }
    if (p->failing == CL_FAIL_HOST && cl_engine_elected(r->e, r->spec)) {
        uint64_t silent = cl_engine_silent_ms(r->e, r->spec, was),
                 wait = cl_engine_fence_wait_host_ms(r->e, r->spec, unseen_slots(r));
        if (silent < wait) {
            p->act = CL_ACT_NONE;
            hold(r, sl->name, was, now + (wait - silent),
                 "waiting for %s to fence itself (silent %llu of %llu ms)", was,
                 (unsigned long long)silent, (unsigned long long)wait);
            return;
        }
    }
    if (!r->gate || !r->gate->decide)
        return;
    where = p->dom >= 0 ? r->hosts[r->dom_host[p->dom]].name : was ? was : "";
    verdict = r->gate->decide(r->gate->ud, r->spec, i, p->failing, where, r->epoch, &retry);
    if (verdict == CL_GATE_HOLD) {
        if (p->act != CL_ACT_NONE)
            hold(r, sl->name, where, retry, "restart policy: next repair of %s not before then",
                 sl->name);
        p->act = CL_ACT_NONE;
    } else if (verdict == CL_GATE_MOVE) {
        size_t k, others = 0;
        int cur = p->dom >= 0 ? r->dom_host[p->dom] : wh;
        for (k = 0; k < r->nhosts; k++)
            others += r->hosts[k].host && (int)k != cur && r->hosts[k].primary;
        if (!others)
            return; /* nowhere else to go: repaired where it is */
        if (p->dom >= 0) {
            p->from = r->dom_host[p->dom];
            p->act = CL_ACT_MOVE;
            ps->host = -1;
            ps->not_on = p->from + 1;
        } else if (wh >= 0) {
            ps->not_on = wh + 1;
        }
    }
}

/* Hash of everything that shapes a slot's definition: a change means redefining it. */
static void config_hash(const cl_spec_t *s, const cl_slot_t *sl, char out[20])
{
    char head[1024];
    uint64_t h;
    size_t i;

    snprintf(head, sizeof(head), "%lu|%u|%s|%s|%s|%s|", s->vm_mem_kib, s->vm_ncpu, sl->image,
             sl->ip, s->image_format, s->mac_start ? s->mac_start : "");
    h = cl_ident_hash(head, 1);
    for (i = 0; i < sl->nroles; i++)
        h ^= cl_ident_hash(sl->roles[i], h);
    h ^= cl_ident_hash(s->tmpl ? s->tmpl : "", h);
    snprintf(out, 20, "%016llx", (unsigned long long)h);
}

static int slot_rank(const cl_spec_t *s, const cl_slot_t *sl)
{
    size_t i, j;

    for (i = 0; i < s->nroles; i++)
        for (j = 0; j < sl->nroles; j++)
            if (strcmp(s->roles[i].name, sl->roles[j]) == 0)
                return (int)i;
    return (int)s->nroles;
}

static int cmp_rank(const void *a, const void *b)
{
    const cl_slot_plan_t *x = a, *y = b;

    if (x->rank != y->rank)
        return x->rank - y->rank;
    return (int)x->slot - (int)y->slot;
}

/*
 * Decide, for every slot, what to do; list domains to remove.  Placement of new slots is
 * computed here (cl_place), so --noop shows where each VM would go.
 */
int cl_run_plan(cl_run_t *r, cl_slot_plan_t **out, cl_extra_t **extras, size_t *nextra,
                cl_err_t *err)
{
    const cl_spec_t *s = r->spec;
    cl_slot_plan_t *p = calloc(s->nslots + 1, sizeof(*p));
    cl_extra_t *x = calloc(r->doms.n + 1, sizeof(*x));
    cl_place_host_t *ph = calloc(r->nhosts + 1, sizeof(*ph));
    cl_place_slot_t *ps = calloc(s->nslots + 1, sizeof(*ps));
    int *used = calloc(r->doms.n + 1, sizeof(*used));
    size_t i, k, nx = 0;
    int rc = -1;

    if (!p || !x || !ph || !ps || !used) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "plan", "out of memory");
        goto cleanup;
    }
    for (i = 0; i < s->nslots; i++) {
        const cl_slot_t *sl = &s->slots[i];
        int keep = -1;

        p[i].slot = i;
        p[i].dom = -1;
        p[i].host = -1;
        p[i].rank = slot_rank(s, sl);
        config_hash(s, sl, p[i].config);
        /* The slot's domains: keep one (running first), the others are duplicates. */
        for (k = 0; k < r->doms.n; k++) {
            if (strcmp(r->doms.v[k].slot, sl->name) != 0)
                continue;
            used[k] = 1;
            /* keep a running copy; of two running ones, the newer leader's (higher epoch) */
            if (keep < 0 ||
                (r->doms.v[k].state == CL_DOM_RUNNING && r->doms.v[keep].state != CL_DOM_RUNNING) ||
                (r->doms.v[k].state == r->doms.v[keep].state &&
                 r->doms.v[k].epoch > r->doms.v[keep].epoch)) {
                if (keep >= 0) {
                    x[nx].dom = keep;
                    x[nx++].why = "duplicate";
                }
                keep = (int)k;
            } else {
                x[nx].dom = (int)k;
                x[nx++].why = "duplicate";
            }
        }
        if (keep < 0) {
            p[i].act = CL_ACT_CREATE;
        } else {
            p[i].dom = keep;
            p[i].host = r->dom_host[keep];
            if (strcmp(r->doms.v[keep].config, p[i].config) != 0 ||
                strcmp(r->doms.v[keep].name, sl->name) != 0)
                p[i].act = CL_ACT_RECREATE;
            else if (r->doms.v[keep].state != CL_DOM_RUNNING)
                p[i].act = CL_ACT_START;
            else
                p[i].act = CL_ACT_NONE;
        }
        ps[i].name = sl->name;
        ps[i].role = sl->roles[0];
        ps[i].mem_kib = cl_spec_slot_mem_kib(s, i);
        ps[i].host = p[i].act == CL_ACT_CREATE ? -1 : p[i].host;
        p[i].from = -1;
        gate_slot(r, i, &p[i], &ps[i]);
    }
    for (k = 0; k < r->doms.n; k++)
        if (!used[k]) {
            x[nx].dom = (int)k;
            x[nx++].why = "no longer declared";
        }
    for (i = 0; i < r->nhosts; i++) {
        ph[i].name = r->hosts[i].name;
        ph[i].alive = r->hosts[i].host != NULL;
        ph[i].free_kib = r->hosts[i].free_kib;
        /* Slots that will be recreated in place free their memory first. */
    }
    if (cl_place_compute(ph, r->nhosts, ps, s->nslots, err) < 0)
        goto cleanup;
    for (i = 0; i < s->nslots; i++)
        p[i].host = ps[i].host;
    qsort(p, s->nslots, sizeof(*p), cmp_rank);
    *out = p;
    *extras = x;
    *nextra = nx;
    p = NULL;
    x = NULL;
    rc = 0;

cleanup:
    free(p);
    free(x);
    free(ph);
    free(ps);
    free(used);
    return rc;
}

json_object *cl_run_plan_json(const cl_run_t *r, const cl_slot_plan_t *p, const cl_extra_t *x,
                              size_t nx)
{
    json_object *arr = json_object_new_array();
    size_t i, j;

    for (i = 0; i < r->spec->nslots; i++) {
        const cl_slot_t *sl = &r->spec->slots[p[i].slot];
        json_object *o, *roles;
        if (p[i].act == CL_ACT_NONE)
            continue;
        o = json_object_new_object();
        roles = json_object_new_array();
        for (j = 0; j < sl->nroles; j++)
            json_object_array_add(roles, json_object_new_string(sl->roles[j]));
        json_object_object_add(o, "action", json_object_new_string(cl_act_names[p[i].act]));
        json_object_object_add(o, "slot", json_object_new_string(sl->name));
        json_object_object_add(o, "domain", json_object_new_string(sl->name));
        json_object_object_add(o, "host", json_object_new_string(r->hosts[p[i].host].name));
        json_object_object_add(o, "ip", json_object_new_string(sl->ip));
        json_object_object_add(o, "roles", roles);
        json_object_array_add(arr, o);
    }
    for (i = 0; i < nx; i++) {
        const cl_dom_t *d = &r->doms.v[x[i].dom];
        json_object *o = json_object_new_object();
        json_object_object_add(o, "action", json_object_new_string("remove"));
        json_object_object_add(o, "slot", json_object_new_string(d->slot));
        json_object_object_add(o, "domain", json_object_new_string(d->name));
        json_object_object_add(o, "host",
                               json_object_new_string(r->hosts[r->dom_host[x[i].dom]].name));
        json_object_object_add(o, "reason", json_object_new_string(x[i].why));
        json_object_array_add(arr, o);
    }
    return arr;
}

/* ========================================================================================== */
/* Acting                                                                                     */
/* ========================================================================================== */

/* A UUID and MAC for a new slot that no other domain (nor another slot) uses. */
static int pick_identity(cl_run_t *r, size_t slot_idx, cl_idset_t *ours, char uuid[37],
                         char mac[18], cl_err_t *err)
{
    const cl_spec_t *s = r->spec;
    const cl_slot_t *sl = &s->slots[slot_idx];
    unsigned salt;

    for (salt = 0;; salt++) {
        cl_ident_uuid(s->name, sl->name, salt, uuid);
        if (!cl_idset_has(&r->foreign, uuid) && !cl_idset_has(ours, uuid))
            break;
        if (salt > 1000)
            return cl_err_set(err, CL_ERR_STATE, 0, NULL, "derive UUID", "no free UUID for %s",
                              sl->name);
    }
    if (s->mac_start) {
        /*
         * Slot i gets start + i, unless a running VM of this cloud holds that address (slots
         * were declared before it since it was made): then the next one none of them holds.
         */
        unsigned long off = slot_idx;
        do {
            if (cl_ident_mac_offset(s->mac_start, off++, mac, err) < 0)
                return -1;
        } while (cl_idset_has(ours, mac));
        if (cl_idset_has(&r->foreign, mac))
            return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "derive MAC",
                              "starting_mac_address: %s (for %s) is already used by another "
                              "domain on the pool's hosts",
                              mac, sl->name);
    } else {
        for (salt = 0;; salt++) {
            cl_ident_mac_derived(s->name, sl->name, salt, mac);
            if (!cl_idset_has(&r->foreign, mac) && !cl_idset_has(ours, mac))
                break;
            if (salt > 1000)
                return cl_err_set(err, CL_ERR_STATE, 0, NULL, "derive MAC", "no free MAC for %s",
                                  sl->name);
        }
    }
    cl_idset_add(ours, uuid);
    cl_idset_add(ours, mac);
    return 0;
}

static char *owner_xml(const cl_run_t *r, const cl_slot_t *sl, const char *host, const char *disk,
                       const char *config, const char *mac)
{
    char *ec = cl_tmpl_escape(r->name), *es = cl_tmpl_escape(sl->name),
         *er = cl_tmpl_escape(sl->roles[0]), *ei = cl_tmpl_escape(sl->ip),
         *eh = cl_tmpl_escape(host), *eimg = cl_tmpl_escape(sl->image), *ed = cl_tmpl_escape(disk);
    char *out = NULL;
    size_t n;

    if (ec && es && er && ei && eh && eimg && ed) {
        n = strlen(ec) + strlen(es) + strlen(er) + strlen(ei) + strlen(eh) + strlen(eimg) +
            strlen(ed) + 400;
        out = malloc(n);
        if (out)
            snprintf(out, n,
                     "<" CL_META_PREFIX ":owner xmlns:" CL_META_PREFIX "=\"" CL_META_URI "\" "
                     "cloud=\"%s\" slot=\"%s\" role=\"%s\" index=\"%d\" ip=\"%s\" host=\"%s\" "
                     "image=\"%s\" disk=\"%s\" config=\"%s\" epoch=\"%lu\" mac=\"%s\"/>",
                     ec, es, er, sl->index, ei, eh, eimg, ed, config, r->epoch, mac);
    }
    free(ec);
    free(es);
    free(er);
    free(ei);
    free(eh);
    free(eimg);
    free(ed);
    return out;
}

int cl_run_remove(cl_run_t *r, const cl_dom_t *d, int host, const char *why, unsigned grace_ms,
                  cl_err_t *err)
{
    cl_host_view_t *h = &r->hosts[host];

    if (cl_host_remove(h->host, r->epoch, d->name, grace_ms, err) < 0)
        return -1;
    cl_run_change(r, "remove", d->slot, h->name);
    if (d->disk[0] && cl_host_vol_delete(h->host, r->epoch, r->spec ? r->spec->disk_pool : NULL,
                                         d->disk, err) < 0) {
        cl_run_progress(r, "-domain", d->slot, h->name, "removed domain %s (%s)", d->name, why);
        return -1;
    }
    /* one event per slot: the domain and the disk made for it go together */
    cl_run_progress(r, "-domain", d->slot, h->name, "removed domain %s (%s)%s%s", d->name, why,
                    d->disk[0] ? " and deleted its disk " : "", d->disk);
    cl_run_flush(r, h);
    return 0;
}

/*
 * {{ssh_pubkey}}: the base64 of ssh_key's public key line (KEY.pub), which the guest adds to
 * root's authorized keys at boot (the lab image's cloud.sshkey=).  Malloc'ed; NULL and err.
 */
static char *ssh_pubkey_b64(const cl_spec_t *s, const char *host, cl_err_t *err)
{
    char path[1024], line[4096], *out = NULL;
    size_t n;
    FILE *f;

    if (!s->ssh_key || !*s->ssh_key) {
        cl_err_set(err, CL_ERR_SPEC, 0, host, "define",
                   "ssh_key: the template uses {{ssh_pubkey}} but the cloud has no ssh_key");
        return NULL;
    }
    snprintf(path, sizeof(path), "%s.pub", s->ssh_key);
    if (!(f = fopen(path, "r"))) {
        cl_err_sys(err, host, "define", "ssh_key: %s (for {{ssh_pubkey}} of the template)", path);
        return NULL;
    }
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        n--;
    if (n == 0 || n == sizeof(line) - 1 || !memchr(line, ' ', n)) {
        cl_err_set(err, CL_ERR_SPEC, 0, host, "define",
                   "ssh_key: %s is not one public key line (type, key, comment)", path);
        return NULL;
    }
    if ((out = malloc(4 * ((n + 2) / 3) + 1)) != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)line, (int)n);
    else
        cl_err_set(err, CL_ERR_SYS, 0, host, "define", "out of memory");
    return out;
}

int cl_run_create(cl_run_t *r, const cl_slot_plan_t *p, cl_idset_t *ours, cl_err_t *err)
{
    const cl_spec_t *s = r->spec;
    const cl_slot_t *sl = &s->slots[p->slot];
    cl_host_view_t *h = &r->hosts[p->host];
    char uuid[37], mac[18], disk[512], vol[CL_DOMNAME_MAX + 8], roles[512];
    char *meta = NULL, *xml = NULL, *pubkey = NULL;
    cl_tmpl_vars_t vars;
    size_t i, off = 0;
    int rc = -1;

    /* the other domains' identities: collected only by a run that creates something */
    if (cl_run_foreign(r, err) < 0)
        return -1;
    if (cl_idset_has(&r->foreign, sl->name))
        return cl_err_set(err, CL_ERR_VIRT, 0, h->name, "define",
                          "a domain named %s already exists on %s and does not belong to cloud "
                          "%s: rename that domain or this cloud",
                          sl->name, h->name, s->name);
    if (pick_identity(r, p->slot, ours, uuid, mac, err) < 0)
        return -1;
    /* The base image is never written: each slot boots a copy-on-write overlay of its own. */
    if (!h->pool_ready) {
        if (cl_host_pool_ensure(h->host, r->epoch, s->disk_pool, s->disk_pool_path, err) < 0)
            return -1;
        h->pool_ready = 1;
    }
    snprintf(vol, sizeof(vol), "%s.qcow2", sl->name);
    if (cl_host_overlay(h->host, r->epoch, s->disk_pool, vol, sl->image, s->image_format, disk,
                        sizeof(disk), err) < 0)
        return -1;
    cl_run_progress(r, "+disk", sl->name, h->name, "overlay %s on %s", disk, sl->image);
    roles[0] = '\0';
    for (i = 0; i < sl->nroles; i++)
        off += (size_t)snprintf(roles + off, off < sizeof(roles) ? sizeof(roles) - off : 0, "%s%s",
                                i ? "," : "", sl->roles[i]);
    if (strstr(s->tmpl, "{{ssh_pubkey}}") && !(pubkey = ssh_pubkey_b64(s, h->name, err)))
        goto cleanup;
    memset(&vars, 0, sizeof(vars));
    vars.name = vars.slot = sl->name;
    vars.uuid = uuid;
    vars.mac = mac;
    vars.disk = disk;
    vars.image = sl->image;
    vars.ip = sl->ip;
    vars.role = sl->roles[0];
    vars.roles = roles;
    vars.cloud = s->name;
    vars.host = h->name;
    vars.memory = cl_spec_slot_mem_kib(s, p->slot);
    vars.vcpus = s->vm_ncpu;
    vars.index = sl->index;
    vars.ssh_pubkey = pubkey;
    meta = owner_xml(r, sl, h->name, disk, p->config, mac);
    if (!meta) {
        cl_err_set(err, CL_ERR_SYS, 0, h->name, "define", "out of memory");
        goto cleanup;
    }
    xml = cl_tmpl_render(s->tmpl, &vars, meta, err);
    if (!xml)
        goto cleanup;
    if (cl_host_define(h->host, r->epoch, sl->name, xml, err) < 0)
        goto cleanup;
    cl_run_progress(r, "+define", sl->name, h->name, "defined %s (uuid %s, mac %s, ip %s)",
                    sl->name, uuid, mac, sl->ip);
    if (cl_host_start(h->host, r->epoch, sl->name, err) < 0)
        goto cleanup;
    cl_run_progress(r, "+start", sl->name, h->name, "started %s", sl->name);
    cl_run_change(r, "create", sl->name, h->name);
    cl_run_flush(r, h);
    rc = 0;

cleanup:
    free(pubkey);
    free(meta);
    free(xml);
    return rc;
}
