/*
 * cloudctl: the operator's view of the clouds on this host, over cloudd's control socket
 * (or, when no daemon runs, read-only from the state directory and the hypervisor).
 *   cloudctl status [NAME] [--json] [--watch [S]]   cloudctl stop NAME   cloudctl monitor NAME
 *   cloudctl events NAME [--after N] [--follow] [--json]   cloudctl domains [--json]
 *   cloudctl fault NAME SLOT          cloudctl hello       cloudctl shutdown
 *   cloudctl exec NAME [ROLE|SLOT...] [--json] [--timeout S] -- COMMAND [ARG...]
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cl_client.h"
#include "cl_ctl.h"
#include "cl_exec.h"
#include "cl_timeouts.h"
#include "cl_view.h"

static const char *str_of(json_object *o, const char *key, const char *dflt)
{
    json_object *v;

    if (o && json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null))
        return json_object_get_string(v);
    return dflt;
}

/* One event of a cloud's history: time, epoch, type, slot, host, text. */
static void print_event(json_object *e)
{
    char when[40];
    time_t t = (time_t)(json_object_get_int64(json_object_object_get(e, "time_ms")) / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%6s %s.%03dZ epoch %-4s %-10s %-24s %-14s %s\n", str_of(e, "seq", "?"), when,
           (int)(json_object_get_int64(json_object_object_get(e, "time_ms")) % 1000),
           str_of(e, "epoch", "?"), str_of(e, "type", "?"), str_of(e, "slot", "-"),
           str_of(e, "host", "-"), str_of(e, "text", ""));
}

