/*
 * cl_engine: observe, plan, converge, tear down and describe clouds (see cl_engine.h).
 * Everything a run learns about the world comes from libvirt (domains and their ownership
 * metadata) and from the cloud's state file, so an interrupted run is finished by the next.
 */
#include "cl_engine.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_ident.h"
#include "cl_place.h"
#include "cl_log.h"
#include "cl_state.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_tmpl.h"
#include "cl_virt.h"

/* ========================================================================================== */
/* Engine and its connection cache                                                            */
/* ========================================================================================== */

typedef struct conn_entry {
    char *uri;
    cl_virt_t *virt;
} conn_entry_t;

struct cl_engine {
    char *state_dir;
    cl_addrs_t self;
    int readonly;
    pthread_mutex_t act_lock;  /* one actor: every mutation of every cloud */
    pthread_mutex_t conn_lock; /* the connection cache */
    conn_entry_t *conns;
    size_t nconns;
    cl_addrs_t led; /* clouds led by this process: a new term bumps the epoch */
};

int cl_engine_new(const cl_engine_opts_t *o, cl_engine_t **out, cl_err_t *err)
{
    cl_engine_t *e = calloc(1, sizeof(*e));
    size_t i;

    *out = NULL;
    if (!e)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "engine", "out of memory");
    e->state_dir = strdup(o->state_dir ? o->state_dir : "/var/lib/cloud");
    e->readonly = o->readonly;
    pthread_mutex_init(&e->act_lock, NULL);
    pthread_mutex_init(&e->conn_lock, NULL);
    if (o->self && o->self->n) {
        for (i = 0; i < o->self->n; i++)
            cl_addrs_add(&e->self, o->self->v[i]);
    } else if (cl_net_local_addrs(&e->self, err) < 0) {
        cl_engine_free(e);
        return -1;
    }
    cl_virt_global_init();
    *out = e;
    return 0;
}

void cl_engine_free(cl_engine_t *e)
{
    size_t i;

    if (!e)
        return;
    for (i = 0; i < e->nconns; i++) {
        cl_virt_close(e->conns[i].virt);
        free(e->conns[i].uri);
    }
    free(e->conns);
    cl_addrs_free(&e->self);
    cl_addrs_free(&e->led);
    pthread_mutex_destroy(&e->act_lock);
    pthread_mutex_destroy(&e->conn_lock);
    free(e->state_dir);
    free(e);
}

const cl_addrs_t *cl_engine_self(const cl_engine_t *e)
{
    return &e->self;
}

/* The cached connection for uri, (re)opened if needed.  Owned by the cache. */
static cl_virt_t *conn_get(cl_engine_t *e, const char *uri, const char *host, cl_err_t *err)
{
    cl_virt_t *v = NULL;
    size_t i;

    pthread_mutex_lock(&e->conn_lock);
    for (i = 0; i < e->nconns; i++)
        if (strcmp(e->conns[i].uri, uri) == 0)
            break;
    if (i < e->nconns && cl_virt_alive(e->conns[i].virt)) {
        v = e->conns[i].virt;
        goto cleanup;
    }
    if (cl_virt_open(uri, host, e->readonly, &v, err) < 0) {
        v = NULL;
        goto cleanup;
    }
    if (i < e->nconns) {
        cl_virt_close(e->conns[i].virt);
        e->conns[i].virt = v;
    } else {
        conn_entry_t *nv = realloc(e->conns, (e->nconns + 1) * sizeof(*nv));
        char *u = strdup(uri);
        if (!nv || !u) {
            free(u);
            if (nv)
                e->conns = nv;
            cl_virt_close(v);
            v = NULL;
            cl_err_set(err, CL_ERR_SYS, 0, host, "connect", "out of memory");
            goto cleanup;
        }
        e->conns = nv;
        e->conns[e->nconns].uri = u;
        e->conns[e->nconns].virt = v;
        e->nconns++;
    }
    cl_log(CL_LOG_INFO, "+connect", "host=%s uri=%s%s", host, uri,
           e->readonly ? " (read-only)" : "");

cleanup:
    pthread_mutex_unlock(&e->conn_lock);
    return v;
}

int cl_engine_is_member(const cl_engine_t *e, const cl_spec_t *spec)
{
    size_t i;

    for (i = 0; i < spec->npool; i++)
        if (cl_net_is_self(&e->self, spec->pool[i]))
            return 1;
    return 0;
}

/*
 * Until the election (next issue) exists, the highest-priority host (first in pool) leads.
 * With a pool of one this host is member and leader.
 */
int cl_engine_leader_index(const cl_engine_t *e, const cl_spec_t *spec)
{
    (void)e;
    return spec->npool ? 0 : -1;
}

