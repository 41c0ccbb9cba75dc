/*
 * cl_net: who "this host" is.  A daemon's identity is the addresses given with --address, or
 * else every address of its interfaces; a pool entry (IP literal or name) is this host when it
 * resolves to one of them.
 */
#ifndef CL_NET_H
#define CL_NET_H

#include <stddef.h>

#include "cl_err.h"

typedef struct cl_addrs {
    char **v;
    size_t n;
} cl_addrs_t;

/* The local interfaces' addresses (numeric strings). */
int cl_net_local_addrs(cl_addrs_t *out, cl_err_t *err);
/* Does host (IP literal or name) name one of addrs? */
int cl_net_is_self(const cl_addrs_t *addrs, const char *host);
int cl_addrs_add(cl_addrs_t *a, const char *s);
/* A pool entry resolved to a numeric address into addr (NI_MAXHOST bytes); -1 and err. */
int cl_net_numeric(const char *host, char *addr, size_t cap, cl_err_t *err);
void cl_addrs_free(cl_addrs_t *a);

#endif
