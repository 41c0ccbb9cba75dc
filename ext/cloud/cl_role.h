/*
 * cl_role: a slot's roles run inside its guest (DESIGN.md §7).  The cloud's facts (every role's
 * addresses, the slot's own index, the head's address, the type's options) go to the guest as
 * a shell file; then each role of the slot runs the step asked (setup, start, check, stop: shell
 * scripts from the spec) over the guest's SSH session.  A setup runs again only when its text
 * or the facts changed: a marker in the guest holds their hash.
 */
#ifndef CL_ROLE_H
#define CL_ROLE_H

#include <stddef.h>

#include "cl_err.h"
#include "cl_spec.h"
#include "cl_ssh.h"

#define CL_ROLE_DIR "/var/lib/cloud" /* in the guest: facts.sh, setup markers */
#define CL_ROLE_TAIL_MAX 400         /* bytes of a failed step's output kept in the error */

typedef struct cl_role_opts {
    const char *dir;     /* the guest's directory for facts and markers; NULL: CL_ROLE_DIR */
    unsigned timeout_ms; /* one step; 0: CL_SSH_EXEC_MS */
    /*
     * The cloud's guest key (cl_role_guest_key), uploaded as <dir>/cloud.key (0600) before the
     * steps: what recipes derive shared secrets from (a munge key, a database password), never
     * in the facts, a log or an argument.  NULL: none.
     */
    const unsigned char *guest_key;
    size_t guest_key_len;
} cl_role_opts_t;

#define CL_ROLE_GUEST_KEY_LEN 32

/*
 * The guest key of a cloud: HMAC-SHA256 keyed with the contents of the cloud's ssh_key file
 * (which every host that may lead the cloud holds) over "cloud-guest-key:<cloud>", as 64 hex
 * digits into out.  0, or -1 and err (the file unreadable).
 */
int cl_role_guest_key(const char *ssh_key, const char *cloud,
                      char out[2 * CL_ROLE_GUEST_KEY_LEN + 1], cl_err_t *err);

/* What one call did, for progress events and tests. */
typedef struct cl_role_report {
    unsigned ran;     /* steps run */
    unsigned skipped; /* setups already done with the same text and facts */
    unsigned failed;  /* steps that exited non-zero (the first one stops the call) */
    uint64_t ms;      /* time spent, facts upload included */
} cl_role_report_t;

/*
 * The facts of slot `slot` of spec as a POSIX shell file (malloc'ed; NULL and err if out of
 * memory): CLOUD_NAME, CLOUD_TYPE, CLOUD_SLOT, CLOUD_ROLES, CLOUD_INDEX, CLOUD_IP, CLOUD_HEAD,
 * CLOUD_ALL_IPS, CLOUD_IPS_<ROLE>, CLOUD_NAMES_<ROLE> (slot names, in the same order) and
 * CLOUD_COUNT_<ROLE> for every role, CLOUD_OPT_<KEY> for
 * every scalar option; every value single-quoted, every variable exported.
 */
char *cl_role_facts(const cl_spec_t *spec, size_t slot, cl_err_t *err);

/*
 * Run `step` of every role of slot `slot` that has one, in the spec's role order, over s; a
 * setup uploads the facts (and the guest key) first, the other steps use what it left.  A step
 * runs under `sh -e` with the facts, CLOUD_ROLE (its role) and CLOUD_DIR (the guest's
 * directory of opts) exported, in /, with stdin on /dev/null.  0 when every step exited 0 (rep,
 * may be NULL, says what ran); -1 and err (CL_ERR_SSH naming the slot, role and step with the
 * exit status and the tail of its output; or the SSH layer's own error).
 */
int cl_role_run(cl_ssh_t *s, const cl_spec_t *spec, size_t slot, cl_step_t step,
                const cl_role_opts_t *opts, cl_role_report_t *rep, cl_err_t *err);

/* Whether slot `slot` has a role with this step (no need to reach its guest otherwise). */
int cl_role_has_step(const cl_spec_t *spec, size_t slot, cl_step_t step);

#endif
