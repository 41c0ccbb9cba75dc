/*
 * test_spec: the daemon's own validation of a spec (doc/INTERNALS.md §1).  A valid spec is
 * parsed into the fields the engine uses, defaults included; every invalid one is refused with
 * a spec error whose message names the attribute and the bad value.
 */
#include "check.h"
#include "spec_fixture.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cl_err.h"
#include "cl_spec.h"

#define TEMPLATE                                                                                   \
    "<domain type='test'><name>{{name}}</name><uuid>{{uuid}}</uuid>"                               \
    "<memory>{{memory}}</memory><vcpu>{{vcpus}}</vcpu><os><type>hvm</type></os>"                   \
    "<devices><disk type='file' device='disk'><source file='{{disk}}'/></disk>"                    \
    "<interface type='network'><mac address='{{mac}}'/></interface></devices></domain>"

static const char *const base_text =
    "{\"name\": \"myweb\", \"type\": \"web\", \"ensure\": \"running\","
    " \"pool\": [\"127.0.0.1\", \"192.0.2.2\"],"
    " \"hypervisor\": \"test:///default\","
    " \"template\": \"" TEMPLATE "\","
    " \"template_path\": \"/etc/cloud/web/template.xml\","
    " \"vm_mem\": 524288, \"vm_ncpu\": 2, \"mac_start\": \"52:54:00:01:00:00\","
    " \"disk_pool\": \"cloud\", \"disk_pool_path\": \"/var/lib/libvirt/images/cloud\","
    " \"image_format\": \"qcow2\","
    " \"roles\": [{\"name\": \"database\", \"after\": []},"
    "             {\"name\": \"server\", \"after\": [\"database\"]},"
    "             {\"name\": \"balancer\", \"after\": [\"server\"]}],"
    " \"slots\": ["
    "  {\"name\": \"myweb-database-0\", \"roles\": [\"database\"], \"index\": 0,"
    "   \"ip\": \"10.0.0.3\", \"image\": \"/img/db.qcow2\"},"
    "  {\"name\": \"myweb-server-0\", \"roles\": [\"server\"], \"services\": [\"server\", "
    "\"login\"],"
    "   \"index\": 0, \"ip\": \"10.0.0.4\", \"image\": \"/img/web.qcow2\"},"
    "  {\"name\": \"myweb-server-1\", \"roles\": [\"server\", \"balancer\"], \"index\": 1,"
    "   \"ip\": \"10.0.0.5\", \"image\": \"/img/web.qcow2\"}],"
    " \"options\": {}}";

static json_object *base(void)
{
    json_object *o = json_tokener_parse(base_text);

    if (!o) {
        fprintf(stderr, "the base spec of the test is not JSON\n");
        exit(2);
    }
    return o;
}

static json_object *slot(json_object *spec, size_t i)
{
    json_object *slots;

    json_object_object_get_ex(spec, "slots", &slots);
    return json_object_array_get_idx(slots, i);
}

static void set_str(json_object *o, const char *key, const char *val)
{
    json_object_object_add(o, key, val ? json_object_new_string(val) : NULL);
}

