/*
 * cl_view: the status document (doc/INTERNALS.md §3) for people, as `cloudctl status` prints it
 * (issue 6): per cloud a header (state, hypervisor, leader and epoch, whether this host acts,
 * members, monitor, election) and one aligned table of every slot fitting the terminal's
 * width, then a summary line -- in the manner of crm_mon and juju status.  Pure formatting:
 * the caller fetches the document; colours only when asked.
 */
#ifndef CL_VIEW_H
#define CL_VIEW_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cl_client.h"

#define CL_VIEW_WIDTH 100 /* columns a screen fits in when not told otherwise */

typedef struct cl_view_opts {
    int color;       /* ANSI colours (the caller decides: a tty and no NO_COLOR) */
    unsigned width;  /* columns to fit in (0: CL_VIEW_WIDTH; less than 60 counts as 60) */
    uint64_t now_ms; /* wall clock in ms since the Unix epoch, for "3m ago" (0: now) */
    int readonly;    /* the document was read without a daemon (state directory, hypervisor) */
} cl_view_opts_t;

/* Every cloud of doc ({"clouds": [...]}), one block each, or "no cloud on this host". */
void cl_view_status(FILE *fp, json_object *doc, const cl_view_opts_t *o);
/* One cloud of a status document. */
void cl_view_cloud(FILE *fp, json_object *cloud, const cl_view_opts_t *o);
/* then_ms relative to now_ms (wall clock, ms): "12s ago", "3m ago", "5h ago", "2d ago". */
const char *cl_view_ago(uint64_t then_ms, uint64_t now_ms, char *buf, size_t len);

/*
 * `cloudctl status` with its arguments after the command (cl_view_cli.c): [NAME] [--json]
 * [--watch [SECONDS]] (json: --json came before the command).  Returns the exit status: 0,
 * 1 (no status), 2 (usage).  --watch returns 0 once SIGINT or SIGTERM came.
 */
int cl_view_cli(const cl_client_opts_t *o, int json, int argc, char **argv);

#endif
