# torque (batch => torque), role head: the server answers.
qstat -B >/dev/null
