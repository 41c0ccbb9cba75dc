# @summary Everything a pool host needs: the package, libvirt, cloudd as a service, the clouds'
# secrets and the guests' SSH key.
#
# Declare it on every pool host (the hosts listed in the `pool` of a distributed resource), then
# apply the distributed resources there with `puppet agent`. It installs the Debian package that
# `rake package` builds (cloudd, cloudctl, the `Cloud` extension, the Puppet modules and the
# systemd unit) from a file on the host, from an apt repository, or by building it from a source
# checkout on the host; libvirt; runs cloudd with this host's pool address and timers (systemd,
# or a plain start/stop/status where systemd is not PID 1); and writes the per-cloud secrets and
# the guests' SSH key pair, root-only. The configuration directory comes from class `cloud`.
#
# A restart of cloudd stops this host's VMs (libvirt autodestroy: a dead daemon fences its host)
# and the leader places them again, so a changed option takes effect at the next restart you
# choose, unless `restart_on_change` is true.
#
# @param install
#   How cloudd and the extension get here: `package` (the package `package_name`, from
#   `package_source` or else an apt repository), `source` (build the package from `source_dir`
#   with `rake package`, then install it), or `none` (already installed: `cloudd_path`,
#   `cloudctl_path` and the extension are there).
# @param package_name
#   Name of the package.
# @param package_ensure
#   `installed`, `latest` (from a repository) or a version (with `package_source`: the version
#   that file holds, to upgrade from a new file).
# @param package_source
#   A `.deb` file on this host (e.g. `build/pkg/puppet-cloud.deb` of `rake package`, delivered
#   by a `file` resource); installed with apt, which installs its dependencies from the
#   repositories. Default: none, the package comes from a configured apt repository.
# @param source_dir
#   With `install => source`: a checkout of the project on this host. The build dependencies
#   are installed, `rake package` runs there once (until `build/pkg/<package_name>.deb` exists;
#   remove it to build again) and its package is installed.
# @param build_packages
#   Debian packages `rake package` needs (`install => source` only).
# @param cloudd_path
#   The daemon, as the package installs it.
# @param cloudctl_path
#   The command line tool (the service's status and stop use it).
# @param address
#   cloudd `--address`: this host's identity in pools, the entry of the host in the clouds'
#   `pool` (one, or several: the first carries the peer layer). Default: the primary IP address
#   Facter reports. Empty array: no peer layer (clouds whose pool is this host alone).
# @param peer_port
#   cloudd `--peer-port`: UDP (election) and TCP (host operations) port; the same on every pool
#   host, and the `peer_port` of the clouds' resources.
# @param fence_ms
#   cloudd `--fence-ms`: a member without its cloud's leader for that long stops its copies of
#   the cloud's VMs; the same on every pool host.
# @param destroy_ms
#   cloudd `--destroy-ms`: how long one guest's destroy takes on this pool's hypervisors (the
#   leader waits that much longer for a silent host per further copy it may hold); the same on
#   every pool host. Default: cloudd's (1000).
# @param sweep_ms
#   cloudd `--sweep-ms`: the leader's periodic sweep of every cloud. Default: cloudd's (5000).
# @param metrics
#   cloudd `--metrics`: serve Prometheus metrics on `ADDR:PORT`, `:PORT` or `PORT` (address
#   127.0.0.1). Default: none (off).
# @param metrics_any
#   cloudd `--metrics-any`: allow `metrics` on an address that is not a loopback one.
# @param extra_args
#   Further cloudd options, one array element each (e.g. `['--hb-timeout-ms', '400']`).
# @param socket
#   cloudd `--socket`, the control socket. Keep the default on real hosts: the providers find
#   the daemon there (else set `CLOUD_SOCKET` in the Puppet agent's environment).
# @param state_dir
#   cloudd `--state-dir` (mode 0700): the clouds' state, known host keys, events. Keep the
#   default, or set `CLOUD_STATE_DIR` in the Puppet agent's environment.
# @param log_file
#   cloudd `--log`. Default: none (systemd: the journal; `service_provider => base`:
#   `<state_dir>/cloudd.log`).
# @param secrets_dir
#   Directory of the clouds' key files (mode 0700), the `secret_file`s of their resources.
# @param secrets
#   Cloud name => its peer secret (Sensitive, at least 16 characters): each written by
#   `cloud::secret` to `<secrets_dir>/<name>.key`, mode 0600. The same on every pool host.
# @param ssh_private_key
#   The guests' SSH private key (Sensitive; ed25519: libssh2 1.10 signs RSA keys with SHA-1,
#   which OpenSSH 9 refuses), written to `<cloud::confdir>/ssh/<ssh_key_name>` (mode 0600). The
#   same on every pool host: any of them may lead and configure the guests. Default: none (the
#   key is managed otherwise).
# @param ssh_public_key
#   Its public key line (`ssh-ed25519 KEY COMMENT`), written next to it with `.pub` (mode
#   0600); required with `ssh_private_key`.
# @param ssh_key_name
#   File name of the key in `<cloud::confdir>/ssh` (the resources' `ssh_key` default is
#   `/etc/cloud/ssh/id_ed25519`).
# @param manage_libvirt
#   Install `libvirt_packages` and (with systemd) run libvirtd.
# @param libvirt_packages
#   The packages of a KVM/qemu host.
# @param manage_service
#   Manage cloudd as a service (false: it is started otherwise).
# @param service_provider
#   `systemd` (the package's unit, with a drop-in carrying this host's options), or `base`
#   where systemd is not PID 1 (containers, network namespaces): each Puppet run starts cloudd
#   (`--daemonize --pidfile`) if `cloudctl hello` gets no answer; stop is `cloudctl shutdown`.
# @param service_ensure
#   `running` or `stopped`.
# @param service_enable
#   Start cloudd at boot (systemd only).
# @param restart_on_change
#   Restart cloudd when its package or options change. Off by default: a restart stops this
#   host's VMs, which the leader then places again.
# @param pidfile
#   cloudd `--pidfile` (`service_provider => base` only).
#
# @example A pool host, from the package on an apt repository
#   class { 'cloud::host':
#     address         => '10.0.0.70',
#     secrets         => { 'myweb' => Sensitive(lookup('myweb_secret')) },
#     ssh_private_key => Sensitive(lookup('cloud_guest_key')),
#     ssh_public_key  => lookup('cloud_guest_key_pub'),
#   }
#
# @example From a package file that rake package built
#   file { '/var/cache/puppet-cloud.deb':
#     source => 'puppet:///modules/profile/puppet-cloud_0.1.0_amd64.deb',
#   }
#   class { 'cloud::host':
#     package_source => '/var/cache/puppet-cloud.deb',
#     require        => File['/var/cache/puppet-cloud.deb'],
#   }
class cloud::host (
  Enum['package', 'source', 'none'] $install = 'package',
  String[1] $package_name = 'puppet-cloud',
  String[1] $package_ensure = 'installed',
  Optional[Cloud::Path] $package_source = undef,
  Optional[Cloud::Path] $source_dir = undef,
  Array[String[1]] $build_packages = [
    'gcc', 'make', 'pkg-config', 'ruby-dev', 'rake', 'libvirt-dev', 'libssh2-1-dev',
    'libjson-c-dev', 'libssl-dev',
  ],
  Cloud::Path $cloudd_path = '/usr/local/sbin/cloudd',
  Cloud::Path $cloudctl_path = '/usr/local/bin/cloudctl',
  Optional[Variant[Pattern[/\A[A-Za-z0-9.:-]+\z/], Array[Pattern[/\A[A-Za-z0-9.:-]+\z/]]]] $address =
    $facts.dig('networking', 'ip'),
  Integer[1, 65535] $peer_port = 7946,
  Integer[1] $fence_ms = 1000,
  Optional[Integer[0]] $destroy_ms = undef,
  Optional[Integer[1]] $sweep_ms = undef,
  Optional[Pattern[/\A(\[[0-9A-Fa-f:.]+\]:|[A-Za-z0-9.]*:)?[0-9]{1,5}\z/]] $metrics = undef,
  Boolean $metrics_any = false,
  Array[Pattern[/\A[A-Za-z0-9._+,:@\/=-]+\z/]] $extra_args = [],
  Cloud::Path $socket = '/run/cloudd/cloudd.sock',
  Cloud::Path $state_dir = '/var/lib/cloud',
  Optional[Cloud::Path] $log_file = undef,
  Cloud::Path $secrets_dir = "${state_dir}/secrets",
  Hash[Cloud::Cloudname, Sensitive[String]] $secrets = {},
  Optional[Sensitive[String[1]]] $ssh_private_key = undef,
  Optional[Pattern[/\Assh-ed25519 [A-Za-z0-9+\/]+=* \S.*\n?\z/]] $ssh_public_key = undef,
  Pattern[/\A[A-Za-z0-9_.-]+\z/] $ssh_key_name = 'id_ed25519',
  Boolean $manage_libvirt = true,
  Array[String[1]] $libvirt_packages = ['libvirt-daemon-system', 'qemu-system-x86', 'qemu-utils'],
  Boolean $manage_service = true,
  Enum['systemd', 'base'] $service_provider = 'systemd',
  Enum['running', 'stopped'] $service_ensure = 'running',
  Boolean $service_enable = true,
  Boolean $restart_on_change = false,
  Cloud::Path $pidfile = "${state_dir}/cloudd.pid",
) {
  if $install == 'source' and $source_dir =~ Undef {
    fail('Cloud::Host: install => source needs source_dir (a checkout of the project on this host)')
  }
  if $install != 'package' and $package_source =~ NotUndef {
    fail("Cloud::Host: package_source is for install => package, not ${install}")
  }
  if ($ssh_private_key =~ Undef) != ($ssh_public_key =~ Undef) {
    fail('Cloud::Host: ssh_private_key and ssh_public_key go together (give both or neither)')
  }
  if $install == 'none' and $manage_service and $service_provider == 'systemd' {
    $unit_from_module = true
  } else {
    $unit_from_module = false
  }

  contain cloud
  $ssh_dir = "${cloud::confdir}/ssh"

  # ---- the software -------------------------------------------------------------------------
  $deb = $install ? {
    'source' => "${source_dir}/build/pkg/${package_name}.deb",
    default  => $package_source,
  }
  if $install == 'source' {
    package { $build_packages:
      ensure => installed,
    }
    exec { "cloud::host rake package in ${source_dir}":
      command   => 'rake package',
      cwd       => $source_dir,
      path      => ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'],
      creates   => $deb,
      timeout   => 1800,
      logoutput => 'on_failure',
      require   => Package[$build_packages],
      before    => Package[$package_name],
    }
  }
  if $install != 'none' {
    # apt installs a package file's dependencies too (dpkg would not)
    $package_provider = $deb ? {
      undef   => undef,
      default => 'apt',
    }
    package { $package_name:
      ensure   => $package_ensure,
      provider => $package_provider,
      source   => $deb,
    }
    $software = Package[$package_name]
  } else {
    $software = []
  }

  if $manage_libvirt {
    package { $libvirt_packages:
      ensure => installed,
    }
    if $manage_service and $service_provider == 'systemd' {
      service { 'libvirtd':
        ensure   => running,
        enable   => true,
        provider => 'systemd',
        require  => Package[$libvirt_packages],
        before   => Service['cloudd'],
      }
    }
  }

  # ---- directories, secrets, the guests' key -------------------------------------------------
  file { [$state_dir, $secrets_dir]:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0700',
  }
  $secrets.each |$name, $secret| {
    cloud::secret { $name:
      secret  => $secret,
      dir     => $secrets_dir,
      require => File[$secrets_dir],
    }
  }
  if $ssh_private_key =~ NotUndef {
    file { "${ssh_dir}/${ssh_key_name}":
      ensure    => file,
      owner     => 'root',
      group     => 'root',
      mode      => '0600',
      content   => $ssh_private_key,
      show_diff => false,
      backup    => false,
    }
    file { "${ssh_dir}/${ssh_key_name}.pub":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0600',
      content => "${chomp($ssh_public_key)}\n",
    }
  }

  # ---- the daemon ----------------------------------------------------------------------------
  $addresses = $address ? {
    undef   => [],
    String  => [$address],
    default => $address,
  }
  $args = flatten([
      '--socket', $socket, '--state-dir', $state_dir,
      $addresses.map |$a| { ['--address', $a] },
      '--peer-port', String($peer_port), '--fence-ms', String($fence_ms),
      $destroy_ms ? { undef => [], default => ['--destroy-ms', String($destroy_ms)] },
      $sweep_ms ? { undef => [], default => ['--sweep-ms', String($sweep_ms)] },
      $metrics ? { undef => [], default => ['--metrics', $metrics] },
      $metrics_any ? { true => ['--metrics-any'], default => [] },
      $log_file ? { undef => [], default => ['--log', $log_file] },
      $extra_args,
  ])
  $command = join([$cloudd_path] + $args, ' ')

  if $manage_service {
    if $service_provider == 'systemd' {
      $options_file = '/etc/systemd/system/cloudd.service.d/puppet.conf'
      if $unit_from_module {
        file { '/etc/systemd/system/cloudd.service':
          ensure => file,
          mode   => '0644',
          source => 'puppet:///modules/cloud/cloudd.service',
          notify => Exec['cloud::host systemctl daemon-reload'],
        }
      }
      $restart_on = $restart_on_change ? {
        true    => flatten([File[$options_file], $software]),
        default => [],
      }
      file { '/etc/systemd/system/cloudd.service.d':
        ensure => directory,
        mode   => '0755',
      }
      file { $options_file:
        ensure  => file,
        mode    => '0644',
        content => "# Managed by Puppet (Cloud::Host): this host's cloudd options.\n[Service]\nExecStart=\nExecStart=${command}\n",
        require => $software,
        notify  => Exec['cloud::host systemctl daemon-reload'],
      }
      exec { 'cloud::host systemctl daemon-reload':
        command     => 'systemctl daemon-reload',
        path        => ['/usr/bin', '/bin'],
        refreshonly => true,
        before      => Service['cloudd'],
      }
      service { 'cloudd':
        ensure    => $service_ensure,
        enable    => $service_enable,
        provider  => 'systemd',
        require   => flatten([File[$state_dir], $software]),
        subscribe => $restart_on,
      }
    } else {
      # no systemd: started by each run when no daemon answers; the options are the start
      # command's, used at the next start
      $restart_on = $restart_on_change ? {
        true    => $software,
        default => [],
      }
      $ctl = "${cloudctl_path} --socket ${socket}"
      # shutdown answers at once: the stop waits (bounded) until the daemon no longer answers
      $wait_gone = "for i in \$(seq 150); do ${ctl} hello >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1"
      service { 'cloudd':
        ensure    => $service_ensure,
        provider  => 'base',
        start     => "${command} --daemonize --pidfile ${pidfile}",
        stop      => "/bin/sh -c '${ctl} shutdown >/dev/null && ${wait_gone}'",
        status    => "${ctl} hello",
        require   => flatten([File[$state_dir], $software]),
        subscribe => $restart_on,
      }
    }
    if $ssh_private_key =~ NotUndef {
      File["${ssh_dir}/${ssh_key_name}"] -> Service['cloudd']
    }
  }
}
