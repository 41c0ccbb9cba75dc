/*
 * test_engine: the engine in-process against libvirt's test driver, the world inspected with
 * the libvirt API directly.  test:///default is one shared hypervisor for the whole process
 * (every connection sees the same domains and pools), so each test uses clouds and storage
 * pools of its own names, and stops what it made.  State files live in a temporary directory.
 */
#include "check.h"

#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cl_engine.h"
#include "cl_time.h"
#include "cl_run.h"
#include "cl_err.h"
#include "cl_log.h"
#include "cl_net.h"
#include "cl_spec.h"
#include "cl_tmpl.h"
#include "cl_timeouts.h"

#define URI "test:///default"
#define HOST "127.0.0.1"
#define HOST2 "127.0.0.2"
#define MEM_KIB 65536

#define TEMPLATE                                                                                   \
    "<domain type='test'><name>{{name}}</name><uuid>{{uuid}}</uuid>"                               \
    "<memory unit='KiB'>{{memory}}</memory><vcpu>{{vcpus}}</vcpu>"                                 \
    "<os><type arch='x86_64'>hvm</type></os>"                                                      \
    "<devices><disk type='file' device='disk'><source file='{{disk}}'/>"                           \
    "<target dev='vda' bus='virtio'/></disk>"                                                      \
    "<interface type='network'><mac address='{{mac}}'/><source network='default'/></interface>"    \
    "</devices></domain>"

static virConnectPtr conn; /* the test's own view of the world */
static cl_engine_t *eng;
static char tmp[64], state_dir[128];

static void quiet(void *ud, virErrorPtr e)
{
    (void)ud;
    (void)e;
}

/* ---------------------------------------------------------------------------------------- */
/* Specs                                                                                     */
/* ---------------------------------------------------------------------------------------- */

typedef struct spec_opts {
    const char *ensure;    /* default running */
    int nservers;          /* slots: <name>-database-0.., then <name>-server-0..n-1 */
    unsigned long mem;     /* default MEM_KIB */
    const char *mac_start; /* default NULL (derived) */
    const char *tmpl;      /* default TEMPLATE */
    int db_last;           /* declare the database slots after the servers */
    int extra_db;          /* database slots beyond the first */
    int two_hosts;         /* pool 127.0.0.1 and 127.0.0.2: one hypervisor, two pool hosts */
} spec_opts_t;

/* The spec of cloud name, its disk pool "p-<name>" (caller frees with cl_spec_free). */
static cl_spec_t *make_spec(const char *name, const spec_opts_t *o)
{
    json_object *j = json_object_new_object(), *pool = json_object_new_array(),
                *roles = json_object_new_array(), *slots = json_object_new_array(), *r, *a, *sl;
    char buf[256];
    cl_spec_t *s = NULL;
    cl_err_t err;
    int i, pass;

    json_object_object_add(j, "name", json_object_new_string(name));
    json_object_object_add(j, "type", json_object_new_string("web"));
    json_object_object_add(j, "ensure", json_object_new_string(o->ensure ? o->ensure : "running"));
    json_object_array_add(pool, json_object_new_string(HOST));
    if (o->two_hosts)
        json_object_array_add(pool, json_object_new_string(HOST2));
    json_object_object_add(j, "pool", pool);
    json_object_object_add(j, "hypervisor", json_object_new_string(URI));
    json_object_object_add(j, "template", json_object_new_string(o->tmpl ? o->tmpl : TEMPLATE));
    json_object_object_add(j, "template_path", json_object_new_string("/etc/cloud/t.xml"));
    json_object_object_add(j, "vm_mem",
                           json_object_new_int64((int64_t)(o->mem ? o->mem : MEM_KIB)));
    json_object_object_add(j, "vm_ncpu", json_object_new_int(1));
    if (o->mac_start)
        json_object_object_add(j, "mac_start", json_object_new_string(o->mac_start));
    snprintf(buf, sizeof(buf), "p-%s", name);
    json_object_object_add(j, "disk_pool", json_object_new_string(buf));
    snprintf(buf, sizeof(buf), "/cloud-tests/%s", name);
    json_object_object_add(j, "disk_pool_path", json_object_new_string(buf));
    r = json_object_new_object();
    json_object_object_add(r, "name", json_object_new_string("database"));
    json_object_array_add(roles, r);
    r = json_object_new_object();
    a = json_object_new_array();
    json_object_array_add(a, json_object_new_string("database"));
    json_object_object_add(r, "name", json_object_new_string("server"));
    json_object_object_add(r, "after", a);
    json_object_array_add(roles, r);
    json_object_object_add(j, "roles", roles);
    /* databases at 10.0.0.2.., servers at 10.0.0.20..; the database slots first unless db_last */
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < (pass == o->db_last ? 1 + o->extra_db : o->nservers); i++) {
            int is_db = pass == o->db_last;
            sl = json_object_new_object();
            a = json_object_new_array();
            json_object_array_add(a, json_object_new_string(is_db ? "database" : "server"));
            snprintf(buf, sizeof(buf), "%s-%s-%d", name, is_db ? "database" : "server", i);
            json_object_object_add(sl, "name", json_object_new_string(buf));
            json_object_object_add(sl, "roles", a);
            json_object_object_add(sl, "index", json_object_new_int(i));
            snprintf(buf, sizeof(buf), "10.0.0.%d", (is_db ? 2 : 20) + i);
            json_object_object_add(sl, "ip", json_object_new_string(buf));
            json_object_object_add(
                sl, "image",
                json_object_new_string(is_db ? "/images/db.qcow2" : "/images/web.qcow2"));
            json_object_array_add(slots, sl);
        }
    json_object_object_add(j, "slots", slots);
    cl_err_clear(&err);
    if (cl_spec_parse(j, &s, &err) < 0) {
        fprintf(stderr, "test spec %s refused: %s\n", name, err.msg);
        exit(EXIT_FAILURE);
    }
    json_object_put(j);
    return s;
}

static cl_spec_t *spec_n(const char *name, int nservers)
{
    spec_opts_t o = {0};

    o.nservers = nservers;
    return make_spec(name, &o);
}

/* ---------------------------------------------------------------------------------------- */
/* The world, as libvirt sees it                                                              */
/* ---------------------------------------------------------------------------------------- */

/* 1 running, 0 defined but not running, -1 no such domain. */
static int dom_state(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    int st = 0, reason = 0, rc;

    if (!d)
        return -1;
    rc = virDomainGetState(d, &st, &reason, 0) == 0 && st == VIR_DOMAIN_RUNNING;
    virDomainFree(d);
    return rc;
}

static char *dom_xml(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    char *x;

    if (!d)
        return NULL;
    x = virDomainGetXMLDesc(d, 0);
    virDomainFree(d);
    return x;
}

/* The ownership element (malloc'ed) or NULL. */
static char *dom_meta(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    char *m;

    if (!d)
        return NULL;
    m = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
    virDomainFree(d);
    return m;
}

/* The domain's id (changes when it is restarted or recreated), -1 if not running. */
static int dom_id(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    int id;

    if (!d)
        return -2;
    id = (int)virDomainGetID(d);
    virDomainFree(d);
    return id;
}

static void dom_uuid(const char *name, char out[VIR_UUID_STRING_BUFLEN])
{
    virDomainPtr d = virDomainLookupByName(conn, name);

    out[0] = '\0';
    if (d) {
        virDomainGetUUIDString(d, out);
        virDomainFree(d);
    }
}

