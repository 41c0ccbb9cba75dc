# torque (batch => torque), role head: trqauthd, pbs_server, pbs_sched running.
pgrep -x trqauthd >/dev/null || trqauthd
pgrep -x pbs_server >/dev/null || pbs_server
pgrep -x pbs_sched >/dev/null || pbs_sched
