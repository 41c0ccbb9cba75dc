/*
 * cl_virt: everything the core asks of libvirt, through the C API only.  One cl_virt_t is one
 * connection to one pool host's hypervisor.  Domains of a cloud are recognised by the ownership
 * element in their <metadata> (CL_META_URI), never by name alone.
 */
#ifndef CL_VIRT_H
#define CL_VIRT_H

#include <stddef.h>

#include "cl_err.h"

typedef struct cl_virt cl_virt_t;

/* One domain found on a host that belongs to a cloud. */
typedef struct cl_dom {
    char name[128];
    char uuid[37];
    char cloud[48];
    char slot[128];
    char host[128]; /* pool host the leader placed it on */
    char role[64];
    char ip[64];
    char image[512];
    char disk[512];  /* overlay created for it ("" if none) */
    char config[20]; /* hash of the rendered definition */
    char mac[18];    /* MAC of its first interface ("" if none) */
    unsigned long epoch;
    int index;
    int state; /* CL_DOM_* */
} cl_dom_t;

enum {
    CL_DOM_MISSING = 0,
    CL_DOM_RUNNING,
    CL_DOM_PAUSED,
    CL_DOM_SHUTOFF,
    CL_DOM_CRASHED,
    CL_DOM_OTHER
};

typedef struct cl_dom_list {
    cl_dom_t *v;
    size_t n, cap;
} cl_dom_list_t;

/* Identities in use on a host by domains that are not the cloud's own. */
typedef struct cl_idset {
    char **v;
    size_t n, cap;
} cl_idset_t;

void cl_virt_global_init(void); /* once per process: virInitialize + quiet error handler */
int cl_virt_open(const char *uri, const char *host, int readonly, cl_virt_t **out, cl_err_t *err);
void cl_virt_close(cl_virt_t *v);
int cl_virt_alive(cl_virt_t *v);
const char *cl_virt_host(const cl_virt_t *v);
const char *cl_virt_uri(const cl_virt_t *v);
int cl_virt_is_test(const cl_virt_t *v); /* the test driver: no guests */
void *cl_virt_conn(cl_virt_t *v);        /* the virConnectPtr (for event registration) */

/*
 * List the domains owned by cloud (every owned domain if cloud is NULL) into owned (appended),
 * and, if foreign is not NULL, the UUIDs, MACs and names of all other domains into it.
 */
int cl_virt_scan(cl_virt_t *v, const char *cloud, cl_dom_list_t *owned, cl_idset_t *foreign,
                 cl_err_t *err);
int cl_virt_define(cl_virt_t *v, const char *name, const char *xml, cl_err_t *err);
int cl_virt_start(cl_virt_t *v, const char *name, cl_err_t *err);
/*
 * Whether domains started from now on are destroyed by libvirtd when this process's connection
 * goes (cloudd: on, so that the daemon's death fences its host; default off: they outlive the
 * process).  Not for the test driver, whose domains die with the process anyway.
 */
void cl_virt_set_autodestroy(int on);
/* Ask a running domain to shut down (ACPI) and return at once; nothing on the test driver. */
void cl_virt_shutdown_request(cl_virt_t *v, const char *name);
/*
 * Shut down (ACPI, then destroy after grace_ms; destroy at once on the test driver or when
 * grace_ms is 0), undefine.
 */
int cl_virt_remove(cl_virt_t *v, const char *name, unsigned grace_ms, cl_err_t *err);
/*
 * Stop a domain at once (kept defined, its disk kept): a restart of the domain, a self-fence,
 * an injected fault.  why goes into the "-vm-run" log line.  A missing domain is no error.
 */
int cl_virt_destroy(cl_virt_t *v, const char *name, const char *why, cl_err_t *err);
/*
 * Pause a domain that runs (virDomainSuspend: its vCPUs stop at once; it does no work and
 * answers nothing, but keeps its memory and stays active until destroyed), logging
 * "-vm-run dom=.. why=.." once it is paused: a paused copy no longer runs.  1 if paused here,
 * 0 if it was not running (missing, off, already paused), -1 and err.
 */
