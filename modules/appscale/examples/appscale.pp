# AppScale, default deployment (a controller and two servers), on libvirt's test driver:
#   puppet apply --modulepath=modules modules/appscale/examples/appscale.pp
# The 10.0.0.x addresses are examples: nothing connects to them under the test driver.
appscale { 'myappscale':
  ensure     => running,
  controller => ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'],
  servers    => ['puppet:///modules/appscale/servers-ips.txt', 'puppet:///modules/appscale/servers-imgs.txt'],
  app_email  => 'admin@example.com',
  vm_domain  => 'puppet:///modules/appscale/template-test.xml',
  pool       => ['127.0.0.1'],
  hypervisor => 'test:///default',
}