/* Parse the text of spec (which is put); it must fail with a spec error containing each needle. */
static void expect_error(json_object *spec, const char *needle, const char *needle2, int line)
{
    cl_spec_t *s = (cl_spec_t *)1;
    cl_err_t err;
    int rc;

    cl_err_clear(&err);
    rc = cl_spec_parse_string(json_object_to_json_string(spec), &s, &err);
    if (!CHECK_INT_EQ(rc, -1))
        fprintf(stderr, "  (spec of line %d was accepted)\n", line);
    CHECK(s == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    if (!CHECK_CONTAINS(err.msg, needle) || (needle2 && !CHECK_CONTAINS(err.msg, needle2)))
        fprintf(stderr, "  (spec of line %d)\n", line);
    cl_spec_free(s);
    json_object_put(spec);
}

static void test_valid(void)
{
    cl_spec_t *s = NULL;
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_spec_parse_string(base_text, &s, &err), 0) || !CHECK(s != NULL)) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_STR_EQ(s->name, "myweb");
    CHECK_STR_EQ(s->type, "web");
    CHECK_STR_EQ(s->ensure, "running");
    CHECK(s->running);
    CHECK_STR_EQ(s->hypervisor, "test:///default");
    CHECK_STR_EQ(s->tmpl, TEMPLATE);
    CHECK_STR_EQ(s->tmpl_path, "/etc/cloud/web/template.xml");
    CHECK_INT_EQ(s->npool, 2);
    CHECK_STR_EQ(s->pool[0], "127.0.0.1");
    CHECK_STR_EQ(s->pool[1], "192.0.2.2");
    CHECK_INT_EQ(s->vm_mem_kib, 524288);
    CHECK_INT_EQ(cl_spec_slot_mem_kib(s, 2), 524288);
    CHECK_INT_EQ(s->vm_ncpu, 2);
    CHECK_STR_EQ(s->mac_start, "52:54:00:01:00:00");
    CHECK_STR_EQ(s->disk_pool, "cloud");
    CHECK_STR_EQ(s->image_format, "qcow2");
    if (CHECK_INT_EQ(s->nroles, 3)) {
        CHECK_STR_EQ(s->roles[2].name, "balancer");
        CHECK_INT_EQ(s->roles[0].nafter, 0);
        CHECK_INT_EQ(s->roles[1].nafter, 1);
        CHECK_STR_EQ(s->roles[1].after[0], "database");
    }
    if (CHECK_INT_EQ(s->nslots, 3)) {
        CHECK_STR_EQ(s->slots[0].name, "myweb-database-0");
        CHECK_STR_EQ(s->slots[0].ip, "10.0.0.3");
        CHECK_STR_EQ(s->slots[0].image, "/img/db.qcow2");
        /* services default to the roles */
        CHECK_INT_EQ(s->slots[0].nservices, 1);
        CHECK_STR_EQ(s->slots[0].services[0], "database");
        CHECK_INT_EQ(s->slots[1].nservices, 2);
        CHECK_STR_EQ(s->slots[1].services[1], "login");
        CHECK_INT_EQ(s->slots[2].nroles, 2);
        CHECK_STR_EQ(s->slots[2].roles[1], "balancer");
        CHECK_INT_EQ(s->slots[2].index, 1);
    }
    CHECK_INT_EQ(cl_spec_slot_find(s, "myweb-server-1"), 2);
    CHECK_INT_EQ(cl_spec_slot_find(s, "myweb-server-9"), -1);
    cl_spec_free(s);
    cl_spec_free(NULL);
}

