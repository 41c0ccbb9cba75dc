/*
 * cl_host: a pool host behind its table of operations (see cl_host.h), and the local
 * implementation, which hands every operation to the host's cl_virt_t connection.  The
 * wrappers only dispatch: what an operation does and how it fails is the implementation's.
 */
#include "cl_host.h"

#include <stdlib.h>
#include <string.h>

struct cl_host {
    const cl_host_ops_t *ops; /* static, borrowed */
    void *impl;               /* owned: ops->release */
    cl_host_guard_fn guard;   /* NULL: none */
    void *guard_ud;
    char name[]; /* the pool entry */
};

#define GUARD(h, epoch, op, err)                                                                   \
    do {                                                                                           \
        if ((h)->guard && (h)->guard((h)->guard_ud, (h), (epoch), (op), (err)) < 0)                \
            return -1;                                                                             \
    } while (0)

/* ========================================================================================== */
/* A host and its operations                                                                  */
/* ========================================================================================== */

cl_host_t *cl_host_new(const cl_host_ops_t *ops, const char *name, void *impl, cl_err_t *err)
{
    size_t n = strlen(name ? name : "") + 1;
    cl_host_t *h = malloc(sizeof(*h) + n);

    if (!h) {
        if (ops->release)
            ops->release(impl);
        cl_err_set(err, CL_ERR_SYS, 0, name, "host", "out of memory");
        return NULL;
    }
    h->ops = ops;
    h->impl = impl;
    h->guard = NULL;
    h->guard_ud = NULL;
    memcpy(h->name, name ? name : "", n);
    return h;
}

void cl_host_set_guard(cl_host_t *h, cl_host_guard_fn fn, void *ud)
{
    h->guard = fn;
    h->guard_ud = ud;
}

void *cl_host_impl(const cl_host_t *h)
{
    return h->impl;
}

void cl_host_free(cl_host_t *h)
{
    if (!h)
        return;
    if (h->ops->release)
        h->ops->release(h->impl);
    free(h);
}

const char *cl_host_name(const cl_host_t *h)
{
    return h->name;
}

const char *cl_host_kind(const cl_host_t *h)
{
    return h->ops->kind;
}

int cl_host_same_backend(const cl_host_t *a, const cl_host_t *b)
{
    return a->ops == b->ops && a->ops->backend(a) == b->ops->backend(b);
}

int cl_host_alive(cl_host_t *h)
{
    return h->ops->alive(h);
}

int cl_host_is_test(const cl_host_t *h)
{
    return h->ops->is_test(h);
}

unsigned long cl_host_free_kib(cl_host_t *h)
{
    return h->ops->free_kib(h);
}

int cl_host_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                 cl_err_t *err)
{
    return h->ops->scan(h, cloud, owned, foreign, err);
}

int cl_host_state(cl_host_t *h, const char *name, cl_err_t *err)
{
    return h->ops->state(h, name, err);
}

int cl_host_pool_ensure(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                        cl_err_t *err)
{
    GUARD(h, epoch, "pool_ensure", err);
    return h->ops->pool_ensure(h, epoch, pool, path, err);
}

int cl_host_overlay(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                    const char *backing, const char *fmt, char *path_out, size_t len, cl_err_t *err)
{
    GUARD(h, epoch, "overlay", err);
    return h->ops->overlay(h, epoch, pool, vol, backing, fmt, path_out, len, err);
}

int cl_host_define(cl_host_t *h, uint64_t epoch, const char *name, const char *xml, cl_err_t *err)
{
    GUARD(h, epoch, "define", err);
    return h->ops->define(h, epoch, name, xml, err);
}

int cl_host_start(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    GUARD(h, epoch, "start", err);
    return h->ops->start(h, epoch, name, err);
}

int cl_host_destroy(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    GUARD(h, epoch, "destroy", err);
    if (!h->ops->destroy)
        return cl_err_set(err, CL_ERR_VIRT, 0, h->name, "destroy", "not supported by %s hosts",
                          h->ops->kind);
    return h->ops->destroy(h, epoch, name, err);
}