size_t cl_engine_cloud_count(cl_engine_t *e)
{
    char **names = NULL;
    size_t n = 0;

    if (cl_state_list(e->state_dir, &names, &n, NULL) < 0)
        n = 0;
    cl_state_names_free(names);
    return n;
}

/* ========================================================================================== */
/* A run: the pool's hosts and what is on them                                                */
/* ========================================================================================== */

typedef struct host_view {
    const char *name;
    cl_virt_t *virt; /* NULL: unreachable */
    int primary;     /* first host using this connection: scanned once */
    int pool_ready;
    unsigned long free_kib;
} host_view_t;

typedef struct run {
    cl_engine_t *e;
    const cl_spec_t *spec;
    const char *name;
    host_view_t *hosts;
    size_t nhosts;
    cl_dom_list_t doms; /* the cloud's domains on every host */
    int *dom_host;      /* host index of each domain */
    cl_idset_t foreign; /* identities used by other domains */
    cl_progress_fn fn;
    void *ud;
    json_object *changes; /* array */
    int changed;
    unsigned long epoch;
} run_t;

static void progress(run_t *r, const char *event, const char *slot, const char *host,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void progress(run_t *r, const char *event, const char *slot, const char *host,
                     const char *fmt, ...)
{
    char msg[512];
    json_object *ev;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cl_log(CL_LOG_INFO, event, "cloud=%s%s%s%s%s epoch=%lu %s", r->name, slot ? " slot=" : "",
           slot ? slot : "", host ? " host=" : "", host ? host : "", r->epoch, msg);
    if (!r->fn)
        return;
    ev = json_object_new_object();
    json_object_object_add(ev, "progress", json_object_new_boolean(1));
    json_object_object_add(ev, "event", json_object_new_string(event));
    json_object_object_add(ev, "cloud", json_object_new_string(r->name));
    if (slot)
        json_object_object_add(ev, "slot", json_object_new_string(slot));
    if (host)
        json_object_object_add(ev, "host", json_object_new_string(host));
    json_object_object_add(ev, "message", json_object_new_string(msg));
    r->fn(r->ud, ev);
    json_object_put(ev);
}

/*
 * Tell the listener that a slow step may follow (fn(ud, NULL)): on a real hypervisor each
 * slot's actions take long enough that its events should be on their way.  The test driver
 * answers in microseconds, so its events travel in bursts.
 */
static void progress_flush(run_t *r, const host_view_t *h)
{
    if (r->fn && (!h || !h->virt || !cl_virt_is_test(h->virt)))
        r->fn(r->ud, NULL);
}

static void change(run_t *r, const char *action, const char *slot, const char *host)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "action", json_object_new_string(action));
    json_object_object_add(c, "slot", json_object_new_string(slot));
    json_object_object_add(c, "domain", json_object_new_string(slot));
    json_object_object_add(c, "host", json_object_new_string(host ? host : ""));
    json_object_array_add(r->changes, c);
    r->changed++;
}

static void run_free(run_t *r)
{
    free(r->hosts);
    free(r->dom_host);
    cl_dom_list_free(&r->doms);
    cl_idset_free(&r->foreign);
    json_object_put(r->changes);
}

/* Connect to every pool host; unreachable hosts are marked, not fatal (placement skips them). */
static int run_connect(run_t *r, const char *hypervisor, const char *const *pool, size_t npool,
                       cl_err_t *err)
{
    size_t i, j;
    int alive = 0;
    cl_err_t first;

    cl_err_clear(&first);
    r->hosts = calloc(npool + 1, sizeof(*r->hosts));
    if (!r->hosts)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "connect", "out of memory");
    r->nhosts = npool;
    for (i = 0; i < npool; i++) {
        char *uri = cl_spec_uri_for(hypervisor, pool[i]);
        cl_err_t e1;
        host_view_t *h = &r->hosts[i];

        h->name = pool[i];
        cl_err_clear(&e1);
        if (!uri)
            return cl_err_set(err, CL_ERR_SYS, 0, pool[i], "connect", "out of memory");
        h->virt = conn_get(r->e, uri, pool[i], &e1);
        free(uri);
        if (!h->virt) {
            if (!first.domain)
                first = e1;
            progress(r, "-host-down", NULL, pool[i], "cannot reach the hypervisor: %s", e1.msg);
            continue;
        }
        alive++;
        h->primary = 1;
        for (j = 0; j < i; j++)
            if (r->hosts[j].virt == h->virt)
                h->primary = 0;
        h->free_kib = cl_virt_is_test(h->virt) ? 0 : cl_virt_free_kib(h->virt);
    }
    if (!alive) {
        if (err)
            *err = first;
        return -1;
    }
    return 0;
}

