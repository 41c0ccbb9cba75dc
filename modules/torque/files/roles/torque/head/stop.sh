# torque (batch => torque), role head: server and scheduler stopped.
qterm -t quick 2>/dev/null || true
pkill -x pbs_sched 2>/dev/null || true
