# frozen_string_literal: true

require 'spec_helper'

# The torque type: its roles and batch parameter (the common attributes are covered by web_spec).
describe Puppet::Type.type(:torque) do
  def torque(overrides = {})
    described_class.new({
      title: 'mytorque',
      ensure: 'running',
      head: ['10.0.0.10', '/var/lib/cloud/images/head.qcow2'],
      compute: [fixture('compute-ips.txt'), fixture('compute-imgs.txt')],
      vm_domain: fixture('template.xml'),
      pool: ['127.0.0.1'],
    }.merge(overrides).compact)
  end

  it 'has head and compute as parameters and ensure as its only property' do
    expect(described_class.validproperties).to eq([:ensure])
    expect(described_class.parameters).to include(:head, :compute, :batch)
  end

  it 'defaults batch to slurm and accepts torque' do
    expect(torque[:batch]).to eq('slurm')
    expect(torque(batch: 'torque')[:batch]).to eq('torque')
  end

  it "accepts the seed's init-torque2.pp shapes" do
    r = torque(head: ['10.0.0.73', '/var/tmp/lucid-tor1.img'], pool: ['10.0.0.70'], vm_mem: '1048576',
               vm_ncpu: '1', vm_domain: fixture('template-seed.xml'))
    expect(r[:head]).to eq(['10.0.0.73', '/var/tmp/lucid-tor1.img'])
  end

  it 'accepts a stop manifest with only pool and ensure => stopped' do
    expect(described_class.new(title: 'mytorque', pool: ['10.0.0.70'], ensure: 'stopped')[:ensure]).to eq(:stopped)
  end

  it 'rejects another batch system' do
    expect { torque(batch: 'pbspro') }.to raise_error(
      Puppet::ResourceError, 'Parameter batch failed on Torque[mytorque]: Invalid value "pbspro". Valid values are slurm, torque.'
    )
  end

  it 'requires head and compute for ensure => running' do
    expect { torque(compute: nil) }.to raise_error(
      Puppet::ResourceError,
      'Validation of Torque[mytorque] failed: compute: is required for ensure => running (compute => [ips_file, images_file])',
    )
  end

  it 'rejects a head given as files and compute given as one node' do
    expect { torque(head: [fixture('compute-ips.txt'), fixture('compute-imgs.txt')]) }.to raise_error(
      Puppet::ResourceError, /\AParameter head failed on Torque\[mytorque\]: '.*compute-ips.txt' is not an IP address\z/
    )
    expect { torque(compute: ['10.0.0.11', '/var/lib/cloud/images/compute.qcow2']) }.to raise_error(
      Puppet::ResourceError, /Parameter compute failed on Torque\[mytorque\]: expects \[ips_file, images_file\], got an IP address '10.0.0.11'/
    )
  end

  it 'names the compute file line of a bad address' do
    path = fixture('ips-bad-line3.txt')
    expect { torque(compute: [path, fixture('compute-imgs.txt')]) }.to raise_error(
      Puppet::ResourceError, "Validation of Torque[mytorque] failed: compute: line 3 of #{path}: '10.0.0.300' is not an IP address"
    )
  end

  it 'takes health for head and compute, and refuses another role' do
    spec = PuppetX::Cloud::Spec.build(torque(health: { 'compute' => { 'interval' => 30 } }))
    expect(spec['roles'].map { |r| r['health'] }).to eq([nil, { 'interval_ms' => 30_000 }])
    expect { torque(health: { 'server' => { 'interval' => 30 } }) }.to raise_error(
      Puppet::ResourceError,
      "Validation of Torque[mytorque] failed: health: names server, not a role (head, compute; or 'default' for every role)",
    )
  end

  it 'puts batch in the spec options' do
    expect(PuppetX::Cloud::Spec.build(torque(batch: 'torque'))['options']).to eq('batch' => 'torque')
  end
end
