# A batch cluster (one head, two compute nodes; SLURM in the guests) on libvirt's test driver:
#   puppet apply --modulepath=modules modules/torque/examples/torque.pp
# The 10.0.0.x addresses are examples: nothing connects to them under the test driver.
torque { 'mytorque':
  ensure     => running,
  head       => ['10.0.0.10', '/var/lib/cloud/images/torque-head.qcow2'],
  compute    => ['puppet:///modules/torque/compute-ips.txt', 'puppet:///modules/torque/compute-imgs.txt'],
  batch      => 'slurm',
  vm_domain  => 'puppet:///modules/torque/template-test.xml',
  pool       => ['127.0.0.1'],
  hypervisor => 'test:///default',
}
