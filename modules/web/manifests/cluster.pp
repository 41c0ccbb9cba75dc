# @summary A web cloud whose web servers are given as arrays instead of files.
#
# Writes the server ips and images lists under `$dir` (with `cloud::role_lists`) and declares the
# `web` resource that reads them (after they are written).
#
# @param balancer
#   The load balancer VM: `[ip, image]`.
# @param database
#   The database VM: `[ip, image]`.
# @param server_ips
#   IP addresses of the web servers, one VM each.
# @param server_images
#   Base images of the web servers, matched with `server_ips` by position.
# @param pool
#   Hosts that run the VMs, in priority order.
# @param vm_domain
#   libvirt domain XML template (absolute path or `puppet:///` URI).
# @param hypervisor
#   libvirt URI of each pool host (`%{host}` is replaced by the host).
# @param ensure
#   `running` or `stopped`.
# @param dir
#   Directory of the lists (default `<cloud::confdir>/<title>`).
# @param options
#   Other attributes of the `web` type (`vm_mem`, `vm_ncpu`, `secret_file`...).
#
# @example
#   web::cluster { 'myweb':
#     balancer      => ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
#     database      => ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
#     server_ips    => ['10.0.0.5', '10.0.0.6'],
#     server_images => ['/var/lib/cloud/images/web.qcow2', '/var/lib/cloud/images/web.qcow2'],
#     pool          => ['10.0.0.70', '10.0.0.71'],
#   }
define web::cluster (
  Tuple[String[1], String[1]] $balancer,
  Tuple[String[1], String[1]] $database,
  Array[String[1], 1] $server_ips,
  Array[String[1], 1] $server_images,
  Array[String[1], 1] $pool,
  String[1] $vm_domain = 'puppet:///modules/web/template-test.xml',
  String[1] $hypervisor = 'test:///default',
  Enum['running', 'stopped'] $ensure = 'running',
  Optional[Pattern[/\A\/./]] $dir = undef,
  Hash[Pattern[/\A[a-z_]+\z/], Any] $options = {},
) {
  if size($server_ips) != size($server_images) {
    fail("Web::Cluster[${title}]: server_ips has ${size($server_ips)} entries but server_images has ${size($server_images)}")
  }

  include cloud
  $_dir = $dir ? {
    undef   => "${cloud::confdir}/${title}",
    default => $dir,
  }
  # the files cloud::role_lists writes (required below: a mismatch fails the compilation)
  $ips_file = "${_dir}/server-ips.txt"
  $images_file = "${_dir}/server-imgs.txt"

  file { $_dir:
    ensure => directory,
    mode   => '0755',
  }
  cloud::role_lists { "${_dir}/server":
    ips        => $server_ips,
    images     => $server_images,
    dir        => $_dir,
    role       => 'server',
    managed_by => "Web::Cluster[${title}]",
  }

  web { $title:
    ensure     => $ensure,
    balancer   => $balancer,
    server     => [$ips_file, $images_file],
    database   => $database,
    vm_domain  => $vm_domain,
    pool       => $pool,
    hypervisor => $hypervisor,
    require    => File[$ips_file, $images_file],
    *          => $options,
  }
}
