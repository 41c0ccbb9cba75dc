# frozen_string_literal: true

# Integration: `puppet apply` of the modules' example manifests from the repository root, as a
# user would run them, checked through `cloudctl status --json`.  The provider starts cloudd in
# embedded mode on a private socket and state directory; the spec kills it by PID at the end.
require 'json'
require 'open3'
require 'socket'
require 'tmpdir'

ROOT = File.expand_path('../..', __dir__)

RSpec.describe 'puppet apply of the example manifests' do
  before(:all) do
    @tmp = Dir.mktmpdir('cloud-int')
    @env = {
      'CLOUD_SOCKET' => File.join(@tmp, 'cloudd.sock'),
      'CLOUD_STATE_DIR' => File.join(@tmp, 'state'),
      'CLOUDD' => File.join(ROOT, 'bin', 'cloudd'),
    }
  end

  after(:all) do
    pid = daemon_pid
    if pid
      Process.kill('TERM', pid)
      50.times { break unless alive?(pid); sleep 0.1 }
      Process.kill('KILL', pid) if alive?(pid)
    end
    FileUtils.rm_rf(@tmp)
  end

  def alive?(pid)
    Process.kill(0, pid)
    true
  rescue Errno::ESRCH
    false
  end

  # The daemon's PID, asked over its socket (nil when none answers).
  def daemon_pid
    UNIXSocket.open(@env['CLOUD_SOCKET']) do |s|
      s.write(%({"v":1,"op":"hello"}\n))
      JSON.parse(s.gets)['pid']
    end
  rescue SystemCallError
    nil
  end

  def apply(manifest, *flags)
    args = ['puppet', 'apply', '--color=false', '--detailed-exitcodes', '--modulepath=modules', *flags]
    args += manifest.start_with?('modules/') ? [manifest] : ['-e', manifest]
    out, st = Open3.capture2e(@env, *args, chdir: ROOT)
    [st.exitstatus, out.lines.reject { |l| l.include?('Facter: Permission denied') }.join]
  end

  def status
    out, st = Open3.capture2e(@env, File.join(ROOT, 'bin', 'cloudctl'), 'status', '--json')
    raise "cloudctl status failed: #{out}" unless st.success?

    JSON.parse(out)['clouds'].to_h { |c| [c['name'], c] }
  end

  def wait_for(what, timeout: 10)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until yield
      raise "timed out waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  it 'brings up the web example, in dependency order, and reports it running' do
    code, out = apply('modules/web/examples/web.pp')
    expect(code).to eq(2), out
    order = %w[database-0 server-0 balancer-0].map { |s| out.index("defined myweb-#{s} on 127.0.0.1") }
    expect(order).to all(be_a(Integer))
    expect(order).to eq(order.sort)
    web = status.fetch('myweb')
    expect(web['state']).to eq('running')
    expect(web['leader']).to eq('127.0.0.1')
    expect(web['epoch']).to be >= 1
    expect(web['slots'].map { |s| s['name'] }).to contain_exactly(
      'myweb-balancer-0', 'myweb-server-0', 'myweb-server-1', 'myweb-database-0'
    )
    expect(web['slots']).to all(include('state' => 'running', 'host' => '127.0.0.1'))
    expect(web['slots'].map { |s| s['uuid'] }.uniq.size).to eq(4)
  end

  it 'changes nothing on the second run of a converged manifest' do
    before = status.fetch('myweb')['slots'].to_h { |s| [s['name'], s['uuid']] }
    code, out = apply('modules/web/examples/web.pp')
    expect(code).to eq(0), out
    expect(out).not_to include('defined')
    expect(status.fetch('myweb')['slots'].to_h { |s| [s['name'], s['uuid']] }).to eq(before)
  end

  it 'shows with --noop what would be created and where, and creates nothing' do
    code, out = apply('modules/torque/examples/torque.pp', '--noop')
    expect(code).to eq(0), out
    expect(out).to match(/would create mytorque-head-0 \(head, [0-9.]+\) on 127\.0\.0\.1/)
    expect(out).to match(/would create mytorque-compute-1 \(compute, [0-9.]+\) on 127\.0\.0\.1/)
    expect(status).not_to have_key('mytorque')
  end

  it 'runs two clouds on one host without one touching the other' do
    web_uuids = status.fetch('myweb')['slots'].map { |s| s['uuid'] }
    code, out = apply('modules/torque/examples/torque.pp')
    expect(code).to eq(2), out
    expect(status.fetch('mytorque')['state']).to eq('running')
    code, out = apply('modules/torque/examples/torque-stopped.pp')
    expect(code).to eq(2), out
    clouds = status
    expect(clouds).not_to have_key('mytorque')
    expect(clouds.fetch('myweb')['state']).to eq('running')
    expect(clouds.fetch('myweb')['slots'].map { |s| s['uuid'] }).to eq(web_uuids)
  end

  it 'brings up both appscale deployments with their composite roles' do
    code, out = apply('modules/appscale/examples/appscale.pp')
    expect(code).to eq(2), out
    app = status.values.find { |c| c['type'] == 'appscale' }
    expect(app['state']).to eq('running')
    expect(app['slots'].flat_map { |s| s['roles'] }).to include('controller', 'servers')
    code, out = apply('modules/appscale/examples/appscale-stopped.pp')
    expect(code).to eq(2), out
    expect(status.values.map { |c| c['type'] }).not_to include('appscale')
  end

  it 'lists the clouds this host knows with puppet resource' do
    out, st = Open3.capture2e(@env, 'puppet', 'resource', '--color=false', '--modulepath=modules', 'web',
                              chdir: ROOT)
    expect(st.success?).to be(true), out
    expect(out).to match(/web \{ 'myweb':\s+ensure\s+=> 'running'/m)
  end

  it 'refuses a malformed manifest before anything changes, naming the attribute and the value' do
    manifest = <<~PP
      web { 'broken':
        balancer  => ['10.0.0.300', '/var/lib/cloud/images/lb.qcow2'],
        server    => ['puppet:///modules/web/server-ips.txt', 'puppet:///modules/web/server-imgs.txt'],
        database  => ['10.0.0.3', '/var/lib/cloud/images/db.qcow2'],
        vm_domain => 'puppet:///modules/web/template-test.xml',
        pool      => ['127.0.0.1'],
      }
    PP
    code, out = apply(manifest)
    expect(code).to satisfy { |c| [1, 4, 6].include?(c) }
    expect(out).to include('balancer').and include('10.0.0.300')
    expect(status).not_to have_key('broken')
  end

  it 'tears the web cloud down completely, and the repeat is a no-op' do
    code, out = apply('modules/web/examples/web-stopped.pp')
    expect(code).to eq(2), out
    expect(status).not_to have_key('myweb')
    expect(Dir.children(File.join(@env['CLOUD_STATE_DIR'], 'clouds'))).to be_empty
    code, out = apply('modules/web/examples/web-stopped.pp')
    expect(code).to eq(0), out
    # the embedded daemon leaves once no cloud is left
    wait_for('the embedded cloudd to exit') { daemon_pid.nil? }
  end
end
