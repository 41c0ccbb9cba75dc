/*
 * rb_cloud: the Cloud class glue (see rb_cloud.c) and the error mapping every glue file uses.
 */
#ifndef RB_CLOUD_H
#define RB_CLOUD_H

#include "cl_err.h"

void rb_cloud_init(void);
/* Raise the Cloud::Error subclass for err (does not return). */
void rb_cloud_raise(const cl_err_t *err) __attribute__((noreturn));

#endif
