/*
 * cl_time: the monotonic clock of the core, injectable so that timers of the election and the
 * monitor can be unit-tested without sleeping.  Wall-clock time is never used for timeouts.
 */
#ifndef CL_TIME_H
#define CL_TIME_H

#include <stdint.h>

typedef uint64_t (*cl_time_source_fn)(void *ud);

/* Milliseconds on the monotonic clock (or the injected source). */
uint64_t cl_time_now_ms(void);
/* Microseconds on the monotonic clock (never injected: for measurements only). */
uint64_t cl_time_real_us(void);
/* Inject a time source (NULL restores the monotonic clock). */
void cl_time_set_source(cl_time_source_fn fn, void *ud);

#endif
