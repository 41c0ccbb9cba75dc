# frozen_string_literal: true

require 'spec_helper'

describe 'appscale::cluster' do
  let(:title) { 'myappscale' }
  let(:params) do
    {
      controller: ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'],
      server_ips: ['10.0.0.21', '10.0.0.22'],
      server_images: ['/var/lib/cloud/images/appscale.qcow2'] * 2,
      pool: ['10.0.0.70'],
      app_email: 'admin@example.com',
      app_password: sensitive('appscale-secret'),
    }
  end
  let(:ips) { '/etc/cloud/myappscale/servers-ips.txt' }
  let(:imgs) { '/etc/cloud/myappscale/servers-imgs.txt' }

  it { is_expected.to compile.with_all_deps }
  it { is_expected.to contain_file(ips).with_content(%r{\n10\.0\.0\.21\n10\.0\.0\.22\n\z}) }

  it 'declares a default deployment, after the lists' do
    is_expected.to contain_appscale('myappscale').with(
      ensure: 'running', controller: ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'], servers: [ips, imgs],
      app_email: 'admin@example.com', vm_domain: 'puppet:///modules/appscale/template-test.xml',
    ).that_requires(["File[#{ips}]", "File[#{imgs}]"])
  end

  it 'passes the password on as Sensitive' do
    is_expected.to contain_appscale('myappscale').with_app_password(sensitive('appscale-secret'))
  end

  context 'without an AppScale account' do
    let(:params) { super().reject { |k, _| [:app_email, :app_password].include?(k) } }

    it { is_expected.to compile.with_all_deps }
  end

  context 'with a password given in clear' do
    let(:params) { super().merge(app_password: 'appscale-secret') }

    it { is_expected.to compile.and_raise_error(%r{app_password}) }
  end
end