static void dom_destroy(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);

    if (d) {
        virDomainDestroy(d);
        virDomainFree(d);
    }
}

/* The first MAC of a domain's definition into out ("" if none). */
static void dom_mac(const char *name, char out[18])
{
    char *x = dom_xml(name);
    const char *p = x ? strstr(x, "<mac address='") : NULL;

    out[0] = '\0';
    if (p)
        snprintf(out, 18, "%s", p + strlen("<mac address='"));
    free(x);
}

/* Domains whose ownership metadata names cloud. */
static int owned_count(const char *cloud)
{
    virDomainPtr *doms = NULL;
    char want[128];
    int n = virConnectListAllDomains(conn, &doms, 0), i, c = 0;

    snprintf(want, sizeof(want), "cloud=\"%s\"", cloud);
    for (i = 0; i < n; i++) {
        char *m = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
        if (m && strstr(m, want))
            c++;
        free(m);
        virDomainFree(doms[i]);
    }
    free(doms);
    return c;
}

/* The MACs of the domains of cloud into macs (up to max); returns how many. */
static int owned_macs(const char *cloud, char macs[][18], int max)
{
    virDomainPtr *doms = NULL;
    char want[128];
    int n = virConnectListAllDomains(conn, &doms, 0), i, c = 0;

    snprintf(want, sizeof(want), "cloud=\"%s\"", cloud);
    for (i = 0; i < n; i++) {
        char *m = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
        char *x = m && strstr(m, want) ? virDomainGetXMLDesc(doms[i], 0) : NULL;
        const char *p = x ? strstr(x, "<mac address='") : NULL;
        if (p && c < max)
            snprintf(macs[c++], 18, "%s", p + strlen("<mac address='"));
        free(x);
        free(m);
        virDomainFree(doms[i]);
    }
    free(doms);
    return c;
}

/* The path of volume vol of pool, malloc'ed, or NULL if there is none. */
static char *vol_path(const char *pool, const char *vol)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
    virStorageVolPtr v;
    char *path = NULL;

    if (!p)
        return NULL;
    v = virStorageVolLookupByName(p, vol);
    if (v) {
        path = virStorageVolGetPath(v);
        virStorageVolFree(v);
    }
    virStoragePoolFree(p);
    return path;
}

static char *vol_xml(const char *pool, const char *vol)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
    virStorageVolPtr v;
    char *x = NULL;

    if (!p)
        return NULL;
    v = virStorageVolLookupByName(p, vol);
    if (v) {
        x = virStorageVolGetXMLDesc(v, 0);
        virStorageVolFree(v);
    }
    virStoragePoolFree(p);
    return x;
}

static int vol_count(const char *pool)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);
    int n;

    if (!p)
        return 0;
    n = virStoragePoolNumOfVolumes(p);
    virStoragePoolFree(p);
    return n;
}

static int pool_exists(const char *pool)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(conn, pool);

    if (!p)
        return 0;
    virStoragePoolFree(p);
    return 1;
}

/* Make pool p-<cloud> by hand, as an operator or an earlier run would have. */
static void pool_make(const char *cloud)
{
    char xml[512];
    virStoragePoolPtr p;

    snprintf(xml, sizeof(xml),
             "<pool type='dir'><name>p-%s</name><target><path>/cloud-tests/%s</path></target>"
             "</pool>",
             cloud, cloud);
    p = virStoragePoolDefineXML(conn, xml, 0);
    if (!CHECK(p != NULL))
        return;
    CHECK_INT_EQ(virStoragePoolCreate(p, 0), 0);
    virStoragePoolFree(p);
}

static int vol_make(const char *cloud, const char *vol, const char *backing)
{
    char xml[512], pool[64];
    virStoragePoolPtr p;
    virStorageVolPtr v;

    snprintf(pool, sizeof(pool), "p-%s", cloud);
    snprintf(xml, sizeof(xml),
             "<volume><name>%s</name><capacity unit='G'>1</capacity>"
             "<target><format type='qcow2'/></target>"
             "<backingStore><path>%s</path><format type='qcow2'/></backingStore></volume>",
             vol, backing);
    p = virStoragePoolLookupByName(conn, pool);
    if (!p)
        return -1;
    v = virStorageVolCreateXML(p, xml, 0);
    virStoragePoolFree(p);
    if (!v)
        return -1;
    virStorageVolFree(v);
    return 0;
}

static int state_exists(const char *cloud)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/clouds/%s.json", state_dir, cloud);
    return access(path, F_OK) == 0;
}

/* A domain nobody's cloud owns (no metadata); mac may be NULL. */
static int foreign_define(const char *name, const char *mac)
{
    char xml[1024];
    virDomainPtr d;

    snprintf(xml, sizeof(xml),
             "<domain type='test'><name>%s</name><memory unit='KiB'>65536</memory>"
             "<os><type arch='x86_64'>hvm</type></os><devices>%s%s%s</devices></domain>",
             name, mac ? "<interface type='network'><mac address='" : "", mac ? mac : "",
             mac ? "'/><source network='default'/></interface>" : "");
    d = virDomainDefineXML(conn, xml);
    if (!d)
        return -1;
    virDomainFree(d);
    return 0;
}