static int on_progress(void *ud, json_object *line)
{
    printf("%s %s%s%s\n", str_of(line, "event", "?"), str_of(line, "slot", ""),
           str_of(line, "slot", NULL) ? ": " : "", str_of(line, "message", ""));
    fflush(stdout);
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: cloudctl [--socket PATH] [--state-dir DIR] COMMAND\n"
                "  status [NAME] [--json] [--watch [SECONDS]]\n"
                "                          each cloud: leader, epoch, members, every slot's\n"
                "                          host, state, health; --watch: again every SECONDS\n"
                "                          (default 2) until interrupted\n"
                "  stop NAME               tear cloud NAME down (domains, disks, state)\n"
                "  monitor NAME            one observe/repair cycle of cloud NAME\n"
                "  events NAME [--after N] [--follow]\n"
                "                          the cloud's history on this host: failures, repairs,\n"
                "                          backoff, flapping, fencing (each with its epoch)\n"
                "  domains                 this host's own domains of every cloud, as libvirt\n"
                "                          has them\n"
                "  exec NAME [ROLE|SLOT...] [--json] [--timeout S] -- COMMAND [ARG...]\n"
                "                          run COMMAND in every selected guest at once (all\n"
                "                          without ROLE/SLOT; --timeout: of the whole run,\n"
                "                          default 60); output by slot; exit 0 only if all\n"
                "                          exited 0\n"
                "  fault NAME SLOT         stop SLOT's domain here behind the daemon's back\n"
                "                          (chaos tests; cloudd --allow-faults only)\n"
                "  hello                   the local daemon's identity\n"
                "  shutdown                stop the local daemon (clouds are kept)\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"socket", required_argument, NULL, 's'},
                                             {"state-dir", required_argument, NULL, 'd'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"after", required_argument, NULL, 'a'},
                                             {"follow", no_argument, NULL, 'f'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cl_client_opts_t o;
    json_object *req = NULL, *res = NULL;
    const char *cmd, *name = NULL, *slot = NULL;
    cl_err_t err;
    int c, json = 0, rc = 1, follow = 0;
    long long after = 0;

    memset(&o, 0, sizeof(o));
    cl_err_clear(&err);
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o.socket = optarg; break;
        case 'd': o.state_dir = optarg; break;
        case 'j': json = 1; break;
        case 'f': follow = 1; break;
        case 'a': {
            char *end;
            after = strtoll(optarg, &end, 10);
            if (*end || after < 0) {
                fprintf(stderr, "cloudctl: --after: '%s' is not an event number\n", optarg);
                return 2;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind++];
    if (strcmp(cmd, "status") == 0) /* its own arguments: [NAME] [--json] [--watch [S]] */
        return cl_view_cli(&o, json, argc - optind, argv + optind);
    if (strcmp(cmd, "exec") == 0) /* its own arguments: NAME [TARGET...] -- COMMAND */
        return cl_exec_cli(o.socket, json, argc - optind, argv + optind);
    for (; optind < argc; optind++) {
        if (strcmp(argv[optind], "--json") == 0)
            json = 1;
        else if (strcmp(argv[optind], "--follow") == 0)
            follow = 1;
        else if (strcmp(argv[optind], "--after") == 0 && optind + 1 < argc)
            after = strtoll(argv[++optind], NULL, 10);
        else if (!name)
            name = argv[optind];
        else if (!slot && strcmp(cmd, "fault") == 0)
            slot = argv[optind];
        else {
            fprintf(stderr, "cloudctl: unexpected argument '%s'\n", argv[optind]);
            return 2;
        }
    }
    req = json_object_new_object();
    json_object_object_add(req, "v", json_object_new_int(CL_CTL_VERSION));
    json_object_object_add(req, "op", json_object_new_string(cmd));
    if (name)
        json_object_object_add(req, "name", json_object_new_string(name));

    if (strcmp(cmd, "stop") == 0 || strcmp(cmd, "monitor") == 0) {
        if (!name) {
            fprintf(stderr, "cloudctl: %s needs a cloud name\n", cmd);
            rc = 2;
            goto out;
        }
        if (cl_ctl_call(cl_ctl_socket_path(o.socket), req, CL_CTL_REPLY_MS, on_progress, NULL, &res,
                        &err) < 0)
            goto fail;
        printf("%s %s: %s change(s)\n", cmd, name, str_of(res, "changed", "0"));
        rc = 0;
    } else if (strcmp(cmd, "events") == 0) {
        if (!name) {
            fprintf(stderr, "cloudctl: events needs a cloud name\n");
            rc = 2;
            goto out;
        }
        do {
            json_object *evs = NULL;
            size_t i;
            json_object_object_add(req, "after", json_object_new_int64(after));
            json_object_put(res);
            res = NULL;
            if (cl_ctl_call(cl_ctl_socket_path(o.socket), req, CL_CTL_STATUS_MS, NULL, NULL, &res,
                            &err) < 0)
                goto fail;
            json_object_object_get_ex(res, "events", &evs);
            if (json && !follow) {
                printf("%s\n", json_object_to_json_string_ext(evs, JSON_C_TO_STRING_PRETTY |
                                                                       JSON_C_TO_STRING_SPACED));
                break;
            }
            for (i = 0; evs && i < json_object_array_length(evs); i++) {
                json_object *e = json_object_array_get_idx(evs, i);
                if (json)
                    printf("%s\n", json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
                else
                    print_event(e);
                after = json_object_get_int64(json_object_object_get(e, "seq"));
            }
            fflush(stdout);
            if (follow)
                usleep(500000);
        } while (follow);
        rc = 0;
    } else if (strcmp(cmd, "domains") == 0 || strcmp(cmd, "fault") == 0) {
        json_object *doms = NULL;
        size_t i;
        if (strcmp(cmd, "fault") == 0 && (!name || !slot)) {
            fprintf(stderr, "cloudctl: fault needs a cloud name and a slot\n");
            rc = 2;
            goto out;
        }
        if (slot)
            json_object_object_add(req, "slot", json_object_new_string(slot));
        if (cl_ctl_call(cl_ctl_socket_path(o.socket), req, CL_CTL_STATUS_MS, NULL, NULL, &res,
                        &err) < 0)
            goto fail;
        json_object_object_get_ex(res, "domains", &doms);
        if (json) {
            json_object_object_del(res, "ok");
            printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_SPACED));
        } else if (slot) {
            printf("fault %s %s: domain destroyed\n", name, slot);
        } else {
            printf("%-28s %-16s %-9s %-6s %s\n", "DOMAIN", "CLOUD", "STATE", "EPOCH", "URI");
            for (i = 0; doms && i < json_object_array_length(doms); i++) {
                json_object *d = json_object_array_get_idx(doms, i);
                printf("%-28s %-16s %-9s %-6s %s\n", str_of(d, "name", "?"),
                       str_of(d, "cloud", "?"), str_of(d, "state", "?"), str_of(d, "epoch", "?"),
                       str_of(d, "uri", "?"));
            }
        }
        rc = 0;
    } else if (strcmp(cmd, "hello") == 0 || strcmp(cmd, "shutdown") == 0) {
        if (cl_ctl_call(cl_ctl_socket_path(o.socket), req, CL_CTL_STATUS_MS, NULL, NULL, &res,
                        &err) < 0)
            goto fail;
        json_object_object_del(res, "ok");
        printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
                                                               JSON_C_TO_STRING_SPACED));
        rc = 0;
    } else {
        fprintf(stderr, "cloudctl: unknown command '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    goto out;

fail : {
    char buf[1200];
    fprintf(stderr, "cloudctl: %s\n", cl_err_format(&err, buf, sizeof(buf)));
    rc = 1;
}
out:
    json_object_put(req);
    json_object_put(res);
    return rc;
}
