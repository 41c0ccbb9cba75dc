/*
 * cl_events: a cloud's event history (issue 5: `cloudctl events`; issue 6: audit of commands),
 * a bounded ring of what happened — repairs, failures, leadership, commands — each with its
 * time, slot, host and the epoch it happened in.  Oldest events go first when it is full.
 * Not thread-safe: its owner locks.
 */
#ifndef CL_EVENTS_H
#define CL_EVENTS_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_err.h"

#define CL_EVENTS_MAX 1024    /* events kept per cloud */
#define CL_EVENT_TEXT_MAX 240 /* bytes of an event's message kept */

typedef struct cl_event {
    uint64_t seq;     /* 1, 2, ... over the history's life: a reader asks for what follows */
    uint64_t time_ms; /* wall clock (ms since the epoch) */
    uint64_t epoch;   /* the cloud's epoch when it happened */
    char type[32];    /* "+repair", "-check", "+elected", "+exec"... */
    char slot[128], host[128];
    char text[CL_EVENT_TEXT_MAX];
} cl_event_t;

typedef struct cl_events cl_events_t;

cl_events_t *cl_events_new(size_t cap, cl_err_t *err); /* cap 0: CL_EVENTS_MAX */
void cl_events_free(cl_events_t *h);                   /* NULL-safe */
/* Add one (strings may be NULL; longer ones are cut); returns its seq. */
uint64_t cl_events_add(cl_events_t *h, uint64_t time_ms, uint64_t epoch, const char *type,
                       const char *slot, const char *host, const char *text);
size_t cl_events_count(const cl_events_t *h);
/* The events with seq > after, oldest first, at most limit (0: all): a new JSON array. */
json_object *cl_events_json(const cl_events_t *h, uint64_t after, size_t limit);
/* Refill from a JSON array as cl_events_json makes (a state file): 0, or -1 and err. */
int cl_events_load(cl_events_t *h, json_object *arr, cl_err_t *err);

#endif
