# frozen_string_literal: true

require 'spec_helper'
require 'tmpdir'
require 'puppet_x/cloud/spec'

# Role recipes: each role's setup/start/check/stop scripts travel in the spec ("steps").
describe 'PuppetX::Cloud::Spec role recipes' do
  def web(overrides = {})
    Puppet::Type.type(:web).new(web_attrs(overrides))
  end

  def steps_of(spec)
    spec['roles'].to_h { |r| [r['name'], (r['steps'] || {}).keys] }
  end

  it 'reads the web type\'s own recipes through Puppet\'s file serving' do
    spec = with_repo_modules { PuppetX::Cloud::Spec.build(web) }
    expect(steps_of(spec)).to eq('database' => ['setup', 'start', 'check', 'stop'],
                                 'server' => ['setup', 'start', 'check', 'stop'],
                                 'balancer' => ['setup', 'start', 'check', 'stop'])
    setup = spec['roles'].find { |r| r['name'] == 'balancer' }['steps']['setup']
    expect(setup).to eq(File.read(File.join(REPO_ROOT, 'modules/web/files/roles/balancer/setup.sh')))
  end

  it 'reads torque\'s SLURM or TORQUE recipes, as batch says' do
    attrs = { title: 'tq', ensure: 'running', head: ['10.0.0.2', '/var/lib/cloud/images/h.qcow2'],
              compute: [fixture('server-ips.txt'), fixture('server-imgs.txt')], vm_domain: fixture('template.xml'),
              pool: ['127.0.0.1'] }
    ['slurm', 'torque'].each do |batch|
      spec = with_repo_modules { PuppetX::Cloud::Spec.build(Puppet::Type.type(:torque).new(attrs.merge(batch: batch))) }
      expect(steps_of(spec)).to eq('head' => ['setup', 'start', 'check', 'stop'], 'compute' => ['setup', 'start', 'check', 'stop'])
      dir = File.join(REPO_ROOT, "modules/torque/files/roles/#{batch}")
      text = File.read(File.join(dir, 'head/setup.sh'))
      common = File.join(dir, 'common.sh')
      expect(spec['roles'].first['steps']['setup']).to eq(File.exist?(common) ? "#{File.read(common)}\n#{text}" : text)
    end
  end

  it 'puts the recipes\' common.sh before every step' do
    Dir.mktmpdir('recipes') do |dir|
      FileUtils.mkdir_p(File.join(dir, 'server'))
      File.write(File.join(dir, 'common.sh'), "hello() { echo hi; }\n")
      File.write(File.join(dir, 'server', 'start.sh'), "hello\n")
      spec = PuppetX::Cloud::Spec.build(web(recipes: dir))
      expect(spec['roles'].find { |r| r['name'] == 'server' }['steps']).to eq('start' => "hello() { echo hi; }\n\nhello\n")
      expect(steps_of(spec)['database']).to eq([])
    end
  end

  it 'reads a directory of the user\'s, a role without a file having no step' do
    Dir.mktmpdir('recipes') do |dir|
      FileUtils.mkdir_p(File.join(dir, 'server'))
      File.write(File.join(dir, 'server', 'start.sh'), "echo start\n")
      File.write(File.join(dir, 'server', 'check.sh'), "  \n") # blank: no step
      spec = PuppetX::Cloud::Spec.build(web(recipes: dir))
      expect(steps_of(spec)).to eq('database' => [], 'server' => ['start'], 'balancer' => [])
      expect(spec['roles'].find { |r| r['name'] == 'server' }['steps']).to eq('start' => "echo start\n")
    end
  end

  it 'carries no steps with recipes => none, or for a stop' do
    expect(steps_of(PuppetX::Cloud::Spec.build(web(recipes: 'none'))).values.flatten).to be_empty
    stopped = with_repo_modules { PuppetX::Cloud::Spec.build(web(ensure: 'stopped')) }
    expect(steps_of(stopped).values.flatten).to be_empty
  end

  it 'refuses a relative recipes directory, naming it' do
    expect { web(recipes: 'roles/here') }.to raise_error(Puppet::ResourceError, %r{recipes.*roles/here.*absolute path})
  end
end
