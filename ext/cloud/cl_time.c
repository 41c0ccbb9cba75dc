/*
 * cl_time: monotonic milliseconds with an injectable source for tests.
 */
#include "cl_time.h"

#include <time.h>

static cl_time_source_fn source;
static void *source_ud;

uint64_t cl_time_real_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t cl_time_now_ms(void)
{
    if (source)
        return source(source_ud);
    return cl_time_real_us() / 1000u;
}

void cl_time_set_source(cl_time_source_fn fn, void *ud)
{
    source = fn;
    source_ud = ud;
}
