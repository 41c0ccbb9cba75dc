/*
 * cl_host: one pool host as the engine sees it, behind a table of operations (keepalived's
 * "table of functions"), so a run does not care how a host is reached.  The local
 * implementation drives the host's hypervisor through a cl_virt_t; a remote one will send each
 * operation to the host's cloudd over TCP (doc/ELECTION.md, Transport).  Every mutating
 * operation carries the leader's epoch so the host daemon can refuse a stale leader (fencing).
 */
#ifndef CL_HOST_H
#define CL_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"
#include "cl_virt.h"

typedef struct cl_host cl_host_t;

/*
 * What an implementation provides.  Each function gets the host (its state: cl_host_impl) and
 * has the meaning of the cl_virt_* function of the same name (cl_virt.h); errors are recorded
 * once into err, with the host's name.  epoch: the leader's epoch the operation is done in,
 * to be checked by whoever executes it (an older one than the newest seen must be refused).
 */
typedef struct cl_host_ops {
    const char *kind; /* "local", "remote": for logs */
    /*
     * Opaque identity of what carries the operations out: hosts with the same one see the same
     * domains (pool entries sharing one hypervisor connection), so a run scans them once.
     */
    const void *(*backend)(const cl_host_t *h);
    int (*alive)(cl_host_t *h);
    int (*is_test)(const cl_host_t *h); /* the test driver: no guests */
    unsigned long (*free_kib)(cl_host_t *h);
    int (*scan)(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                cl_err_t *err);
    int (*state)(cl_host_t *h, const char *name, cl_err_t *err);
    int (*pool_ensure)(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                       cl_err_t *err);
    int (*overlay)(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                   const char *backing, const char *fmt, char *path_out, size_t len, cl_err_t *err);
    int (*define)(cl_host_t *h, uint64_t epoch, const char *name, const char *xml, cl_err_t *err);
    int (*start)(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err);
    int (*destroy)(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err);
    void (*shutdown_request)(cl_host_t *h, uint64_t epoch, const char *name);
    int (*remove)(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms, cl_err_t *err);
    int (*vol_delete)(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                      cl_err_t *err);
    int (*vol_delete_by_name)(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                              cl_err_t *err);
    /* Release the implementation's state (cl_host_impl); NULL if there is nothing to release. */
    void (*release)(void *impl);
} cl_host_ops_t;

/*
 * For implementations: a host named name (copied) run by ops (static, borrowed) with state
 * impl (owned by the host from now on: ops->release frees it with the host, even when this
 * fails).  NULL with err set if out of memory.
 */
cl_host_t *cl_host_new(const cl_host_ops_t *ops, const char *name, void *impl, cl_err_t *err);
void *cl_host_impl(const cl_host_t *h);
void cl_host_free(cl_host_t *h); /* NULL-safe */

/*
 * The local implementation: operations go to v, borrowed (the engine's connection cache owns
 * it and outlives the host).  It ignores the epoch: this process is the leader that chose it,
 * and fencing belongs to the daemon that executes a remote host's operations.
 */
cl_host_t *cl_host_local_new(cl_virt_t *v, const char *name, cl_err_t *err);

/*
 * A check run before every mutating operation of h (pool_ensure ... vol_delete_by_name): 0 lets
 * it run; -1 (with err) refuses it, and a shutdown request is then not sent.  The engine uses it
 * so that a leader that stopped acting in the middle of a run stops at once, on every host,
 * its own included.  fn == NULL removes it.
 */
typedef int (*cl_host_guard_fn)(void *ud, const cl_host_t *h, uint64_t epoch, const char *op,
                                cl_err_t *err);
void cl_host_set_guard(cl_host_t *h, cl_host_guard_fn fn, void *ud);

/* The operations, for the engine: each calls the host's table (mutations: the guard first). */
const char *cl_host_name(const cl_host_t *h);
const char *cl_host_kind(const cl_host_t *h);
int cl_host_same_backend(const cl_host_t *a, const cl_host_t *b);
int cl_host_alive(cl_host_t *h);
int cl_host_is_test(const cl_host_t *h);
unsigned long cl_host_free_kib(cl_host_t *h); /* 0 if unknown */
int cl_host_scan(cl_host_t *h, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                 cl_err_t *err);
int cl_host_state(cl_host_t *h, const char *name, cl_err_t *err);
int cl_host_pool_ensure(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                        cl_err_t *err);
int cl_host_overlay(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                    const char *backing, const char *fmt, char *path_out, size_t len,
                    cl_err_t *err);
int cl_host_define(cl_host_t *h, uint64_t epoch, const char *name, const char *xml, cl_err_t *err);
int cl_host_start(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err);
int cl_host_destroy(cl_host_t *h, uint64_t epoch, const char *name, cl_err_t *err);
void cl_host_shutdown_request(cl_host_t *h, uint64_t epoch, const char *name);
int cl_host_remove(cl_host_t *h, uint64_t epoch, const char *name, unsigned grace_ms,
                   cl_err_t *err);
int cl_host_vol_delete(cl_host_t *h, uint64_t epoch, const char *pool, const char *path,
                       cl_err_t *err);
int cl_host_vol_delete_by_name(cl_host_t *h, uint64_t epoch, const char *pool, const char *vol,
                               cl_err_t *err);

#endif
