# torque (batch => slurm), role compute: slurmd stopped.
service slurmd stop >/dev/null 2>&1 || true
