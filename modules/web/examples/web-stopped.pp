# Tears down the cloud of web.pp: a stop needs only the name and the pool.
#   puppet apply --modulepath=modules modules/web/examples/web-stopped.pp
web { 'myweb':
  ensure => stopped,
  pool   => ['127.0.0.1'],
}
