# torque (batch => slurm): shell functions shared by the roles' steps (prepended to each).

# The cluster's configuration on this node, the same everywhere: munge key, slurm.conf, cgroups,
# every node's name in /etc/hosts.
slurm_configure() {
# The cluster's munge key, derived from the cloud's guest key: the same on every node,
# never in the facts, a log or an argument.
python3 - "$CLOUD_DIR/cloud.key" <<'PY'
import hashlib, hmac, os, sys
key = open(sys.argv[1], "rb").read().strip()
out = b"".join(hmac.new(key, b"munge-%d" % i, hashlib.sha256).digest() for i in range(32))
fd = os.open("/etc/munge/munge.key.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
os.write(fd, out)
os.close(fd)
PY
chown munge:munge /etc/munge/munge.key.new
mv -f /etc/munge/munge.key.new /etc/munge/munge.key
# slurm.conf from the facts: the same text on every node.
head_name=${CLOUD_NAMES_HEAD%% *}
{
  echo "ClusterName=$(echo "$CLOUD_NAME" | tr -c "a-zA-Z0-9\n" _ | tr A-Z a-z)"
  echo "SlurmctldHost=$head_name($CLOUD_HEAD)"
  echo "AuthType=auth/munge"
  echo "SlurmUser=slurm"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "SchedulerType=sched/backfill"
  echo "MpiDefault=none"
  echo "ReturnToService=2"
  echo "SlurmctldTimeout=30"
  echo "SlurmdTimeout=60"
  echo "StateSaveLocation=/var/spool/slurmctld"
  echo "SlurmdSpoolDir=/var/spool/slurmd"
  echo "JobAcctGatherType=jobacct_gather/none"
  set -- $CLOUD_IPS_COMPUTE
  nodes=""
  for name in $CLOUD_NAMES_COMPUTE; do
    echo "NodeName=$name NodeAddr=$1 CPUs=1 State=UNKNOWN"
    nodes="${nodes:+$nodes,}$name"
    shift
  done
  echo "PartitionName=batch Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
} > /etc/slurm/slurm.conf.new
mv -f /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
# cgroups without systemd's D-Bus (the guest runs none): slurmd makes its hierarchy itself
printf 'CgroupPlugin=cgroup/v2\nIgnoreSystemd=yes\n' > /etc/slurm/cgroup.conf
# every node knows the others by name (slurmctld and srun resolve node names)
sed -i "/# cloud-hosts$/d" /etc/hosts
set -- $CLOUD_IPS_HEAD $CLOUD_IPS_COMPUTE
for name in $CLOUD_NAMES_HEAD $CLOUD_NAMES_COMPUTE; do echo "$1 $name # cloud-hosts" >> /etc/hosts; shift; done
}
