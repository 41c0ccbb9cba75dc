# AppScale, custom deployment: one VM (10.0.0.30) holds master, login, appengine and database,
# as in the seed's validated layout, and two "open" VMs are spare. On libvirt's test driver:
#   puppet apply --modulepath=modules modules/appscale/examples/appscale-custom.pp
appscale { 'myappscale2':
  ensure     => running,
  master     => ['10.0.0.30', '/var/lib/cloud/images/appscale.qcow2'],
  login      => ['10.0.0.30', '/var/lib/cloud/images/appscale.qcow2'],
  appengine  => ['puppet:///modules/appscale/appengine-ips.txt', 'puppet:///modules/appscale/appengine-imgs.txt'],
  database   => ['puppet:///modules/appscale/database-ips.txt', 'puppet:///modules/appscale/database-imgs.txt'],
  open       => ['puppet:///modules/appscale/open-ips.txt', 'puppet:///modules/appscale/open-imgs.txt'],
  app_email  => 'admin@example.com',
  vm_domain  => 'puppet:///modules/appscale/template-test.xml',
  pool       => ['127.0.0.1'],
  hypervisor => 'test:///default',
}
