/*
 * cl_virt_int: what the two files of the libvirt layer share, and nothing else of the core
 * uses: cl_virt.c (connections, listing, defining and starting domains, storage, events) and
 * cl_virt_stop.c (stopping domains: one at once, or all of a self-fence together).
 */
#ifndef CL_VIRT_INT_H
#define CL_VIRT_INT_H

#include <libvirt/libvirt.h>

#include "cl_err.h"
#include "cl_virt.h"

struct cl_virt {
    virConnectPtr conn;
    char *uri;
    char *host;
    int is_test;
};

/* Copy libvirt's last error (this thread's) into err, the operation named by fmt.  -1. */
int cl_virt_fail(const cl_virt_t *v, cl_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * The domain named name into *d (the caller frees it): 1; 0 if there is none (not an error for
 * who wants it gone); -1 and err if libvirt could not say.
 */
int cl_virt_lookup(cl_virt_t *v, const char *name, virDomainPtr *d, cl_err_t *err);

#endif
