# A three-tier web service on libvirt's test driver, on this machine alone:
#   puppet apply --modulepath=modules modules/web/examples/web.pp
# The 10.0.0.x addresses are examples: nothing connects to them under the test driver.
web { 'myweb':
  ensure     => running,
  balancer   => ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
  server     => ['puppet:///modules/web/server-ips.txt', 'puppet:///modules/web/server-imgs.txt'],
  database   => ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
  vm_domain  => 'puppet:///modules/web/template-test.xml',
  pool       => ['127.0.0.1'],
  hypervisor => 'test:///default',
}
