/*
 * test_events: a cloud's event history — order, wrap-around dropping the oldest, sequence
 * numbers that keep growing, "after N" reads, long strings cut, a JSON round trip through a
 * state file's form, and malformed histories refused.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cl_events.h"

static void test_ring(void)
{
    cl_events_t *h = cl_events_new(4, NULL), *again;
    json_object *arr, *e;
    char big[600];
    cl_err_t err;
    int i;

    if (!CHECK(h))
        return;
    for (i = 1; i <= 6; i++) {
        char text[32];
        snprintf(text, sizeof(text), "event %d", i);
        CHECK_INT_EQ(cl_events_add(h, 1000 + i, 7, "+repair", "c-web-0", "h1", text), i);
    }
    CHECK_INT_EQ(cl_events_count(h), 4);
    arr = cl_events_json(h, 0, 0);
    CHECK_INT_EQ(json_object_array_length(arr), 4); /* 1 and 2 went */
    e = json_object_array_get_idx(arr, 0);
    CHECK_INT_EQ(json_object_get_int64(json_object_object_get(e, "seq")), 3);
    CHECK_STR_EQ(json_object_get_string(json_object_object_get(e, "text")), "event 3");
    CHECK_INT_EQ(json_object_get_int64(json_object_object_get(e, "epoch")), 7);
    json_object_put(arr);
    arr = cl_events_json(h, 4, 1); /* after 4, one of them */
    CHECK_INT_EQ(json_object_array_length(arr), 1);
    CHECK_INT_EQ(
        json_object_get_int64(json_object_object_get(json_object_array_get_idx(arr, 0), "seq")), 5);
    json_object_put(arr);
    /* a long message is cut, not refused; no slot is null */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cl_events_add(h, 2000, 8, "-check", NULL, NULL, big);
    arr = cl_events_json(h, 6, 0);
    e = json_object_array_get_idx(arr, 0);
    CHECK_INT_EQ(strlen(json_object_get_string(json_object_object_get(e, "text"))),
                 CL_EVENT_TEXT_MAX - 1);
    CHECK(json_object_object_get(e, "slot") == NULL);
    json_object_put(arr);
    /* round trip: the numbering goes on where it was */
    arr = cl_events_json(h, 0, 0);
    again = cl_events_new(16, NULL);
    cl_err_clear(&err);
    if (CHECK(again) && CHECK_INT_EQ(cl_events_load(again, arr, &err), 0)) {
        CHECK_INT_EQ(cl_events_count(again), 4);
        CHECK_INT_EQ(cl_events_add(again, 3000, 9, "+elected", NULL, "h2", "x"), 8);
    }
    json_object_put(arr);
    cl_events_free(again);
    /* malformed or out of order: refused */
    again = cl_events_new(4, NULL);
    arr = json_tokener_parse("[{\"seq\":5,\"time_ms\":1,\"epoch\":1,\"type\":\"a\"},"
                             "{\"seq\":3,\"time_ms\":1,\"epoch\":1,\"type\":\"b\"}]");
    CHECK_INT_EQ(cl_events_load(again, arr, &err), -1);
    CHECK_CONTAINS(err.msg, "event 1 of the history");
    json_object_put(arr);
    arr = json_tokener_parse("{\"seq\":1}");
    CHECK_INT_EQ(cl_events_load(again, arr, &err), -1);
    json_object_put(arr);
    cl_events_free(again);
    cl_events_free(h);
    cl_events_free(NULL);
}

int main(void)
{
    test_ring();
    return check_summary();
}
