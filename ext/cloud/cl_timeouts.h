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

#endif
