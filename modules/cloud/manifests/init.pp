# @summary Configuration directory of the distributed resources on a host.
#
# Holds the per-cloud files that the role modules' `*::cluster` defined types write (ips and
# images lists) and the guests' SSH key directory. Later: the `Cloud` extension and the `cloudd`
# daemon of the pool hosts.
#
# @param confdir
#   Directory of the per-cloud files; `*::cluster` write under `<confdir>/<cloud name>`.
#
# @example
#   include cloud
class cloud (
  Pattern[/\A\/./] $confdir = '/etc/cloud',
) {
  file { $confdir:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }

  file { "${confdir}/ssh":
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0700',
  }
}
