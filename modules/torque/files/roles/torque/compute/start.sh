# torque (batch => torque), role compute: pbs_mom running.
pgrep -x pbs_mom >/dev/null || pbs_mom
