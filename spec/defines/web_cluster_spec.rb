# frozen_string_literal: true

require 'spec_helper'

describe 'web::cluster' do
  let(:title) { 'myweb' }
  let(:params) do
    {
      balancer: ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
      database: ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
      server_ips: ['10.0.0.5', '10.0.0.6'],
      server_images: ['/var/lib/cloud/images/web-a.qcow2', '/var/lib/cloud/images/web-b.qcow2'],
      pool: ['10.0.0.70', '10.0.0.71'],
    }
  end
  let(:ips) { '/etc/cloud/myweb/server-ips.txt' }
  let(:imgs) { '/etc/cloud/myweb/server-imgs.txt' }

  it { is_expected.to compile.with_all_deps }
  it { is_expected.to contain_class('cloud') }
  it { is_expected.to contain_file('/etc/cloud/myweb').with_ensure('directory').that_requires('File[/etc/cloud]') }

  it 'writes the server lists, one entry a line, in the given order' do
    header = "# Managed by Puppet (Web::Cluster[myweb]): one entry a line.\n"
    is_expected.to contain_file(ips).with_content("#{header}10.0.0.5\n10.0.0.6\n")
    is_expected.to contain_file(imgs).with_content("#{header}/var/lib/cloud/images/web-a.qcow2\n/var/lib/cloud/images/web-b.qcow2\n")
  end

  it 'declares the web resource reading them, after they are written' do
    is_expected.to contain_web('myweb').with(
      ensure: 'running',
      balancer: ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
      database: ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
      server: [ips, imgs],
      vm_domain: 'puppet:///modules/web/template-test.xml',
      pool: ['10.0.0.70', '10.0.0.71'],
      hypervisor: 'test:///default',
    ).that_requires(["File[#{ips}]", "File[#{imgs}]"])
  end

  context 'with dir, ensure => stopped and other web attributes' do
    let(:params) { super().merge(dir: '/srv/cloud/web1', ensure: 'stopped', options: { 'vm_mem' => 2_097_152, 'vm_ncpu' => 2 }) }

    it { is_expected.to contain_file('/srv/cloud/web1/server-ips.txt') }
    it { is_expected.to contain_web('myweb').with(ensure: 'stopped', vm_mem: 2_097_152, vm_ncpu: 2, server: ['/srv/cloud/web1/server-ips.txt', '/srv/cloud/web1/server-imgs.txt']) }
  end

  context 'with lists of different lengths' do
    let(:params) { super().merge(server_images: ['/var/lib/cloud/images/web-a.qcow2']) }

    it { is_expected.to compile.and_raise_error(%r{Web::Cluster\[myweb\]: server_ips has 2 entries but server_images has 1}) }
  end

  context 'with a bad server address' do
    let(:params) { super().merge(server_ips: ['10.0.0.5', '10.0.0.300']) }

    # The list is only written when the catalog is applied: its entries are checked then (the
    # provider builds the spec after the file resources ran).
    it { is_expected.to contain_file(ips).with_content(%r{^10\.0\.0\.300$}) }
  end

  context 'with a balancer address that the web type rejects' do
    let(:params) { super().merge(balancer: ['10.0.0.300', '/var/lib/cloud/images/web-lb.qcow2']) }

    it { is_expected.to compile.and_raise_error(%r{Parameter balancer failed on Web\[myweb\]: '10.0.0.300' is not an IP address}) }
  end

  context 'with a template the file server does not have' do
    let(:params) { super().merge(vm_domain: 'puppet:///modules/web/missing.xml') }

    it { is_expected.to compile.and_raise_error(%r{vm_domain: puppet:///modules/web/missing.xml was not found by the file server}) }
  end
end
