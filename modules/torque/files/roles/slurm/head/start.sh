# torque (batch => slurm), role head: munge and the controller running.
service munge status >/dev/null 2>&1 || service munge start >/dev/null
service slurmctld status >/dev/null 2>&1 || service slurmctld start >/dev/null
