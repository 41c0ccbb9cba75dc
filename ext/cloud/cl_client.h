/*
 * cl_client: what a client of cloudd needs besides the protocol: finding and starting the
 * daemon in embedded mode, and answering read-only questions in-process when no daemon runs
 * (so that `puppet --noop`, status and `puppet resource` never start one).
 */
#ifndef CL_CLIENT_H
#define CL_CLIENT_H

#include <json-c/json.h>

#include "cl_err.h"
#include "cl_spec.h"

typedef struct cl_client_opts {
    const char *socket;    /* NULL: $CLOUD_SOCKET or the default */
    const char *daemon;    /* NULL: $CLOUDD, else bin/cloudd beside this library, else PATH */
    const char *state_dir; /* NULL: $CLOUD_STATE_DIR or /var/lib/cloud */
} cl_client_opts_t;

const char *cl_client_state_dir(const cl_client_opts_t *o);
/* 1 if a daemon answers on the socket, 0 if none (no socket, refused). */
int cl_client_daemon_up(const cl_client_opts_t *o);
/* Start cloudd --embedded --daemonize and wait until it answers (bounded). */
int cl_client_spawn(const cl_client_opts_t *o, cl_err_t *err);
/*
 * One request (req is borrowed); start the daemon first when autostart and none answers.
 * Progress lines go to fn; cancel as in cl_ctl_call_ex.  *final: caller puts.
 */
int cl_client_call(const cl_client_opts_t *o, json_object *req, int autostart, unsigned timeout_ms,
                   int (*fn)(void *, json_object *), void *ud, volatile int *cancel,
                   json_object **final, cl_err_t *err);
/* 1 if err says the daemon went away before answering (no socket, refused, reset). */
int cl_client_gone(const cl_err_t *err);
/*
 * A read-only request (status, plan; req is borrowed): asked of the daemon if one answers, else
 * answered in-process like the two below.  A daemon leaving during the call counts as none.
 */
int cl_client_read(const cl_client_opts_t *o, json_object *req, const char *name,
                   const cl_spec_t *spec, int plan, volatile int *cancel, json_object **result,
                   cl_err_t *err);
/* In-process, read-only: status of one cloud (name) or all (NULL) / plan of spec. */
int cl_client_local_status(const cl_client_opts_t *o, const char *name, const cl_spec_t *spec,
                           json_object **result, cl_err_t *err);
int cl_client_local_plan(const cl_client_opts_t *o, const cl_spec_t *spec, json_object **result,
                         cl_err_t *err);
/* The host addresses that identify this host: the daemon's if one runs, else the local ones. */
int cl_client_self(const cl_client_opts_t *o, json_object **addrs, cl_err_t *err);

#endif
