# frozen_string_literal: true

require 'spec_helper'

describe 'torque::cluster' do
  let(:title) { 'mytorque' }
  let(:params) do
    {
      head: ['10.0.0.10', '/var/lib/cloud/images/torque-head.qcow2'],
      compute_ips: ['10.0.0.11', '10.0.0.12', '10.0.0.13'],
      compute_images: ['/var/lib/cloud/images/compute.qcow2'] * 3,
      pool: ['10.0.0.70'],
    }
  end
  let(:ips) { '/etc/cloud/mytorque/compute-ips.txt' }
  let(:imgs) { '/etc/cloud/mytorque/compute-imgs.txt' }

  it { is_expected.to compile.with_all_deps }
  it { is_expected.to contain_file(ips).with_content(%r{\A# Managed by Puppet \(Torque::Cluster\[mytorque\]\).*\n10\.0\.0\.11\n10\.0\.0\.12\n10\.0\.0\.13\n\z}) }
  it { is_expected.to contain_file(imgs).with_content(%r{\n(/var/lib/cloud/images/compute\.qcow2\n){3}\z}) }

  it 'declares the torque resource with SLURM by default, after the lists' do
    is_expected.to contain_torque('mytorque').with(
      ensure: 'running', head: ['10.0.0.10', '/var/lib/cloud/images/torque-head.qcow2'], compute: [ips, imgs],
      batch: 'slurm', vm_domain: 'puppet:///modules/torque/template-test.xml', pool: ['10.0.0.70'],
    ).that_requires(["File[#{ips}]", "File[#{imgs}]"])
  end

  context 'with batch => torque' do
    let(:params) { super().merge(batch: 'torque') }

    it { is_expected.to contain_torque('mytorque').with_batch('torque') }
  end

  context 'with another batch system' do
    let(:params) { super().merge(batch: 'pbspro') }

    it { is_expected.to compile.and_raise_error(%r{batch}) }
  end

  context 'with lists of different lengths' do
    let(:params) { super().merge(compute_images: ['/var/lib/cloud/images/compute.qcow2']) }

    it { is_expected.to compile.and_raise_error(%r{Torque::Cluster\[mytorque\]: compute_ips has 3 entries but compute_images has 1}) }
  end
end
