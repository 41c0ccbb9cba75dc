# frozen_string_literal: true

# `cloudctl exec` (issue 6): a cloudd with its embedded hypervisor (the test driver, which has
# no guests) refuses to run a command in a cloud's VMs with a clear error, refuses an unknown
# role or slot by name, and records each refusal in the cloud's event history (who asked, the
# program, the number of arguments — never the arguments) at once, on disk too; a member of a
# pool hands the request to the leader. Running commands in real guests is checked in the lab
# (the runner against a real sshd: test/c/test_exec.c). Only daemons started here are killed,
# by PID; conditions are polled with bounded waits.
require 'json'
require 'open3'

require_relative 'support/cloudd_daemons'

EXEC_POOL = %w[127.0.0.2 127.0.0.3 127.0.0.4].freeze

RSpec.describe 'cloudctl exec on one host' do
  include_context 'cloudd daemons', 'cloud-exec'

  def cloud_name = 'ex'

  before(:all) do
    # no sweep during the test: the history must reach the disk by itself
    start_daemon(:main, '--sweep-ms', '600000')
    spec = {
      'name' => 'ex', 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
      'hypervisor' => 'test:///default', 'template' => @template,
      'ssh_key' => File.join(@tmp, 'id_ed25519'),
      'roles' => [{ 'name' => 'head', 'after' => [] }, { 'name' => 'node', 'after' => ['head'] }],
      'slots' => [{ 'name' => 'ex-head-0', 'roles' => ['head'], 'index' => 0, 'ip' => '10.0.7.1',
                    'image' => '/var/lib/cloud/images/head.qcow2' }] +
        (0..1).map do |i|
          { 'name' => "ex-node-#{i}", 'roles' => ['node'], 'index' => i, 'ip' => "10.0.7.#{i + 2}",
            'image' => '/var/lib/cloud/images/node.qcow2' }
        end,
    }
    Cloud.new(spec, socket: sock, state_dir: state, autostart: false).leader_start
  end

  def ctl(*args)
    out, err, st = Open3.capture3(ClouddDaemons::CLOUDCTL, '--socket', sock, *args)
    [out, err, st.exitstatus]
  end

  def events = call(:main, 'op' => 'events', 'name' => 'ex')['events']

  def exec_events = events.select { |e| e['type'].start_with?('+exec', '-exec') }

  def saved_events
    path = File.join(state, 'events', 'ex.json')
    File.exist?(path) ? JSON.parse(File.read(path)) : []
  end

  it 'refuses on the test driver: no guests, nothing run, and says so' do
    before = exec_events.size
    out, err, code = ctl('exec', 'ex', '--', 'hostname')
    expect(code).to eq(1)
    expect(out).to eq('')
    expect(err).to include('exec').and include('test driver').and include('has no guests')
    # audited: one event, who asked, the program; no slot ran (no per-slot event)
    evs = exec_events.drop(before)
    expect(evs.size).to eq(1)
    ev = evs.first
    expect(ev['type']).to eq('-exec')
    expect(ev['host']).not_to be_nil
    expect(ev['epoch']).to be >= 1
    expect(ev['text']).to match(/\Aid=\h{8} by=\S+ cmd=hostname args=0 targets=all refused: .*test driver/)
    # on disk at once (the sweep is 10 minutes away)
    expect(saved_events.map { |e| e['seq'] }).to include(ev['seq'])
    # the operator's view of the history
    out, = ctl('events', 'ex')
    expect(out).to match(/-exec\s+-\s+\S+\s+id=\h{8} by=\S+ cmd=hostname/)
  end

  it 'records the program and the number of arguments, never the arguments' do
    out, err, code = ctl('exec', 'ex', 'node', '--timeout', '5', '--', 'mysql', '--password=s3cr3t-v4lue', '-e', 'x')
    expect(code).to eq(1), out + err
    ev = exec_events.last
    expect(ev['text']).to match(/cmd=mysql args=3 targets=node refused/)
    # a program word with a blank or '=' is cut there
    ctl('exec', 'ex', '--', 'mysql -ps3cr3t-v4lue')
    expect(exec_events.last['text']).to include('cmd=mysql args=0')
    ctl('exec', 'ex', '--', 'MYSQL_PWD=s3cr3t-v4lue', 'mysql')
    expect(exec_events.last['text']).to include('cmd=MYSQL_PWD args=1')
    expect(JSON.generate(events)).not_to include('s3cr3t')
    expect(File.read(File.join(state, 'events', 'ex.json'))).not_to include('s3cr3t')
    expect(File.read(log_path)).not_to include('s3cr3t')
  end

  it 'refuses an unknown role or slot by name, before anything else' do
    out, err, code = ctl('exec', 'ex', 'node', 'nosuch', 'ex-node-7', '--', 'true')
    expect(code).to eq(1), out
    expect(err).to include('no role or slot named nosuch, ex-node-7').and include('its roles: head, node')
    expect(exec_events.last['text']).to match(/targets=node, nosuch, ex-node-7 refused: .*nosuch/)
    # known names (a role and a slot) get as far as the test driver's refusal
    _, err, = ctl('exec', 'ex', 'head', 'ex-node-1', '--', 'true')
    expect(err).to include('has no guests')
  end

  it 'answers usage errors with status 2 and sends nothing' do
    before = exec_events.size
    [%w[exec], %w[exec ex], %w[exec ex node], %w[exec ex --], %w[exec -- true],
     %w[exec ex --timeout 0 -- true], %w[exec ex --timeout 9999 -- true], %w[exec ex --bogus -- true]].each do |args|
      out, err, code = ctl(*args)
      expect(code).to eq(2), "#{args.inspect}: #{out}#{err}"
      expect(err).to include('usage: cloudctl exec')
    end
    expect(exec_events.size).to eq(before)
  end

  it 'says when the cloud is not known, and keeps no history for it' do
    _, err, code = ctl('exec', 'nope', '--', 'true')
    expect(code).to eq(1)
    expect(err).to include('cloud nope is not known here')
    expect(File.exist?(File.join(state, 'events', 'nope.json'))).to be(false)
  end

  it 'checks the request: argv, targets and timeout_ms' do
    bad = [
      [{ 'argv' => [] }, /argv/],
      [{ 'argv' => 'hostname' }, /argv/],
      [{ 'argv' => ['ls', 7] }, /argv\[1\]/],
      [{ 'argv' => ['ls'], 'targets' => 'node' }, /targets/],
      [{ 'argv' => ['ls'], 'timeout_ms' => 50 }, /timeout_ms/],
      [{ 'argv' => ['ls'], 'timeout_ms' => 'soon' }, /timeout_ms/],
    ]
    bad.each do |fields, msg|
      res = call(:main, { 'op' => 'exec', 'name' => 'ex' }.merge(fields))
      expect(res['ok']).to be(false), fields.inspect
      expect(res['error']['domain']).to eq('proto')
      expect(res['error']['message']).to match(msg)
    end
  end
