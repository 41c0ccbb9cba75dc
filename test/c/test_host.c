/*
 * test_host: the pool host's table of operations.  A fake implementation records what each
 * cl_host_* call reached (the operation, its arguments and the epoch it carried); the local
 * implementation is run against libvirt's test driver and compared with what libvirt says.
 */
#include "check.h"

#include <stdint.h>
#include <string.h>

#include "cl_err.h"
#include "cl_host.h"
#include "cl_log.h"
#include "cl_virt.h"

#define URI "test:///default"

/* ---------------------------------------------------------------------------------------- */
/* A fake implementation: records the last operation                                        */
/* ---------------------------------------------------------------------------------------- */

typedef struct fake {
    int id; /* its backend */
    const char *op;
    uint64_t epoch;
    char a[128], b[128];
    unsigned grace_ms;
} fake_t;

static int released;

static void rec(cl_host_t *h, const char *op, uint64_t epoch, const char *a, const char *b)
{
    fake_t *f = cl_host_impl(h);

    f->op = op;
    f->epoch = epoch;
    snprintf(f->a, sizeof(f->a), "%s", a ? a : "");
    snprintf(f->b, sizeof(f->b), "%s", b ? b : "");
}

static const void *fake_backend(const cl_host_t *h)
{
    return (const void *)(intptr_t)((fake_t *)cl_host_impl(h))->id;
}
static int fake_alive(cl_host_t *h)
{
    rec(h, "alive", 0, NULL, NULL);
    return 1;
}
static int fake_is_test(const cl_host_t *h)
{
    return 7;
}
static unsigned long fake_free_kib(cl_host_t *h)
{
    rec(h, "free_kib", 0, NULL, NULL);
    return 4242;
}
static int fake_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                     cl_err_t *err)
{
    rec(h, "scan", 0, cloud, foreign ? "foreign" : "");
    return 0;
}
static int fake_state(cl_host_t *h, const char *name, cl_err_t *err)
{
    rec(h, "state", 0, name, NULL);
    return CL_DOM_PAUSED;
}
static int fake_pool_ensure(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                            cl_err_t *err)
{
    rec(h, "pool_ensure", epoch, pool, path);
    return 0;
}
static int fake_overlay(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                        const char *backing, const char *fmt, char *path_out, size_t len,
                        cl_err_t *err)
{
    rec(h, "overlay", epoch, vol, backing);
    snprintf(path_out, len, "/fake/%s/%s", pool, vol);
    return 0;
}
static int fake_define(cl_host_t *h, uint64_t epoch, const char *name, const char *xml,
                       cl_err_t *err)
{
    rec(h, "define", epoch, name, xml);
    return 0;
}
static int fake_start(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    rec(h, "start", epoch, name, NULL);
    /* an implementation's failure reaches the caller as it recorded it */
    return cl_err_set(err, CL_ERR_ELECTION, 3, cl_host_name(h), "start", "stale epoch %llu",
                      (unsigned long long)epoch);
}
static void fake_shutdown_request(cl_host_t *h, uint64_t epoch, const char *name)
{
    rec(h, "shutdown_request", epoch, name, NULL);
}
static int fake_remove(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms,
                       cl_err_t *err)
{
    rec(h, "remove", epoch, name, NULL);
    ((fake_t *)cl_host_impl(h))->grace_ms = grace_ms;
    return 0;
}
static int fake_vol_delete(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                           cl_err_t *err)
{
    rec(h, "vol_delete", epoch, pool, path);
    return 0;
}
static int fake_vol_delete_by_name(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                                   cl_err_t *err)
{
    rec(h, "vol_delete_by_name", epoch, pool, vol);
    return 0;
}
static void fake_release(void *impl)
{
    released++;
    free(impl);
}

static const cl_host_ops_t fake_ops = {
    .kind = "fake",
    .backend = fake_backend,
    .alive = fake_alive,
    .is_test = fake_is_test,
    .free_kib = fake_free_kib,
    .scan = fake_scan,
    .state = fake_state,
    .pool_ensure = fake_pool_ensure,
    .overlay = fake_overlay,
    .define = fake_define,
    .start = fake_start,
    .shutdown_request = fake_shutdown_request,
    .remove = fake_remove,
    .vol_delete = fake_vol_delete,
    .vol_delete_by_name = fake_vol_delete_by_name,
    .release = fake_release,
};

