# @summary The ips and images lists of one role, written from arrays.
#
# Writes `<dir>/<role>-ips.txt` and `<dir>/<role>-imgs.txt` (mode 0644): a header line naming
# `$managed_by`, then one entry a line, in the given order. The two files are the
# `[ips_file, images_file]` form of a role attribute: declare the resource that reads them after
# them. The directory is not declared here: the caller declares it (once for all its roles), and
# the files autorequire it. The `*::cluster` defined types write their lists with it, titled
# `<dir>/<role>`; any title unique in the catalog will do.
#
# @param ips
#   IP addresses of the role's VMs, one VM each.
# @param images
#   Base images of the VMs, matched with `ips` by position (as many entries).
# @param dir
#   Directory of the lists (absolute), declared by the caller.
# @param role
#   Role name, the prefix of the file names.
# @param managed_by
#   Who manages the lists, named in their header line (e.g. `Web::Cluster[myweb]`).
#
# @example
#   file { '/etc/cloud/mycluster':
#     ensure => directory,
#   }
#   cloud::role_lists { '/etc/cloud/mycluster/worker':
#     ips        => ['10.0.0.31', '10.0.0.32'],
#     images     => ['/var/lib/cloud/images/worker.qcow2', '/var/lib/cloud/images/worker.qcow2'],
#     dir        => '/etc/cloud/mycluster',
#     role       => 'worker',
#     managed_by => 'Profile::Mycluster',
#   }
define cloud::role_lists (
  Array[String[1], 1] $ips,
  Array[String[1], 1] $images,
  Pattern[/\A\/./] $dir,
  Pattern[/\A[a-z][a-z0-9_]*\z/] $role,
  String[1] $managed_by = "Cloud::Role_lists[${title}]",
) {
  if size($ips) != size($images) {
    fail("Cloud::Role_lists[${title}]: ips has ${size($ips)} entries but images has ${size($images)}")
  }

  $header = "# Managed by Puppet (${managed_by}): one entry a line.\n"

  file { "${dir}/${role}-ips.txt":
    ensure  => file,
    mode    => '0644',
    content => "${header}${join($ips, "\n")}\n",
  }
  file { "${dir}/${role}-imgs.txt":
    ensure  => file,
    mode    => '0644',
    content => "${header}${join($images, "\n")}\n",
  }
}
