# torque (batch => slurm), role compute: munge and slurmd running.
service munge status >/dev/null 2>&1 || service munge start >/dev/null
service slurmd status >/dev/null 2>&1 || service slurmd start >/dev/null
