# @summary An AppScale default deployment whose servers are given as arrays instead of files.
#
# Writes the servers ips and images lists under `$dir` (with `cloud::role_lists`) and declares the
# `appscale` resource that reads them (after they are written).
#
# @param controller
#   The controller VM: `[ip, image]`.
# @param server_ips
#   IP addresses of the servers, one VM each.
# @param server_images
#   Base images of the servers, matched with `server_ips` by position.
# @param pool
#   Hosts that run the VMs, in priority order.
# @param app_email
#   E-mail of the AppScale administrator.
# @param app_password
#   Password of the AppScale administrator.
# @param vm_domain
#   libvirt domain XML template (absolute path or `puppet:///` URI).
# @param hypervisor
#   libvirt URI of each pool host (`%{host}` is replaced by the host).
# @param ensure
#   `running` or `stopped`.
# @param dir
#   Directory of the lists (default `<cloud::confdir>/<title>`).
# @param options
#   Other attributes of the `appscale` type (`vm_mem`, `vm_ncpu`, `secret_file`...).
#
# @example
#   appscale::cluster { 'myappscale':
#     controller    => ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'],
#     server_ips    => ['10.0.0.21', '10.0.0.22'],
#     server_images => ['/var/lib/cloud/images/appscale.qcow2', '/var/lib/cloud/images/appscale.qcow2'],
#     pool          => ['10.0.0.70'],
#     app_email     => 'admin@example.com',
#     app_password  => Sensitive('change me please'),
#   }
define appscale::cluster (
  Tuple[String[1], String[1]] $controller,
  Array[String[1], 1] $server_ips,
  Array[String[1], 1] $server_images,
  Array[String[1], 1] $pool,
  Optional[String[1]] $app_email = undef,
  Optional[Sensitive[String[6]]] $app_password = undef,
  String[1] $vm_domain = 'puppet:///modules/appscale/template-test.xml',
  String[1] $hypervisor = 'test:///default',
  Enum['running', 'stopped'] $ensure = 'running',
  Optional[Pattern[/\A\/./]] $dir = undef,
  Hash[Pattern[/\A[a-z_]+\z/], Any] $options = {},
) {
  if size($server_ips) != size($server_images) {
    fail("Appscale::Cluster[${title}]: server_ips has ${size($server_ips)} entries but server_images has ${size($server_images)}")
  }

  include cloud
  $_dir = $dir ? {
    undef   => "${cloud::confdir}/${title}",
    default => $dir,
  }
  # the files cloud::role_lists writes (required below: a mismatch fails the compilation)
  $ips_file = "${_dir}/servers-ips.txt"
  $images_file = "${_dir}/servers-imgs.txt"

  file { $_dir:
    ensure => directory,
    mode   => '0755',
  }
  cloud::role_lists { "${_dir}/servers":
    ips        => $server_ips,
    images     => $server_images,
    dir        => $_dir,
    role       => 'servers',
    managed_by => "Appscale::Cluster[${title}]",
  }

  appscale { $title:
    ensure       => $ensure,
    controller   => $controller,
    servers      => [$ips_file, $images_file],
    app_email    => $app_email,
    app_password => $app_password,
    vm_domain    => $vm_domain,
    pool         => $pool,
    hypervisor   => $hypervisor,
    require      => File[$ips_file, $images_file],
    *            => $options,
  }
}