end

# The same from a member of a pool of three daemons (127.0.0.2-4 on the loopback, a port of
# this run's own): the member hands the request to the leader, whose answer comes back and
# whose history records it, naming the member that asked.
RSpec.describe 'cloudctl exec on a member of a pool' do
  include_context 'cloudd daemons', 'cloud-exec-pool'

  def cloud_name = 'ep'

  before(:all) do
    @port = 20_000 + ((Process.pid + 7919) % 20_000)
    @secret = File.join(@tmp, 'secret')
    File.write(@secret, Random.new.bytes(32).unpack1('H*'))
    File.chmod(0o600, @secret)
    EXEC_POOL.each { |h| spawn_daemon(h, '--address', h, '--peer-port', @port.to_s) }
    EXEC_POOL.each { |h| wait_daemon(h) }
    @spec = {
      'name' => 'ep', 'type' => 'cloud', 'ensure' => 'running', 'pool' => EXEC_POOL,
      'hypervisor' => 'test:///default', 'secret_file' => @secret,
      'template' => @template,
      'roles' => [{ 'name' => 'node', 'after' => [] }],
      'slots' => (0..2).map do |i|
        { 'name' => "ep-node-#{i}", 'roles' => ['node'], 'index' => i, 'ip' => "10.0.8.#{i + 1}",
          'image' => '/var/lib/cloud/images/node.qcow2' }
      end,
    }
    EXEC_POOL.each { |h| call(h, 'op' => 'leader', 'spec' => @spec) }
    leader = Cloud.new(@spec, socket: sock(EXEC_POOL[0]), state_dir: state(EXEC_POOL[0]), autostart: false)
    wait_for('127.0.0.2 to act') { leader.leader? }
    wait_for('every member to be heard') { status(EXEC_POOL[0])&.dig('election', 'members')&.all? { |m| m['alive'] } }
    leader.leader_start
  end

  def exec_events(host)
    call(host, 'op' => 'events', 'name' => 'ep')['events'].select { |e| e['type'].include?('exec') }
  end

  it 'hands the request to the leader, which answers and keeps the audit' do
    out, err, st = Open3.capture3(ClouddDaemons::CLOUDCTL, '--socket', sock('127.0.0.3'),
                                  'exec', 'ep', 'node', '--', 'uname', '-a')
    expect(st.exitstatus).to eq(1), out
    expect(err).to include('127.0.0.2: exec: cloud ep runs on the test driver').and include('has no guests')
    ev = exec_events('127.0.0.2').last
    expect(ev).to include('type' => '-exec', 'host' => '127.0.0.3')
    expect(ev['text']).to match(/by=127\.0\.0\.3 cmd=uname args=1 targets=node refused/)
    expect(ev['epoch']).to eq(status('127.0.0.2')['election']['epoch'])
    expect(exec_events('127.0.0.3')).to be_empty
    expect(File.read(log_path('127.0.0.2'))).to match(/\+handover cloud=ep epoch=\d+ op=exec/)
    # an unknown target is the leader's refusal too, by name
    _, err, = Open3.capture3(ClouddDaemons::CLOUDCTL, '--socket', sock('127.0.0.4'),
                             'exec', 'ep', 'nosuch', '--', 'true')
    expect(err).to include('no role or slot named nosuch')
    expect(exec_events('127.0.0.2').last['text']).to include('by=127.0.0.4')
  end
end