int cl_virt_suspend(cl_virt_t *v, const char *name, const char *why, cl_err_t *err);

/* One domain of cl_virt_stop_all. */
typedef struct cl_virt_stop {
    const char *name; /* in: the domain (the caller's string) */
    int state;        /* out: CL_DOM_SHUTOFF: destroyed, or was not running (missing too);
                         CL_DOM_PAUSED: paused but not destroyed, CL_DOM_RUNNING: neither (err) */
    cl_err_t err;     /* out: why it was not destroyed */
} cl_virt_stop_t;
/*
 * Stop domains s[0..n) at once, for a self-fence, so that none runs on while another is being
 * destroyed (a real guest's destroy takes 1-2 s): every running one is paused first, all in
 * parallel, and only when every pause has returned (or after CL_FENCE_PAUSE_MS: a stuck
 * pause holds nothing up) are they destroyed, in parallel too.  Each gets one "-vm-run dom=..
 * why=.." line: when it is paused, or (not paused) before its destroy.  Logs "=stop-all" with
 * the times.  Returns how many are stopped (state CL_DOM_SHUTOFF).
 */
size_t cl_virt_stop_all(cl_virt_t *v, cl_virt_stop_t *s, size_t n, const char *why);
/* State of a domain by name (CL_DOM_MISSING if none). */
int cl_virt_state(cl_virt_t *v, const char *name, cl_err_t *err);
/* Make sure the storage pool exists and runs (a dir pool at path, created if missing). */
int cl_virt_pool_ensure(cl_virt_t *v, const char *pool, const char *path, cl_err_t *err);
/*
 * Create (or adopt, if it exists with the same backing file) the volume vol in pool, a qcow2
 * overlay on backing (format fmt).  Its path goes into path_out.
 */
int cl_virt_overlay(cl_virt_t *v, const char *pool, const char *vol, const char *backing,
                    const char *fmt, char *path_out, size_t len, cl_err_t *err);
/* Delete volume vol of pool if it exists (pool missing or no volume: not an error). */
int cl_virt_vol_delete_by_name(cl_virt_t *v, const char *pool, const char *vol, cl_err_t *err);
/* Delete a volume by path (looked for in pool first); one that does not exist is no error. */
int cl_virt_vol_delete(cl_virt_t *v, const char *pool, const char *path, cl_err_t *err);
/* Free memory of the host in KiB (0 if unknown). */
unsigned long cl_virt_free_kib(cl_virt_t *v);

/*
 * Lifecycle events of the cloud domains of a connection, delivered by libvirt's event loop
 * (its default implementation must be registered and run).  d has the ownership fields and the
 * name (an undefined domain: the name only).  Returns a watch id for cl_virt_unwatch, or -1.
 */
enum { CL_VIRT_EV_STARTED, CL_VIRT_EV_STOPPED, CL_VIRT_EV_CRASHED, CL_VIRT_EV_UNDEFINED };
typedef void (*cl_virt_event_fn)(void *ud, cl_virt_t *v, const cl_dom_t *d, int event);
int cl_virt_watch(cl_virt_t *v, cl_virt_event_fn fn, void *ud, cl_err_t *err);
void cl_virt_unwatch(cl_virt_t *v, int id);

void cl_dom_list_free(cl_dom_list_t *l);
int cl_idset_add(cl_idset_t *s, const char *id);
int cl_idset_has(const cl_idset_t *s, const char *id);
void cl_idset_free(cl_idset_t *s);
const char *cl_dom_state_name(int state);
/* Parse the ownership element (as libvirt returns it) into d; 0 if it is one of ours. */
int cl_virt_parse_owner(const char *xml, cl_dom_t *d);

#endif
