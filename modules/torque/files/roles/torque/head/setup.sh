# torque (batch => torque), role head: TORQUE's server and scheduler, as the seed ran them,
# its nodes from the facts (not driven by hand with qmgr). TORQUE is not packaged by Debian 12:
# the image must bring it (/usr/local/sbin/pbs_server...); not exercised by the test suite.
head_name=${CLOUD_NAMES_HEAD%% *}
spool=/var/spool/torque
echo "$head_name" > "$spool/server_name"
sed -i "/# cloud-hosts$/d" /etc/hosts
set -- $CLOUD_IPS_HEAD $CLOUD_IPS_COMPUTE
for name in $CLOUD_NAMES_HEAD $CLOUD_NAMES_COMPUTE; do echo "$1 $name # cloud-hosts" >> /etc/hosts; shift; done
: > "$spool/server_priv/nodes"
for name in $CLOUD_NAMES_COMPUTE; do echo "$name np=1" >> "$spool/server_priv/nodes"; done
if [ ! -f "$spool/server_priv/serverdb" ]; then
  pbs_server -t create -f
  sleep 1
  qmgr -c "set server scheduling = true"
  qmgr -c "create queue batch queue_type = execution" || true
  qmgr -c "set queue batch started = true"
  qmgr -c "set queue batch enabled = true"
  qmgr -c "set server default_queue = batch"
  qterm -t quick
fi