static cl_host_t *fake_new(const char *name, int id)
{
    fake_t *f = calloc(1, sizeof(*f));
    cl_err_t err;

    if (!f)
        return NULL;
    f->id = id;
    return cl_host_new(&fake_ops, name, f, &err);
}

/* Each wrapper reaches its own operation, with its arguments and the epoch given. */
static void test_dispatch(void)
{
    char name[] = "192.0.2.1", path[64];
    cl_host_t *h = fake_new(name, 1);
    fake_t *f;
    cl_dom_list_t owned = {0};
    cl_idset_t foreign = {0};
    cl_err_t err;

    if (!CHECK(h != NULL))
        return;
    f = cl_host_impl(h);
    name[0] = 'X'; /* the name was copied */
    CHECK_STR_EQ(cl_host_name(h), "192.0.2.1");
    CHECK_STR_EQ(cl_host_kind(h), "fake");
    CHECK_INT_EQ(cl_host_is_test(h), 7);
    CHECK_INT_EQ(cl_host_alive(h), 1);
    CHECK_STR_EQ(f->op, "alive");
    CHECK_INT_EQ(cl_host_free_kib(h), 4242);
    CHECK_STR_EQ(f->op, "free_kib");

    CHECK_INT_EQ(cl_host_scan(h, "c1", &owned, &foreign, &err), 0);
    CHECK_STR_EQ(f->op, "scan");
    CHECK_STR_EQ(f->a, "c1");
    CHECK_STR_EQ(f->b, "foreign");
    CHECK_INT_EQ(cl_host_scan(h, "c2", &owned, NULL, &err), 0);
    CHECK_STR_EQ(f->b, "");
    CHECK_INT_EQ(cl_host_state(h, "c1-web-0", &err), CL_DOM_PAUSED);
    CHECK_STR_EQ(f->op, "state");
    CHECK_STR_EQ(f->a, "c1-web-0");

    CHECK_INT_EQ(cl_host_pool_ensure(h, 11, "p", "/var/p", &err), 0);
    CHECK_STR_EQ(f->op, "pool_ensure");
    CHECK_INT_EQ(f->epoch, 11);
    CHECK_STR_EQ(f->b, "/var/p");
    CHECK_INT_EQ(cl_host_overlay(h, 12, "p", "v.qcow2", "/img", "qcow2", path, sizeof(path), &err),
                 0);
    CHECK_STR_EQ(f->op, "overlay");
    CHECK_INT_EQ(f->epoch, 12);
    CHECK_STR_EQ(f->a, "v.qcow2");
    CHECK_STR_EQ(f->b, "/img");
    CHECK_STR_EQ(path, "/fake/p/v.qcow2");
    CHECK_INT_EQ(cl_host_define(h, 13, "d", "<domain/>", &err), 0);
    CHECK_STR_EQ(f->op, "define");
    CHECK_INT_EQ(f->epoch, 13);
    CHECK_STR_EQ(f->b, "<domain/>");
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_start(h, (uint64_t)1 << 40, "d", &err), -1);
    CHECK_STR_EQ(f->op, "start");
    CHECK_INT_EQ(f->epoch, (uint64_t)1 << 40); /* the whole 64 bits travel */
    CHECK_INT_EQ(err.domain, CL_ERR_ELECTION);
    CHECK_STR_EQ(err.host, "192.0.2.1");
    CHECK_CONTAINS(err.msg, "stale epoch 1099511627776");
    cl_host_shutdown_request(h, 15, "d");
    CHECK_STR_EQ(f->op, "shutdown_request");
    CHECK_INT_EQ(f->epoch, 15);
    CHECK_INT_EQ(cl_host_remove(h, 16, "d", 2500, &err), 0);
    CHECK_STR_EQ(f->op, "remove");
    CHECK_INT_EQ(f->epoch, 16);
    CHECK_INT_EQ(f->grace_ms, 2500);
    CHECK_INT_EQ(cl_host_vol_delete(h, 17, "p", "/var/p/v.qcow2", &err), 0);
    CHECK_STR_EQ(f->op, "vol_delete");
    CHECK_INT_EQ(f->epoch, 17);
    CHECK_STR_EQ(f->b, "/var/p/v.qcow2");
    CHECK_INT_EQ(cl_host_vol_delete_by_name(h, 18, "p", "v.qcow2", &err), 0);
    CHECK_STR_EQ(f->op, "vol_delete_by_name");
    CHECK_INT_EQ(f->epoch, 18);
    CHECK_STR_EQ(f->b, "v.qcow2");

    released = 0;
    cl_host_free(h);
    CHECK_INT_EQ(released, 1); /* the implementation's state goes with the host */
    cl_host_free(NULL);
    CHECK_INT_EQ(released, 1);
}

