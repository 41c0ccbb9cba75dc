/*
 * cl_place: deterministic spread placement with a memory limit (see cl_place.h).
 */
#include "cl_place.h"

#include <stdlib.h>
#include <string.h>

int cl_place_compute(const cl_place_host_t *hosts, size_t nhosts, cl_place_slot_t *slots,
                     size_t nslots, cl_err_t *err)
{
    size_t *count = NULL, i, h, j;
    unsigned long *left = NULL;
    size_t nalive = 0;
    int rc = -1;

    count = calloc(nhosts + 1, sizeof(*count));
    left = calloc(nhosts + 1, sizeof(*left));
    if (!count || !left) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "place slots", "out of memory");
        goto cleanup;
    }
    for (h = 0; h < nhosts; h++) {
        left[h] = hosts[h].free_kib;
        nalive += hosts[h].alive != 0;
    }
    if (nalive == 0) {
        cl_err_set(err, CL_ERR_ELECTION, 0, NULL, "place slots",
                   "no pool host is reachable: nothing to place the VMs on");
        goto cleanup;
    }
    /* Slots that stay where they are use room and count for the spread. */
    for (i = 0; i < nslots; i++) {
        int k = slots[i].host;
        if (k >= 0 && (size_t)k < nhosts && hosts[k].alive) {
            count[k]++;
        } else {
            slots[i].host = -1;
        }
    }
    for (i = 0; i < nslots; i++) {
        long best = -1;
        size_t best_same = 0, same;
        int pass;

        if (slots[i].host >= 0)
            continue;
        /* a slot leaving a host goes elsewhere if it fits anywhere else (second pass: anywhere) */
        for (pass = slots[i].not_on ? 0 : 1; pass < 2 && best < 0; pass++)
            for (h = 0; h < nhosts; h++) {
                if (!hosts[h].alive || (pass == 0 && (int)h == slots[i].not_on - 1))
                    continue;
                if (hosts[h].free_kib && left[h] < slots[i].mem_kib)
                    continue;
                same = 0;
                for (j = 0; j < nslots; j++)
                    if (slots[j].host == (int)h && strcmp(slots[j].role, slots[i].role) == 0)
                        same++;
                if (best < 0 || same < best_same ||
                    (same == best_same && count[h] < count[(size_t)best])) {
                    best = (long)h;
                    best_same = same;
                }
            }
        if (best < 0) {
            cl_err_set(err, CL_ERR_SPEC, 0, NULL, "place slots",
                       "%s needs %lu KiB and no live pool host has that much free memory",
                       slots[i].name, slots[i].mem_kib);
            goto cleanup;
        }
        slots[i].host = (int)best;
        count[best]++;
        if (hosts[best].free_kib)
            left[best] -= slots[i].mem_kib;
    }
    rc = 0;

cleanup:
    free(count);
    free(left);
    return rc;
}