static void test_defaults(void)
{
    json_object *o = base();
    cl_spec_t *s = NULL;
    cl_err_t err;
    static const char *const optional[] = {
        "type",    "ensure",       "hypervisor", "mac_start", "disk_pool",     "disk_pool_path",
        "vm_ncpu", "image_format", "vm_mem",     "options",   "template_path", NULL};
    size_t i;

    for (i = 0; optional[i]; i++)
        json_object_object_del(o, optional[i]);
    cl_err_clear(&err);
    if (CHECK_INT_EQ(cl_spec_parse(o, &s, &err), 0)) {
        CHECK_STR_EQ(s->type, "cloud");
        CHECK_STR_EQ(s->ensure, "running");
        CHECK(s->running);
        CHECK_STR_EQ(s->hypervisor, "test:///default");
        CHECK(s->mac_start == NULL);
        CHECK_STR_EQ(s->disk_pool, "cloud");
        CHECK_STR_EQ(s->disk_pool_path, "/var/lib/libvirt/images/cloud");
        CHECK_STR_EQ(s->image_format, "qcow2");
        CHECK_INT_EQ(s->vm_mem_kib, 1048576);
        CHECK_INT_EQ(s->vm_ncpu, 1);
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    cl_spec_free(s);
    json_object_put(o);

    /* the seed wrote numbers as strings */
    o = base();
    set_str(o, "vm_mem", "2048");
    set_str(o, "vm_ncpu", "4");
    s = NULL;
    if (CHECK_INT_EQ(cl_spec_parse(o, &s, &err), 0)) {
        CHECK_INT_EQ(s->vm_mem_kib, 2048);
        CHECK_INT_EQ(s->vm_ncpu, 4);
    }
    cl_spec_free(s);
    json_object_put(o);

    /* a null mac_start means derived MACs */
    o = base();
    set_str(o, "mac_start", NULL);
    s = NULL;
    if (CHECK_INT_EQ(cl_spec_parse(o, &s, &err), 0))
        CHECK(s->mac_start == NULL);
    cl_spec_free(s);
    json_object_put(o);
}

static void test_stopped(void)
{
    json_object *o = base();
    cl_spec_t *s = NULL;
    cl_err_t err;

    /* ensure => stopped needs neither slots nor a template: only where to look */
    set_str(o, "ensure", "stopped");
    json_object_object_del(o, "slots");
    json_object_object_del(o, "template");
    cl_err_clear(&err);
    if (CHECK_INT_EQ(cl_spec_parse_string(json_object_to_json_string(o), &s, &err), 0)) {
        CHECK(!s->running);
        CHECK_INT_EQ(s->nslots, 0);
        CHECK(s->tmpl == NULL);
    } else {
        fprintf(stderr, "  %s\n", err.msg);
    }
    cl_spec_free(s);
    json_object_put(o);
}

static void test_errors(void)
{
    json_object *o;
    char longname[64];

    expect_error(json_tokener_parse("[1]"), "expected a JSON object", NULL, __LINE__);
    {
        cl_spec_t *s = NULL;
        cl_err_t err;
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_spec_parse_string("{\"name\": ", &s, &err), -1);
        CHECK_CONTAINS(err.msg, "not valid JSON");
    }

    o = base();
    set_str(o, "name", "my web");
    expect_error(o, "name:", "'my web'", __LINE__);
    o = base();
    set_str(o, "name", "-web");
    expect_error(o, "name:", "'-web'", __LINE__);
    memset(longname, 'a', 41);
    longname[41] = '\0';
    o = base();
    set_str(o, "name", longname);
    expect_error(o, "name:", longname, __LINE__);
    o = base();
    json_object_object_del(o, "name");
    expect_error(o, "name: missing", NULL, __LINE__);

    o = base();
    json_object_object_add(o, "pool", json_object_new_array());
    expect_error(o, "pool:", "empty", __LINE__);
    o = base();
    json_object_object_del(o, "pool");
    expect_error(o, "pool:", "empty", __LINE__);
    o = base();
    json_object_object_add(o, "pool", fx_strs("192.0.2.2", "192.0.2.2"));
    expect_error(o, "pool:", "'192.0.2.2' is listed twice", __LINE__);
    o = base();
    json_object_object_add(o, "pool", fx_strs("127.0.0.1", "bad host!"));
    expect_error(o, "pool:", "'bad host!'", __LINE__);

    o = base();
    set_str(o, "ensure", "absent");
    expect_error(o, "ensure:", "'absent'", __LINE__);

    o = base();
    set_str(o, "vm_mem", "abc");
    expect_error(o, "vm_mem:", "'abc'", __LINE__);
    o = base();
    json_object_object_add(o, "vm_mem", json_object_new_int(512));
    expect_error(o, "vm_mem:", "out of range", __LINE__);
    o = base();
    set_str(o, "vm_mem", "512");
    expect_error(o, "vm_mem:", "out of range", __LINE__);
    o = base();
    json_object_object_add(o, "vm_mem", json_object_new_int(-1));
    expect_error(o, "vm_mem:", "out of range", __LINE__);
    o = base();
    json_object_object_add(o, "vm_mem", json_object_new_double(1.5));
    expect_error(o, "vm_mem:", NULL, __LINE__);

    o = base();
    json_object_object_add(o, "vm_ncpu", json_object_new_int(0));
    expect_error(o, "vm_ncpu:", "out of range", __LINE__);
    o = base();
    json_object_object_add(o, "vm_ncpu", json_object_new_int(257));
    expect_error(o, "vm_ncpu:", "out of range", __LINE__);
    o = base();
    set_str(o, "vm_ncpu", "two");
    expect_error(o, "vm_ncpu:", "'two'", __LINE__);

    o = base();
    set_str(o, "mac_start", "52:54:00:01:00");
    expect_error(o, "starting_mac_address:", "'52:54:00:01:00'", __LINE__);
    o = base();
    set_str(o, "mac_start", "52-54-00-01-00-00");
    expect_error(o, "starting_mac_address:", "'52-54-00-01-00-00'", __LINE__);
    o = base();
    set_str(o, "mac_start", "52:54:00:01:00:+1");
    expect_error(o, "starting_mac_address:", "'52:54:00:01:00:+1'", __LINE__);
    o = base();
    set_str(o, "mac_start", "01:00:5e:00:00:01");
    expect_error(o, "starting_mac_address:", "multicast", __LINE__);

    o = base();
    set_str(slot(o, 1), "ip", "10.0.0.300");
    expect_error(o, "slots[1].ip:", "'10.0.0.300'", __LINE__);
    o = base();
    set_str(slot(o, 2), "ip", "10.0.0.3");
    expect_error(o, "IP 10.0.0.3", "myweb-database-0 and myweb-server-1", __LINE__);
    o = base();
    set_str(slot(o, 2), "name", "myweb-server-0");
    expect_error(o, "slots:", "'myweb-server-0' appears twice", __LINE__);
    o = base();
    set_str(slot(o, 0), "name", "other-database-0");
    expect_error(o, "slots[0].name:", "'other-database-0'", __LINE__);
    o = base();
    set_str(slot(o, 0), "ip", "192.0.2.2");
    expect_error(o, "slots[0].ip:", "192.0.2.2 is a pool host", __LINE__);
    o = base();
    set_str(slot(o, 0), "image", "img/db.qcow2");
    expect_error(o, "slots[0].image:", "'img/db.qcow2' is not an absolute path", __LINE__);
    o = base();
    json_object_object_add(slot(o, 1), "roles", fx_strs("server", "nope"));
    expect_error(o, "slots[1].roles:", "'nope' is not a declared role", __LINE__);
    o = base();
    json_object_object_add(slot(o, 1), "roles", json_object_new_array());
    expect_error(o, "slots[1].roles:", NULL, __LINE__);

    /* "after" must name an earlier role, so the declared order is a dependency order */
    o = base();
    {
        json_object *roles;
        json_object_object_get_ex(o, "roles", &roles);
        json_object_object_add(json_object_array_get_idx(roles, 0), "after",
                               fx_strs("server", NULL));
    }
    expect_error(o, "roles:", "'database' comes after 'server'", __LINE__);

    o = base();
    json_object_object_del(o, "slots");
    expect_error(o, "slots:", "at least one VM", __LINE__);
    o = base();
    json_object_object_add(o, "slots", json_object_new_array());
    expect_error(o, "slots:", "at least one VM", __LINE__);
    o = base();
    json_object_object_del(o, "template");
    expect_error(o, "vm_domain:", "template", __LINE__);

    /* template errors are the template's, wrapped with the attribute and the file */
    o = base();
    set_str(o, "template", "<network><name>{{name}}</name></network>");
    expect_error(o, "vm_domain: /etc/cloud/web/template.xml: ", "<domain>", __LINE__);
    o = base();
    set_str(o, "template", "<domain><name>{{name}}</name></domain>");
    expect_error(o, "vm_domain: ", "{{uuid}} is missing", __LINE__);
}

