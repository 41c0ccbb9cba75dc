# torque (batch => slurm), role compute: munge, slurm.conf from the facts, slurmd under this
# slot's node name.
slurm_configure
mkdir -p /var/spool/slurmd
echo "SLURMD_OPTIONS=\"-N $CLOUD_SLOT\"" > /etc/default/slurmd
service munge restart >/dev/null
if service slurmd status >/dev/null 2>&1; then service slurmd restart >/dev/null; fi
