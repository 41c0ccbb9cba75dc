# frozen_string_literal: true

require 'spec_helper'

describe Puppet::Type.type(:appscale).provider(:cloud) do
  let(:resource) do
    Puppet::Type.type(:appscale).new(title: 'myappscale', ensure: 'running', provider: :cloud, pool: ['127.0.0.1'],
                                     controller: ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'],
                                     servers: [fixture('servers-ips.txt'), fixture('two-imgs-appscale.txt')],
                                     app_password: 'appscale-secret', vm_domain: fixture('template.xml'))
  end

  it_behaves_like 'a cloud provider', :appscale

  it 'never hands the AppScale password to Cloud' do
    stub_const('Cloud', FakeCloud)
    allow(Puppet.features).to receive(:cloud_ext?).and_return(true)
    expect(Cloud).to receive(:new) { |spec, *rest|
      expect(JSON.generate([spec, rest])).not_to include('appscale-secret')
      instance_double(FakeCloud, close: nil, status: { 'state' => 'stopped', 'slots' => [] }, plan: [])
    }
    expect(resource.provider.ensure).to eq(:stopped)
  end
end
