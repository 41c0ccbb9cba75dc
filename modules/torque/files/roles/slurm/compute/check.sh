# torque (batch => slurm), role compute: the controller sees this node ready for jobs.
state=$(sinfo -h -n "$CLOUD_SLOT" -o %t)
case "$state" in idle*|alloc*|mix*|comp*) ;; *) echo "node $CLOUD_SLOT is ${state:-unknown}" >&2; exit 1 ;; esac
