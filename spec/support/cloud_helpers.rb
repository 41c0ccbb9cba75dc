# frozen_string_literal: true

# Helpers for the type, spec-builder and provider specs.
module CloudSpecHelpers
  def fixture(name)
    File.join(FIXTURES, name)
  end

  # Attributes of a valid web resource (ensure => running), overridable.
  def web_attrs(overrides = {})
    {
      title: 'myweb',
      ensure: 'running',
      balancer: ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
      server: [fixture('server-ips.txt'), fixture('server-imgs.txt')],
      database: ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
      vm_domain: fixture('template.xml'),
      pool: ['127.0.0.1'],
    }.merge(overrides).compact
  end

  # Runs the block in an environment whose module path is the repository's modules/, so that
  # puppet:///modules/... URIs resolve as under `puppet apply --modulepath=modules`.
  def with_repo_modules(&block)
    env = Puppet::Node::Environment.create(:cloud_spec, [File.join(REPO_ROOT, 'modules')])
    Puppet.override({ current_environment: env }, 'cloud spec environment', &block)
  end

  # Collects Puppet log messages (all levels) while the block runs.
  def capture_logs
    logs = []
    collector = Puppet::Test::LogCollector.new(logs)
    Puppet::Util::Log.newdestination(collector)
    old_level = Puppet::Util::Log.level
    Puppet::Util::Log.level = :debug
    yield
    logs
  ensure
    Puppet::Util::Log.level = old_level
    Puppet::Util::Log.close(collector)
  end

  # A file under a fresh temporary directory with the given content.
  def temp_file(name, content)
    @tmpdir ||= Dir.mktmpdir('cloud-spec')
    path = File.join(@tmpdir, name)
    File.write(path, content)
    path
  end
end

RSpec.configure do |c|
  c.after(:each) do
    dir = instance_variable_get(:@tmpdir)
    FileUtils.rm_rf(dir) if dir
  end
end
