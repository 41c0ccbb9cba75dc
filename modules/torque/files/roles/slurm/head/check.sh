# torque (batch => slurm), role head: the controller answers.
scontrol ping | grep -q 'is UP'
