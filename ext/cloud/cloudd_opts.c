/*
 * cloudd_opts: cloudd's command line: its options (with their defaults, in the usage text) and
 * their checks, each refusal a message that names the option and the bad value.
 */
#include "cloudd_int.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cl_ctl.h"
#include "cl_metrics.h"
#include "cl_timeouts.h"

static void usage(FILE *fp)
{
    fprintf(
        fp,
        "usage: cloudd [options]\n"
        "  --socket PATH      control socket (default $CLOUD_SOCKET or %s)\n"
        "  --state-dir DIR    state directory (default $CLOUD_STATE_DIR or /var/lib/cloud)\n"
        "  --address ADDR     this host's identity in pools (repeatable; default: all local\n"
        "                     interface addresses)\n"
        "  --peer-port N      UDP (election) and TCP (host operations) port of the peer\n"
        "                     layer, on the first --address (default 7946)\n"
        "  --hb-interval-ms N, --hb-timeout-ms N, --answer-timeout-ms N, --coord-timeout-ms N,\n"
        "  --quorum-window-ms N\n"
        "                     election timers (defaults 50, 250, 60, 200, 250: see\n"
        "                     doc/ELECTION.md); the same on every pool host\n"
        "  --fence-ms N       a member without its cloud's leader for N ms stops its copies\n"
        "                     of the cloud's VMs (default %d; the same on every pool host)\n"
        "  --destroy-ms N     one guest's destroy on this pool's hypervisors: the leader waits\n"
        "                     this much longer for a silent host per further copy it may\n"
        "                     hold (libvirtd destroys a dead daemon's guests one by one;\n"
        "                     default %d, 0: off; the test driver is never counted)\n"
        "  --sweep-ms N       the monitor's periodic sweep of every cloud (default %d)\n"
        "  --no-sweep         domain events and liveness only (benchmarks)\n"
        "  --no-monitor       no self-healing: repairs only by Puppet and cloudctl monitor\n"
        "  --allow-faults     accept cloudctl fault (chaos tests)\n"
        "  --no-autodestroy   VMs started here outlive the daemon (default: libvirtd destroys\n"
        "                     them when the daemon dies, so a dead daemon fences its host)\n"
        "  --metrics ADDR:PORT\n"
        "                     serve Prometheus metrics at http://ADDR:PORT/metrics (PORT\n"
        "                     alone: 127.0.0.1; off by default)\n"
        "  --metrics-any      allow --metrics on a non-loopback address (no authentication)\n"
        "  --embedded         started by the provider: exit once no cloud is left\n"
        "  --idle-exit-ms N   embedded mode: exit after N ms with no cloud (default %d)\n"
        "  --daemonize        fork into the background once the socket is ready\n"
        "  --log FILE         log file (default: stderr; <state-dir>/cloudd.log when daemonized)\n"
        "  --pidfile FILE     write the daemon's PID there\n"
        "  --debug            verbose log\n",
        CL_CTL_DEFAULT_SOCKET, CL_FENCE_SELF_MS, CL_FENCE_DESTROY_MS, CL_MONITOR_SWEEP_MS,
        CLOUDD_IDLE_EXIT_MS);
}

