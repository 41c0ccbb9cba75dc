/*
 * cl_err: the one error convention of the C core.  A core function returns 0 (or a count)
 * on success and -1 on failure, after recording what failed exactly once, where it happened,
 * into a caller-provided cl_err_t.  Callers only propagate.  The Ruby glue and the control
 * protocol both translate a cl_err_t without losing the host or the operation.
 */
#ifndef CL_ERR_H
#define CL_ERR_H

#include <stddef.h>

typedef enum cl_err_domain {
    CL_ERR_NONE = 0,
    CL_ERR_VIRT,     /* libvirt said no */
    CL_ERR_SSH,      /* libssh2 / guest */
    CL_ERR_PROTO,    /* malformed message on the control socket or the wire */
    CL_ERR_TIMEOUT,  /* a bounded wait ran out */
    CL_ERR_ELECTION, /* no leader, not a member, stale epoch */
    CL_ERR_SPEC,     /* the resource's declaration is invalid */
    CL_ERR_SYS,      /* a system call failed (errno is set) */
    CL_ERR_STATE,    /* persisted state unreadable or inconsistent */
} cl_err_domain_t;

typedef struct cl_err {
    cl_err_domain_t domain;
    int code;       /* domain-specific: virErrorNumber, errno, ... */
    int sys_errno;  /* errno at the time of the failure, 0 if none */
    char host[128]; /* the pool host the operation ran against ("" if local/none) */
    char op[160];   /* the operation: "define myweb-server-0", "connect test:///default" */
    char msg[768];  /* human-readable, never contains secrets */
} cl_err_t;

void cl_err_clear(cl_err_t *err);
/* Record an error.  NULL err is allowed (the error is then dropped). Always returns -1. */
int cl_err_set(cl_err_t *err, cl_err_domain_t domain, int code, const char *host, const char *op,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Same, appending ": strerror(errno)" and recording errno. */
int cl_err_sys(cl_err_t *err, const char *host, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *cl_err_domain_name(cl_err_domain_t domain);
cl_err_domain_t cl_err_domain_from_name(const char *name);
/* "host: operation: message" into buf. */
const char *cl_err_format(const cl_err_t *err, char *buf, size_t len);

#endif
