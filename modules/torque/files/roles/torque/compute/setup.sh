# torque (batch => torque), role compute: pbs_mom pointed at the head (see head/setup.sh).
head_name=${CLOUD_NAMES_HEAD%% *}
spool=/var/spool/torque
echo "$head_name" > "$spool/server_name"
printf '$pbsserver %s\n$logevent 255\n' "$head_name" > "$spool/mom_priv/config"
sed -i "/# cloud-hosts$/d" /etc/hosts
set -- $CLOUD_IPS_HEAD $CLOUD_IPS_COMPUTE
for name in $CLOUD_NAMES_HEAD $CLOUD_NAMES_COMPUTE; do echo "$1 $name # cloud-hosts" >> /etc/hosts; shift; done
