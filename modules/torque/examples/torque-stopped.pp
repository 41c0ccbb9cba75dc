# Tears down the cloud of torque.pp:
#   puppet apply --modulepath=modules modules/torque/examples/torque-stopped.pp
torque { 'mytorque':
  ensure => stopped,
  pool   => ['127.0.0.1'],
}
