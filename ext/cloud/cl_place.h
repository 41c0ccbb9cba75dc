/*
 * cl_place: placement of slots on pool hosts, a pure function so that every leader computes
 * the same answer from the same inputs.  Slots already running on a live host stay there;
 * the others go to the live host with room for them that holds the fewest slots of the same
 * role, then the fewest slots, then the highest priority (earliest in the pool).
 */
#ifndef CL_PLACE_H
#define CL_PLACE_H

#include <stddef.h>

#include "cl_err.h"

typedef struct cl_place_host {
    const char *name;
    int alive;
    unsigned long free_kib; /* memory left for new slots; 0 = unknown (no limit) */
} cl_place_host_t;

typedef struct cl_place_slot {
    const char *name;
    const char *role; /* first role: spread key */
    unsigned long mem_kib;
    int host;   /* in: current live host index or -1; out: chosen host */
    int not_on; /* 1 + the index of a host not to choose if another fits (0: none) */
} cl_place_slot_t;

/* Place every slot whose host is -1.  Returns 0, or -1 with err naming the slot that fits nowhere.
 */
int cl_place_compute(const cl_place_host_t *hosts, size_t nhosts, cl_place_slot_t *slots,
                     size_t nslots, cl_err_t *err);

#endif
