/*
 * rb_init: the extension's entry point; calls each glue file's init.  The core files never
 * see Ruby.
 */
#include <ruby.h>

#include "rb_cloud.h"

void Init_cloud_ext(void)
{
    rb_cloud_init();
}
