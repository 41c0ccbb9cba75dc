/*
 * cl_events: a bounded ring of a cloud's events (see cl_events.h).  Sequence numbers keep
 * growing across the ring's wrap-arounds, so a reader that asks for "after N" never sees an
 * event twice and knows when it missed some (the first seq it gets is above N + 1).
 */
#include "cl_events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cl_events {
    cl_event_t *v;
    size_t cap, n, head; /* the oldest is v[head] */
    uint64_t seq;        /* the last given */
};

cl_events_t *cl_events_new(size_t cap, cl_err_t *err)
{
    cl_events_t *h = calloc(1, sizeof(*h));

    if (!cap)
        cap = CL_EVENTS_MAX;
    if (!h || !(h->v = calloc(cap, sizeof(*h->v)))) {
        free(h);
        cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "events", "out of memory");
        return NULL;
    }
    h->cap = cap;
    return h;
}

void cl_events_free(cl_events_t *h)
{
    if (!h)
        return;
    free(h->v);
    free(h);
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

uint64_t cl_events_add(cl_events_t *h, uint64_t time_ms, uint64_t epoch, const char *type,
                       const char *slot, const char *host, const char *text)
{
    cl_event_t *e;

    if (h->n == h->cap) { /* full: the oldest goes */
        e = &h->v[h->head];
        h->head = (h->head + 1) % h->cap;
    } else {
        e = &h->v[(h->head + h->n) % h->cap];
        h->n++;
    }
    memset(e, 0, sizeof(*e));
    e->seq = ++h->seq;
    e->time_ms = time_ms;
    e->epoch = epoch;
    copy(e->type, sizeof(e->type), type);
    copy(e->slot, sizeof(e->slot), slot);
    copy(e->host, sizeof(e->host), host);
    copy(e->text, sizeof(e->text), text);
    return e->seq;
}

size_t cl_events_count(const cl_events_t *h)
{
    return h->n;
}

json_object *cl_events_json(const cl_events_t *h, uint64_t after, size_t limit)
{
    json_object *arr = json_object_new_array();
    size_t i, out = 0;

    for (i = 0; arr && i < h->n && (!limit || out < limit); i++) {
        const cl_event_t *e = &h->v[(h->head + i) % h->cap];
        json_object *o;
        if (e->seq <= after)
            continue;
        if (!(o = json_object_new_object()))
            break;
        json_object_object_add(o, "seq", json_object_new_uint64(e->seq));
        json_object_object_add(o, "time_ms", json_object_new_uint64(e->time_ms));
        json_object_object_add(o, "epoch", json_object_new_uint64(e->epoch));
        json_object_object_add(o, "type", json_object_new_string(e->type));
        json_object_object_add(o, "slot", e->slot[0] ? json_object_new_string(e->slot) : NULL);
        json_object_object_add(o, "host", e->host[0] ? json_object_new_string(e->host) : NULL);
        json_object_object_add(o, "text", json_object_new_string(e->text));
        json_object_array_add(arr, o);
        out++;
    }
    return arr;
}

static const char *str_of(json_object *o, const char *k)
{
    json_object *v;

    return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static int num_of(json_object *o, const char *k, uint64_t *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) < 0)
        return -1;
    *out = (uint64_t)json_object_get_int64(v);
    return 0;
}

int cl_events_load(cl_events_t *h, json_object *arr, cl_err_t *err)
{
    size_t i;
    uint64_t seq, t, ep;

    if (!json_object_is_type(arr, json_type_array))
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "events", "the history is not an array");
    for (i = 0; i < json_object_array_length(arr); i++) {
        json_object *o = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(o, json_type_object) || num_of(o, "seq", &seq) < 0 ||
            num_of(o, "time_ms", &t) < 0 || num_of(o, "epoch", &ep) < 0 || !str_of(o, "type") ||
            seq <= h->seq)
            return cl_err_set(err, CL_ERR_STATE, 0, NULL, "events",
                              "event %zu of the history is malformed or out of order", i);
        h->seq = seq - 1; /* keep the numbering of the stored history */
        cl_events_add(h, t, ep, str_of(o, "type"), str_of(o, "slot"), str_of(o, "host"),
                      str_of(o, "text"));
    }
    return 0;
}