/* Hosts with one backend are one: same ops and same identity. */
static void test_same_backend(void)
{
    cl_host_t *a = fake_new("a", 1), *b = fake_new("b", 1), *c = fake_new("c", 2);

    if (CHECK(a && b && c)) {
        CHECK(cl_host_same_backend(a, b));
        CHECK(cl_host_same_backend(a, a));
        CHECK(!cl_host_same_backend(a, c));
    }
    cl_host_free(a);
    cl_host_free(b);
    cl_host_free(c);
}

/* ---------------------------------------------------------------------------------------- */
/* The local implementation on the test driver                                              */
/* ---------------------------------------------------------------------------------------- */

#define DOM "t-host-local-0"
#define DOM_XML                                                                                    \
    "<domain type='test'><name>" DOM "</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>"      \
    "<os><type arch='x86_64'>hvm</type></os></domain>"

static void test_local(void)
{
    cl_virt_t *v = NULL, *w = NULL;
    cl_host_t *a = NULL, *b = NULL, *c = NULL;
    cl_dom_list_t owned = {0};
    cl_idset_t foreign = {0};
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_virt_open(URI, "127.0.0.1", 0, &v, &err), 0) ||
        !CHECK_INT_EQ(cl_virt_open(URI, "127.0.0.1", 0, &w, &err), 0))
        goto cleanup;
    a = cl_host_local_new(v, "127.0.0.1", &err);
    b = cl_host_local_new(v, "127.0.0.2", &err); /* two pool entries, one connection */
    c = cl_host_local_new(w, "127.0.0.3", &err);
    if (!CHECK(a && b && c))
        goto cleanup;
    CHECK_STR_EQ(cl_host_kind(a), "local");
    CHECK_STR_EQ(cl_host_name(b), "127.0.0.2");
    CHECK(cl_host_impl(a) == v);
    CHECK(cl_host_same_backend(a, b));
    CHECK(!cl_host_same_backend(a, c));
    CHECK(cl_host_alive(a));
    CHECK(cl_host_is_test(a));

    CHECK_INT_EQ(cl_host_state(a, DOM, &err), CL_DOM_MISSING);
    CHECK_INT_EQ(cl_host_define(a, 5, DOM, DOM_XML, &err), 0);
    CHECK_INT_EQ(cl_host_state(b, DOM, &err), CL_DOM_SHUTOFF); /* b sees what a did */
    CHECK_INT_EQ(cl_host_start(a, 5, DOM, &err), 0);
    CHECK_INT_EQ(cl_host_state(c, DOM, &err), CL_DOM_RUNNING);
    /* no ownership metadata: not the cloud's, but its name is a foreign identity */
    CHECK_INT_EQ(cl_host_scan(a, "t-host", &owned, &foreign, &err), 0);
    CHECK_INT_EQ(owned.n, 0);
    CHECK(cl_idset_has(&foreign, DOM));
    cl_host_shutdown_request(a, 5, DOM); /* nothing on the test driver */
    CHECK_INT_EQ(cl_host_state(a, DOM, &err), CL_DOM_RUNNING);
    CHECK_INT_EQ(cl_host_remove(a, 5, DOM, 0, &err), 0);
    CHECK_INT_EQ(cl_host_state(a, DOM, &err), CL_DOM_MISSING);
    /* a missing volume, or a missing pool, is no error */
    CHECK_INT_EQ(cl_host_vol_delete_by_name(a, 5, "t-host-no-pool", "x.qcow2", &err), 0);

    /* errors are libvirt's, recorded once, with the host */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_host_start(a, 5, DOM, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, "127.0.0.1");
    CHECK_CONTAINS(err.op, DOM);

cleanup:
    cl_dom_list_free(&owned);
    cl_idset_free(&foreign);
    cl_host_free(a);
    cl_host_free(b);
    cl_host_free(c);
    /* the connections were borrowed: still usable after their hosts are gone */
    if (v)
        CHECK(cl_virt_alive(v));
    cl_virt_close(v);
    cl_virt_close(w);
}

int main(void)
{
    cl_log_set_stream(NULL);
    cl_virt_global_init();
    test_dispatch();
    test_same_backend();
    test_local();
    return check_summary();
}
