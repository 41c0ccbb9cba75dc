# The same service through web::cluster, which writes the server lists under /etc/cloud/myweb.
#   puppet apply --modulepath=modules modules/web/examples/cluster.pp
web::cluster { 'myweb':
  balancer      => ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
  database      => ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
  server_ips    => ['10.0.0.5', '10.0.0.6'],
  server_images => ['/var/lib/cloud/images/web-server.qcow2', '/var/lib/cloud/images/web-server.qcow2'],
  pool          => ['127.0.0.1'],
}
