# torque (batch => slurm), role head: the controller stopped.
service slurmctld stop >/dev/null 2>&1 || true
