/*
 * cl_virt: the libvirt C API behind the core (see cl_virt.h; stopping domains is in
 * cl_virt_stop.c).  Errors are copied from virGetLastError() (per thread) into the caller's
 * cl_err_t once; libvirt's own printing to stderr is silenced by a quiet handler installed at
 * start-up.
 */
#include "cl_virt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cl_log.h"
#include "cl_time.h"
#include "cl_timeouts.h"
#include "cl_tmpl.h"
#include "cl_virt_int.h"

static int autodestroy; /* cl_virt_set_autodestroy: cloudd turns it on */

void cl_virt_set_autodestroy(int on)
{
    autodestroy = on;
}

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static void quiet_handler(void *ud, virErrorPtr e)
{
    (void)ud;
    (void)e;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
    virInitialize();
    virSetErrorFunc(NULL, quiet_handler);
}

void cl_virt_global_init(void)
{
    pthread_once(&init_once, do_init);
}

int cl_virt_fail(const cl_virt_t *v, cl_err_t *err, const char *fmt, ...)
{
    virErrorPtr e = virGetLastError();
    char op[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(op, sizeof(op), fmt, ap);
    va_end(ap);
    cl_err_set(err, CL_ERR_VIRT, e ? e->code : 0, v ? v->host : NULL, op, "%s",
               e && e->message ? e->message : "libvirt reported no detail");
    virResetLastError();
    return -1;
}

static int last_code(void)
{
    virErrorPtr e = virGetLastError();
    return e ? e->code : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                */
/* ------------------------------------------------------------------------------------------ */

int cl_virt_open(const char *uri, const char *host, int readonly, cl_virt_t **out, cl_err_t *err)
{
    cl_virt_t *v;

    cl_virt_global_init();
    *out = NULL;
    v = calloc(1, sizeof(*v));
    if (!v)
        return cl_err_set(err, CL_ERR_SYS, 0, host, "connect", "out of memory");
    v->uri = strdup(uri);
    v->host = strdup(host ? host : "");
    if (!v->uri || !v->host) {
        cl_virt_close(v);
        return cl_err_set(err, CL_ERR_SYS, 0, host, "connect", "out of memory");
    }
    v->conn = readonly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri);
    if (!v->conn) {
        cl_virt_fail(v, err, "connect %s", uri);
        cl_virt_close(v);
        return -1;
    }
    virConnSetErrorFunc(v->conn, NULL, quiet_handler);
    v->is_test = strncmp(uri, "test:", 5) == 0 || strncmp(uri, "test+", 5) == 0;
    *out = v;
    return 0;
}

void cl_virt_close(cl_virt_t *v)
{
    if (!v)
        return;
    if (v->conn)
        virConnectClose(v->conn);
    free(v->uri);
    free(v->host);
    free(v);
}

int cl_virt_alive(cl_virt_t *v)
{
    return v && v->conn && virConnectIsAlive(v->conn) == 1;
}
const char *cl_virt_host(const cl_virt_t *v)
{
    return v->host;
}
const char *cl_virt_uri(const cl_virt_t *v)
{
    return v->uri;
}
int cl_virt_is_test(const cl_virt_t *v)
{
    return v->is_test;
}
void *cl_virt_conn(cl_virt_t *v)
{
    return v->conn;
}

unsigned long cl_virt_free_kib(cl_virt_t *v)
{
    unsigned long long b = virNodeGetFreeMemory(v->conn);

    if (b == 0)
        virResetLastError();
    return (unsigned long)(b / 1024);
}

/* ------------------------------------------------------------------------------------------ */
/* Lists                                                                                      */
/* ------------------------------------------------------------------------------------------ */

void cl_dom_list_free(cl_dom_list_t *l)
{
    if (!l)
        return;
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static cl_dom_t *dom_list_add(cl_dom_list_t *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        cl_dom_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof(l->v[0]));
    return &l->v[l->n++];
}

int cl_idset_add(cl_idset_t *s, const char *id)
{
    char *copy;

    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **nv = realloc(s->v, cap * sizeof(*nv));
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    copy = strdup(id);
    if (!copy)
        return -1;
    s->v[s->n++] = copy;
    return 0;
}

int cl_idset_has(const cl_idset_t *s, const char *id)
{
    size_t i;

    for (i = 0; s && i < s->n; i++)
        if (strcasecmp(s->v[i], id) == 0)
            return 1;
    return 0;
}

void cl_idset_free(cl_idset_t *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

const char *cl_dom_state_name(int state)
{
    switch (state) {
    case CL_DOM_RUNNING: return "running";
    case CL_DOM_PAUSED: return "paused";
    case CL_DOM_SHUTOFF: return "shutoff";
    case CL_DOM_CRASHED: return "crashed";
    case CL_DOM_OTHER: return "other";
    default: return "missing";
    }
}

static int map_state(int s)
{
    switch (s) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED: return CL_DOM_RUNNING;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED: return CL_DOM_PAUSED;
    case VIR_DOMAIN_SHUTOFF:
    case VIR_DOMAIN_SHUTDOWN: return CL_DOM_SHUTOFF;
    case VIR_DOMAIN_CRASHED: return CL_DOM_CRASHED;
    default: return CL_DOM_OTHER;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Ownership metadata                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* Copy the value of attribute name="..." (or '...') from an element, unescaping entities. */
static int attr(const char *xml, const char *name, char *out, size_t len)
{
    const char *p = xml;
    size_t n = strlen(name), o = 0;
    char q;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == xml || p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n') && p[n] == '=' &&
            (p[n + 1] == '"' || p[n + 1] == '\''))
            break;
        p += n;
    }
    if (!p)
        return -1;
    q = p[n + 1];
    for (p += n + 2; *p && *p != q && o + 1 < len; p++) {
        static const struct {
            const char *ent;
            char c;
        } ents[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        size_t i;
        int done = 0;
        if (*p == '&')
            for (i = 0; i < 5 && !done; i++)
                if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0) {
                    out[o++] = ents[i].c;
                    p += strlen(ents[i].ent) - 1;
                    done = 1;
                }
        if (!done)
            out[o++] = *p;
    }
    out[o] = '\0';
    return 0;
}

int cl_virt_parse_owner(const char *xml, cl_dom_t *d)
{
    char num[32];

    if (!xml || !strstr(xml, "owner"))
        return -1;
    if (attr(xml, "cloud", d->cloud, sizeof(d->cloud)) < 0 ||
        attr(xml, "slot", d->slot, sizeof(d->slot)) < 0)
        return -1;
    attr(xml, "role", d->role, sizeof(d->role));
    attr(xml, "host", d->host, sizeof(d->host));
    attr(xml, "ip", d->ip, sizeof(d->ip));
    attr(xml, "image", d->image, sizeof(d->image));
    attr(xml, "disk", d->disk, sizeof(d->disk));
    attr(xml, "config", d->config, sizeof(d->config));
    if (attr(xml, "epoch", num, sizeof(num)) == 0)
        d->epoch = strtoul(num, NULL, 10);
    if (attr(xml, "index", num, sizeof(num)) == 0)
        d->index = atoi(num);
    return 0;
}

/* Every <mac address='..'/> of a domain's XML into set. */
static void collect_macs(const char *xml, cl_idset_t *set)
{
    const char *p = xml;
    char mac[32];

    while ((p = strstr(p, "<mac ")) != NULL) {
        if (attr(p, "address", mac, sizeof(mac)) == 0)
            cl_idset_add(set, mac);
        p += 5;
    }
}

int cl_virt_scan(cl_virt_t *v, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                 cl_err_t *err)
{
    virDomainPtr *doms = NULL;
    int n, i, rc = -1;

    n = virConnectListAllDomains(v->conn, &doms, 0);
    if (n < 0)
        return cl_virt_fail(v, err, "list domains");
    for (i = 0; i < n; i++) {
        char *meta;
        cl_dom_t tmp;
        int st = 0, reason = 0;

        /*
         * Without the foreign identities, only a domain named like the cloud's slots
         * ("<cloud>-...", which cl_spec enforces) can be one of them: the others' metadata is
         * not read (a sweep of many clouds on one host reads each domain once, not once a cloud).
         */
        if (cloud && !foreign) {
            const char *nm = virDomainGetName(doms[i]);
            size_t len = strlen(cloud);
            if (!nm || strncmp(nm, cloud, len) != 0 || nm[len] != '-')
                continue;
        }
        meta = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);

        memset(&tmp, 0, sizeof(tmp));
        if (!meta)
            virResetLastError();
        if (meta && cl_virt_parse_owner(meta, &tmp) == 0 &&
            (!cloud || strcmp(tmp.cloud, cloud) == 0)) {
            cl_dom_t *d = dom_list_add(owned);
            char *xml;
            if (!d) {
                cl_err_set(err, CL_ERR_SYS, 0, v->host, "list domains", "out of memory");
                free(meta);
                goto cleanup;
            }
            *d = tmp;
            snprintf(d->name, sizeof(d->name), "%s", virDomainGetName(doms[i]));
            virDomainGetUUIDString(doms[i], d->uuid);
            if (attr(meta, "mac", d->mac, sizeof(d->mac)) < 0) {
                xml = virDomainGetXMLDesc(doms[i], 0);
                if (xml && strstr(xml, "<mac "))
                    attr(strstr(xml, "<mac "), "address", d->mac, sizeof(d->mac));
                if (!xml)
                    virResetLastError();
                free(xml);
            }
            if (virDomainGetState(doms[i], &st, &reason, 0) < 0) {
                virResetLastError();
                d->state = CL_DOM_OTHER;
            } else {
                d->state = map_state(st);
            }
        } else if (foreign) {
            char uuid[VIR_UUID_STRING_BUFLEN];
            char *xml;
            if (virDomainGetUUIDString(doms[i], uuid) == 0)
                cl_idset_add(foreign, uuid);
            cl_idset_add(foreign, virDomainGetName(doms[i]));
            xml = virDomainGetXMLDesc(doms[i], 0);
            if (xml) {
                collect_macs(xml, foreign);
                free(xml);
            } else {
                virResetLastError();
            }
        }
        free(meta);
    }
    rc = 0;

cleanup:
    for (i = 0; i < n; i++)
        virDomainFree(doms[i]);
    free(doms);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Domain lifecycle                                                                           */
/* ------------------------------------------------------------------------------------------ */

int cl_virt_define(cl_virt_t *v, const char *name, const char *xml, cl_err_t *err)
{
    virDomainPtr d = virDomainDefineXML(v->conn, xml);

    if (!d)
        return cl_virt_fail(v, err, "define %s", name);
    virDomainFree(d);
    return 0;
}

int cl_virt_start(cl_virt_t *v, const char *name, cl_err_t *err)
{
    virDomainPtr d = virDomainLookupByName(v->conn, name);
    int rc = -1;

    if (!d)
        return cl_virt_fail(v, err, "start %s", name);
    if (virDomainIsActive(d) == 1) {
        rc = 0;
        goto cleanup;
    }
    /* logged (and flushed) before: the domain cannot run before this line's time */
    cl_log(CL_LOG_INFO, "+vm-run", "dom=%s uri=%s", name, v->uri);
    cl_log_flush();
    /*
     * Autodestroy (a dead man's switch): if this process dies or loses its connection, libvirtd
     * destroys the domain, so a host whose daemon is gone cannot keep a copy running while the
     * leader re-places it (doc/MONITOR.md, Fencing).  The test driver dies with the process.
     */
    if (virDomainCreateWithFlags(d, !v->is_test && autodestroy ? VIR_DOMAIN_START_AUTODESTROY : 0) <
        0) {
        cl_virt_fail(v, err, "start %s", name);
        cl_log(CL_LOG_INFO, "-vm-run", "dom=%s why=start-failed", name);
        goto cleanup;
    }
    rc = 0;

cleanup:
    virDomainFree(d);
    return rc;
}

int cl_virt_lookup(cl_virt_t *v, const char *name, virDomainPtr *d, cl_err_t *err)
{
    *d = virDomainLookupByName(v->conn, name);
    if (*d)
        return 1;
    if (last_code() == VIR_ERR_NO_DOMAIN) {
        virResetLastError();
        return 0;
    }
    return cl_virt_fail(v, err, "look up %s", name);
}

int cl_virt_state(cl_virt_t *v, const char *name, cl_err_t *err)
{
    virDomainPtr d = virDomainLookupByName(v->conn, name);
    int st = 0, reason = 0, rc;

    if (!d) {
        if (last_code() == VIR_ERR_NO_DOMAIN) {
            virResetLastError();
            return CL_DOM_MISSING;
        }
        return cl_virt_fail(v, err, "look up %s", name);
    }
    rc = virDomainGetState(d, &st, &reason, 0) < 0 ? cl_virt_fail(v, err, "state of %s", name)
                                                   : map_state(st);
    virDomainFree(d);
    return rc;
}

void cl_virt_shutdown_request(cl_virt_t *v, const char *name)
{
    virDomainPtr d;

    if (v->is_test)
        return;
    d = virDomainLookupByName(v->conn, name);
    if (d) {
        if (virDomainIsActive(d) == 1)
            virDomainShutdown(d);
        virDomainFree(d);
    }
    virResetLastError();
}

int cl_virt_remove(cl_virt_t *v, const char *name, unsigned grace_ms, cl_err_t *err)
{
    virDomainPtr d;
    unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                     (v->is_test ? 0 : VIR_DOMAIN_UNDEFINE_NVRAM);
    int rc = cl_virt_lookup(v, name, &d, err);

    if (rc <= 0)
        return rc;
    rc = -1;
    if (virDomainIsActive(d) == 1) {
        if (!v->is_test && grace_ms > 0 && virDomainShutdown(d) == 0) {
            uint64_t deadline = cl_time_now_ms() + grace_ms;
            while (virDomainIsActive(d) == 1 && cl_time_now_ms() < deadline) {
                struct timespec ts = {0, CL_DOMAIN_SHUTDOWN_POLL_MS * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        virResetLastError();
        if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0 && virDomainIsActive(d) == 1) {
            cl_virt_fail(v, err, "destroy %s", name);
            goto cleanup;
        }
        cl_log(CL_LOG_INFO, "-vm-run", "dom=%s why=remove", name);
        cl_log_flush();
    }
    if (virDomainUndefineFlags(d, flags) < 0) {
        virResetLastError();
        if (virDomainUndefine(d) < 0) {
            cl_virt_fail(v, err, "undefine %s", name);
            goto cleanup;
        }
    }
    rc = 0;

cleanup:
    virDomainFree(d);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Storage: per-slot copy-on-write overlays                                                   */
/* ------------------------------------------------------------------------------------------ */

int cl_virt_pool_ensure(cl_virt_t *v, const char *pool, const char *path, cl_err_t *err)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(v->conn, pool);
    char *xml = NULL, *epath = NULL, *epool = NULL;
    int rc = -1;

    if (!p) {
        size_t n;
        virResetLastError();
        epath = cl_tmpl_escape(path);
        epool = cl_tmpl_escape(pool);
        if (!epath || !epool) {
            cl_err_set(err, CL_ERR_SYS, 0, v->host, "define pool", "out of memory");
            goto cleanup;
        }
        n = strlen(epath) + strlen(epool) + 128;
        xml = malloc(n);
        if (!xml) {
            cl_err_set(err, CL_ERR_SYS, 0, v->host, "define pool", "out of memory");
            goto cleanup;
        }
        snprintf(xml, n, "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>",
                 epool, epath);
        p = virStoragePoolDefineXML(v->conn, xml, 0);
        if (!p) {
            cl_virt_fail(v, err, "define storage pool %s", pool);
            goto cleanup;
        }
        if (virStoragePoolBuild(p, 0) < 0)
            virResetLastError(); /* the directory may already exist */
        virStoragePoolSetAutostart(p, 1);
        virResetLastError();
        cl_log(CL_LOG_INFO, "+pool", "host=%s pool=%s path=%s", v->host, pool, path);
    }
    if (virStoragePoolIsActive(p) != 1 && virStoragePoolCreate(p, 0) < 0) {
        cl_virt_fail(v, err, "start storage pool %s", pool);
        goto cleanup;
    }
    rc = 0;

cleanup:
    if (p)
        virStoragePoolFree(p);
    free(xml);
    free(epath);
    free(epool);
    return rc;
}

int cl_virt_overlay(cl_virt_t *v, const char *pool, const char *vol, const char *backing,
                    const char *fmt, char *path_out, size_t len, cl_err_t *err)
{
    virStoragePoolPtr p = NULL;
    virStorageVolPtr sv = NULL;
    char *xml = NULL, *path = NULL, *evol = NULL, *eback = NULL, *have = NULL;
    int rc = -1;

    p = virStoragePoolLookupByName(v->conn, pool);
    if (!p) {
        cl_virt_fail(v, err, "find storage pool %s", pool);
        goto cleanup;
    }
    sv = virStorageVolLookupByName(p, vol);
    if (sv) {
        /* Adopt what an earlier, interrupted run made, if it is what we would make. */
        char want[600];
        have = virStorageVolGetXMLDesc(sv, 0);
        evol = cl_tmpl_escape(backing);
        snprintf(want, sizeof(want), "<path>%s</path>", evol ? evol : backing);
        if (!have || !strstr(have, "<backingStore>") || !strstr(have, want)) {
            cl_err_set(err, CL_ERR_VIRT, 0, v->host, "create disk",
                       "volume %s already exists in pool %s and is not an overlay of %s; "
                       "remove it or choose another disk_pool",
                       vol, pool, backing);
            goto cleanup;
        }
    } else {
        size_t n;
        virResetLastError();
        evol = cl_tmpl_escape(vol);
        eback = cl_tmpl_escape(backing);
        if (!evol || !eback) {
            cl_err_set(err, CL_ERR_SYS, 0, v->host, "create disk", "out of memory");
            goto cleanup;
        }
        n = strlen(evol) + strlen(eback) + 256;
        xml = malloc(n);
        if (!xml) {
            cl_err_set(err, CL_ERR_SYS, 0, v->host, "create disk", "out of memory");
            goto cleanup;
        }
        /*
         * Real storage drivers size an overlay from its backing file when no capacity is
         * given; the test driver insists on one (its volumes are only records), and books
         * the allocation (default: the capacity) against its pools' fixed 100 GiB: with
         * <allocation>0 more than 100 overlays fit.
         */
        snprintf(xml, n,
                 "<volume><name>%s</name>%s<target><format type='qcow2'/></target>"
                 "<backingStore><path>%s</path><format type='%s'/></backingStore></volume>",
                 evol,
                 v->is_test ? "<capacity unit='G'>1</capacity><allocation>0</allocation>" : "",
                 eback, fmt);
        sv = virStorageVolCreateXML(p, xml, 0);
        if (!sv) {
            cl_virt_fail(v, err, "create disk %s", vol);
            goto cleanup;
        }
    }
    path = virStorageVolGetPath(sv);
    if (!path) {
        cl_virt_fail(v, err, "path of disk %s", vol);
        goto cleanup;
    }
    snprintf(path_out, len, "%s", path);
    rc = 0;

cleanup:
    free(have);
    free(path);
    free(xml);
    free(evol);
    free(eback);
    if (sv)
        virStorageVolFree(sv);
    if (p)
        virStoragePoolFree(p);
    return rc;
}

int cl_virt_vol_delete(cl_virt_t *v, const char *pool, const char *path, cl_err_t *err)
{
    virStorageVolPtr sv = NULL;
    const char *base;
    int rc = 0;

    if (!path || !*path)
        return 0;
    /*
     * By pool and name first: a lookup by path walks every volume of every pool (quadratic
     * over a teardown); the path check keeps an overlay that moved pools safe.
     */
    base = strrchr(path, '/');
    if (pool && base) {
        virStoragePoolPtr p = virStoragePoolLookupByName(v->conn, pool);
        if (p) {
            sv = virStorageVolLookupByName(p, base + 1);
            if (sv) {
                char *have = virStorageVolGetPath(sv);
                if (!have || strcmp(have, path) != 0) {
                    virStorageVolFree(sv);
                    sv = NULL;
                }
                free(have);
            }
            virStoragePoolFree(p);
        }
        virResetLastError();
    }
    if (!sv)
        sv = virStorageVolLookupByPath(v->conn, path);
    if (!sv) {
        virResetLastError();
        return 0;
    }
    if (virStorageVolDelete(sv, 0) < 0)
        rc = cl_virt_fail(v, err, "delete disk %s", path);
    virStorageVolFree(sv);
    return rc;
}

int cl_virt_vol_delete_by_name(cl_virt_t *v, const char *pool, const char *vol, cl_err_t *err)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(v->conn, pool);
    virStorageVolPtr sv;
    int rc = 0;

    if (!p) {
        virResetLastError();
        return 0;
    }
    sv = virStorageVolLookupByName(p, vol);
    if (!sv) {
        virResetLastError();
    } else {
        if (virStorageVolDelete(sv, 0) < 0)
            rc = cl_virt_fail(v, err, "delete disk %s", vol);
        virStorageVolFree(sv);
    }
    virStoragePoolFree(p);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Lifecycle events                                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct watch {
    cl_virt_t *v;
    cl_virt_event_fn fn;
    void *ud;
} watch_t;

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
    watch_t *w = opaque;
    char *meta;
    cl_dom_t d;
    int kind;

    (void)conn;
    switch (event) {
    case VIR_DOMAIN_EVENT_STOPPED:
        kind = detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED ? CL_VIRT_EV_CRASHED : CL_VIRT_EV_STOPPED;
        break;
    case VIR_DOMAIN_EVENT_CRASHED: kind = CL_VIRT_EV_CRASHED; break;
    case VIR_DOMAIN_EVENT_UNDEFINED: kind = CL_VIRT_EV_UNDEFINED; break;
    case VIR_DOMAIN_EVENT_STARTED: kind = CL_VIRT_EV_STARTED; break;
    default: return 0;
    }
    memset(&d, 0, sizeof(d));
    meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
    if (!meta) {
        virResetLastError(); /* not ours, or already undefined: the sweep sees the rest */
        if (kind != CL_VIRT_EV_UNDEFINED)
            return 0;
    } else if (cl_virt_parse_owner(meta, &d) != 0) {
        free(meta);
        return 0;
    }
    free(meta);
    snprintf(d.name, sizeof(d.name), "%s", virDomainGetName(dom));
    w->fn(w->ud, w->v, &d, kind);
    return 0;
}

static void watch_free(void *opaque)
{
    free(opaque);
}

int cl_virt_watch(cl_virt_t *v, cl_virt_event_fn fn, void *ud, cl_err_t *err)
{
    watch_t *w = calloc(1, sizeof(*w));
    int id;

    if (!w)
        return cl_err_set(err, CL_ERR_SYS, 0, v->host, "watch domains", "out of memory");
    w->v = v;
    w->fn = fn;
    w->ud = ud;
    id = virConnectDomainEventRegisterAny(v->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                          VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), w, watch_free);
    if (id < 0) {
        free(w);
        return cl_virt_fail(v, err, "watch domains");
    }
    return id;
}

void cl_virt_unwatch(cl_virt_t *v, int id)
{
    if (id >= 0 && virConnectDomainEventDeregisterAny(v->conn, id) < 0)
        virResetLastError();
}
