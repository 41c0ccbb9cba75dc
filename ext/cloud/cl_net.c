/*
 * cl_net: local addresses and matching pool entries against them (see cl_net.h).
 */
#include "cl_net.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int cl_addrs_add(cl_addrs_t *a, const char *s)
{
    char **nv = realloc(a->v, (a->n + 2) * sizeof(*nv));

    if (!nv)
        return -1;
    a->v = nv;
    a->v[a->n] = strdup(s);
    if (!a->v[a->n])
        return -1;
    a->n++;
    a->v[a->n] = NULL;
    return 0;
}

void cl_addrs_free(cl_addrs_t *a)
{
    size_t i;

    for (i = 0; a && i < a->n; i++)
        free(a->v[i]);
    if (a)
        free(a->v);
    if (a)
        memset(a, 0, sizeof(*a));
}

static int numeric(const struct sockaddr *sa, char *buf, size_t len)
{
    socklen_t sl =
        sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return getnameinfo(sa, sl, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
}

int cl_net_local_addrs(cl_addrs_t *out, cl_err_t *err)
{
    struct ifaddrs *ifa = NULL, *i;
    char buf[NI_MAXHOST];

    if (getifaddrs(&ifa) < 0)
        return cl_err_sys(err, NULL, "list addresses", "getifaddrs");
    for (i = ifa; i; i = i->ifa_next) {
        if (!i->ifa_addr ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
            continue;
        if (numeric(i->ifa_addr, buf, sizeof(buf)) != 0)
            continue;
        if (strchr(buf, '%'))
            *strchr(buf, '%') = '\0';
        cl_addrs_add(out, buf);
    }
    freeifaddrs(ifa);
    return 0;
}

static int has(const cl_addrs_t *a, const char *s)
{
    size_t i;

    for (i = 0; i < a->n; i++)
        if (strcmp(a->v[i], s) == 0)
            return 1;
    return 0;
}

int cl_net_is_self(const cl_addrs_t *addrs, const char *host)
{
    struct addrinfo hints, *res = NULL, *r;
    unsigned char tmp[16];
    char buf[NI_MAXHOST];
    int found = 0;

    if (has(addrs, host))
        return 1;
    if (inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1)
        return 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return 0;
    for (r = res; r && !found; r = r->ai_next)
        if (numeric(r->ai_addr, buf, sizeof(buf)) == 0 && has(addrs, buf))
            found = 1;
    freeaddrinfo(res);
    return found;
}

int cl_net_numeric(const char *host, char *addr, size_t cap, cl_err_t *err)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res ||
        getnameinfo(res->ai_addr, res->ai_addrlen, addr, (socklen_t)cap, NULL, 0, NI_NUMERICHOST)) {
        if (res)
            freeaddrinfo(res);
        return cl_err_set(err, CL_ERR_SYS, 0, host, "resolve", "cannot resolve pool host %s", host);
    }
    freeaddrinfo(res);
    return 0;
}
