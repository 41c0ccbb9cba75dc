# frozen_string_literal: true

require 'spec_helper'

# The generic distributed type: roles of your own in a hash, with an optional role_order.
describe Puppet::Type.type(:cloud) do
  let(:roles) do
    {
      'store' => ['10.0.0.30', '/var/lib/cloud/images/store.qcow2'],
      'worker' => [fixture('compute-ips.txt'), fixture('compute-imgs.txt')],
    }
  end

  def cloud(overrides = {})
    described_class.new({ title: 'mycluster', ensure: 'running', roles: roles, vm_domain: fixture('template.xml'),
                          pool: ['127.0.0.1'] }.merge(overrides).compact)
  end

  def parameter(name, detail)
    "Parameter #{name} failed on Cloud[mycluster]: #{detail}"
  end

  it 'tells single-node roles from multi-node roles by element 0' do
    shapes = described_class.cloud_layout.declared(cloud).map { |role| [role.name, role.shape] }
    expect(shapes).to eq([['store', :single], ['worker', :multi]])
  end

  it 'accepts a stop manifest with only pool and ensure => stopped' do
    expect(described_class.new(title: 'mycluster', pool: ['10.0.0.70'], ensure: 'stopped')[:ensure]).to eq(:stopped)
  end

  it 'requires roles for ensure => running' do
    expect { cloud(roles: nil) }.to raise_error(
      Puppet::ResourceError, 'Validation of Cloud[mycluster] failed: roles: is required for ensure => running'
    )
  end

  it 'rejects bad role names and values' do
    expect { cloud(roles: { 'Web' => ['10.0.0.30', '/img.qcow2'] }) }.to raise_error(
      Puppet::ResourceError, parameter(:roles, "role name 'Web' is not valid ([a-z][a-z0-9_]*, at most 32 characters)")
    )
    expect { cloud(roles: { 'web' => ['10.0.0.300', '/img.qcow2'] }) }.to raise_error(
      Puppet::ResourceError, parameter(:roles, "web: '10.0.0.300' is not an IP address")
    )
    expect { cloud(roles: { 'web' => ['web-ips.txt', '/imgs.txt'] }) }.to raise_error(
      Puppet::ResourceError, parameter(:roles, "web: ips file 'web-ips.txt' must be an absolute path or a puppet:/// URI")
    )
    expect { cloud(roles: ['10.0.0.30', '/img.qcow2']) }.to raise_error(
      Puppet::ResourceError, parameter(:roles, 'expects a Hash of role => [ip, image] or [ips_file, images_file], ' \
                                               'got ["10.0.0.30", "/img.qcow2"]')
    )
  end

  it 'names the role and the line of a bad list entry' do
    path = fixture('ips-bad-line3.txt')
    expect { cloud(roles: { 'worker' => [path, fixture('compute-imgs.txt')] }) }.to raise_error(
      Puppet::ResourceError, "Validation of Cloud[mycluster] failed: roles: worker: line 3 of #{path}: '10.0.0.300' is not an IP address"
    )
  end

  it 'checks the roles of health against the keys of roles' do
    spec = PuppetX::Cloud::Spec.build(cloud(health: { 'default' => { 'retries' => 0 }, 'store' => { 'timeout' => 2 } }))
    expect(spec['roles'].to_h { |r| [r['name'], r['health']] })
      .to eq('store' => { 'timeout_ms' => 2000, 'retries' => 0 }, 'worker' => { 'retries' => 0 })
    expect { cloud(health: { 'cache' => { 'retries' => 2 }, 'web' => {} }) }.to raise_error(
      Puppet::ResourceError,
      "Validation of Cloud[mycluster] failed: health: names cache, web, not a role (store, worker; or 'default' for every role)"
    )
  end

  it 'cannot check the roles of health in a stop manifest, which has no roles' do
    r = described_class.new(title: 'mycluster', pool: ['10.0.0.70'], ensure: 'stopped', health: { 'store' => { 'retries' => 2 } })
    expect(r[:health]).to eq('store' => { 'retries' => 2 })
  end

  it 'checks role_order against roles' do
    expect(cloud(role_order: ['worker', 'store'])[:role_order]).to eq(['worker', 'store'])
    expect { cloud(role_order: ['store']) }.to raise_error(
      Puppet::ResourceError, 'Validation of Cloud[mycluster] failed: role_order: does not list worker: list every role of roles'
    )
    expect { cloud(role_order: ['store', 'worker', 'cache']) }.to raise_error(
      Puppet::ResourceError, 'Validation of Cloud[mycluster] failed: role_order: names cache, not a key of roles (store, worker)'
    )
    expect { cloud(role_order: ['store', 'store']) }.to raise_error(Puppet::ResourceError, parameter(:role_order, 'lists store twice'))
    expect { cloud(role_order: ['Store']) }.to raise_error(Puppet::ResourceError, parameter(:role_order, "'Store' is not a role name"))
  end
end
