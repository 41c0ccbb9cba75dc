# torque (batch => torque), role compute: pbs_mom stopped.
pkill -x pbs_mom 2>/dev/null || true
