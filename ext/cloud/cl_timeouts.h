/*
 * cl_timeouts: every timeout and period of the core in one place, with units in the names.
 * Defaults are chosen for a LAN; daemons and tests override them at run time where noted.
 */
#ifndef CL_TIMEOUTS_H
#define CL_TIMEOUTS_H

#define CL_CTL_CONNECT_MS 2000            /* connecting to the local control socket */
#define CL_CTL_REPLY_MS (30 * 60000)      /* a whole converge/stop answered over the socket */
#define CL_CTL_STATUS_MS 10000            /* status/hello/plan answers */
#define CL_DAEMON_START_MS 10000          /* an autostarted cloudd must answer within this */
#define CL_DOMAIN_SHUTDOWN_GRACE_MS 30000 /* ACPI shutdown before destroy on stop */
#define CL_DOMAIN_SHUTDOWN_POLL_MS 100
#define CL_CTL_MAX_LINE (16u * 1024u * 1024u) /* longest control line accepted */

/* Election (doc/ELECTION.md): defaults of cl_bully_config_t, overridable per daemon and cloud. */
#define CL_BULLY_HB_INTERVAL_MS 50    /* leader's heartbeat period */
#define CL_BULLY_HB_TIMEOUT_MS 250    /* no heartbeat for this long: the leader is gone */
#define CL_BULLY_ANSWER_TIMEOUT_MS 60 /* no ANSWER to ELECTION within this: won */
#define CL_BULLY_COORD_TIMEOUT_MS 200 /* ANSWER but no COORDINATOR within this: elect again */
#define CL_BULLY_QUORUM_WINDOW_MS 250 /* an ack keeps the leader acting for this long */

/* Leader -> host daemon operations over TCP (cl_rpc, doc/ELECTION.md "Transport"). */
#define CL_RPC_CONNECT_MS 2000 /* leader: connecting to a host daemon's peer port */
#define CL_RPC_REPLY_MS 120000 /* leader: an operation's answer (remove: plus its grace) */
#define CL_RPC_PING_MS 500     /* leader: alive/is_test, connect and answer together */
#define CL_RPC_SCAN_MS 3000    /* leader: a read (list domains, state, free memory) answered */
#define CL_RPC_IO_MS 10000     /* host daemon: reading a request, and writing its answer */
#define CL_RPC_NOTE_MS 100     /* host daemon: the unauthenticated "DROP <reason>" notice */

/* SSH to guests (cl_ssh): defaults of cl_ssh_opts_t and cl_ssh_run_opts_t. */
#define CL_SSH_CONNECT_MS 5000     /* TCP connect to a guest's sshd */
#define CL_SSH_AUTH_MS 30000       /* banner, key exchange, host key, auth (slow under TCG) */
#define CL_SSH_EXEC_MS 600000      /* one command, from channel open to exit status */
#define CL_SSH_UPLOAD_MS 120000    /* one file: SCP transfer, chmod and rename */
#define CL_SSH_CLOSE_MS 1000       /* closing a channel or a session before dropping it */
#define CL_SSH_BACKOFF_MIN_MS 100  /* cl_ssh_wait_ready: first pause between attempts... */
#define CL_SSH_BACKOFF_MAX_MS 2000 /* ...doubling up to this */

/* Guests (cl_guests): boot under TCG takes 10-60 s; a service may need a moment to answer. */
#define CL_GUEST_BOOT_MS 600000          /* domain started -> its sshd answers (an apply) */
#define CL_GUEST_REPAIR_BOOT_MS 120000   /* the same in a repair run (lab guests: 15-30 s) */
#define CL_GUEST_STATE_POLL_MS 500       /* while waiting for SSH: is the domain still running? */
#define CL_GUEST_CHECK_MS 60000          /* a role's check is retried this long after start */
#define CL_GUEST_CHECK_STEP_MS 30000     /* one run of a check */
#define CL_GUEST_STOP_MS 20000           /* connecting for, and running, a stop step */
#define CL_GUEST_CHECK_RETRY_MS 200      /* first pause between checks... */
#define CL_GUEST_CHECK_RETRY_MAX_MS 5000 /* ...doubling up to this */
#define CL_GUEST_RESTART_STEP_MS 60000   /* a start step run again by a service repair */
#define CL_GUEST_PROBE_MS 3000           /* after a check timed out: is its session alive? */

/* Commands in guests (cl_exec: cloudctl exec, issue 6). */
#define CL_EXEC_TIMEOUT_MS 60000       /* default bound of one exec: every slot's command ends */
#define CL_EXEC_TIMEOUT_MIN_MS 100     /* the shortest bound a request may ask for... */
#define CL_EXEC_TIMEOUT_MAX_MS 3600000 /* ...and the longest */
#define CL_EXEC_SLACK_MS 60000         /* a client waits the bound plus this (sessions, handover) */

/* Self-healing (cl_monitor, doc/MONITOR.md). */
#define CL_FENCE_SELF_MS 1000      /* a member without its cloud's leader this long fences itself */
#define CL_FENCE_DESTROY_MS 1000   /* one guest's destroy, as a leader budgets it (--destroy-ms) */
#define CL_FENCE_MARGIN_MS 800     /* the leader waits fence_ms + this before re-placing a host's */
#define CL_FENCE_PAUSE_MS 200      /* self-fence: copies paused within this, then destroyed */
#define CL_MONITOR_SWEEP_MS 5000   /* the periodic sweep of every cloud a daemon acts on */
#define CL_MONITOR_STABLE_MS 10000 /* a repaired domain running this long is healthy again */
#define CL_MONITOR_TICK_MS 100     /* self-fencing and host-liveness checks */

#endif