static json_object *role(json_object *spec, size_t i)
{
    json_object *roles;

    json_object_object_get_ex(spec, "roles", &roles);
    return json_object_array_get_idx(roles, i);
}

/* Adds "health": {key: val} to role i of spec (creating the object), and returns spec. */
static json_object *with_health(json_object *spec, size_t i, const char *key, json_object *val)
{
    json_object *r = role(spec, i), *h;

    if (!json_object_object_get_ex(r, "health", &h) || !h) {
        h = json_object_new_object();
        json_object_object_add(r, "health", h);
    }
    json_object_object_add(h, key, val);
    return spec;
}

static int health_is_default(const cl_health_t *h)
{
    return h->interval_ms == CL_HEALTH_INTERVAL_MS && h->timeout_ms == CL_HEALTH_TIMEOUT_MS &&
           h->retries == CL_HEALTH_RETRIES && h->max_restarts == CL_HEALTH_MAX_RESTARTS &&
           h->window_ms == CL_HEALTH_WINDOW_MS && h->backoff_ms == CL_HEALTH_BACKOFF_MS &&
           h->backoff_max_ms == CL_HEALTH_BACKOFF_MAX_MS;
}

/* Parses spec (which is put); NULL (and a failed check) when it is refused. */
static cl_spec_t *parse_ok(json_object *spec, int line)
{
    cl_spec_t *s = NULL;
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_spec_parse(spec, &s, &err), 0))
        fprintf(stderr, "  (spec of line %d: %s)\n", line, err.msg);
    json_object_put(spec);
    return s;
}