static int host_index(const run_t *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->nhosts; i++)
        if (strcmp(r->hosts[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Find the cloud's domains on every reachable host (and, optionally, foreign identities). */
static int run_observe(run_t *r, int want_foreign, cl_err_t *err)
{
    size_t i, before;

    for (i = 0; i < r->nhosts; i++) {
        host_view_t *h = &r->hosts[i];
        size_t k;
        if (!h->virt || !h->primary)
            continue;
        before = r->doms.n;
        if (cl_virt_scan(h->virt, r->name, &r->doms, want_foreign ? &r->foreign : NULL, err) < 0)
            return -1;
        r->dom_host = realloc(r->dom_host, (r->doms.n + 1) * sizeof(*r->dom_host));
        if (!r->dom_host)
            return cl_err_set(err, CL_ERR_SYS, 0, NULL, "observe", "out of memory");
        for (k = before; k < r->doms.n; k++) {
            /* Hosts sharing one connection: the metadata says which of them it was placed on. */
            int hi = host_index(r, r->doms.v[k].host);
            r->dom_host[k] = (hi >= 0 && r->hosts[hi].virt == h->virt) ? hi : (int)i;
        }
    }
    return 0;
}

/* ========================================================================================== */
/* Planning                                                                                   */
/* ========================================================================================== */

enum slot_action { ACT_NONE, ACT_START, ACT_CREATE, ACT_RECREATE };

static const char *const action_names[] = {"none", "start", "create", "recreate"};

typedef struct slot_plan {
    size_t slot; /* index into spec->slots */
    int dom;     /* index into run.doms of the domain kept, or -1 */
    int host;    /* where it runs / will run */
    enum slot_action act;
    char config[20];
    int rank; /* dependency rank: earliest role */
} slot_plan_t;

typedef struct extra {
    int dom; /* domain to remove: slot gone, or duplicate */
    const char *why;
} extra_t;

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
    const slot_plan_t *x = a, *y = b;

    if (x->rank != y->rank)
        return x->rank - y->rank;
    return (int)x->slot - (int)y->slot;
}

/*
 * Decide, for every slot, what to do; list domains to remove.  Placement of new slots is
 * computed here (cl_place), so --noop shows where each VM would go.
 */
static int run_plan(run_t *r, slot_plan_t **out, extra_t **extras, size_t *nextra, cl_err_t *err)
{
    const cl_spec_t *s = r->spec;
    slot_plan_t *p = calloc(s->nslots + 1, sizeof(*p));
    extra_t *x = calloc(r->doms.n + 1, sizeof(*x));
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
            if (keep < 0 ||
                (r->doms.v[k].state == CL_DOM_RUNNING && r->doms.v[keep].state != CL_DOM_RUNNING)) {
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
            p[i].act = ACT_CREATE;
        } else {
            p[i].dom = keep;
            p[i].host = r->dom_host[keep];
            if (strcmp(r->doms.v[keep].config, p[i].config) != 0 ||
                strcmp(r->doms.v[keep].name, sl->name) != 0)
                p[i].act = ACT_RECREATE;
            else if (r->doms.v[keep].state != CL_DOM_RUNNING)
                p[i].act = ACT_START;
            else
                p[i].act = ACT_NONE;
        }
        ps[i].name = sl->name;
        ps[i].role = sl->roles[0];
        ps[i].mem_kib = cl_spec_slot_mem_kib(s, i);
        ps[i].host = p[i].act == ACT_CREATE ? -1 : p[i].host;
    }
    for (k = 0; k < r->doms.n; k++)
        if (!used[k]) {
            x[nx].dom = (int)k;
            x[nx++].why = "no longer declared";
        }
    for (i = 0; i < r->nhosts; i++) {
        ph[i].name = r->hosts[i].name;
        ph[i].alive = r->hosts[i].virt != NULL;
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

static json_object *plan_json(const run_t *r, const slot_plan_t *p, const extra_t *x, size_t nx)
{
    json_object *arr = json_object_new_array();
    size_t i, j;

    for (i = 0; i < r->spec->nslots; i++) {
        const cl_slot_t *sl = &r->spec->slots[p[i].slot];
        json_object *o, *roles;
        if (p[i].act == ACT_NONE)
            continue;
        o = json_object_new_object();
        roles = json_object_new_array();
        for (j = 0; j < sl->nroles; j++)
            json_object_array_add(roles, json_object_new_string(sl->roles[j]));
        json_object_object_add(o, "action", json_object_new_string(action_names[p[i].act]));
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
static int pick_identity(run_t *r, size_t slot_idx, cl_idset_t *ours, char uuid[37], char mac[18],
                         cl_err_t *err)
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

static char *owner_xml(const run_t *r, const cl_slot_t *sl, const char *host, const char *disk,
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

static int remove_domain(run_t *r, const cl_dom_t *d, int host, const char *why, unsigned grace_ms,
                         cl_err_t *err)
{
    host_view_t *h = &r->hosts[host];

    if (cl_virt_remove(h->virt, d->name, grace_ms, err) < 0)
        return -1;
    change(r, "remove", d->slot, h->name);
    if (d->disk[0] &&
        cl_virt_vol_delete(h->virt, r->spec ? r->spec->disk_pool : NULL, d->disk, err) < 0) {
        progress(r, "-domain", d->slot, h->name, "removed domain %s (%s)", d->name, why);
        return -1;
    }
    /* one event per slot: the domain and the disk made for it go together */
    progress(r, "-domain", d->slot, h->name, "removed domain %s (%s)%s%s", d->name, why,
             d->disk[0] ? " and deleted its disk " : "", d->disk);
    progress_flush(r, h);
    return 0;
}

static int create_domain(run_t *r, const slot_plan_t *p, cl_idset_t *ours, cl_err_t *err)
{
    const cl_spec_t *s = r->spec;
    const cl_slot_t *sl = &s->slots[p->slot];
    host_view_t *h = &r->hosts[p->host];
    char uuid[37], mac[18], disk[512], vol[CL_DOMNAME_MAX + 8], roles[512];
    char *meta = NULL, *xml = NULL;
    cl_tmpl_vars_t vars;
    size_t i, off = 0;
    int rc = -1;

    if (cl_idset_has(&r->foreign, sl->name))
        return cl_err_set(err, CL_ERR_VIRT, 0, h->name, "define",
                          "a domain named %s already exists on %s and does not belong to cloud "
                          "%s: rename that domain or this cloud",
                          sl->name, h->name, s->name);
    if (pick_identity(r, p->slot, ours, uuid, mac, err) < 0)
        return -1;
    /* The base image is never written: each slot boots a copy-on-write overlay of its own. */
    if (!h->pool_ready) {
        if (cl_virt_pool_ensure(h->virt, s->disk_pool, s->disk_pool_path, err) < 0)
            return -1;
        h->pool_ready = 1;
    }
    snprintf(vol, sizeof(vol), "%s.qcow2", sl->name);
    if (cl_virt_overlay(h->virt, s->disk_pool, vol, sl->image, s->image_format, disk, sizeof(disk),
                        err) < 0)
        return -1;
    progress(r, "+disk", sl->name, h->name, "overlay %s on %s", disk, sl->image);
    roles[0] = '\0';
    for (i = 0; i < sl->nroles; i++)
        off += (size_t)snprintf(roles + off, off < sizeof(roles) ? sizeof(roles) - off : 0, "%s%s",
                                i ? "," : "", sl->roles[i]);
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
    meta = owner_xml(r, sl, h->name, disk, p->config, mac);
    if (!meta) {
        cl_err_set(err, CL_ERR_SYS, 0, h->name, "define", "out of memory");
        goto cleanup;
    }
    xml = cl_tmpl_render(s->tmpl, &vars, meta, err);
    if (!xml)
        goto cleanup;
    if (cl_virt_define(h->virt, sl->name, xml, err) < 0)
        goto cleanup;
    progress(r, "+define", sl->name, h->name, "defined %s (uuid %s, mac %s, ip %s)", sl->name, uuid,
             mac, sl->ip);
    if (cl_virt_start(h->virt, sl->name, err) < 0)
        goto cleanup;
    progress(r, "+start", sl->name, h->name, "started %s", sl->name);
    change(r, "create", sl->name, h->name);
    progress_flush(r, h);
    rc = 0;

cleanup:
    free(meta);
    free(xml);
    return rc;
}

/* ========================================================================================== */
/* Status document                                                                            */
/* ========================================================================================== */

static json_object *slot_status(const run_t *r, const cl_slot_t *sl, int dom)
{
    json_object *o = json_object_new_object(), *roles = json_object_new_array();
    size_t j;

    for (j = 0; j < sl->nroles; j++)
        json_object_array_add(roles, json_object_new_string(sl->roles[j]));
    json_object_object_add(o, "name", json_object_new_string(sl->name));
    json_object_object_add(o, "roles", roles);
    json_object_object_add(o, "index", json_object_new_int(sl->index));
    json_object_object_add(o, "ip", json_object_new_string(sl->ip));
    json_object_object_add(o, "image", json_object_new_string(sl->image));
    if (dom >= 0) {
        const cl_dom_t *d = &r->doms.v[dom];
        json_object_object_add(o, "host", json_object_new_string(r->hosts[r->dom_host[dom]].name));
        json_object_object_add(o, "domain", json_object_new_string(d->name));
        json_object_object_add(o, "uuid", json_object_new_string(d->uuid));
        json_object_object_add(o, "mac", json_object_new_string(d->mac));
        json_object_object_add(o, "disk", json_object_new_string(d->disk));
        json_object_object_add(o, "epoch", json_object_new_int64((int64_t)d->epoch));
        json_object_object_add(o, "state", json_object_new_string(cl_dom_state_name(d->state)));
    } else {
        json_object_object_add(o, "host", NULL);
        json_object_object_add(o, "domain", NULL);
        json_object_object_add(o, "state", json_object_new_string("missing"));
    }
    return o;
}

/* Status of one cloud from a run that has connected and observed. */
static json_object *run_status(run_t *r, json_object *state)
{
    const cl_spec_t *s = r->spec;
    json_object *o = json_object_new_object(), *members = json_object_new_array(),
                *slots = json_object_new_array(), *v;
    int *used = calloc(r->doms.n + 1, sizeof(*used));
    size_t i, k, running = 0, extra = 0;
    int leader = s ? cl_engine_leader_index(r->e, s) : -1;
    const char *st;

    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "type", json_object_new_string(s ? s->type : "unknown"));
    for (i = 0; i < r->nhosts; i++) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "host", json_object_new_string(r->hosts[i].name));
        json_object_object_add(m, "alive", json_object_new_boolean(r->hosts[i].virt != NULL));
        json_object_object_add(
            m, "self", json_object_new_boolean(cl_net_is_self(&r->e->self, r->hosts[i].name)));
        json_object_object_add(m, "priority", json_object_new_int((int)i));
        json_object_array_add(members, m);
    }
    for (i = 0; s && i < s->nslots; i++) {
        int dom = -1;
        for (k = 0; k < r->doms.n; k++)
            if (strcmp(r->doms.v[k].slot, s->slots[i].name) == 0) {
                if (dom < 0 || (r->doms.v[k].state == CL_DOM_RUNNING &&
                                r->doms.v[dom].state != CL_DOM_RUNNING))
                    dom = (int)k;
                used[k]++;
            }
        if (dom >= 0 && r->doms.v[dom].state == CL_DOM_RUNNING)
            running++;
        json_object_array_add(slots, slot_status(r, &s->slots[i], dom));
    }
    /* extra: domains no declared slot wants, then second copies of a slot */
    for (k = 0; k < r->doms.n; k++)
        extra += !used[k];
    for (i = 0; s && i < s->nslots; i++) {
        size_t copies = 0;
        for (k = 0; k < r->doms.n; k++)
            copies += strcmp(r->doms.v[k].slot, s->slots[i].name) == 0;
        if (copies > 1)
            extra += copies - 1;
    }
    if (!state && r->doms.n == 0)
        st = "stopped";
    else if (s && s->running && running == s->nslots && extra == 0)
        st = "running";
    else
        st = "degraded";
    json_object_object_add(o, "state", json_object_new_string(st));
    json_object_object_add(o, "leader",
                           leader >= 0 ? json_object_new_string(s->pool[leader]) : NULL);
    json_object_object_add(
        o, "epoch",
        json_object_new_int64(
            state && json_object_object_get_ex(state, "epoch", &v) ? json_object_get_int64(v) : 0));
    json_object_object_add(o, "hypervisor", json_object_new_string(s ? s->hypervisor : ""));
    json_object_object_add(o, "members", members);
    json_object_object_add(o, "slots", slots);
    json_object_object_add(o, "domains", json_object_new_int((int)r->doms.n));
    free(used);
    return o;
}

/* ========================================================================================== */
/* Entry points                                                                               */
/* ========================================================================================== */

static unsigned long state_epoch(json_object *state)
{
    json_object *v;

    if (state && json_object_object_get_ex(state, "epoch", &v))
        return (unsigned long)json_object_get_int64(v);
    return 0;
}

/* The state document to persist: spec, epoch, leader, placement. */
static json_object *state_doc(const run_t *r, const slot_plan_t *p)
{
    json_object *o = json_object_new_object(), *pl = json_object_new_object();
    size_t i;

    json_object_object_add(o, "spec", json_object_get(r->spec->json));
    json_object_object_add(o, "epoch", json_object_new_int64((int64_t)r->epoch));
    json_object_object_add(
        o, "leader", json_object_new_string(r->spec->pool[cl_engine_leader_index(r->e, r->spec)]));
    for (i = 0; p && i < r->spec->nslots; i++)
        json_object_object_add(pl, r->spec->slots[p[i].slot].name,
                               json_object_new_string(r->hosts[p[i].host].name));
    json_object_object_add(o, "placement", pl);
    return o;
}

static int led_has(const cl_engine_t *e, const char *name)
{
    size_t i;

    for (i = 0; i < e->led.n; i++)
        if (strcmp(e->led.v[i], name) == 0)
            return 1;
    return 0;
}

static void forget_led(cl_engine_t *e, const char *name)
{
    size_t i;

    for (i = 0; i < e->led.n; i++)
        if (strcmp(e->led.v[i], name) == 0) {
            free(e->led.v[i]);
            e->led.v[i] = e->led.v[--e->led.n];
            e->led.v[e->led.n] = NULL;
            return;
        }
}

int cl_engine_apply(cl_engine_t *e, const cl_spec_t *spec, int noop, cl_progress_fn fn, void *ud,
                    json_object **result, cl_err_t *err)
{
    run_t r;
    slot_plan_t *p = NULL;
    extra_t *x = NULL;
    size_t nx = 0, i;
    json_object *state = NULL, *res = NULL, *doc = NULL;
    cl_idset_t ours = {0};
    int rc = -1, locked = 0, ls;

    *result = NULL;
    memset(&r, 0, sizeof(r));
    r.e = e;
    r.spec = spec;
    r.name = spec->name;
    r.fn = fn;
    r.ud = ud;
    r.changes = json_object_new_array();
    if (!spec->running) {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "apply", "ensure => stopped is a stop, not an apply");
        goto cleanup;
    }
    if (!noop) {
        if (e->readonly) {
            cl_err_set(err, CL_ERR_STATE, 0, NULL, "apply", "this engine is read-only");
            goto cleanup;
        }
        pthread_mutex_lock(&e->act_lock);
        locked = 1;
    }
    ls = cl_state_load(e->state_dir, spec->name, &state, err);
    if (ls < 0)
        goto cleanup;
    r.epoch = state_epoch(state);
    if (run_connect(&r, spec->hypervisor, spec->pool, spec->npool, err) < 0)
        goto cleanup;
    if (!noop && !led_has(e, spec->name)) {
        /*
         * A new term of leadership (first apply of this cloud by this process): the epoch
         * grows and is persisted before any action carries it.
         */
        r.epoch++;
        cl_addrs_add(&e->led, spec->name);
        doc = state_doc(&r, NULL);
        if (cl_state_save(e->state_dir, spec->name, doc, err) < 0)
            goto cleanup;
        progress(&r, "+elected", NULL, spec->pool[cl_engine_leader_index(e, spec)],
                 "leading cloud %s in epoch %lu", spec->name, r.epoch);
    }
    if (run_observe(&r, 1, err) < 0 || run_plan(&r, &p, &x, &nx, err) < 0)
        goto cleanup;
    if (noop) {
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", plan_json(&r, p, x, nx));
        json_object_object_add(res, "status", run_status(&r, state));
        *result = res;
        rc = 0;
        goto cleanup;
    }
    /* Domains of the cloud that no slot wants (or duplicates): removed first. */
    for (i = 0; i < nx; i++)
        if (remove_domain(&r, &r.doms.v[x[i].dom], r.dom_host[x[i].dom], x[i].why,
                          CL_DOMAIN_SHUTDOWN_GRACE_MS, err) < 0)
            goto cleanup;
    /* Identities taken by this cloud's kept domains (a recreated slot keeps its own). */
    for (i = 0; i < spec->nslots; i++)
        if (p[i].dom >= 0 && p[i].act != ACT_RECREATE) {
            cl_idset_add(&ours, r.doms.v[p[i].dom].uuid);
            if (r.doms.v[p[i].dom].mac[0])
                cl_idset_add(&ours, r.doms.v[p[i].dom].mac);
        }
    /* Then every slot, in dependency order (database before servers before balancer...). */
    for (i = 0; i < spec->nslots; i++) {
        const cl_slot_t *sl = &spec->slots[p[i].slot];
        host_view_t *h = &r.hosts[p[i].host];
        switch (p[i].act) {
        case ACT_NONE: break;
        case ACT_START:
            if (cl_virt_start(h->virt, r.doms.v[p[i].dom].name, err) < 0)
                goto cleanup;
            progress(&r, "+start", sl->name, h->name, "started %s (it was %s)", sl->name,
                     cl_dom_state_name(r.doms.v[p[i].dom].state));
            change(&r, "start", sl->name, h->name);
            progress_flush(&r, h);
            break;
        case ACT_RECREATE: {
            const cl_dom_t *d = &r.doms.v[p[i].dom];
            if (remove_domain(&r, d, r.dom_host[p[i].dom], "its definition changed",
                              CL_DOMAIN_SHUTDOWN_GRACE_MS, err) < 0)
                goto cleanup;
            /* the slot keeps its host (its memory is already counted there) */
            if (create_domain(&r, &p[i], &ours, err) < 0)
                goto cleanup;
            break;
        }
        case ACT_CREATE:
            if (create_domain(&r, &p[i], &ours, err) < 0)
                goto cleanup;
            break;
        }
    }
    /* Roles inside the guests: the test driver has no guests, so nothing is faked as done. */
    for (i = 0; i < spec->nslots; i++) {
        const cl_slot_t *sl = &spec->slots[p[i].slot];
        if (p[i].act == ACT_NONE)
            continue;
        progress(&r, "~roles-skipped", sl->name, r.hosts[p[i].host].name,
                 cl_virt_is_test(r.hosts[p[i].host].virt)
                     ? "role setup skipped: the test driver has no guests"
                     : "role setup skipped: guest configuration over SSH is not available yet");
    }
    json_object_put(doc);
    doc = state_doc(&r, p);
    if (cl_state_save(e->state_dir, spec->name, doc, err) < 0)
        goto cleanup;
    /* Observe again: the status reported is the world as it is now. */
    cl_dom_list_free(&r.doms);
    free(r.dom_host);
    r.dom_host = NULL;
    if (run_observe(&r, 0, err) < 0)
        goto cleanup;
    res = json_object_new_object();
    json_object_object_add(res, "changed", json_object_new_int(r.changed));
    json_object_object_add(res, "changes", json_object_get(r.changes));
    json_object_object_add(res, "status", run_status(&r, doc));
    progress(&r, r.changed ? "+converged" : "=converged", NULL, NULL, "%d change(s)", r.changed);
    *result = res;
    rc = 0;

cleanup:
    if (locked)
        pthread_mutex_unlock(&e->act_lock);
    cl_idset_free(&ours);
    json_object_put(doc);
    json_object_put(state);
    free(p);
    free(x);
    run_free(&r);
    return rc;
}

/* Rank of a domain for tear-down order: reverse dependency (balancer before database). */
static int dom_rank(const cl_spec_t *s, const cl_dom_t *d)
{
    size_t i;

    for (i = 0; s && i < s->nroles; i++)
        if (strcmp(s->roles[i].name, d->role) == 0)
            return (int)i;
    return -1;
}

int cl_engine_stop(cl_engine_t *e, const char *name, const cl_spec_t *given, int noop,
                   cl_progress_fn fn, void *ud, json_object **result, cl_err_t *err)
{
    run_t r;
    json_object *state = NULL, *res = NULL, *plan = NULL, *v;
    cl_spec_t *stored = NULL;
    const cl_spec_t *s = given;
    size_t i, k;
    int rc = -1, locked = 0, ls, top;

    *result = NULL;
    memset(&r, 0, sizeof(r));
    r.e = e;
    r.name = name;
    r.fn = fn;
    r.ud = ud;
    r.changes = json_object_new_array();
    if (!noop) {
        if (e->readonly) {
            cl_err_set(err, CL_ERR_STATE, 0, NULL, "stop", "this engine is read-only");
            goto cleanup;
        }
        pthread_mutex_lock(&e->act_lock);
        locked = 1;
    }
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    if (ls > 0 && json_object_object_get_ex(state, "spec", &v)) {
        cl_err_t e2;
        if (cl_spec_parse(v, &stored, &e2) < 0)
            stored = NULL; /* a stored spec we cannot read: tear down by metadata alone */
    }
    /* The stored spec knows the slots (and disks of half-made ones); the given one the pool. */
    if (!s)
        s = stored;
    if (!s) {
        /* Nothing known about it: nothing to do, unless the caller gave us where to look. */
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", json_object_new_array());
        *result = res;
        rc = 0;
        goto cleanup;
    }
    r.spec = s;
    r.epoch = state_epoch(state);
    if (run_connect(&r, s->hypervisor, s->pool, s->npool, err) < 0)
        goto cleanup;
    if (run_observe(&r, 0, err) < 0)
        goto cleanup;
    plan = json_object_new_array();
    for (i = 0; i < r.doms.n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "action", json_object_new_string("remove"));
        json_object_object_add(o, "slot", json_object_new_string(r.doms.v[i].slot));
        json_object_object_add(o, "domain", json_object_new_string(r.doms.v[i].name));
        json_object_object_add(o, "host", json_object_new_string(r.hosts[r.dom_host[i]].name));
        json_object_array_add(plan, o);
    }
    if (noop) {
        res = json_object_new_object();
        json_object_object_add(res, "changed", json_object_new_int(0));
        json_object_object_add(res, "changes", json_object_new_array());
        json_object_object_add(res, "plan", plan);
        plan = NULL;
        *result = res;
        rc = 0;
        goto cleanup;
    }
    /*
     * Reverse dependency order (balancer, servers, database): the stored spec knows the roles
     * even when the stop manifest declares only the pool.
     */
    top = (int)(stored ? stored->nroles : s->nroles);
    for (; top >= -1; top--) {
        /*
         * The VMs of one role shut down together: each is asked (ACPI) at once, then each gets
         * what is left of one grace period, so a role costs one grace at most, not one a VM.
         */
        uint64_t deadline = cl_time_now_ms() + CL_DOMAIN_SHUTDOWN_GRACE_MS;
        for (i = 0; i < r.doms.n; i++)
            if (dom_rank(stored ? stored : s, &r.doms.v[i]) == top)
                cl_virt_shutdown_request(r.hosts[r.dom_host[i]].virt, r.doms.v[i].name);
        for (i = 0; i < r.doms.n; i++) {
            uint64_t now = cl_time_now_ms();
            if (dom_rank(stored ? stored : s, &r.doms.v[i]) != top)
                continue;
            if (remove_domain(&r, &r.doms.v[i], r.dom_host[i], "cloud stopped",
                              now < deadline ? (unsigned)(deadline - now) : 0, err) < 0)
                goto cleanup;
        }
    }
    /* Overlays of slots whose domain was never defined (an interrupted run). */
    for (i = 0; stored && i < stored->nslots; i++) {
        size_t j;
        int seen = 0;
        for (j = 0; j < r.doms.n && !seen; j++)
            seen = r.doms.v[j].disk[0] && strcmp(r.doms.v[j].slot, stored->slots[i].name) == 0;
        if (seen)
            continue; /* its disk went with its domain */
        for (k = 0; k < r.nhosts; k++) {
            char vol[CL_DOMNAME_MAX + 8];
            if (!r.hosts[k].virt || !r.hosts[k].primary)
                continue;
            snprintf(vol, sizeof(vol), "%s.qcow2", stored->slots[i].name);
            if (cl_virt_vol_delete_by_name(r.hosts[k].virt, stored->disk_pool, vol, err) < 0)
                goto cleanup;
        }
    }
    if (cl_state_remove(e->state_dir, name, err) < 0)
        goto cleanup;
    forget_led(e, name);
    progress(&r, "-forget", NULL, NULL, "cloud %s stopped and forgotten (%d change(s))", name,
             r.changed);
    res = json_object_new_object();
    json_object_object_add(res, "changed", json_object_new_int(r.changed + (ls > 0)));
    json_object_object_add(res, "changes", json_object_get(r.changes));
    *result = res;
    rc = 0;

cleanup:
    if (locked)
        pthread_mutex_unlock(&e->act_lock);
    json_object_put(plan);
    json_object_put(state);
    cl_spec_free(stored);
    run_free(&r);
    return rc;
}

int cl_engine_monitor(cl_engine_t *e, const char *name, cl_progress_fn fn, void *ud,
                      json_object **result, cl_err_t *err)
{
    json_object *state = NULL, *v;
    cl_spec_t *spec = NULL;
    int rc = -1, ls;

    *result = NULL;
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        return -1;
    if (ls == 0 || !json_object_object_get_ex(state, "spec", &v)) {
        json_object_put(state);
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "monitor", "cloud %s is not known here",
                          name);
    }
    if (cl_spec_parse(v, &spec, err) == 0)
        rc = cl_engine_apply(e, spec, 0, fn, ud, result, err);
    cl_spec_free(spec);
    json_object_put(state);
    return rc;
}

