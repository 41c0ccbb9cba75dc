# frozen_string_literal: true

require 'spec_helper'
require 'tmpdir'
require 'puppet_x/cloud/spec'

# The spec builder: the Hash of doc/INTERNALS.md section 1 that providers hand to Cloud.new.
describe PuppetX::Cloud::Spec do
  let(:web_type) { Puppet::Type.type(:web) }

  def web(overrides = {})
    web_type.new(web_attrs(overrides))
  end

  def slot_summary(spec)
    spec['slots'].map { |s| [s['name'], s['roles'], s['index'], s['ip']] }
  end

  describe 'a web cloud' do
    subject(:spec) { described_class.build(web(starting_mac_address: '52:54:00:01:00:00', secret_file: '/etc/cloud/secret')) }

    it 'has every key of the contract, with string keys and JSON values' do
      expect(spec.keys).to eq(['name', 'type', 'ensure', 'pool', 'hypervisor', 'template', 'template_path', 'vm_mem',
                               'vm_ncpu', 'mac_start', 'disk_pool', 'disk_pool_path', 'image_format', 'ssh_key',
                               'secret_file', 'peer_port', 'roles', 'slots', 'options'])
      expect(JSON.parse(JSON.generate(spec))).to eq(spec)
    end

    it 'carries the attributes' do
      expect(spec).to include(
        'name' => 'myweb', 'type' => 'web', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
        'hypervisor' => 'test:///default', 'template_path' => fixture('template.xml'),
        'vm_mem' => 1_048_576, 'vm_ncpu' => 1, 'mac_start' => '52:54:00:01:00:00', 'disk_pool' => 'cloud',
        'disk_pool_path' => '/var/lib/libvirt/images/cloud', 'image_format' => 'qcow2',
        'ssh_key' => '/etc/cloud/ssh/id_ed25519', 'secret_file' => '/etc/cloud/secret', 'options' => {}
      )
    end

    it 'inlines the template text' do
      expect(spec['template']).to eq(File.read(fixture('template.xml')))
    end

    it 'orders the roles database, server, balancer' do
      expect(spec['roles']).to eq([
                                    { 'name' => 'database', 'after' => [] },
                                    { 'name' => 'server', 'after' => ['database'] },
                                    { 'name' => 'balancer', 'after' => ['server'] },
                                  ])
    end

    it 'has one slot per VM, named <cloud>-<role>-<index>, in dependency order' do
      expect(spec['slots']).to eq([
                                    { 'name' => 'myweb-database-0', 'roles' => ['database'], 'services' => ['database'],
                                      'index' => 0, 'ip' => '10.0.0.3', 'image' => '/var/lib/cloud/images/web-db.qcow2' },
                                    { 'name' => 'myweb-server-0', 'roles' => ['server'], 'services' => ['server'],
                                      'index' => 0, 'ip' => '10.0.0.5', 'image' => '/var/lib/cloud/images/web-server.qcow2' },
                                    { 'name' => 'myweb-server-1', 'roles' => ['server'], 'services' => ['server'],
                                      'index' => 1, 'ip' => '10.0.0.6', 'image' => '/var/lib/cloud/images/web-server.qcow2' },
                                    { 'name' => 'myweb-balancer-0', 'roles' => ['balancer'], 'services' => ['balancer'],
                                      'index' => 0, 'ip' => '10.0.0.2', 'image' => '/var/lib/cloud/images/web-lb.qcow2' },
                                  ])
    end

    it 'never carries a secret' do
      r = web(secret: 'a-very-long-cloud-secret', pm_password: 'pm-secret-123')
      expect(JSON.generate(described_class.build(r))).not_to include('a-very-long-cloud-secret', 'pm-secret-123')
    end
  end

  describe 'health' do
    it 'puts no health in the roles when none is given, nor for an empty one' do
      expect(described_class.build(web)['roles'].map(&:keys).uniq).to eq([['name', 'after']])
      expect(described_class.build(web(health: { 'server' => {} }))['roles'].map(&:keys).uniq).to eq([['name', 'after']])
    end

    it 'gives each role the keys given for it, in milliseconds, merged over default, in a fixed order' do
      health = { 'server' => { 'backoff_max' => 30, 'interval' => 2, 'timeout' => 1, 'retries' => 1, 'max_restarts' => 5,
                               'window' => 600, 'backoff' => 0.25 },
                 'default' => { 'interval' => 10, 'retries' => 3 },
                 'balancer' => { 'timeout' => 0.5 } }
      spec = described_class.build(web(health: health))
      expect(spec['roles']).to eq([
                                    { 'name' => 'database', 'after' => [], 'health' => { 'interval_ms' => 10_000, 'retries' => 3 } },
                                    { 'name' => 'server', 'after' => ['database'],
                                      'health' => { 'interval_ms' => 2000, 'timeout_ms' => 1000, 'retries' => 1, 'max_restarts' => 5,
                                                    'window_ms' => 600_000, 'backoff_ms' => 250, 'backoff_max_ms' => 30_000 } },
                                    { 'name' => 'balancer', 'after' => ['server'],
                                      'health' => { 'interval_ms' => 10_000, 'timeout_ms' => 500, 'retries' => 3 } },
                                  ])
      expect(spec['roles'][1]['health'].keys).to eq(['interval_ms', 'timeout_ms', 'retries', 'max_restarts', 'window_ms',
                                                     'backoff_ms', 'backoff_max_ms'])
      expect(JSON.parse(JSON.generate(spec))).to eq(spec)
    end

    it 'goes with the steps of the recipes' do
      Dir.mktmpdir('recipes') do |dir|
        FileUtils.mkdir_p(File.join(dir, 'server'))
        File.write(File.join(dir, 'server', 'check.sh'), "true\n")
        role = described_class.build(web(recipes: dir, health: { 'server' => { 'retries' => 2 } }))['roles'][1]
        expect(role).to eq('name' => 'server', 'after' => ['database'], 'steps' => { 'check' => "true\n" },
                           'health' => { 'retries' => 2 })
      end
    end

    it 'names the resource when a key of health is not a role' do
      resource = web
      resource[:health] = { 'cache' => { 'retries' => 2 } }
      expect { described_class.build(resource) }.to raise_error(
        Puppet::Error, "Web[myweb]: health: names cache, not a role (balancer, server, database; or 'default' for every role)"
      )
    end
  end

  it 'merges an IP listed in two roles into one slot holding both' do
    ips = temp_file('ips', "10.0.0.3\n10.0.0.7\n")
    imgs = temp_file('imgs', "/var/lib/cloud/images/web-db.qcow2\n/var/lib/cloud/images/web-server.qcow2\n")
    spec = described_class.build(web(server: [ips, imgs]))
    expect(slot_summary(spec)).to eq([
                                       ['myweb-server-0', ['server', 'database'], 0, '10.0.0.3'],
                                       ['myweb-server-1', ['server'], 1, '10.0.0.7'],
                                       ['myweb-balancer-0', ['balancer'], 0, '10.0.0.2'],
                                     ])
    expect(spec['slots'][0]['services']).to eq(['server', 'database'])
  end

  it 'normalises IPv6 addresses of the lists' do
    spec = described_class.build(web(server: [fixture('ips-v6.txt'), fixture('server-imgs.txt')]))
    expect(spec['slots'].map { |s| s['ip'] }).to eq(['10.0.0.3', '2001:db8::5', '2001:db8::6', '10.0.0.2'])
  end

  it "rewrites the seed's ERB placeholders as {{...}}" do
    template = described_class.build(web(vm_domain: fixture('template-seed.xml')))['template']
    expect(template).to include('<name>{{name}}</name>', '<memory>{{memory}}</memory>', '<vcpu>{{vcpus}}</vcpu>',
                                "<source file='{{disk}}'/>", '<mac address="{{mac}}"/>', '<uuid>{{uuid}}</uuid>')
    expect(template).not_to include('<%')
  end

  it 'reads the files again when it builds, so the provider sees what the catalog wrote' do
    ips = temp_file('ips', "10.0.0.5\n")
    imgs = temp_file('imgs', "/var/lib/cloud/images/web-server.qcow2\n")
    resource = web(server: [ips, imgs])
    File.write(ips, "10.0.0.9\n")
    expect(described_class.build(resource)['slots'].map { |s| s['ip'] }).to include('10.0.0.9')
  end

  it 'names the resource in its own errors (the provider calls it after validation)' do
    dir = Dir.mktmpdir('cloud-spec')
    ips = File.join(dir, 'ips')
    catalog = Puppet::Resource::Catalog.new('node', Puppet.lookup(:current_environment))
    catalog.add_resource(Puppet::Type.type(:file).new(path: ips, ensure: 'file'))
    resource = web(server: [ips, fixture('server-imgs.txt')], catalog: catalog)
    expect { described_class.build(resource) }.to raise_error(Puppet::Error, "Web[myweb]: server: #{ips} does not exist")
    File.write(ips, "10.0.0.5\n10.0.0.300\n")
    expect { described_class.build(resource) }.to raise_error(
      Puppet::Error, "Web[myweb]: server: line 2 of #{ips}: '10.0.0.300' is not an IP address"
    )
  ensure
    FileUtils.rm_rf(dir)
  end

  it 'builds a stop spec with no template, roles or slots' do
    spec = described_class.build(web_type.new(title: 'myweb', pool: ['10.0.0.70', '10.0.0.71'], ensure: 'stopped'))
    expect(spec).to include('ensure' => 'stopped', 'pool' => ['10.0.0.70', '10.0.0.71'], 'template' => nil,
                            'template_path' => nil, 'roles' => [], 'slots' => [])
  end

  describe 'torque' do
    it 'sets up the head before the compute nodes' do
      spec = described_class.build(Puppet::Type.type(:torque).new(
                                     title: 'mytorque', ensure: 'running', pool: ['127.0.0.1'], vm_domain: fixture('template.xml'),
                                     head: ['10.0.0.10', '/var/lib/cloud/images/head.qcow2'],
                                     compute: [fixture('compute-ips.txt'), fixture('compute-imgs.txt')]
                                   ))
      expect(spec['roles']).to eq([{ 'name' => 'head', 'after' => [] }, { 'name' => 'compute', 'after' => ['head'] }])
      expect(slot_summary(spec)).to eq([
                                         ['mytorque-head-0', ['head'], 0, '10.0.0.10'],
                                         ['mytorque-compute-0', ['compute'], 0, '10.0.0.11'],
                                         ['mytorque-compute-1', ['compute'], 1, '10.0.0.12'],
                                       ])
    end
  end

  describe 'appscale' do
    let(:image) { '/var/lib/cloud/images/appscale.qcow2' }

    def appscale(roles)
      Puppet::Type.type(:appscale).new({ title: 'myappscale', ensure: 'running', pool: ['127.0.0.1'],
                                         vm_domain: fixture('template.xml') }.merge(roles))
    end

    it 'expands the composite roles of the default deployment into services' do
      spec = described_class.build(appscale(controller: ['10.0.0.20', image],
                                            servers: [fixture('servers-ips.txt'), fixture('two-imgs-appscale.txt')]))
      expect(spec['roles']).to eq([{ 'name' => 'controller', 'after' => [] }, { 'name' => 'servers', 'after' => ['controller'] }])
      expect(spec['slots'].map { |s| [s['name'], s['services']] }).to eq([
                                                                          ['myappscale-controller-0', ['shadow', 'load_balancer', 'database', 'login', 'zookeeper']],
                                                                          ['myappscale-servers-0', ['appengine', 'database', 'load_balancer']],
                                                                          ['myappscale-servers-1', ['appengine', 'database', 'load_balancer']],
                                                                        ])
      expect(spec['options']).to eq('deployment' => 'default', 'app_email' => nil)
    end

    it 'puts the seed layout of a custom deployment (master, login, appengine, database on one VM) in one slot' do
      spec = described_class.build(appscale(
                                     master: ['10.0.0.30', image], login: ['10.0.0.30', image],
                                     appengine: [fixture('one-ip-30.txt'), fixture('one-img-appscale.txt')],
                                     database: [fixture('one-ip-30.txt'), fixture('one-img-appscale.txt')],
                                     open: [fixture('open-ips.txt'), fixture('two-imgs-appscale.txt')],
                                     zookeeper: [fixture('zk-ips.txt'), fixture('one-img-appscale.txt')]
                                   ))
      expect(spec['roles'].first).to eq('name' => 'master', 'after' => [])
      expect(spec['roles'].drop(1).map { |r| r['after'] }.uniq).to eq([['master']])
      expect(spec['roles'].map { |r| r['name'] }).to contain_exactly('master', 'zookeeper', 'database', 'login', 'appengine', 'open')
      expect(slot_summary(spec)).to eq([
                                         ['myappscale-master-0', ['master', 'appengine', 'database', 'login'], 0, '10.0.0.30'],
                                         ['myappscale-zookeeper-0', ['zookeeper'], 0, '10.0.0.40'],
                                         ['myappscale-open-0', ['open'], 0, '10.0.0.31'],
                                         ['myappscale-open-1', ['open'], 1, '10.0.0.32'],
                                       ])
      expect(spec['slots'][0]['services']).to eq(['shadow', 'load_balancer', 'zookeeper', 'appengine', 'database', 'login'])
      expect(spec['options']['deployment']).to eq('custom')
    end
  end

  describe 'the generic type' do
    def cloud(extra = {})
      Puppet::Type.type(:cloud).new({
        title: 'mycluster', ensure: 'running', pool: ['127.0.0.1'], vm_domain: fixture('template.xml'),
        roles: { 'worker' => [fixture('compute-ips.txt'), fixture('compute-imgs.txt')],
                 'store' => ['10.0.0.30', '/var/lib/cloud/images/store.qcow2'] }
      }.merge(extra))
    end

    it 'chains the roles in hash order by default' do
      spec = described_class.build(cloud)
      expect(spec['roles']).to eq([{ 'name' => 'worker', 'after' => [] }, { 'name' => 'store', 'after' => ['worker'] }])
      expect(spec['slots'].map { |s| s['name'] }).to eq(['mycluster-worker-0', 'mycluster-worker-1', 'mycluster-store-0'])
    end

    it 'follows role_order' do
      spec = described_class.build(cloud(role_order: ['store', 'worker']))
      expect(spec['roles']).to eq([{ 'name' => 'store', 'after' => [] }, { 'name' => 'worker', 'after' => ['store'] }])
      expect(spec['slots'].map { |s| s['name'] }).to eq(['mycluster-store-0', 'mycluster-worker-0', 'mycluster-worker-1'])
      expect(spec['slots'].map { |s| s['services'] }).to eq([['store'], ['worker'], ['worker']])
    end
  end
end