int cloudd_opts_parse(cloudd_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {{"socket", required_argument, NULL, 's'},
                                             {"state-dir", required_argument, NULL, 'd'},
                                             {"address", required_argument, NULL, 'a'},
                                             {"embedded", no_argument, NULL, 'e'},
                                             {"daemonize", no_argument, NULL, 'D'},
                                             {"log", required_argument, NULL, 'l'},
                                             {"pidfile", required_argument, NULL, 'p'},
                                             {"debug", no_argument, NULL, 'g'},
                                             {"idle-exit-ms", required_argument, NULL, 'i'},
                                             {"peer-port", required_argument, NULL, 'P'},
                                             {"hb-interval-ms", required_argument, NULL, 1001},
                                             {"hb-timeout-ms", required_argument, NULL, 1002},
                                             {"answer-timeout-ms", required_argument, NULL, 1003},
                                             {"coord-timeout-ms", required_argument, NULL, 1004},
                                             {"quorum-window-ms", required_argument, NULL, 1005},
                                             {"fence-ms", required_argument, NULL, 1006},
                                             {"destroy-ms", required_argument, NULL, 1050},
                                             {"sweep-ms", required_argument, NULL, 1007},
                                             {"no-sweep", no_argument, NULL, 1008},
                                             {"no-monitor", no_argument, NULL, 1009},
                                             {"allow-faults", no_argument, NULL, 1010},
                                             {"no-autodestroy", no_argument, NULL, 1011},
                                             {"metrics", required_argument, NULL, 1012},
                                             {"metrics-any", no_argument, NULL, 1013},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;

    o->idle_exit_ms = CLOUDD_IDLE_EXIT_MS;
    o->destroy_ms = -1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o->socket_path = optarg; break;
        case 'd': o->state_dir = optarg; break;
        case 'a': cl_addrs_add(&o->addresses, optarg); break;
        case 'e': o->embedded = 1; break;
        case 'D': o->daemonize = 1; break;
        case 'l': o->log_path = optarg; break;
        case 'p': o->pid_path = optarg; break;
        case 'g': o->debug = 1; break;
        case 1001:
        case 1002:
        case 1003:
        case 1004:
        case 1005: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            uint64_t *slot[] = {&o->timers.hb_interval_ms, &o->timers.hb_timeout_ms,
                                &o->timers.answer_timeout_ms, &o->timers.coord_timeout_ms,
                                &o->timers.quorum_window_ms};
            if (*end || v == 0 || v > 600000) {
                static const char *const names[] = {"hb-interval-ms", "hb-timeout-ms",
                                                    "answer-timeout-ms", "coord-timeout-ms",
                                                    "quorum-window-ms"};
                fprintf(stderr, "cloudd: --%s: '%s' is not a number of ms (1..600000)\n",
                        names[c - 1001], optarg);
                return -1;
            }
            *slot[c - 1001] = v;
            break;
        }
        case 1006:
        case 1007: {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 10 || v > 3600000) {
                fprintf(stderr, "cloudd: --%s: '%s' is not a number of ms (10..3600000)\n",
                        c == 1006 ? "fence-ms" : "sweep-ms", optarg);
                return -1;
            }
            *(c == 1006 ? &o->fence_ms : &o->sweep_ms) = (unsigned)v;
            break;
        }
        case 1050: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || !*optarg || v < 0 || v > 60000) {
                fprintf(stderr, "cloudd: --destroy-ms: '%s' is not a number of ms (0..60000)\n",
                        optarg);
                return -1;
            }
            o->destroy_ms = v;
            break;
        }
        case 1008: o->no_sweep = 1; break;
        case 1009: o->no_monitor = 1; break;
        case 1010: o->allow_faults = 1; break;
        case 1011: o->no_autodestroy = 1; break;
        case 1012: o->metrics_at = optarg; break;
        case 1013: o->metrics_any = 1; break;
        case 'P': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v == 0 || v > 65535) {
                fprintf(stderr, "cloudd: --peer-port: '%s' is not a port number\n", optarg);
                return -1;
            }
            o->peer_port = (unsigned)v;
            break;
        }
        case 'i': {
            char *end;
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v > 86400000UL) {
                fprintf(stderr, "cloudd: --idle-exit-ms: '%s' is not a number of ms\n", optarg);
                return -1;
            }
            o->idle_exit_ms = (unsigned)v;
            break;
        }
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cloudd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->metrics_at) {
        cl_err_t e;
        if (cl_metrics_check_listen(o->metrics_at, o->metrics_any, &e) < 0) {
            fprintf(stderr, "cloudd: %s: %s\n", e.op, e.msg);
            return -1;
        }
    }
    o->socket_path = cl_ctl_socket_path(o->socket_path);
    if (!o->state_dir)
        o->state_dir = getenv("CLOUD_STATE_DIR") && *getenv("CLOUD_STATE_DIR")
                           ? getenv("CLOUD_STATE_DIR")
                           : "/var/lib/cloud";
    return 0;
}
