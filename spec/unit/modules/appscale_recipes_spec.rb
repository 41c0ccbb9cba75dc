# frozen_string_literal: true

require 'spec_helper'
require 'tmpdir'
require 'open3'
require 'yaml'

# The AppScale recipe's setup writes the AppScalefile of the placement. AppScale itself cannot
# be installed here (Debian does not package it), so this is what is tested of the recipe: the
# file, from the facts the leader gives the guest, for both deployments.
describe 'modules/appscale/files/roles/*/setup.sh' do
  def run_setup(role, facts)
    Dir.mktmpdir('appscale-recipe') do |dir|
      File.write(File.join(dir, 'cloud.key'), 'k' * 64)
      env = facts.merge('CLOUD_DIR' => dir, 'CLOUD_NAME' => 'as1', 'CLOUD_ROLE' => role)
      roles = File.join(REPO_ROOT, 'modules/appscale/files/roles')
      # a step as the spec carries it: the recipes' common.sh, then the step
      script = "#{File.read(File.join(roles, 'common.sh'))}\n#{File.read(File.join(roles, role, 'setup.sh'))}"
      out, status = Open3.capture2e(env, 'sh', '-e', '-c', script, unsetenv_others: false)
      expect(status).to be_success, out
      file = File.join(dir, 'AppScalefile')
      expect(File.stat(file).mode & 0o777).to eq(0o600)
      return YAML.safe_load(File.read(file))
    end
  end

  it 'lays out a default deployment: the controller and the servers' do
    doc = run_setup('controller', 'CLOUD_IPS_CONTROLLER' => '10.0.0.2', 'CLOUD_IPS_SERVERS' => '10.0.0.3 10.0.0.4',
                                  'CLOUD_OPT_APP_EMAIL' => 'admin@example.com')
    expect(doc['ips_layout']).to eq('controller' => '10.0.0.2', 'servers' => ['10.0.0.3', '10.0.0.4'])
    expect(doc['admin_user']).to eq('admin@example.com')
    expect(doc['admin_pass']).to match(/\A\h{24}\z/)
    expect(doc['keyname']).to eq('as1')
  end

  it 'lays out a custom deployment, leaving out the roles not declared' do
    doc = run_setup('master', 'CLOUD_IPS_MASTER' => '10.0.0.2', 'CLOUD_IPS_APPENGINE' => '10.0.0.3 10.0.0.2',
                              'CLOUD_IPS_DATABASE' => '10.0.0.2', 'CLOUD_IPS_LOGIN' => '10.0.0.2',
                              'CLOUD_IPS_OPEN' => '10.0.0.5')
    expect(doc['ips_layout']).to eq('master' => '10.0.0.2', 'appengine' => ['10.0.0.3', '10.0.0.2'],
                                    'database' => ['10.0.0.2'], 'open' => ['10.0.0.5'], 'login' => '10.0.0.2')
    expect(doc).not_to have_key('admin_user')
  end

  it 'derives the same admin password from the same guest key, never from the facts' do
    a = run_setup('controller', 'CLOUD_IPS_CONTROLLER' => '10.0.0.2')
    b = run_setup('master', 'CLOUD_IPS_MASTER' => '10.0.0.9')
    expect(a['admin_pass']).to eq(b['admin_pass'])
  end
end
