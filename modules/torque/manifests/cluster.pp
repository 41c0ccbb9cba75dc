# @summary A torque cloud whose compute nodes are given as arrays instead of files.
#
# Writes the compute ips and images lists under `$dir` (with `cloud::role_lists`) and declares the
# `torque` resource that reads them (after they are written).
#
# @param head
#   The head node VM: `[ip, image]`.
# @param compute_ips
#   IP addresses of the compute nodes, one VM each.
# @param compute_images
#   Base images of the compute nodes, matched with `compute_ips` by position.
# @param pool
#   Hosts that run the VMs, in priority order.
# @param batch
#   Batch system in the guests: `slurm` or `torque`.
# @param vm_domain
#   libvirt domain XML template (absolute path or `puppet:///` URI).
# @param hypervisor
#   libvirt URI of each pool host (`%{host}` is replaced by the host).
# @param ensure
#   `running` or `stopped`.
# @param dir
#   Directory of the lists (default `<cloud::confdir>/<title>`).
# @param options
#   Other attributes of the `torque` type (`vm_mem`, `vm_ncpu`, `secret_file`...).
#
# @example
#   torque::cluster { 'mytorque':
#     head           => ['10.0.0.10', '/var/lib/cloud/images/torque-head.qcow2'],
#     compute_ips    => ['10.0.0.11', '10.0.0.12'],
#     compute_images => ['/var/lib/cloud/images/compute.qcow2', '/var/lib/cloud/images/compute.qcow2'],
#     pool           => ['10.0.0.70', '10.0.0.71'],
#   }
define torque::cluster (
  Tuple[String[1], String[1]] $head,
  Array[String[1], 1] $compute_ips,
  Array[String[1], 1] $compute_images,
  Array[String[1], 1] $pool,
  Enum['slurm', 'torque'] $batch = 'slurm',
  String[1] $vm_domain = 'puppet:///modules/torque/template-test.xml',
  String[1] $hypervisor = 'test:///default',
  Enum['running', 'stopped'] $ensure = 'running',
  Optional[Pattern[/\A\/./]] $dir = undef,
  Hash[Pattern[/\A[a-z_]+\z/], Any] $options = {},
) {
  if size($compute_ips) != size($compute_images) {
    fail("Torque::Cluster[${title}]: compute_ips has ${size($compute_ips)} entries but compute_images has ${size($compute_images)}")
  }

  include cloud
  $_dir = $dir ? {
    undef   => "${cloud::confdir}/${title}",
    default => $dir,
  }
  # the files cloud::role_lists writes (required below: a mismatch fails the compilation)
  $ips_file = "${_dir}/compute-ips.txt"
  $images_file = "${_dir}/compute-imgs.txt"

  file { $_dir:
    ensure => directory,
    mode   => '0755',
  }
  cloud::role_lists { "${_dir}/compute":
    ips        => $compute_ips,
    images     => $compute_images,
    dir        => $_dir,
    role       => 'compute',
    managed_by => "Torque::Cluster[${title}]",
  }

  torque { $title:
    ensure     => $ensure,
    head       => $head,
    compute    => [$ips_file, $images_file],
    batch      => $batch,
    vm_domain  => $vm_domain,
    pool       => $pool,
    hypervisor => $hypervisor,
    require    => File[$ips_file, $images_file],
    *          => $options,
  }
}
