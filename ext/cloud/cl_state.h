/*
 * cl_state: what a daemon persists about each cloud it leads or serves: the spec, the epoch
 * and the placement, one JSON file per cloud under <state_dir>/clouds/, replaced atomically
 * (write, fsync, rename, fsync dir) so that a crash leaves the old or the new file, never half.
 */
#ifndef CL_STATE_H
#define CL_STATE_H

#include <json-c/json.h>
#include <stddef.h>

#include "cl_err.h"

int cl_state_init(const char *dir, cl_err_t *err); /* mkdir -p dir/clouds, 0700 */
/* 1 and *doc (caller puts) if the cloud has state, 0 if not, -1 on error. */
int cl_state_load(const char *dir, const char *name, json_object **doc, cl_err_t *err);
int cl_state_save(const char *dir, const char *name, json_object *doc, cl_err_t *err);
int cl_state_remove(const char *dir, const char *name, cl_err_t *err);
/* Names of the clouds with state; *names is a NULL-terminated malloc'ed array
 * (cl_state_names_free). */
int cl_state_list(const char *dir, char ***names, size_t *n, cl_err_t *err);
void cl_state_names_free(char **names);

#endif
