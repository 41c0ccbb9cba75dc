# torque (batch => torque), role compute: the server sees this node free or busy.
pbsnodes "$CLOUD_SLOT" | grep -Eq 'state = (free|job-exclusive)'
