/*
 * cl_spec: the declaration of one cloud as the core sees it, parsed from the spec JSON of
 * doc/INTERNALS.md §1 and validated again here (the spec may come from another host).  Every
 * error names the attribute and the bad value.  Strings point into the json object it holds.
 */
#ifndef CL_SPEC_H
#define CL_SPEC_H

#include <json-c/json.h>
#include <stddef.h>

#include "cl_err.h"

#define CL_NAME_MAX 40     /* longest cloud name */
#define CL_DOMNAME_MAX 128 /* longest derived domain name */

typedef struct cl_slot {
    const char *name;   /* <cloud>-<role>-<n>: also the libvirt domain name */
    const char **roles; /* declared roles holding this VM, in declaration order */
    size_t nroles;
    const char **services; /* roles with composite ones expanded */
    size_t nservices;
    int index; /* index within its first role */
    const char *ip;
    const char *image;
} cl_slot_t;

/* The steps of a role run in its guests (cl_role), in this order of the enum. */
typedef enum cl_step {
    CL_STEP_SETUP, /* install and configure: run when its text or the cloud's facts changed */
    CL_STEP_START, /* start the role's services (idempotent) */
    CL_STEP_CHECK, /* exit 0 when the role works */
    CL_STEP_STOP,  /* stop its services before the VM is shut down */
    CL_STEP_COUNT
} cl_step_t;

/*
 * How the leader watches and repairs a role's VMs (issue 5, doc/MONITOR.md): spec
 * "roles[i].health" {"interval_ms", "timeout_ms", "retries", "max_restarts", "window_ms",
 * "backoff_ms", "backoff_max_ms"}, every key optional (the CL_HEALTH_* defaults).
 */
typedef struct cl_health {
    unsigned interval_ms;    /* between two checks of a running guest */
    unsigned timeout_ms;     /* one run of the role's check step */
    unsigned retries;        /* a failed check is run again this many times before a repair */
    unsigned max_restarts;   /* more repairs than this within window_ms: flapping */
    unsigned window_ms;      /* the flapping window, and the pause once flapping */
    unsigned backoff_ms;     /* before the second repair in a row; doubles each time */
    unsigned backoff_max_ms; /* the backoff never exceeds this */
} cl_health_t;

#define CL_HEALTH_INTERVAL_MS 10000
#define CL_HEALTH_TIMEOUT_MS 5000
#define CL_HEALTH_RETRIES 1
#define CL_HEALTH_MAX_RESTARTS 5
#define CL_HEALTH_WINDOW_MS 600000
#define CL_HEALTH_BACKOFF_MS 1000
#define CL_HEALTH_BACKOFF_MAX_MS 60000

typedef struct cl_role {
    const char *name;
    const char **after;
    size_t nafter;
    const char *steps[CL_STEP_COUNT]; /* shell scripts ("steps": {"setup": ...}); NULL: none */
    cl_health_t health;               /* always filled (defaults for keys not given) */
} cl_role_t;

#define CL_SPEC_PEER_PORT 7946 /* cloudd's default --peer-port (CL_ELECT_PORT) */

typedef struct cl_spec {
    json_object *json; /* owned reference to the whole spec */
    const char *name, *type, *ensure, *hypervisor, *tmpl, *tmpl_path;
    const char *mac_start; /* NULL: derived */
    const char *disk_pool, *disk_pool_path, *image_format, *ssh_key, *secret_file;
    const char **pool;
    size_t npool;
    unsigned long vm_mem_kib;
    unsigned vm_ncpu;
    unsigned peer_port; /* the pool daemons' peer port (cloudd --peer-port), for outsiders */
    cl_role_t *roles;
    size_t nroles;
    cl_slot_t *slots;
    size_t nslots;
    int running; /* ensure == running */
} cl_spec_t;

/* Parse and validate; takes its own reference to obj.  *out is freed with cl_spec_free. */
int cl_spec_parse(json_object *obj, cl_spec_t **out, cl_err_t *err);
int cl_spec_parse_string(const char *text, cl_spec_t **out, cl_err_t *err);
void cl_spec_free(cl_spec_t *spec);
const char *cl_step_name(int step); /* "setup"...; "?" out of range */
/* Valid cloud name ([A-Za-z0-9][A-Za-z0-9_.-]{0,39}). */
int cl_spec_name_ok(const char *name);
/* Index of the slot named name, or -1. */
int cl_spec_slot_find(const cl_spec_t *spec, const char *name);
/* Hypervisor URI for a pool host ("%{host}" replaced); malloc'ed, NULL on overflow. */
char *cl_spec_uri_for(const char *hypervisor, const char *host);
/* Memory of a slot (today the cloud-wide vm_mem). */
unsigned long cl_spec_slot_mem_kib(const cl_spec_t *spec, size_t i);

#endif