static json_object *status_one(cl_engine_t *e, const char *name, const cl_spec_t *given,
                               cl_err_t *err)
{
    json_object *state = NULL, *v, *o = NULL;
    cl_spec_t *stored = NULL;
    const cl_spec_t *s = given;
    run_t r;
    int ls;

    memset(&r, 0, sizeof(r));
    r.e = e;
    r.name = name;
    r.changes = json_object_new_array();
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    /* A stop manifest declares less than the cloud has: describe it with the stored spec. */
    if (ls > 0 && json_object_object_get_ex(state, "spec", &v) && (!given || !given->running)) {
        if (cl_spec_parse(v, &stored, err) < 0)
            goto cleanup;
        s = stored;
    }
    if (!s) {
        o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "state", json_object_new_string("stopped"));
        json_object_object_add(o, "slots", json_object_new_array());
        goto cleanup;
    }
    r.spec = s;
    if (run_connect(&r, s->hypervisor, s->pool, s->npool, err) < 0) {
        /* no host reachable: everything missing */
        cl_err_clear(err);
    } else if (run_observe(&r, 0, err) < 0) {
        goto cleanup;
    }
    o = run_status(&r, state);

cleanup:
    json_object_put(state);
    cl_spec_free(stored);
    run_free(&r);
    return o;
}

int cl_engine_status(cl_engine_t *e, const char *name, const cl_spec_t *spec, json_object **result,
                     cl_err_t *err)
{
    json_object *res = json_object_new_object(), *clouds = json_object_new_array(), *o;
    char **names = NULL;
    size_t n = 0, i;

    *result = NULL;
    json_object_object_add(res, "clouds", clouds);
    if (name) {
        o = status_one(e, name, spec, err);
        if (!o)
            goto fail;
        json_object_array_add(clouds, o);
    } else {
        if (cl_state_list(e->state_dir, &names, &n, err) < 0)
            goto fail;
        for (i = 0; i < n; i++) {
            o = status_one(e, names[i], NULL, err);
            if (!o)
                goto fail;
            json_object_array_add(clouds, o);
        }
        cl_state_names_free(names);
    }
    *result = res;
    return 0;

fail:
    cl_state_names_free(names);
    json_object_put(res);
    return -1;
}
