/*
 * spec_fixture.h: clouds for the C tests, written as the JSON a daemon receives and parsed as
 * it parses them, header-only like check.h.  A test takes fx_spec_cloud's object (a stopped
 * cloud whose guests are reached with the test's client key), adds its roles and slots, and
 * hands it to fx_spec_parse.
 */
#ifndef SPEC_FIXTURE_H
#define SPEC_FIXTURE_H

#include <json-c/json.h>
#include <stdio.h>

#include "cl_err.h"
#include "cl_spec.h"

/* A new JSON array of the strings a and b (a NULL one is left out). */
static inline json_object *fx_strs(const char *a, const char *b)
{
    json_object *arr = json_object_new_array();

    if (a)
        json_object_array_add(arr, json_object_new_string(a));
    if (b)
        json_object_array_add(arr, json_object_new_string(b));
    return arr;
}

/* A stopped cloud name of type on pool (a JSON array, taken), guests reached with ssh_key. */
static inline json_object *fx_spec_cloud(const char *name, const char *type, json_object *pool,
                                         const char *ssh_key)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "name", json_object_new_string(name));
    json_object_object_add(o, "type", json_object_new_string(type));
    json_object_object_add(o, "ensure", json_object_new_string("stopped"));
    json_object_object_add(o, "pool", pool);
    json_object_object_add(o, "ssh_key", json_object_new_string(ssh_key));
    return o;
}

/* Parse o (put here: the spec holds its own references); NULL, and why on stderr, if refused. */
static inline cl_spec_t *fx_spec_parse(json_object *o, const char *test)
{
    cl_spec_t *s = NULL;
    cl_err_t err;

    cl_err_clear(&err);
    if (cl_spec_parse(o, &s, &err) < 0)
        fprintf(stderr, "%s: spec refused: %s\n", test, err.msg);
    json_object_put(o);
    return s;
}

#endif
