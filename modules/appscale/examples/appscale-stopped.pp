# Tears down the clouds of appscale.pp and appscale-custom.pp:
#   puppet apply --modulepath=modules modules/appscale/examples/appscale-stopped.pp
appscale { ['myappscale', 'myappscale2']:
  ensure => stopped,
  pool   => ['127.0.0.1'],
}
