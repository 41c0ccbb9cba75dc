/*
 * cl_err: recording and naming errors (see cl_err.h for the convention).
 */
#include "cl_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const domain_names[] = {
    [CL_ERR_NONE] = "none",   [CL_ERR_VIRT] = "virt",       [CL_ERR_SSH] = "ssh",
    [CL_ERR_PROTO] = "proto", [CL_ERR_TIMEOUT] = "timeout", [CL_ERR_ELECTION] = "election",
    [CL_ERR_SPEC] = "spec",   [CL_ERR_SYS] = "sys",         [CL_ERR_STATE] = "state",
};

void cl_err_clear(cl_err_t *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

static void fill(cl_err_t *err, cl_err_domain_t domain, int code, const char *host, const char *op)
{
    err->domain = domain;
    err->code = code;
    snprintf(err->host, sizeof(err->host), "%s", host ? host : "");
    snprintf(err->op, sizeof(err->op), "%s", op ? op : "");
}

int cl_err_set(cl_err_t *err, cl_err_domain_t domain, int code, const char *host, const char *op,
               const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return -1;
    fill(err, domain, code, host, op);
    err->sys_errno = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int cl_err_sys(cl_err_t *err, const char *host, const char *op, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    size_t n;

    if (!err)
        return -1;
    fill(err, CL_ERR_SYS, saved, host, op);
    err->sys_errno = saved;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(saved));
    errno = saved;
    return -1;
}

const char *cl_err_domain_name(cl_err_domain_t domain)
{
    if ((unsigned)domain >= sizeof(domain_names) / sizeof(domain_names[0]))
        return "none";
    return domain_names[domain];
}

cl_err_domain_t cl_err_domain_from_name(const char *name)
{
    size_t i;

    for (i = 0; name && i < sizeof(domain_names) / sizeof(domain_names[0]); i++)
        if (strcmp(domain_names[i], name) == 0)
            return (cl_err_domain_t)i;
    return CL_ERR_PROTO;
}

const char *cl_err_format(const cl_err_t *err, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s%s%s", err->host, err->host[0] ? ": " : "", err->op,
             err->op[0] ? ": " : "", err->msg);
    return buf;
}
