/*
 * cl_ctl: the local control protocol between cloudd and its clients (the Ruby extension and
 * cloudctl): one newline-terminated JSON request per connection, then progress lines and one
 * final line (doc/INTERNALS.md §2).  Every read and write is bounded in size and time.
 */
#ifndef CL_CTL_H
#define CL_CTL_H

#include <json-c/json.h>
#include <stddef.h>

#include "cl_err.h"

#define CL_CTL_DEFAULT_SOCKET "/run/cloudd/cloudd.sock"
#define CL_CTL_VERSION 1

typedef struct cl_ctl_reader {
    int fd;
    volatile int *cancel; /* optional: set by another thread to abandon the wait */
    char *buf;
    size_t len, cap, off;
} cl_ctl_reader_t;

/* The socket path: explicit, else $CLOUD_SOCKET, else the default. */
const char *cl_ctl_socket_path(const char *explicit_path);
/* Connect; -1 with err (err->sys_errno ENOENT/ECONNREFUSED: no daemon). */
int cl_ctl_connect(const char *path, unsigned timeout_ms, int *fd, cl_err_t *err);
/* Write obj as one line. */
int cl_ctl_write(int fd, json_object *obj, unsigned timeout_ms, cl_err_t *err);
void cl_ctl_reader_init(cl_ctl_reader_t *r, int fd);
void cl_ctl_reader_free(cl_ctl_reader_t *r);
/* Next line as JSON (caller puts); 0 and *obj NULL at end of stream; -1 on error/timeout. */
int cl_ctl_read(cl_ctl_reader_t *r, unsigned timeout_ms, json_object **obj, cl_err_t *err);

#define CL_CTL_SLICE_MS 100 /* longest uninterruptible wait of a client */

/* Called for each progress line of an answer; return non-zero to abandon the call. */
typedef int (*cl_ctl_progress_fn)(void *ud, json_object *line);

/*
 * One request: connect, send req, pass progress lines to fn, and return the final line in
 * *final (caller puts).  A final line with "ok":false becomes -1 with err filled from it.
 */
int cl_ctl_call(const char *path, json_object *req, unsigned timeout_ms, cl_ctl_progress_fn fn,
                void *ud, json_object **final, cl_err_t *err);
/* Same, abandoned (CL_ERR_TIMEOUT, "interrupted") within CL_CTL_SLICE_MS once *cancel is set. */
int cl_ctl_call_ex(const char *path, json_object *req, unsigned timeout_ms, cl_ctl_progress_fn fn,
                   void *ud, volatile int *cancel, json_object **final, cl_err_t *err);
/* Fill err from an {"ok":false,"error":{...}} answer. */
int cl_ctl_error_from(json_object *answer, cl_err_t *err);
/* {"ok":false,"error":{...}} from err (caller puts). */
json_object *cl_ctl_error_json(const cl_err_t *err);

#endif
