# frozen_string_literal: true

require 'spec_helper'

describe 'cloud::host' do
  let(:facts) { { networking: { ip: '10.0.0.70' } } }
  let(:key) { "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n" }
  let(:pub) { 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb2Gm2nJ6mX0f1a lab@10.78.0' }
  let(:dropin) { '/etc/systemd/system/cloudd.service.d/puppet.conf' }

  context 'with the defaults' do
    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_class('cloud') }

    it 'installs the package from a repository and libvirt' do
      is_expected.to contain_package('puppet-cloud').with(ensure: 'installed', provider: nil, source: nil)
      %w[libvirt-daemon-system qemu-system-x86 qemu-utils].each { |p| is_expected.to contain_package(p) }
      is_expected.to contain_service('libvirtd').with(ensure: 'running', enable: true).that_comes_before('Service[cloudd]')
    end

    it 'runs cloudd under systemd with the primary address, the default port and fencing' do
      is_expected.to contain_file(dropin).with_content(
        "# Managed by Puppet (Cloud::Host): this host's cloudd options.\n[Service]\nExecStart=\n" \
        'ExecStart=/usr/local/sbin/cloudd --socket /run/cloudd/cloudd.sock --state-dir /var/lib/cloud ' \
        "--address 10.0.0.70 --peer-port 7946 --fence-ms 1000\n",
      ).that_requires('Package[puppet-cloud]').that_notifies('Exec[cloud::host systemctl daemon-reload]')
      is_expected.to contain_service('cloudd').with(ensure: 'running', enable: true, provider: 'systemd', subscribe: [])
      is_expected.to contain_service('cloudd').that_requires(['File[/var/lib/cloud]', 'Package[puppet-cloud]'])
      is_expected.not_to contain_file('/etc/systemd/system/cloudd.service')
    end

    it 'makes the state and secrets directories root-only, and writes no key' do
      %w[/var/lib/cloud /var/lib/cloud/secrets].each do |d|
        is_expected.to contain_file(d).with(ensure: 'directory', owner: 'root', group: 'root', mode: '0700')
      end
      is_expected.not_to contain_file('/etc/cloud/ssh/id_ed25519')
      is_expected.to have_cloud__secret_resource_count(0)
    end
  end

  context 'with a package file, secrets and the guests key' do
    let(:params) do
      {
        package_source: '/var/cache/puppet-cloud.deb',
        secrets: { 'myweb' => sensitive('0123456789abcdef0123'), 'mytorque' => sensitive('fedcba9876543210fedc') },
        ssh_private_key: sensitive(key),
        ssh_public_key: pub,
      }
    end

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('puppet-cloud').with(provider: 'apt', source: '/var/cache/puppet-cloud.deb') }

    it 'writes each secret root-only, never shown or backed up' do
      is_expected.to contain_cloud__secret('myweb').with(dir: '/var/lib/cloud/secrets')
      is_expected.to contain_file('/var/lib/cloud/secrets/myweb.key').with(
        ensure: 'file', owner: 'root', group: 'root', mode: '0600', show_diff: false, backup: false,
        content: sensitive('0123456789abcdef0123'),
      ).that_requires('File[/var/lib/cloud/secrets]')
      is_expected.to contain_file('/var/lib/cloud/secrets/mytorque.key').with_mode('0600')
    end

    it 'writes the key pair root-only under <confdir>/ssh, before cloudd starts' do
      is_expected.to contain_file('/etc/cloud/ssh/id_ed25519').with(
        mode: '0600', owner: 'root', content: sensitive(key), show_diff: false, backup: false,
      ).that_comes_before('Service[cloudd]').that_requires('File[/etc/cloud/ssh]')
      is_expected.to contain_file('/etc/cloud/ssh/id_ed25519.pub').with(mode: '0600', content: "#{pub}\n")
    end
  end

  context 'built from a checkout' do
    let(:params) { { install: 'source', source_dir: '/srv/puppet-cloud' } }

    it { is_expected.to compile.with_all_deps }

    it 'installs the build dependencies, runs rake package once and installs its package' do
      is_expected.to contain_package('libvirt-dev').that_comes_before('Exec[cloud::host rake package in /srv/puppet-cloud]')
      is_expected.to contain_exec('cloud::host rake package in /srv/puppet-cloud').with(
        command: 'rake package', cwd: '/srv/puppet-cloud', creates: '/srv/puppet-cloud/build/pkg/puppet-cloud.deb',
      ).that_comes_before('Package[puppet-cloud]')
      is_expected.to contain_package('puppet-cloud').with(provider: 'apt', source: '/srv/puppet-cloud/build/pkg/puppet-cloud.deb')
    end
  end

  context 'without systemd (service_provider base) and installed otherwise' do
    let(:params) do
      {
        install: 'none', cloudd_path: '/opt/pkg/usr/local/sbin/cloudd', cloudctl_path: '/opt/pkg/usr/local/bin/cloudctl',
        address: '10.78.0.2', socket: '/srv/h2/cloudd.sock', state_dir: '/srv/h2/cloud', log_file: '/srv/h2/cloudd.log',
        service_provider: 'base', manage_libvirt: false, sweep_ms: 2000, fence_ms: 1500, peer_port: 7950, destroy_ms: 2500,
        metrics: '127.0.0.1:9464', extra_args: ['--hb-timeout-ms', '400']
      }
    end

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to have_package_resource_count(0) }
    it { is_expected.not_to contain_service('libvirtd') }
    it { is_expected.not_to contain_file(dropin) }

    it 'starts cloudd daemonized with a pidfile when cloudctl hello gets no answer' do
      is_expected.to contain_service('cloudd').with(
        provider: 'base', ensure: 'running',
        start: '/opt/pkg/usr/local/sbin/cloudd --socket /srv/h2/cloudd.sock --state-dir /srv/h2/cloud ' \
               '--address 10.78.0.2 --peer-port 7950 --fence-ms 1500 --destroy-ms 2500 --sweep-ms 2000 ' \
               '--metrics 127.0.0.1:9464 --log /srv/h2/cloudd.log --hb-timeout-ms 400 --daemonize --pidfile /srv/h2/cloud/cloudd.pid',
        status: '/opt/pkg/usr/local/bin/cloudctl --socket /srv/h2/cloudd.sock hello',
      )
      is_expected.to contain_service('cloudd').with_stop(%r{\A/bin/sh -c '/opt/pkg/usr/local/bin/cloudctl --socket /srv/h2/cloudd.sock shutdown })
      is_expected.to contain_service('cloudd').without_enable
    end
  end

  context 'with install none under systemd' do
    let(:params) { { install: 'none' } }

    it { is_expected.to contain_file('/etc/systemd/system/cloudd.service').with_source('puppet:///modules/cloud/cloudd.service') }
    it { is_expected.to contain_service('cloudd').with_require(['File[/var/lib/cloud]']) }
  end

  context 'with restart_on_change' do
    let(:params) { { restart_on_change: true } }

    it { is_expected.to contain_service('cloudd').that_subscribes_to(["File[#{dropin}]", 'Package[puppet-cloud]']) }
  end

  context 'with several addresses, or none' do
    let(:params) { { address: ['10.0.0.70', '192.168.1.70'] } }

    it { is_expected.to contain_file(dropin).with_content(%r{--address 10\.0\.0\.70 --address 192\.168\.1\.70 }) }

    context 'none' do
      let(:params) { { address: [] } }

      it { is_expected.to contain_file(dropin).without_content(%r{--address}) }
    end
  end

  context 'with an unmanaged service' do
    let(:params) { { manage_service: false } }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.not_to contain_service('cloudd') }
    it { is_expected.not_to contain_service('libvirtd') }
  end

  # every validation failure names the parameter
  {
    'install => source without source_dir' => [{ install: 'source' }, %r{source_dir}],
    'package_source with install => none' => [{ install: 'none', package_source: '/x.deb' }, %r{package_source}],
    'a relative package_source' => [{ package_source: 'x.deb' }, %r{package_source}],
    'a path with a space' => [{ state_dir: '/var/lib/my cloud' }, %r{state_dir}],
    'a private key without its public key' => [{ ssh_private_key: :key }, %r{ssh_public_key}],
    'an RSA public key' => [{ ssh_private_key: :key, ssh_public_key: 'ssh-rsa AAAAB3Nza x@y' }, %r{ssh_public_key}],
    'a short secret' => [{ secrets: { 'myweb' => :short } }, %r{Cloud::Secret\[myweb\]: the secret has fewer than 16 characters}],
    'a secret not Sensitive' => [{ secrets: { 'myweb' => '0123456789abcdef0123' } }, %r{secrets}],
    'a bad cloud name in secrets' => [{ secrets: { 'my web' => :long } }, %r{secrets}],
    'port 0' => [{ peer_port: 0 }, %r{peer_port}],
    'fence_ms 0' => [{ fence_ms: 0 }, %r{fence_ms}],
    'a negative destroy_ms' => [{ destroy_ms: -1 }, %r{destroy_ms}],
    'an address with a space' => [{ address: '10.0.0.70 --debug' }, %r{address}],
    'a bad metrics listen address' => [{ metrics: 'http://0.0.0.0:9464' }, %r{metrics}],
    'an unknown service provider' => [{ service_provider: 'sysv' }, %r{service_provider}],
    'an extra argument with a shell character' => [{ extra_args: ['--debug; rm -rf /'] }, %r{extra_args}],
  }.each do |what, (given, message)|
    context "with #{what}" do
      let(:params) do
        given.transform_values do |v|
          case v
          when :key then sensitive(key)
          when :short then sensitive('tooshort')
          when :long then sensitive('0123456789abcdef0123')
          when Hash then v.transform_values { |x| { short: sensitive('tooshort'), long: sensitive('0123456789abcdef0123') }.fetch(x, x) }
          else v
          end
        end
      end

      it { is_expected.to compile.and_raise_error(message) }
    end
  end
end
