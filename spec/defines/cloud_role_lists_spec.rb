# frozen_string_literal: true

require 'spec_helper'

describe 'cloud::role_lists' do
  let(:title) { '/srv/lists/worker' }
  let(:params) do
    {
      ips: ['10.0.0.31', '10.0.0.32'],
      images: ['/var/lib/cloud/images/worker-a.qcow2', '/var/lib/cloud/images/worker-b.qcow2'],
      dir: '/srv/lists',
      role: 'worker',
      managed_by: 'Profile::Mycluster',
    }
  end
  let(:ips) { '/srv/lists/worker-ips.txt' }
  let(:imgs) { '/srv/lists/worker-imgs.txt' }
  let(:header) { "# Managed by Puppet (Profile::Mycluster): one entry a line.\n" }

  it { is_expected.to compile.with_all_deps }

  it 'writes <role>-ips.txt and <role>-imgs.txt: a header, then one entry a line, in the given order' do
    is_expected.to contain_file(ips).with(ensure: 'file', mode: '0644', content: "#{header}10.0.0.31\n10.0.0.32\n")
    is_expected.to contain_file(imgs).with(
      ensure: 'file', mode: '0644',
      content: "#{header}/var/lib/cloud/images/worker-a.qcow2\n/var/lib/cloud/images/worker-b.qcow2\n",
    )
  end

  it 'leaves the directory to the caller' do
    is_expected.not_to contain_file('/srv/lists')
    is_expected.to have_file_resource_count(2)
  end

  context 'with the directory declared by the caller' do
    let(:pre_condition) { "file { '/srv/lists': ensure => directory }" }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_file(ips).that_requires('File[/srv/lists]') }
    it { is_expected.to contain_file(imgs).that_requires('File[/srv/lists]') }
  end

  context 'next to the lists of another role in the same directory' do
    let(:pre_condition) do
      "cloud::role_lists { '/srv/lists/store': ips => ['10.0.0.30'], images => ['/img/store.qcow2'], dir => '/srv/lists', role => 'store' }"
    end

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_file('/srv/lists/store-ips.txt').with_content(%r{\n10\.0\.0\.30\n\z}) }
  end

  context 'without managed_by' do
    let(:params) { super().reject { |k, _| k == :managed_by } }

    it { is_expected.to contain_file(ips).with_content(%r{\A# Managed by Puppet \(Cloud::Role_lists\[/srv/lists/worker\]\): one entry a line\.\n10\.0\.0\.31\n}) }
  end

  context 'with lists of different lengths' do
    let(:params) { super().merge(images: ['/var/lib/cloud/images/worker-a.qcow2']) }

    it { is_expected.to compile.and_raise_error(%r{Cloud::Role_lists\[/srv/lists/worker\]: ips has 2 entries but images has 1}) }
  end

  context 'with empty lists' do
    let(:params) { super().merge(ips: [], images: []) }

    it { is_expected.to compile.and_raise_error(%r{ips}) }
  end

  context 'with a relative directory' do
    let(:params) { super().merge(dir: 'lists') }

    it { is_expected.to compile.and_raise_error(%r{dir}) }
  end

  context 'with a role name that is not one' do
    let(:params) { super().merge(role: 'Worker/1') }

    it { is_expected.to compile.and_raise_error(%r{role}) }
  end
end
