# A pool host prepared by Puppet (the class cloud::host): the package `rake package` built,
# libvirt, cloudd with this host's pool address, and one cloud's secret (root-only). The values
# are examples: use your pool address and a secret of at least 16 characters from Hiera (eyaml);
# add `ssh_private_key => Sensitive(...)` and `ssh_public_key => '...'` for the guests' key.
# Where systemd is not PID 1 (a container), add `service_provider => 'base'`.
# See what it would do, changing nothing:
#   puppet apply --noop --modulepath=modules modules/cloud/examples/host.pp
class { 'cloud::host':
  package_source => '/var/cache/puppet-cloud.deb',
  address        => '10.0.0.70',
  secrets        => { 'myweb' => Sensitive('change-me-to-a-long-random-secret') },
}
