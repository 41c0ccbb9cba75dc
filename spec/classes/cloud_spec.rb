# frozen_string_literal: true

require 'spec_helper'

describe 'cloud' do
  it { is_expected.to compile.with_all_deps }
  it { is_expected.to contain_file('/etc/cloud').with(ensure: 'directory', mode: '0755') }
  it { is_expected.to contain_file('/etc/cloud/ssh').with(ensure: 'directory', mode: '0700') }

  context 'with confdir' do
    let(:params) { { confdir: '/srv/cloud' } }

    it { is_expected.to contain_file('/srv/cloud/ssh') }
  end

  context 'with a relative confdir' do
    let(:params) { { confdir: 'cloud' } }

    it { is_expected.to compile.and_raise_error(%r{confdir}) }
  end

  context 'next to a resource of the generic type cloud' do
    let(:pre_condition) do
      "cloud { 'mycluster': ensure => stopped, pool => ['10.0.0.70'] }"
    end

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_cloud('mycluster').with_ensure('stopped') }
  end
end