static void test_health(void)
{
    cl_spec_t *s;
    json_object *o;
    size_t i;

    /* absent, null or empty: every role gets the defaults */
    s = parse_ok(base(), __LINE__);
    for (i = 0; s && i < s->nroles; i++)
        CHECK(health_is_default(&s->roles[i].health));
    cl_spec_free(s);
    o = base();
    json_object_object_add(role(o, 0), "health", NULL);
    json_object_object_add(role(o, 1), "health", json_object_new_object());
    with_health(o, 2, "interval_ms", NULL); /* a null key: its default */
    s = parse_ok(o, __LINE__);
    for (i = 0; s && i < s->nroles; i++)
        CHECK(health_is_default(&s->roles[i].health));
    cl_spec_free(s);

    /* each key given is parsed, the others keep their defaults, other roles too */
    o = base();
    with_health(o, 1, "interval_ms", json_object_new_int(2000));
    with_health(o, 1, "timeout_ms", json_object_new_int(1000));
    with_health(o, 1, "retries", json_object_new_int(3));
    with_health(o, 1, "max_restarts", json_object_new_int(7));
    with_health(o, 1, "window_ms", json_object_new_int(300000));
    with_health(o, 1, "backoff_ms", json_object_new_int(500));
    with_health(o, 1, "backoff_max_ms", json_object_new_int(30000));
    with_health(o, 2, "retries", json_object_new_int(0));
    s = parse_ok(o, __LINE__);
    if (s) {
        const cl_health_t *h = &s->roles[1].health;
        CHECK_INT_EQ(h->interval_ms, 2000);
        CHECK_INT_EQ(h->timeout_ms, 1000);
        CHECK_INT_EQ(h->retries, 3);
        CHECK_INT_EQ(h->max_restarts, 7);
        CHECK_INT_EQ(h->window_ms, 300000);
        CHECK_INT_EQ(h->backoff_ms, 500);
        CHECK_INT_EQ(h->backoff_max_ms, 30000);
        CHECK(health_is_default(&s->roles[0].health));
        h = &s->roles[2].health;
        CHECK_INT_EQ(h->retries, 0);
        CHECK_INT_EQ(h->interval_ms, CL_HEALTH_INTERVAL_MS);
        CHECK_INT_EQ(h->backoff_max_ms, CL_HEALTH_BACKOFF_MAX_MS);
    }
    cl_spec_free(s);

    /* the bounds themselves are accepted */
    o = base();
    with_health(o, 0, "interval_ms", json_object_new_int(100));
    with_health(o, 0, "timeout_ms", json_object_new_int(3600000));
    with_health(o, 0, "max_restarts", json_object_new_int(1000));
    with_health(o, 0, "window_ms", json_object_new_int(1000));
    with_health(o, 0, "backoff_ms", json_object_new_int(0));
    with_health(o, 0, "backoff_max_ms", json_object_new_int(0));
    with_health(o, 1, "interval_ms", json_object_new_int(86400000));
    with_health(o, 1, "backoff_ms", json_object_new_int(3600000));
    with_health(o, 1, "backoff_max_ms", json_object_new_int(86400000));
    s = parse_ok(o, __LINE__);
    if (s) {
        CHECK_INT_EQ(s->roles[0].health.interval_ms, 100);
        CHECK_INT_EQ(s->roles[0].health.backoff_max_ms, 0);
        CHECK_INT_EQ(s->roles[1].health.interval_ms, 86400000);
        CHECK_INT_EQ(s->roles[1].health.backoff_max_ms, 86400000);
    }
    cl_spec_free(s);

    /* an unknown key is named, with the valid ones */
    expect_error(with_health(base(), 1, "interval", json_object_new_int(10)),
                 "roles[1].health (server): unknown key 'interval'",
                 "(interval_ms, timeout_ms, retries, max_restarts, window_ms, backoff_ms, "
                 "backoff_max_ms)",
                 __LINE__);
    /* not an object, not integers */
    o = base();
    json_object_object_add(role(o, 0), "health", json_object_new_int(5));
    expect_error(o, "roles[0].health (database): 5 is not an object", NULL, __LINE__);
    expect_error(with_health(base(), 2, "interval_ms", json_object_new_string("10s")),
                 "roles[2].health.interval_ms (balancer): ", "\"10s\" is not an integer", __LINE__);
    expect_error(with_health(base(), 1, "timeout_ms", json_object_new_double(1.5)),
                 "roles[1].health.timeout_ms (server): ", "1.5 is not an integer", __LINE__);
    /* out of range, each key at both ends */
    expect_error(with_health(base(), 1, "interval_ms", json_object_new_int(99)),
                 "roles[1].health.interval_ms (server): ", "99 is out of range 100..86400000",
                 __LINE__);
    expect_error(with_health(base(), 1, "interval_ms", json_object_new_int64(86400001)),
                 "roles[1].health.interval_ms", "86400001 is out of range", __LINE__);
    expect_error(with_health(base(), 1, "timeout_ms", json_object_new_int(3600001)),
                 "roles[1].health.timeout_ms", "3600001 is out of range 100..3600000", __LINE__);
    expect_error(with_health(base(), 1, "retries", json_object_new_int(-1)),
                 "roles[1].health.retries", "-1 is out of range 0..10", __LINE__);
    expect_error(with_health(base(), 1, "retries", json_object_new_int(11)),
                 "roles[1].health.retries", "11 is out of range 0..10", __LINE__);
    expect_error(with_health(base(), 0, "max_restarts", json_object_new_int(0)),
                 "roles[0].health.max_restarts (database)", "0 is out of range 1..1000", __LINE__);
    expect_error(with_health(base(), 0, "window_ms", json_object_new_int(999)),
                 "roles[0].health.window_ms", "999 is out of range 1000..86400000", __LINE__);
    expect_error(with_health(base(), 0, "backoff_ms", json_object_new_int(3600001)),
                 "roles[0].health.backoff_ms", "3600001 is out of range 0..3600000", __LINE__);
    expect_error(with_health(base(), 0, "backoff_max_ms", json_object_new_int(86400001)),
                 "roles[0].health.backoff_max_ms", "86400001 is out of range 0..86400000",
                 __LINE__);
    /* beyond 32 bits, and beyond what int64 holds: not wrapped into range */
    expect_error(with_health(base(), 1, "interval_ms", json_object_new_int64(4294967396LL)),
                 "roles[1].health.interval_ms", "4294967396 is out of range", __LINE__);
    o = json_tokener_parse(
        "{\"name\": \"x\", \"pool\": [\"127.0.0.1\"], \"ensure\": \"stopped\", \"roles\": "
        "[{\"name\": \"a\", \"health\": {\"retries\": 99999999999999999999}}]}");
    expect_error(o, "roles[0].health.retries (a): ", "is out of range 0..10", __LINE__);
    /* the backoff never starts above its cap, given or the default */
    o = with_health(base(), 1, "backoff_ms", json_object_new_int(5000));
    expect_error(with_health(o, 1, "backoff_max_ms", json_object_new_int(4999)),
                 "roles[1].health.backoff_max_ms (server): ", "4999 is less than backoff_ms 5000",
                 __LINE__);
    expect_error(with_health(base(), 1, "backoff_ms", json_object_new_int(120000)),
                 "roles[1].health.backoff_max_ms (server): ",
                 "60000 (the default) is less than backoff_ms 120000", __LINE__);
}

static void test_uri(void)
{
    char *u;

    u = cl_spec_uri_for("qemu+ssh://root@%{host}/system", "10.1.1.1");
    CHECK_STR_EQ(u, "qemu+ssh://root@10.1.1.1/system");
    free(u);
    u = cl_spec_uri_for("%{host}", "h.example");
    CHECK_STR_EQ(u, "h.example");
    free(u);
    /* an IPv6 literal is bracketed, as URIs want */
    u = cl_spec_uri_for("qemu+ssh://root@%{host}/system", "fe80::1");
    CHECK_STR_EQ(u, "qemu+ssh://root@[fe80::1]/system");
    free(u);
    u = cl_spec_uri_for("test:///default", "10.1.1.1");
    CHECK_STR_EQ(u, "test:///default");
    free(u);
}

int main(void)
{
    test_valid();
    test_defaults();
    test_stopped();
    test_errors();
    test_health();
    test_uri();
    return check_summary();
}
