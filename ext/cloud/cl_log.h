/*
 * cl_log: one logging call for the whole core, with greppable event tags ("+define",
 * "-leader-lost", "+repair vm=...").  The daemon logs to stderr or a file; the extension
 * keeps the core quiet unless CLOUD_DEBUG is set.
 */
#ifndef CL_LOG_H
#define CL_LOG_H

#include <stdio.h>

typedef enum cl_log_level { CL_LOG_DEBUG, CL_LOG_INFO, CL_LOG_WARN, CL_LOG_ERR } cl_log_level_t;

void cl_log(cl_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define CL_LOG_FLUSH_MS 100 /* longest delay of an INFO/DEBUG line in a buffered log */

void cl_log_set_stream(FILE *fp); /* NULL silences the log */
void cl_log_set_level(cl_log_level_t min);
void cl_log_flush(void);              /* write out what is buffered */
void cl_log_set_tag(const char *tag); /* prefix, e.g. the daemon's address */

#endif
