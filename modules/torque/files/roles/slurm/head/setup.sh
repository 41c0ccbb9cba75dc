# torque (batch => slurm), role head: munge, slurm.conf from the facts, the controller.
slurm_configure
mkdir -p /var/spool/slurmctld
chown slurm:slurm /var/spool/slurmctld
service munge restart >/dev/null
if service slurmctld status >/dev/null 2>&1; then service slurmctld restart >/dev/null; fi
