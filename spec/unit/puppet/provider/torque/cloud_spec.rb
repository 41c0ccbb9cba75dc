# frozen_string_literal: true

require 'spec_helper'

describe Puppet::Type.type(:torque).provider(:cloud) do
  let(:resource) do
    Puppet::Type.type(:torque).new(title: 'mytorque', ensure: 'running', provider: :cloud, pool: ['127.0.0.1'],
                                   head: ['10.0.0.10', '/var/lib/cloud/images/head.qcow2'],
                                   compute: [fixture('compute-ips.txt'), fixture('compute-imgs.txt')],
                                   vm_domain: fixture('template.xml'))
  end

  it_behaves_like 'a cloud provider', :torque
end