static void foreign_remove(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);

    if (d) {
        if (virDomainIsActive(d) == 1)
            virDomainDestroy(d);
        virDomainUndefine(d);
        virDomainFree(d);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Engine calls                                                                              */
/* ---------------------------------------------------------------------------------------- */

static int json_int(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : -1;
}

static const char *json_str(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static json_object *json_arr(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_array)
               ? v
               : NULL;
}

/* How many entries of arr have "action" == action (and "slot" == slot, if given). */
static int count_action(json_object *arr, const char *action, const char *slot)
{
    size_t i, n = arr ? json_object_array_length(arr) : 0;
    int c = 0;

    for (i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        const char *a = json_str(e, "action"), *s = json_str(e, "slot");
        if (a && strcmp(a, action) == 0 && (!slot || (s && strcmp(s, slot) == 0)))
            c++;
    }
    return c;
}

/* Progress events seen, and the slots of "+define" and "-domain" events in order. */
static int events;
static char defined[8][64], removed[8][64];
static int ndefined, nremoved;

static void on_progress(void *ud, json_object *ev)
{
    const char *event = json_str(ev, "event"), *slot = json_str(ev, "slot");

    (void)ud;
    events++;
    if (event && slot && strcmp(event, "+define") == 0 && ndefined < 8)
        snprintf(defined[ndefined++], sizeof(defined[0]), "%s", slot);
    if (event && slot && strcmp(event, "-domain") == 0 && nremoved < 8)
        snprintf(removed[nremoved++], sizeof(removed[0]), "%s", slot);
}

/* Apply; returns "changed" (or -1 with err reported on failure). */
static int apply(const cl_spec_t *s, int noop, json_object **res_out)
{
    json_object *res = NULL;
    cl_err_t err;
    int changed;

    cl_err_clear(&err);
    if (cl_engine_apply(eng, s, noop, on_progress, NULL, &res, &err) < 0) {
        fprintf(stderr, "  apply %s failed: %s: %s: %s\n", s->name, err.host, err.op, err.msg);
        return -1;
    }
    changed = json_int(res, "changed");
    if (res_out)
        *res_out = res;
    else
        json_object_put(res);
    return changed;
}

static int stop(const char *name)
{
    json_object *res = NULL;
    cl_err_t err;
    int changed;

    cl_err_clear(&err);
    if (cl_engine_stop(eng, name, NULL, 0, on_progress, NULL, &res, &err) < 0) {
        fprintf(stderr, "  stop %s failed: %s: %s\n", name, err.op, err.msg);
        return -1;
    }
    changed = json_int(res, "changed");
    json_object_put(res);
    return changed;
}

/* The status document of one cloud (caller puts). */
static json_object *status_of(const char *name)
{
    json_object *res = NULL, *one = NULL, *clouds;
    cl_err_t err;

    cl_err_clear(&err);
    if (cl_engine_status(eng, name, NULL, &res, &err) < 0) {
        fprintf(stderr, "  status %s failed: %s\n", name, err.msg);
        return NULL;
    }
    clouds = json_arr(res, "clouds");
    if (clouds && json_object_array_length(clouds) == 1)
        one = json_object_get(json_object_array_get_idx(clouds, 0));
    json_object_put(res);
    return one;
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void test_apply_creates(void)
{
    spec_opts_t o = {0};
    cl_spec_t *s;
    json_object *res = NULL;
    char slot[64], vol[80], *meta, *xml, *path, *vx;
    char uuids[3][VIR_UUID_STRING_BUFLEN];
    int i, ids[3];

    o.nservers = 2;
    o.mac_start = "52:54:00:0a:00:fe";
    s = make_spec("ea", &o);
    events = 0;
    CHECK_INT_EQ(apply(s, 0, &res), 3);
    CHECK_INT_EQ(count_action(json_arr(res, "changes"), "create", NULL), 3);
    CHECK(events > 0);
    json_object_put(res);
    CHECK(state_exists("ea"));
    CHECK_INT_EQ(owned_count("ea"), 3);
    for (i = 0; i < 3; i++) {
        const cl_slot_t *sl = &s->slots[i];
        snprintf(slot, sizeof(slot), "%s", sl->name);
        CHECK_INT_EQ(dom_state(slot), 1);
        meta = dom_meta(slot);
        if (CHECK(meta != NULL)) {
            char want[96];
            CHECK_CONTAINS(meta, "cloud=\"ea\"");
            snprintf(want, sizeof(want), "slot=\"%s\"", slot);
            CHECK_CONTAINS(meta, want);
            CHECK_CONTAINS(meta, "host=\"" HOST "\"");
        }
        free(meta);
        /* its disk is an overlay of the image in the cloud's pool, and the domain boots it */
        snprintf(vol, sizeof(vol), "%s.qcow2", slot);
        path = vol_path("p-ea", vol);
        vx = vol_xml("p-ea", vol);
        xml = dom_xml(slot);
        if (CHECK(path != NULL) && CHECK(vx != NULL) && CHECK(xml != NULL)) {
            char want[600];
            snprintf(want, sizeof(want), "<path>%s</path>", sl->image);
            CHECK_CONTAINS(vx, "<backingStore>");
            CHECK_CONTAINS(vx, want);
            snprintf(want, sizeof(want), "<source file='%s'", path);
            CHECK_CONTAINS(xml, want);
        }
        /* MACs from starting_mac_address: slot i gets start + i (the carry crosses a byte) */
        if (xml)
            CHECK_CONTAINS(xml, i == 0   ? "52:54:00:0a:00:fe"
                                : i == 1 ? "52:54:00:0a:00:ff"
                                         : "52:54:00:0a:01:00");
        free(path);
        free(vx);
        free(xml);
        dom_uuid(slot, uuids[i]);
        ids[i] = dom_id(slot);
    }
    CHECK(strcmp(uuids[0], uuids[1]) != 0 && strcmp(uuids[1], uuids[2]) != 0);
    CHECK_INT_EQ(vol_count("p-ea"), 3);

    /* converged: a second apply changes nothing, and nothing is restarted */
    CHECK_INT_EQ(apply(s, 0, NULL), 0);
    for (i = 0; i < 3; i++) {
        char u[VIR_UUID_STRING_BUFLEN];
        dom_uuid(s->slots[i].name, u);
        CHECK_STR_EQ(u, uuids[i]);
        CHECK_INT_EQ(dom_id(s->slots[i].name), ids[i]);
    }
    CHECK_INT_EQ(vol_count("p-ea"), 3);

    /* stop: no domain, no disk, no state; and a second stop has nothing to do */
    CHECK(stop("ea") >= 3);
    CHECK_INT_EQ(owned_count("ea"), 0);
    for (i = 0; i < 3; i++)
        CHECK_INT_EQ(dom_state(s->slots[i].name), -1);
    CHECK_INT_EQ(vol_count("p-ea"), 0);
    CHECK(!state_exists("ea"));
    CHECK_INT_EQ(stop("ea"), 0);

    /* the same manifest again gives the same identities */
    CHECK_INT_EQ(apply(s, 0, NULL), 3);
    for (i = 0; i < 3; i++) {
        char u[VIR_UUID_STRING_BUFLEN];
        dom_uuid(s->slots[i].name, u);
        CHECK_STR_EQ(u, uuids[i]);
    }
    CHECK(stop("ea") >= 3);
    cl_spec_free(s);
}

static void test_noop(void)
{
    cl_spec_t *s = spec_n("eb", 2);
    json_object *res = NULL, *plan;
    size_t i, n;

    CHECK_INT_EQ(apply(s, 1, &res), 0);
    plan = json_arr(res, "plan");
    CHECK_INT_EQ(plan ? json_object_array_length(plan) : 0, 3);
    CHECK_INT_EQ(count_action(plan, "create", NULL), 3);
    n = plan ? json_object_array_length(plan) : 0;
    for (i = 0; i < n; i++)
        CHECK_STR_EQ(json_str(json_object_array_get_idx(plan, i), "host"), HOST);
    /* the plan is in dependency order: the database first */
    if (n)
        CHECK_STR_EQ(json_str(json_object_array_get_idx(plan, 0), "slot"), "eb-database-0");
    CHECK_INT_EQ(json_object_array_length(json_arr(res, "changes")), 0);
    json_object_put(res);
    /* nothing happened: no domain, no pool, no state */
    CHECK_INT_EQ(owned_count("eb"), 0);
    CHECK_INT_EQ(dom_state("eb-database-0"), -1);
    CHECK(!pool_exists("p-eb"));
    CHECK(!state_exists("eb"));

    /* on a converged cloud the plan is empty */
    CHECK_INT_EQ(apply(s, 0, NULL), 3);
    res = NULL;
    CHECK_INT_EQ(apply(s, 1, &res), 0);
    CHECK_INT_EQ(json_object_array_length(json_arr(res, "plan")), 0);
    json_object_put(res);

    /* and a noop stop lists what it would remove without removing it */
    {
        cl_err_t err;
        cl_err_clear(&err);
        res = NULL;
        CHECK_INT_EQ(cl_engine_stop(eng, "eb", NULL, 1, NULL, NULL, &res, &err), 0);
        CHECK_INT_EQ(count_action(json_arr(res, "plan"), "remove", NULL), 3);
        CHECK_INT_EQ(json_int(res, "changed"), 0);
        json_object_put(res);
        CHECK_INT_EQ(owned_count("eb"), 3);
        CHECK(state_exists("eb"));
    }
    CHECK(stop("eb") >= 3);
    cl_spec_free(s);
}

static void test_remove_slot(void)
{
    cl_spec_t *big = spec_n("ec", 2), *small = spec_n("ec", 1);
    json_object *res = NULL;
    char *path;
    int id_db, id_s0;

    CHECK_INT_EQ(apply(big, 0, NULL), 3);
    id_db = dom_id("ec-database-0");
    id_s0 = dom_id("ec-server-0");
    path = vol_path("p-ec", "ec-server-1.qcow2");
    CHECK(path != NULL);
    free(path);
    CHECK(apply(small, 0, &res) >= 1);
    CHECK_INT_EQ(count_action(json_arr(res, "changes"), "create", NULL), 0);
    json_object_put(res);
    /* the slot is gone with its disk; the others were not touched */
    CHECK_INT_EQ(dom_state("ec-server-1"), -1);
    path = vol_path("p-ec", "ec-server-1.qcow2");
    CHECK(path == NULL);
    free(path);
    CHECK_INT_EQ(dom_id("ec-database-0"), id_db);
    CHECK_INT_EQ(dom_id("ec-server-0"), id_s0);
    CHECK_INT_EQ(owned_count("ec"), 2);
    CHECK_INT_EQ(vol_count("p-ec"), 2);
    CHECK_INT_EQ(apply(small, 0, NULL), 0);
    CHECK(stop("ec") >= 2);
    CHECK_INT_EQ(vol_count("p-ec"), 0);
    cl_spec_free(big);
    cl_spec_free(small);
}

static void change_mem(const char *name, const char *mac_start)
{
    spec_opts_t o = {0};
    cl_spec_t *s1, *s2;
    char uuid[4][VIR_UUID_STRING_BUFLEN], mac[4][18], u[VIR_UUID_STRING_BUFLEN], m[18];
    size_t i;

    o.nservers = 2;
    o.mac_start = mac_start;
    s1 = make_spec(name, &o);
    o.mem = 2 * MEM_KIB;
    s2 = make_spec(name, &o);
    CHECK_INT_EQ(apply(s1, 0, NULL), 3);
    for (i = 0; i < s1->nslots; i++) {
        dom_uuid(s1->slots[i].name, uuid[i]);
        dom_mac(s1->slots[i].name, mac[i]);
    }
    CHECK(apply(s2, 0, NULL) >= 3);
    for (i = 0; i < s2->nslots; i++) {
        virDomainPtr d = virDomainLookupByName(conn, s2->slots[i].name);
        if (CHECK(d != NULL)) {
            CHECK_INT_EQ(virDomainGetMaxMemory(d), 2 * MEM_KIB);
            virDomainFree(d);
        }
        CHECK_INT_EQ(dom_state(s2->slots[i].name), 1);
        /* a new definition, the same identity */
        dom_uuid(s2->slots[i].name, u);
        dom_mac(s2->slots[i].name, m);
        CHECK_STR_EQ(u, uuid[i]);
        CHECK_STR_EQ(m, mac[i]);
    }
    CHECK_INT_EQ(owned_count(name), 3);
    CHECK_INT_EQ(vol_count(s2->disk_pool), 3);
    CHECK_INT_EQ(apply(s2, 0, NULL), 0);
    CHECK(stop(name) >= 3);
    cl_spec_free(s1);
    cl_spec_free(s2);
}

static void test_change_mem(void)
{
    change_mem("ed", NULL);
    change_mem("ed2", "52:54:00:0d:00:00");
}

static void test_monitor(void)
{
    cl_spec_t *s = spec_n("ee", 1);
    json_object *res = NULL;
    cl_err_t err;
    int id_db;

    CHECK_INT_EQ(apply(s, 0, NULL), 2);
    id_db = dom_id("ee-database-0");
    dom_destroy("ee-server-0");
    CHECK_INT_EQ(dom_state("ee-server-0"), 0);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_monitor(eng, "ee", NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(json_int(res, "changed"), 1);
    CHECK_INT_EQ(count_action(json_arr(res, "changes"), "start", "ee-server-0"), 1);
    json_object_put(res);
    CHECK_INT_EQ(dom_state("ee-server-0"), 1);
    CHECK_INT_EQ(dom_id("ee-database-0"), id_db);

    /* a domain undefined behind its back is made again */
    foreign_remove("ee-server-0");
    res = NULL;
    CHECK_INT_EQ(cl_engine_monitor(eng, "ee", NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(count_action(json_arr(res, "changes"), "create", "ee-server-0"), 1);
    json_object_put(res);
    CHECK_INT_EQ(dom_state("ee-server-0"), 1);

    /* nothing to repair: no change */
    res = NULL;
    CHECK_INT_EQ(cl_engine_monitor(eng, "ee", NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(json_int(res, "changed"), 0);
    json_object_put(res);
    CHECK(stop("ee") >= 2);

    /* a cloud this engine does not know */
    cl_err_clear(&err);
    res = NULL;
    CHECK_INT_EQ(cl_engine_monitor(eng, "ee", NULL, NULL, &res, &err), -1);
    CHECK(res == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_STATE);
    cl_spec_free(s);
}

/* The monitor's gate: what it is asked, and its verdicts obeyed (hold, go). */
typedef struct gate_log {
    int calls, failing_calls, verdict;
    char failing_slot[64];
    uint64_t retry;
} gate_log_t;

static int test_gate(void *ud, const cl_spec_t *spec, size_t slot, int failing, const char *host,
                     uint64_t epoch, uint64_t *retry_at)
{
    gate_log_t *g = ud;

    CHECK(epoch >= 1);
    g->calls++;
    if (!failing)
        return CL_GATE_GO;
    g->failing_calls++;
    snprintf(g->failing_slot, sizeof(g->failing_slot), "%s", spec->slots[slot].name);
    CHECK_STR_EQ(host, "127.0.0.1");
    if (g->verdict == CL_GATE_HOLD)
        *retry_at = g->retry;
    return g->verdict;
}

static void test_repair_gate(void)
{
    cl_spec_t *s = spec_n("eg", 1);
    gate_log_t g = {0, 0, CL_GATE_HOLD, "", 0};
    cl_engine_gate_t gate = {&g, test_gate};
    json_object *res = NULL, *held;
    cl_err_t err;

    CHECK_INT_EQ(apply(s, 0, NULL), 2);
    dom_destroy("eg-server-0");
    g.retry = cl_time_now_ms() + 5000;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_repair(eng, "eg", 0, &gate, NULL, NULL, &res, &err), 0);
    /* asked once per slot; the stopped one is a domain failure, held as told */
    CHECK_INT_EQ(g.calls, 2);
    CHECK_INT_EQ(g.failing_calls, 1);
    CHECK_STR_EQ(g.failing_slot, "eg-server-0");
    CHECK_INT_EQ(json_int(res, "changed"), 0);
    held = json_arr(res, "held");
    if (CHECK(held && json_object_array_length(held) == 1)) {
        json_object *h = json_object_array_get_idx(held, 0);
        CHECK_STR_EQ(json_object_get_string(json_object_object_get(h, "slot")), "eg-server-0");
        CHECK(json_object_get_int64(json_object_object_get(h, "retry_at_ms")) == (int64_t)g.retry);
    }
    json_object_put(res);
    CHECK_INT_EQ(dom_state("eg-server-0"), 0);
    /* then go: started */
    g.verdict = CL_GATE_GO;
    res = NULL;
    CHECK_INT_EQ(cl_engine_repair(eng, "eg", 0, &gate, NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(count_action(json_arr(res, "changes"), "start", "eg-server-0"), 1);
    json_object_put(res);
    CHECK_INT_EQ(dom_state("eg-server-0"), 1);
    /* adopt only: stopped domains are still the cloud's, and started again... */
    dom_destroy("eg-server-0");
    dom_destroy("eg-database-0");
    res = NULL;
    CHECK_INT_EQ(cl_engine_repair(eng, "eg", 1, &gate, NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(json_int(res, "changed"), 2);
    json_object_put(res);
    /* ...and on a single host (its state file is the truth) even a cloud of which no domain
     * is left is made again; only an elected cloud is left alone then (pool_spec) */
    foreign_remove("eg-server-0");
    foreign_remove("eg-database-0");
    res = NULL;
    CHECK_INT_EQ(cl_engine_repair(eng, "eg", 1, &gate, NULL, NULL, &res, &err), 0);
    CHECK_INT_EQ(json_int(res, "changed"), 2);
    json_object_put(res);
    CHECK_INT_EQ(dom_state("eg-server-0"), 1);
    CHECK(stop("eg") >= 2);
    cl_spec_free(s);
}

static void test_two_clouds(void)
{
    cl_spec_t *a = spec_n("ef1", 1), *b = spec_n("ef2", 1);
    json_object *st;

    CHECK_INT_EQ(apply(a, 0, NULL), 2);
    CHECK_INT_EQ(apply(b, 0, NULL), 2);
    /* each sees only its own: nothing to do, nothing removed */
    CHECK_INT_EQ(apply(a, 0, NULL), 0);
    CHECK_INT_EQ(owned_count("ef1"), 2);
    CHECK_INT_EQ(owned_count("ef2"), 2);
    CHECK(stop("ef1") >= 2);
    CHECK_INT_EQ(owned_count("ef1"), 0);
    CHECK_INT_EQ(owned_count("ef2"), 2);
    CHECK_INT_EQ(dom_state("ef2-database-0"), 1);
    CHECK_INT_EQ(dom_state("ef2-server-0"), 1);
    CHECK_INT_EQ(vol_count("p-ef2"), 2);
    CHECK(state_exists("ef2"));
    st = status_of("ef2");
    CHECK_STR_EQ(json_str(st, "state"), "running");
    json_object_put(st);
    CHECK(stop("ef2") >= 2);
    CHECK_INT_EQ(owned_count("ef2"), 0);
    cl_spec_free(a);
    cl_spec_free(b);
}

static void test_foreign_name(void)
{
    cl_spec_t *s = spec_n("eg", 1);
    json_object *res = NULL;
    char before[VIR_UUID_STRING_BUFLEN], after[VIR_UUID_STRING_BUFLEN], *meta;
    cl_err_t err;

    if (!CHECK_INT_EQ(foreign_define("eg-server-0", NULL), 0))
        return;
    dom_uuid("eg-server-0", before);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng, s, 0, NULL, NULL, &res, &err), -1);
    CHECK(res == NULL);
    CHECK(err.domain != CL_ERR_NONE);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.msg, "eg-server-0");
    CHECK_CONTAINS(err.msg, HOST);
    /* the foreign domain is as it was: same UUID, not started, not claimed */
    dom_uuid("eg-server-0", after);
    CHECK_STR_EQ(after, before);
    CHECK_INT_EQ(dom_state("eg-server-0"), 0);
    meta = dom_meta("eg-server-0");
    CHECK(meta == NULL);
    free(meta);
    /* stopping the cloud leaves it alone too */
    CHECK(stop("eg") >= 0);
    CHECK_INT_EQ(dom_state("eg-server-0"), 0);
    dom_uuid("eg-server-0", after);
    CHECK_STR_EQ(after, before);
    CHECK_INT_EQ(owned_count("eg"), 0);
    CHECK_INT_EQ(vol_count("p-eg"), 0);
    foreign_remove("eg-server-0");
    cl_spec_free(s);
}

static void test_mac_collision(void)
{
    spec_opts_t o = {0};
    cl_spec_t *s;
    json_object *res = NULL;
    cl_err_t err;
    char *xml;

    o.nservers = 1;
    o.mac_start = "52:54:00:0f:00:00";
    s = make_spec("eh", &o);
    /* the second slot would get 52:54:00:0f:00:01, which another domain has */
    if (!CHECK_INT_EQ(foreign_define("eh-other", "52:54:00:0F:00:01"), 0))
        return;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng, s, 0, NULL, NULL, &res, &err), -1);
    CHECK(res == NULL);
    CHECK_CONTAINS(err.msg, "52:54:00:0f:00:01");
    CHECK_CONTAINS(err.msg, "already used");
    CHECK_CONTAINS(err.msg, "starting_mac_address");
    /* no slot of the cloud took that MAC */
    CHECK(dom_state("eh-server-0") == -1);
    xml = dom_xml("eh-other");
    CHECK(xml != NULL);
    free(xml);
    CHECK(stop("eh") >= 0);
    CHECK_INT_EQ(owned_count("eh"), 0);
    foreign_remove("eh-other");
    cl_spec_free(s);
}

static void test_mac_start_grow(void)
{
    spec_opts_t o = {0};
    cl_spec_t *s1, *s2;
    char macs[8][18];
    int n, i, j, dup = 0;

    /* database-0 +0, server-0 +1, server-1 +2 */
    o.nservers = 2;
    o.mac_start = "52:54:00:0e:00:00";
    s1 = make_spec("eu", &o);
    CHECK_INT_EQ(apply(s1, 0, NULL), 3);
    /* a second database is declared before the servers, which keep running */
    o.extra_db = 1;
    s2 = make_spec("eu", &o);
    CHECK_STR_EQ(s2->slots[1].name, "eu-database-1");
    CHECK(apply(s2, 0, NULL) >= 1);
    CHECK_INT_EQ(dom_state("eu-database-1"), 1);
    /* no two VMs of the cloud share a MAC */
    n = owned_macs("eu", macs, 8);
    CHECK_INT_EQ(n, 4);
    for (i = 0; i < n; i++)
        for (j = 0; j < i; j++)
            if (strcmp(macs[i], macs[j]) == 0) {
                fprintf(stderr, "  two VMs of cloud eu have MAC %s\n", macs[i]);
                dup++;
            }
    CHECK_INT_EQ(dup, 0);
    CHECK(stop("eu") >= 4);
    cl_spec_free(s1);
    cl_spec_free(s2);
}

static void test_interrupted(void)
{
    cl_spec_t *s = spec_n("ei", 1), *t = spec_n("ej", 1);
    json_object *res = NULL;
    char *path, *xml;
    cl_err_t err;

    /* a crashed run made the pool and the first overlay, then died */
    pool_make("ei");
    CHECK_INT_EQ(vol_make("ei", "ei-database-0.qcow2", "/images/db.qcow2"), 0);
    path = vol_path("p-ei", "ei-database-0.qcow2");
    CHECK_INT_EQ(apply(s, 0, NULL), 2);
    CHECK_INT_EQ(vol_count("p-ei"), 2);
    xml = dom_xml("ei-database-0");
    if (CHECK(path != NULL) && CHECK(xml != NULL)) {
        char want[600];
        snprintf(want, sizeof(want), "<source file='%s'", path);
        CHECK_CONTAINS(xml, want);
    }
    free(path);
    free(xml);
    CHECK_INT_EQ(dom_state("ei-database-0"), 1);
    CHECK(stop("ei") >= 2);
    CHECK_INT_EQ(vol_count("p-ei"), 0);

    /* a volume of that name that is not our overlay is not taken over */
    pool_make("ej");
    CHECK_INT_EQ(vol_make("ej", "ej-database-0.qcow2", "/images/other.qcow2"), 0);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng, t, 0, NULL, NULL, &res, &err), -1);
    CHECK_CONTAINS(err.msg, "ej-database-0.qcow2");
    CHECK_STR_EQ(err.host, HOST);
    xml = vol_xml("p-ej", "ej-database-0.qcow2");
    if (CHECK(xml != NULL))
        CHECK_CONTAINS(xml, "/images/other.qcow2");
    free(xml);
    CHECK_INT_EQ(dom_state("ej-database-0"), -1);
    CHECK(stop("ej") >= 0);
    cl_spec_free(s);
    cl_spec_free(t);
}

/* The status slot named name (borrowed) of a status document. */
static json_object *status_slot(json_object *st, const char *name)
{
    json_object *slots = json_arr(st, "slots");
    size_t i, n = slots ? json_object_array_length(slots) : 0;

    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(slots, i);
        const char *s = json_str(o, "name");
        if (s && strcmp(s, name) == 0)
            return o;
    }
    return NULL;
}

static void test_status(void)
{
    cl_spec_t *s = spec_n("ek", 2);
    json_object *st, *m, *sl, *all, *clouds;
    cl_err_t err;
    size_t i, n;
    int found;

    /* unknown: stopped, no slots */
    st = status_of("ek");
    CHECK_STR_EQ(json_str(st, "state"), "stopped");
    CHECK_INT_EQ(json_object_array_length(json_arr(st, "slots")), 0);
    json_object_put(st);

    /* described with the manifest's spec before anything exists: stopped, every slot missing */
    cl_err_clear(&err);
    all = NULL;
    CHECK_INT_EQ(cl_engine_status(eng, "ek", s, &all, &err), 0);
    clouds = json_arr(all, "clouds");
    st = clouds ? json_object_array_get_idx(clouds, 0) : NULL;
    CHECK_STR_EQ(json_str(st, "state"), "stopped");
    CHECK_STR_EQ(json_str(status_slot(st, "ek-server-0"), "state"), "missing");
    json_object_put(all);
    CHECK(!state_exists("ek"));

    CHECK_INT_EQ(apply(s, 0, NULL), 3);
    st = status_of("ek");
    CHECK_STR_EQ(json_str(st, "name"), "ek");
    CHECK_STR_EQ(json_str(st, "type"), "web");
    CHECK_STR_EQ(json_str(st, "state"), "running");
    CHECK_STR_EQ(json_str(st, "leader"), HOST);
    CHECK_STR_EQ(json_str(st, "hypervisor"), URI);
    m = json_arr(st, "members") ? json_object_array_get_idx(json_arr(st, "members"), 0) : NULL;
    if (CHECK(m != NULL)) {
        json_object *v;
        CHECK_STR_EQ(json_str(m, "host"), HOST);
        CHECK(json_object_object_get_ex(m, "alive", &v) && json_object_get_boolean(v));
        CHECK(json_object_object_get_ex(m, "self", &v) && json_object_get_boolean(v));
    }
    CHECK_INT_EQ(json_object_array_length(json_arr(st, "slots")), 3);
    for (i = 0; i < s->nslots; i++) {
        char u[VIR_UUID_STRING_BUFLEN], vol[80], mac[18], *path;
        sl = status_slot(st, s->slots[i].name);
        if (!CHECK(sl != NULL))
            continue;
        CHECK_STR_EQ(json_str(sl, "host"), HOST);
        CHECK_STR_EQ(json_str(sl, "state"), "running");
        CHECK_STR_EQ(json_str(sl, "domain"), s->slots[i].name);
        CHECK_STR_EQ(json_str(sl, "ip"), s->slots[i].ip);
        CHECK_STR_EQ(json_str(sl, "image"), s->slots[i].image);
        dom_uuid(s->slots[i].name, u);
        CHECK_STR_EQ(json_str(sl, "uuid"), u);
        dom_mac(s->slots[i].name, mac);
        CHECK(mac[0] != '\0');
        CHECK_STR_EQ(json_str(sl, "mac"), mac);
        snprintf(vol, sizeof(vol), "%s.qcow2", s->slots[i].name);
        path = vol_path("p-ek", vol);
        CHECK_STR_EQ(json_str(sl, "disk"), path);
        free(path);
    }
    json_object_put(st);

    /* one VM down: degraded, and the slot says how it is */
    dom_destroy("ek-server-1");
    st = status_of("ek");
    CHECK_STR_EQ(json_str(st, "state"), "degraded");
    CHECK_STR_EQ(json_str(status_slot(st, "ek-server-1"), "state"), "shutoff");
    CHECK_STR_EQ(json_str(status_slot(st, "ek-server-0"), "state"), "running");
    json_object_put(st);
    foreign_remove("ek-server-1");
    st = status_of("ek");
    CHECK_STR_EQ(json_str(st, "state"), "degraded");
    CHECK_STR_EQ(json_str(status_slot(st, "ek-server-1"), "state"), "missing");
    json_object_put(st);

    /* every known cloud */
    cl_err_clear(&err);
    all = NULL;
    CHECK_INT_EQ(cl_engine_status(eng, NULL, NULL, &all, &err), 0);
    clouds = json_arr(all, "clouds");
    n = clouds ? json_object_array_length(clouds) : 0;
    for (i = 0, found = 0; i < n; i++) {
        const char *name = json_str(json_object_array_get_idx(clouds, i), "name");
        found += name && strcmp(name, "ek") == 0;
    }
    CHECK_INT_EQ(found, 1);
    json_object_put(all);

    CHECK(stop("ek") >= 2);
    st = status_of("ek");
    CHECK_STR_EQ(json_str(st, "state"), "stopped");
    json_object_put(st);
    cl_spec_free(s);
}

static void test_order(void)
{
    spec_opts_t o = {0};
    cl_spec_t *s;
    json_object *res = NULL, *plan;

    /* declared servers first: the database is still made first and removed last */
    o.nservers = 2;
    o.db_last = 1;
    s = make_spec("eo", &o);
    CHECK_STR_EQ(s->slots[0].name, "eo-server-0");
    CHECK_INT_EQ(apply(s, 1, &res), 0);
    plan = json_arr(res, "plan");
    if (CHECK(plan && json_object_array_length(plan) == 3)) {
        CHECK_STR_EQ(json_str(json_object_array_get_idx(plan, 0), "slot"), "eo-database-0");
        CHECK_STR_EQ(json_str(json_object_array_get_idx(plan, 1), "slot"), "eo-server-0");
    }
    json_object_put(res);
    ndefined = 0;
    CHECK_INT_EQ(apply(s, 0, NULL), 3);
    CHECK_INT_EQ(ndefined, 3);
    CHECK_STR_EQ(defined[0], "eo-database-0");
    nremoved = 0;
    CHECK(stop("eo") >= 3);
    CHECK_INT_EQ(nremoved, 3);
    CHECK_STR_EQ(removed[2], "eo-database-0");
    cl_spec_free(s);
}

static void test_failed_define(void)
{
    spec_opts_t o = {0};
    cl_spec_t *bad, *good;
    json_object *res = NULL;
    cl_err_t err;

    /* a template libvirt refuses: the run stops after making the first slot's disk */
    o.nservers = 1;
    o.tmpl = "<domain type='test'><name>{{name}}</name><uuid>{{uuid}}</uuid>"
             "<memory unit='parsecs'>{{memory}}</memory><vcpu>{{vcpus}}</vcpu>"
             "<os><type>hvm</type></os><devices><disk type='file' device='disk'>"
             "<source file='{{disk}}'/><target dev='vda'/></disk><interface type='network'>"
             "<mac address='{{mac}}'/><source network='default'/></interface></devices></domain>";
    bad = make_spec("er", &o);
    o.tmpl = NULL;
    good = make_spec("er", &o);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng, bad, 0, NULL, NULL, &res, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, HOST);
    CHECK_CONTAINS(err.op, "er-database-0");
    CHECK_INT_EQ(owned_count("er"), 0);
    CHECK_INT_EQ(vol_count("p-er"), 1);
    CHECK(state_exists("er"));

    /* stopping the half-made cloud deletes the disk no domain refers to */
    CHECK(stop("er") >= 0);
    CHECK_INT_EQ(vol_count("p-er"), 0);
    CHECK(!state_exists("er"));

    /* or the next run, with a template that works, finishes the job with that disk */
    CHECK_INT_EQ(cl_engine_apply(eng, bad, 0, NULL, NULL, &res, &err), -1);
    CHECK_INT_EQ(apply(good, 0, NULL), 2);
    CHECK_INT_EQ(vol_count("p-er"), 2);
    CHECK_INT_EQ(dom_state("er-database-0"), 1);
    CHECK(stop("er") >= 2);
    CHECK_INT_EQ(vol_count("p-er"), 0);
    cl_spec_free(bad);
    cl_spec_free(good);
}

static void test_two_hosts(void)
{
    spec_opts_t o = {0};
    cl_spec_t *one, *two;
    json_object *st;
    const char *h0, *h1;
    size_t i;

    /* one hypervisor behind two pool hosts: the servers spread over both */
    o.nservers = 2;
    o.two_hosts = 1;
    two = make_spec("es", &o);
    CHECK_INT_EQ(apply(two, 0, NULL), 3);
    st = status_of("es");
    h0 = json_str(status_slot(st, "es-server-0"), "host");
    h1 = json_str(status_slot(st, "es-server-1"), "host");
    CHECK(h0 && h1 && strcmp(h0, h1) != 0);
    CHECK_STR_EQ(json_str(st, "state"), "running");
    json_object_put(st);
    CHECK_INT_EQ(apply(two, 0, NULL), 0);
    CHECK(stop("es") >= 3);
    CHECK_INT_EQ(owned_count("es"), 0);
    cl_spec_free(two);

    /* a host joining the pool does not move running slots */
    o.two_hosts = 0;
    one = make_spec("et", &o);
    o.two_hosts = 1;
    two = make_spec("et", &o);
    CHECK_INT_EQ(apply(one, 0, NULL), 3);
    CHECK_INT_EQ(apply(two, 0, NULL), 0);
    st = status_of("et");
    for (i = 0; i < two->nslots; i++)
        CHECK_STR_EQ(json_str(status_slot(st, two->slots[i].name), "host"), HOST);
    json_object_put(st);
    CHECK(stop("et") >= 3);
    cl_spec_free(one);
    cl_spec_free(two);
}

static void test_refusals(void)
{
    spec_opts_t o = {0};
    cl_spec_t *s;
    json_object *res = NULL;
    cl_err_t err;

    /* ensure => stopped goes through stop, not apply */
    o.ensure = "stopped";
    o.nservers = 1;
    s = make_spec("el", &o);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng, s, 0, NULL, NULL, &res, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_INT_EQ(owned_count("el"), 0);
    cl_spec_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* An elected cloud whose leader stops acting in the middle of a run                          */
/* ---------------------------------------------------------------------------------------- */

static cl_engine_t *eng_el;
static int acting_left; /* the election says "acting" this many more times, then no */

static int fake_lead(void *ud, const cl_spec_t *spec, char *leader, size_t len, uint64_t *epoch)
{
    (void)ud;
    (void)spec;
    snprintf(leader, len, "%s", HOST);
    *epoch = 7;
    return acting_left-- > 0 ? 1 : 0;
}

/* HOST2 "through its daemon": here the same test driver, through the engine's connection. */
static cl_host_t *fake_remote(void *ud, const cl_spec_t *spec, const char *host, cl_err_t *err)
{
    cl_virt_t *v = cl_engine_conn(eng_el, URI, host, err);

    (void)ud;
    (void)spec;
    return v ? cl_host_local_new(v, host, err) : NULL;
}

/* *e: an engine acting as HOST, whose election and other hosts are peers (fakes).  0 or -1. */
static int engine_with_peers(cl_engine_peers_t *peers, cl_engine_t **e)
{
    cl_engine_opts_t eo;
    cl_addrs_t self = {0};
    cl_err_t err;
    int rc;

    cl_addrs_add(&self, HOST);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = state_dir;
    eo.self = &self;
    eo.peers = peers;
    cl_err_clear(&err);
    rc = cl_engine_new(&eo, e, &err);
    cl_addrs_free(&self);
    return rc;
}

static void test_stops_when_no_longer_acting(void)
{
    cl_engine_peers_t peers = {NULL, fake_lead, fake_remote};
    spec_opts_t o = {0};
    json_object *res = NULL;
    cl_spec_t *s;
    cl_err_t err;
    int made;

    if (!CHECK_INT_EQ(engine_with_peers(&peers, &eng_el), 0))
        return;
    o.nservers = 5;
    o.two_hosts = 1;
    s = make_spec("el", &o);
    /* acting for the start of the run and a few mutations, then cut off */
    acting_left = 6;
    CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_ELECTION);
    CHECK_CONTAINS(err.msg, "no longer leads cloud el in epoch 7");
    made = owned_count("el");
    CHECK(made < 6); /* it stopped: not every slot was made */
    json_object_put(res);
    res = NULL;
    /* no mutation at all once it is not acting: nothing changes */
    acting_left = 1;
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), -1);
    CHECK_INT_EQ(owned_count("el"), made);
    json_object_put(res);
    res = NULL;
    /* acting again: it finishes, then tears down */
    acting_left = 1000000;
    cl_err_clear(&err);
    if (CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), 0))
        CHECK_INT_EQ(owned_count("el"), 6);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(cl_engine_stop(eng_el, "el", NULL, 0, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    CHECK_INT_EQ(owned_count("el"), 0);
    cl_spec_free(s);
    cl_engine_free(eng_el);
    eng_el = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Intent: what the pool last ordered decides a new term's first run                         */
/* ---------------------------------------------------------------------------------------- */

static cl_intent_t fake_answer; /* HOST2's answer to the intent hook */
static char last_set[16];       /* the last order the engine sent ("" : asked only) */
static int forgotten_calls;

static size_t fake_intent(void *ud, const cl_spec_t *spec, uint64_t epoch, const char *set,
                          cl_intent_t *out)
{
    size_t i;

    (void)ud;
    (void)epoch;
    snprintf(last_set, sizeof(last_set), "%s", set ? set : "");
    for (i = 0; i < spec->npool; i++)
        memset(&out[i], 0, sizeof(out[i]));
    if (spec->npool > 1)
        out[1] = fake_answer;
    return fake_answer.known ? 1 : 0;
}

static void fake_forgotten(void *ud, const char *cloud)
{
    (void)ud;
    (void)cloud;
    forgotten_calls++;
}

/* Every domain of cloud destroyed and undefined behind the engine's back (all lost). */
static void lose_all(const char *cloud)
{
    virDomainPtr *doms = NULL;
    char want[128];
    int n = virConnectListAllDomains(conn, &doms, 0), i;

    snprintf(want, sizeof(want), "cloud=\"%s\"", cloud);
    for (i = 0; i < n; i++) {
        char *m = virDomainGetMetadata(doms[i], VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
        if (m && strstr(m, want)) {
            virDomainDestroy(doms[i]);
            virDomainUndefine(doms[i]);
        }
        free(m);
        virDomainFree(doms[i]);
    }
    free(doms);
}

static void test_intent(void)
{
    cl_engine_peers_t peers = {.lead = fake_lead,
                               .remote = fake_remote,
                               .intent = fake_intent,
                               .forgotten = fake_forgotten};
    spec_opts_t o = {0};
    json_object *res = NULL, *v;
    cl_intent_t in;
    cl_spec_t *s;
    cl_err_t err;
    int made;

    if (!CHECK_INT_EQ(engine_with_peers(&peers, &eng_el), 0))
        return;
    o.nservers = 2;
    o.two_hosts = 1;
    s = make_spec("ek", &o);
    acting_left = 1000000;

    /* an apply orders running in its epoch (7), here and to the other host, with the spec */
    if (!CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), 0))
        goto done;
    json_object_put(res);
    res = NULL;
    made = owned_count("ek");
    CHECK_INT_EQ(made, 3);
    CHECK_STR_EQ(last_set, "running");
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", NULL, 0, NULL, &in, &err), 0);
    CHECK(in.known && !in.stopped && in.epoch == 7);

    /* every domain lost; the other host answers running: a new term makes them again */
    lose_all("ek");
    fake_answer = (cl_intent_t){1, 0, 7};
    CHECK_INT_EQ(cl_engine_repair(eng_el, "ek", 1, NULL, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(owned_count("ek"), made);
    CHECK_STR_EQ(last_set, "");

    /* lost again, and no other host answers: no majority of a pool of two, left alone */
    lose_all("ek");
    fake_answer = (cl_intent_t){0, 0, 0};
    CHECK_INT_EQ(cl_engine_repair(eng_el, "ek", 1, NULL, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(owned_count("ek"), 0);
    CHECK(state_exists("ek"));

    /* the other host recorded a newer stop (its leader died half-way): the stop is finished */
    CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(owned_count("ek"), made);
    fake_answer = (cl_intent_t){1, 1, 8};
    forgotten_calls = 0;
    CHECK_INT_EQ(cl_engine_repair(eng_el, "ek", 1, NULL, on_progress, NULL, &res, &err), 0);
    CHECK(res && json_object_object_get_ex(res, "stopped", &v) && json_object_get_boolean(v));
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(owned_count("ek"), 0);
    CHECK(!state_exists("ek"));
    CHECK_STR_EQ(last_set, "forget");
    CHECK_INT_EQ(forgotten_calls, 1);

    /* a pool host's side: newest epoch wins, "forget" only after a stop */
    fake_answer = (cl_intent_t){1, 0, 9};
    CHECK_INT_EQ(cl_engine_apply(eng_el, s, 0, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", "forget", 7, NULL, &in, &err), 0);
    CHECK(state_exists("ek") && in.known && !in.stopped);
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", "stopped", 3, NULL, &in, &err), 0);
    CHECK(!in.stopped && in.epoch == 7); /* older than the order it has: ignored */
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", "stopped", 12, NULL, &in, &err), 0);
    CHECK(in.stopped && in.epoch == 12);
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", "running", 11, NULL, &in, &err), 0);
    CHECK(in.stopped && in.epoch == 12);
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", "forget", 12, NULL, &in, &err), 1);
    CHECK(!state_exists("ek"));
    CHECK_INT_EQ(cl_engine_intent(eng_el, "ek", NULL, 0, NULL, &in, &err), 0);
    CHECK(!in.known);
    /* the domains it left (the state was forgotten by order): torn down with the spec */
    CHECK_INT_EQ(cl_engine_stop(eng_el, "ek", s, 0, on_progress, NULL, &res, &err), 0);
    json_object_put(res);
    res = NULL;
    CHECK_INT_EQ(owned_count("ek"), 0);
done:
    json_object_put(res);
    cl_spec_free(s);
    cl_engine_free(eng_el);
    eng_el = NULL;
}

/* A silent host's fencing wait grows with the copies it may hold, on a real hypervisor only. */
static void test_fence_wait_host(void)
{
    cl_engine_peers_t peers = {.lead = fake_lead, .remote = fake_remote, .destroy_ms = 700};
    spec_opts_t o = {0};
    cl_engine_t *e = NULL;
    cl_spec_t *s;
    const char *was;
    uint64_t base;

    if (!CHECK_INT_EQ(engine_with_peers(&peers, &e), 0))
        return;
    o.two_hosts = 1;
    s = make_spec("ew", &o);
    base = cl_engine_fence_wait_ms(e);
    CHECK(base == CL_FENCE_SELF_MS + CL_FENCE_MARGIN_MS);
    CHECK(cl_engine_fence_wait_host_ms(e, s, 4) == base); /* the test driver: never counted */
    was = s->hypervisor;
    s->hypervisor = "qemu+tcp://%{host}/system";
    CHECK(cl_engine_fence_wait_host_ms(e, s, 0) == base);
    CHECK(cl_engine_fence_wait_host_ms(e, s, 1) == base);
    CHECK(cl_engine_fence_wait_host_ms(e, s, 4) == base + 3 * 700);
    s->hypervisor = was;
    cl_spec_free(s);
    cl_engine_free(e);
}

int main(void)
{
    cl_engine_opts_t eo;
    cl_addrs_t self = {0};
    cl_err_t err;
    int rc;

    cl_log_set_stream(NULL);
    virSetErrorFunc(NULL, quiet);
    conn = virConnectOpen(URI);
    if (!conn) {
        fprintf(stderr, "cannot open %s\n", URI);
        return EXIT_FAILURE;
    }
    check_tmpdir(tmp, sizeof(tmp), "cl-engine");
    snprintf(state_dir, sizeof(state_dir), "%s/state", tmp);
    cl_addrs_add(&self, "192.0.2.99");
    cl_addrs_add(&self, HOST);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = state_dir;
    eo.self = &self;
    cl_err_clear(&err);
    if (cl_engine_new(&eo, &eng, &err) < 0) {
        fprintf(stderr, "cl_engine_new: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    cl_addrs_free(&self);

    test_apply_creates();
    test_noop();
    test_remove_slot();
    test_change_mem();
    test_monitor();
    test_repair_gate();
    test_two_clouds();
    test_foreign_name();
    test_mac_collision();
    test_mac_start_grow();
    test_interrupted();
    test_status();
    test_order();
    test_failed_define();
    test_two_hosts();
    test_refusals();
    test_stops_when_no_longer_acting();
    test_intent();
    test_fence_wait_host();

    cl_engine_free(eng);
    virConnectClose(conn);
    rc = check_summary();
    check_rmtree(tmp);
    return rc;
}
