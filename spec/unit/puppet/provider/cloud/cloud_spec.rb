# frozen_string_literal: true

require 'spec_helper'

describe Puppet::Type.type(:cloud).provider(:cloud) do
  let(:resource) do
    Puppet::Type.type(:cloud).new(title: 'mycluster', ensure: 'running', provider: :cloud, pool: ['127.0.0.1'],
                                  roles: { 'store' => ['10.0.0.30', '/var/lib/cloud/images/store.qcow2'] },
                                  vm_domain: fixture('template.xml'))
  end

  it_behaves_like 'a cloud provider', :cloud
end
