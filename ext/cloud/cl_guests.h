/*
 * cl_guests: the roles of a converged cloud run in its guests (see cl_guests.c): wait for each
 * guest over SSH, then setup, start and check its roles, in dependency order.
 */
#ifndef CL_GUESTS_H
#define CL_GUESTS_H

#include "cl_err.h"
#include "cl_run.h"

/*
 * After the domains of run r converged (p: its slot plans, in dependency order): configure
 * every slot's guest on a real hypervisor (the test driver's are reported skipped).  0, or -1
 * and err naming the slot's address and the step (a guest that never answered: CL_ERR_TIMEOUT).
 */
int cl_guests_configure(cl_run_t *r, const cl_slot_plan_t *p, cl_err_t *err);

/*
 * Before domain d (on run host `host`) is shut down: run the stop step of its slot's roles
 * (spec: the one with the steps, the stored spec of a stop), if it runs on a real hypervisor.
 * Best effort, bounded by CL_GUEST_STOP_MS: a failure is a progress event, not an error.
 */
void cl_guests_stop(cl_run_t *r, const cl_spec_t *spec, const cl_dom_t *d, int host);

#endif
