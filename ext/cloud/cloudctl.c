/*
 * cloudctl: the operator's view of the clouds on this host, over cloudd's control socket
 * (or, when no daemon runs, read-only from the state directory and the hypervisor).
 *   cloudctl status [NAME] [--json]   cloudctl stop NAME   cloudctl monitor NAME
 *   cloudctl events NAME [--after N] [--follow] [--json]   cloudctl domains [--json]
 *   cloudctl fault NAME SLOT          cloudctl hello       cloudctl shutdown
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
#include "cl_timeouts.h"

static const char *str_of(json_object *o, const char *key, const char *dflt)
{
    json_object *v;

    if (o && json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_null))
        return json_object_get_string(v);
    return dflt;
}

static void join_array(json_object *arr, char *buf, size_t len)
{
    size_t i, off = 0;

    buf[0] = '\0';
    for (i = 0;
         arr && json_object_is_type(arr, json_type_array) && i < json_object_array_length(arr); i++)
        off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s", i ? "," : "",
                                json_object_get_string(json_object_array_get_idx(arr, i)));
}

/* Sum of the numbers of an object ({"bad_mac": 2, ...}). */
static long long sum_of(json_object *o)
{
    long long n = 0;

    if (!o || !json_object_is_type(o, json_type_object))
        return 0;
    json_object_object_foreach(o, k, v)
    {
        (void)k;
        n += json_object_get_int64(v);
    }
    return n;
}

/* The election of a cloud run by several hosts, as its daemon sees it. */
static void print_election(json_object *c)
{
    json_object *el = NULL, *members = NULL, *counters = NULL, *drops = NULL, *v;
    size_t i;

    if (!json_object_object_get_ex(c, "election", &el) || !el)
        return;
    json_object_object_get_ex(el, "members", &members);
    json_object_object_get_ex(el, "counters", &counters);
    if (counters)
        json_object_object_get_ex(counters, "drops", &drops);
    printf("  election: %s, leader %s, epoch %s, %s\n", str_of(el, "state", "?"),
           str_of(el, "leader", "none"), str_of(el, "epoch", "0"),
           json_object_object_get_ex(el, "acting", &v) && json_object_get_boolean(v)
               ? "acting (majority reached)"
               : "not acting here");
    printf("  peers:");
    for (i = 0; members && i < json_object_array_length(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        int alive = json_object_object_get_ex(m, "alive", &v) && json_object_get_boolean(v);
        int self = json_object_object_get_ex(m, "self", &v) && json_object_get_boolean(v);
        const char *by = str_of(m, "seen_by", "direct");
        printf(" %s (%s)", str_of(m, "host", "?"),
               self                        ? "this host"
               : !alive                    ? "silent"
               : strcmp(by, "leader") == 0 ? "live, says the leader"
                                           : "heard");
    }
    printf("\n  elections %s, leader changes %s, dropped messages %lld\n",
           str_of(counters, "elections", "0"), str_of(counters, "leader_changes", "0"),
           sum_of(drops));
}

static void print_cloud(json_object *c)
{
    json_object *members = NULL, *slots = NULL;
    size_t i;

    json_object_object_get_ex(c, "members", &members);
    json_object_object_get_ex(c, "slots", &slots);
    printf("Cloud %s (%s): %s\n", str_of(c, "name", "?"), str_of(c, "type", "?"),
           str_of(c, "state", "?"));
    printf("  leader: %s   epoch: %s   hypervisor: %s\n", str_of(c, "leader", "-"),
           str_of(c, "epoch", "0"), str_of(c, "hypervisor", "-"));
    if (members && json_object_array_length(members)) {
        printf("  members:");
        for (i = 0; i < json_object_array_length(members); i++) {
            json_object *m = json_object_array_get_idx(members, i), *v;
            int alive = json_object_object_get_ex(m, "alive", &v) && json_object_get_boolean(v);
            int self = json_object_object_get_ex(m, "self", &v) && json_object_get_boolean(v);
            printf(" %s (%s%s)", str_of(m, "host", "?"), alive ? "up" : "DOWN",
                   self ? ", this host" : "");
        }
        printf("\n");
    }
    print_election(c);
    if (!slots || !json_object_array_length(slots))
        return;
    printf("  %-28s %-22s %-16s %-16s %-9s %-9s %s\n", "SLOT", "ROLES", "IP", "HOST", "STATE",
           "HEALTH", "RESTARTS");
    for (i = 0; i < json_object_array_length(slots); i++) {
        json_object *s = json_object_array_get_idx(slots, i), *roles = NULL, *lf = NULL;
        char rbuf[256];
        json_object_object_get_ex(s, "roles", &roles);
        join_array(roles, rbuf, sizeof(rbuf));
        printf("  %-28s %-22s %-16s %-16s %-9s %-9s %s\n", str_of(s, "name", "?"), rbuf,
               str_of(s, "ip", "-"), str_of(s, "host", "-"), str_of(s, "state", "?"),
               str_of(s, "health", "-"), str_of(s, "restarts", "-"));
        if (json_object_object_get_ex(s, "last_failure", &lf) && lf) {
            char when[32];
            time_t t =
                (time_t)(json_object_get_int64(json_object_object_get(lf, "time_ms")) / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("    last failure %s: %s\n", when, str_of(lf, "text", "?"));
        }
    }
    if (str_of(c, "repairs", NULL) && strcmp(str_of(c, "repairs", "0"), "0") != 0)
        printf("  repairs by the leader since the last apply: %s (cloudctl events %s)\n",
               str_of(c, "repairs", "0"), str_of(c, "name", "?"));
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
                "  status [NAME] [--json]  each cloud: leader, epoch, members, every slot\n"
                "  stop NAME               tear cloud NAME down (domains, disks, state)\n"
                "  monitor NAME            one observe/repair cycle of cloud NAME\n"
                "  events NAME [--after N] [--follow]\n"
                "                          the cloud's history on this host: failures, repairs,\n"
                "                          backoff, flapping, fencing (each with its epoch)\n"
                "  domains                 this host's own domains of every cloud, as libvirt\n"
                "                          has them\n"
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

    if (strcmp(cmd, "status") == 0) {
        if (cl_client_read(&o, req, name, NULL, 0, NULL, &res, &err) < 0)
            goto fail;
        if (json) {
            json_object_object_del(res, "ok");
            printf("%s\n", json_object_to_json_string_ext(res, JSON_C_TO_STRING_PRETTY |
                                                                   JSON_C_TO_STRING_SPACED));
        } else {
            json_object *clouds = NULL;
            size_t i;
            json_object_object_get_ex(res, "clouds", &clouds);
            if (!clouds || json_object_array_length(clouds) == 0)
                printf("no cloud on this host\n");
            for (i = 0; clouds && i < json_object_array_length(clouds); i++) {
                if (i)
                    printf("\n");
                print_cloud(json_object_array_get_idx(clouds, i));
            }
        }
        rc = 0;
    } else if (strcmp(cmd, "stop") == 0 || strcmp(cmd, "monitor") == 0) {
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
