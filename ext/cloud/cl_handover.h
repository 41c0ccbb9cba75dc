/*
 * cl_handover: a machine outside a cloud's pool (an admin box) hands a control request to the
 * cloud's leader (DESIGN.md §3, not_cloud_start).  The pool's daemons are asked, in pool
 * order, who leads; the request goes to that leader with the epoch it leads in, signed with the
 * cloud's key (the spec's secret_file, which this machine needs too); a change of leader on the
 * way is followed.  When no daemon answers, the error names every host tried and why.
 */
#ifndef CL_HANDOVER_H
#define CL_HANDOVER_H

#include <json-c/json.h>

#include "cl_err.h"
#include "cl_host.h"
#include "cl_spec.h"

#define CL_HANDOVER_ASK_MS 1000    /* one "who leads?" question: connect and answer */
#define CL_HANDOVER_ELECT_MS 10000 /* how long a pool without a leader is asked again */
#define CL_HANDOVER_MEMBER_MS 3000 /* the same for a member handing its spec to the leader */

/*
 * Send req (a control request: apply, plan, stop or status, with spec's "spec"; borrowed) for
 * spec's cloud to its leader, through the daemons on spec's peer_port.  0 with *answer (the
 * leader's answer, as from its socket) and *events (its progress events, an array); the caller
 * puts both.  -1 and err: CL_ERR_SPEC (no secret_file, unreadable key), CL_ERR_ELECTION (no
 * daemon answered, none leads, this machine is refused), or the leader's own error.  A pool
 * whose daemons answer but where no leader acts is asked again for elect_ms (0: the default
 * CL_HANDOVER_ELECT_MS).  *cancel (may be NULL) stops the waiting between questions.
 */
int cl_handover(const cl_spec_t *spec, json_object *req, unsigned timeout_ms, unsigned elect_ms,
                volatile int *cancel, json_object **answer, json_object **events, cl_err_t *err);

/*
 * The control request req (borrowed) to the leader h (a cl_host_remote_new host) in epoch:
 * 0 with *answer and *events (caller puts), or -1 and err.  Shared with a member's daemon
 * forwarding its spec (cl_peers_forward).
 */
int cl_handover_send(cl_host_t *h, uint64_t epoch, json_object *req, unsigned timeout_ms,
                     json_object **answer, json_object **events, cl_err_t *err);
/* Whether err says the leader moved on the way (ask who leads again). */
int cl_handover_retry(const cl_err_t *err);

#endif