void cl_host_shutdown_request(cl_host_t *h, uint64_t epoch, const char *name)
{
    cl_err_t e;

    if (h->guard && h->guard(h->guard_ud, h, epoch, "shutdown_request", &e) < 0)
        return;
    h->ops->shutdown_request(h, epoch, name);
}

int cl_host_remove(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms, cl_err_t *err)
{
    GUARD(h, epoch, "remove", err);
    return h->ops->remove(h, epoch, name, grace_ms, err);
}

int cl_host_vol_delete(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                       cl_err_t *err)
{
    GUARD(h, epoch, "vol_delete", err);
    return h->ops->vol_delete(h, epoch, pool, path, err);
}

int cl_host_vol_delete_by_name(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                               cl_err_t *err)
{
    GUARD(h, epoch, "vol_delete_by_name", err);
    return h->ops->vol_delete_by_name(h, epoch, pool, vol, err);
}

/* ========================================================================================== */
/* Local: this process's connection to the host's hypervisor                                  */
/* ========================================================================================== */

/*
 * impl is the cl_virt_t, borrowed from the engine's connection cache (nothing to release).
 * The epoch is not checked here: the caller is the leader that holds it.
 */

static const void *local_backend(const cl_host_t *h)
{
    return h->impl;
}

static int local_alive(cl_host_t *h)
{
    return cl_virt_alive(h->impl);
}

static int local_is_test(const cl_host_t *h)
{
    return cl_virt_is_test(h->impl);
}

static unsigned long local_free_kib(cl_host_t *h)
{
    return cl_virt_free_kib(h->impl);
}

static int local_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                      cl_err_t *err)
{
    return cl_virt_scan(h->impl, cloud, owned, foreign, err);
}

static int local_state(cl_host_t *h, const char *name, cl_err_t *err)
{
    return cl_virt_state(h->impl, name, err);
}

static int local_pool_ensure(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                             cl_err_t *err)
{
    (void)epoch;
    return cl_virt_pool_ensure(h->impl, pool, path, err);
}

static int local_overlay(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                         const char *backing, const char *fmt, char *path_out, size_t len,
                         cl_err_t *err)
{
    (void)epoch;
    return cl_virt_overlay(h->impl, pool, vol, backing, fmt, path_out, len, err);
}

static int local_define(cl_host_t *h, uint64_t epoch, const char *name, const char *xml,
                        cl_err_t *err)
{
    (void)epoch;
    return cl_virt_define(h->impl, name, xml, err);
}

static int local_start(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    (void)epoch;
    return cl_virt_start(h->impl, name, err);
}

static int local_destroy(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err)
{
    (void)epoch;
    return cl_virt_destroy(h->impl, name, "restart", err);
}

static void local_shutdown_request(cl_host_t *h, uint64_t epoch, const char *name)
{
    (void)epoch;
    cl_virt_shutdown_request(h->impl, name);
}

static int local_remove(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms,
                        cl_err_t *err)
{
    (void)epoch;
    return cl_virt_remove(h->impl, name, grace_ms, err);
}

static int local_vol_delete(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                            cl_err_t *err)
{
    (void)epoch;
    return cl_virt_vol_delete(h->impl, pool, path, err);
}

static int local_vol_delete_by_name(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                                    cl_err_t *err)
{
    (void)epoch;
    return cl_virt_vol_delete_by_name(h->impl, pool, vol, err);
}

static const cl_host_ops_t local_ops = {
    .kind = "local",
    .backend = local_backend,
    .alive = local_alive,
    .is_test = local_is_test,
    .free_kib = local_free_kib,
    .scan = local_scan,
    .state = local_state,
    .pool_ensure = local_pool_ensure,
    .overlay = local_overlay,
    .define = local_define,
    .start = local_start,
    .destroy = local_destroy,
    .shutdown_request = local_shutdown_request,
    .remove = local_remove,
    .vol_delete = local_vol_delete,
    .vol_delete_by_name = local_vol_delete_by_name,
    .release = NULL,
};

cl_host_t *cl_host_local_new(cl_virt_t *v, const char *name, cl_err_t *err)
{
    return cl_host_new(&local_ops, name, v, err);
}
