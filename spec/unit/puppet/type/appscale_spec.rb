# frozen_string_literal: true

require 'spec_helper'

# The appscale type: default and custom deployments, their completeness and the AppScale account.
describe Puppet::Type.type(:appscale) do
  let(:image) { '/var/lib/cloud/images/appscale.qcow2' }
  let(:default_deployment) do
    { controller: ['10.0.0.20', image], servers: [fixture('servers-ips.txt'), fixture('two-imgs-appscale.txt')] }
  end
  let(:custom_deployment) do
    {
      master: ['10.0.0.30', image], login: ['10.0.0.30', image],
      appengine: [fixture('one-ip-30.txt'), fixture('one-img-appscale.txt')],
      database: [fixture('one-ip-30.txt'), fixture('one-img-appscale.txt')],
      open: [fixture('open-ips.txt'), fixture('two-imgs-appscale.txt')]
    }
  end

  def appscale(roles, overrides = {})
    described_class.new({ title: 'myappscale', ensure: 'running', vm_domain: fixture('template.xml'), pool: ['127.0.0.1'] }
                          .merge(roles).merge(overrides).compact)
  end

  def failure(detail)
    "Validation of Appscale[myappscale] failed: #{detail}"
  end

  it 'has every role as a parameter' do
    expect(described_class.validproperties).to eq([:ensure])
    expect(described_class.parameters).to include(:controller, :servers, :master, :appengine, :database, :login, :open,
                                                  :zookeeper, :memcache, :app_email, :app_password)
  end

  it 'accepts the default deployment' do
    expect(appscale(default_deployment)[:controller]).to eq(['10.0.0.20', image])
  end

  it 'accepts a custom deployment, with or without zookeeper and memcache' do
    expect(appscale(custom_deployment)[:master]).to eq(['10.0.0.30', image])
    r = appscale(custom_deployment.merge(zookeeper: [fixture('zk-ips.txt'), fixture('one-img-appscale.txt')]))
    expect(r[:zookeeper]).not_to be_nil
  end

  it 'accepts a stop manifest with only pool and ensure => stopped' do
    expect(described_class.new(title: 'myappscale', pool: ['10.0.0.70'], ensure: 'stopped')[:ensure]).to eq(:stopped)
  end

  it "accepts the seed's ignored ip_file and img_file with a warning" do
    logs = capture_logs { appscale(default_deployment, ip_file: '/etc/puppet/ips.yaml', img_file: '/etc/puppet/imgs.yaml') }
    warnings = logs.select { |l| l.level == :warning }.map(&:message)
    expect(warnings).to include(a_string_starting_with('ip_file is ignored'), a_string_starting_with('img_file is ignored'))
  end

  it 'rejects a mix of default and custom roles' do
    expect { appscale(default_deployment.merge(master: ['10.0.0.30', image])) }.to raise_error(
      Puppet::ResourceError,
      failure('master: cannot be combined with controller and servers: use the default deployment (controller, servers) ' \
              'or a custom one (master, appengine, database, login, open; optionally zookeeper, memcache)'),
    )
  end

  it 'rejects an incomplete default deployment' do
    expect { appscale(controller: ['10.0.0.20', image]) }.to raise_error(
      Puppet::ResourceError, failure('servers: is required by the default deployment (controller, servers)')
    )
  end

  it 'rejects an incomplete custom deployment, naming what is missing' do
    expect { appscale(custom_deployment.merge(login: nil, open: nil)) }.to raise_error(
      Puppet::ResourceError, failure('login, open: are required by a custom deployment (master, appengine, database, login, open)')
    )
    expect { appscale(zookeeper: [fixture('zk-ips.txt'), fixture('one-img-appscale.txt')]) }.to raise_error(
      Puppet::ResourceError, failure('master, appengine, database, login, open: are required by a custom deployment ' \
                                     '(master, appengine, database, login, open)')
    )
  end

  it 'rejects ensure => running without any deployment' do
    expect { appscale({}) }.to raise_error(
      Puppet::ResourceError, failure('controller, servers: are required for ensure => running (the default deployment; ' \
                                     'or master, appengine, database, login and open for a custom one)')
    )
  end

  it "rejects the thesis' appengine => [ip, image] with a hint" do
    expect { appscale(custom_deployment.merge(appengine: ['10.0.0.73', image])) }.to raise_error(
      Puppet::ResourceError,
      "Parameter appengine failed on Appscale[myappscale]: expects [ips_file, images_file], got an IP address '10.0.0.73': " \
      'list the IP addresses in a file, one a line',
    )
  end

  it 'rejects one IP with different images in two roles' do
    expect { appscale(custom_deployment.merge(login: ['10.0.0.30', '/var/lib/cloud/images/other.qcow2'])) }.to raise_error(
      Puppet::ResourceError,
      failure("login: 10.0.0.30 is also the master VM 0 with image #{image}: one VM has one image, not /var/lib/cloud/images/other.qcow2"),
    )
  end

  it 'takes health for any role of either deployment, not for a service of a composite role' do
    spec = PuppetX::Cloud::Spec.build(appscale(default_deployment, health: { 'servers' => { 'retries' => 2 },
                                                                            'master' => { 'retries' => 3 } }))
    expect(spec['roles'].map { |r| [r['name'], r['health']] }).to eq([['controller', nil], ['servers', { 'retries' => 2 }]])
    expect { appscale(default_deployment, health: { 'shadow' => { 'retries' => 2 } }) }.to raise_error(
      Puppet::ResourceError,
      failure('health: names shadow, not a role (controller, servers, master, appengine, database, login, open, ' \
              "zookeeper, memcache; or 'default' for every role)"),
    )
  end

  it 'checks the AppScale account' do
    expect { appscale(default_deployment, app_email: 'admin') }.to raise_error(
      Puppet::ResourceError, "Parameter app_email failed on Appscale[myappscale]: 'admin' is not an e-mail address"
    )
    expect { appscale(default_deployment, app_password: 'abc') }.to raise_error(
      Puppet::ResourceError, 'Parameter app_password failed on Appscale[myappscale]: must be at least 6 characters long (value redacted)'
    )
  end

  it 'keeps app_password Sensitive and out of the spec' do
    r = appscale(default_deployment, app_email: 'admin@example.com', app_password: 'appscale-secret')
    expect(r[:app_password]).to be_a(Puppet::Pops::Types::PSensitiveType::Sensitive)
    spec = PuppetX::Cloud::Spec.build(r)
    expect(spec['options']).to eq('deployment' => 'default', 'app_email' => 'admin@example.com')
    expect(JSON.generate(spec)).not_to include('appscale-secret')
  end
end
