# frozen_string_literal: true

# A pool of three hosts on one machine: three cloudd, each with its own identity (127.0.0.2,
# .3, .4 on the loopback), its own control socket, state and embedded hypervisor, talking over
# the peer port. Checks the election, placement across the pool through the host daemons, a
# leader killed with SIGKILL and the takeover that re-places its slots, authentication of peer
# messages, the return of the first host, and the tear-down. Only daemons started here are
# killed, by PID; conditions are polled with bounded waits.
require 'json'
require 'socket'
require 'tmpdir'

$LOAD_PATH.unshift(File.expand_path('../../lib', __dir__))
require 'cloud_ext'

POOL_ROOT = File.expand_path('../..', __dir__)
POOL_HOSTS = %w[127.0.0.2 127.0.0.3 127.0.0.4].freeze

require_relative 'support/cloudd_pool'

RSpec.describe 'a pool of three hosts' do
  include ClouddPool

  def cloud_name = 'pw'


  before(:all) do
    @tmp = Dir.mktmpdir('cloud-pool')
    @port = 20_000 + (Process.pid % 20_000)
    @secret = File.join(@tmp, 'secret')
    File.write(@secret, Random.new.bytes(32).unpack1('H*'))
    File.chmod(0o600, @secret)
    @pids = {}
    @template = File.read(File.join(POOL_ROOT, 'modules/web/files/template-test.xml'))
    POOL_HOSTS.each { |h| start_daemon(h) }
  end

  after(:all) do
    @pids.each_value { |pid| stop_pid(pid) }
    FileUtils.rm_rf(@tmp) unless ENV['KEEP_TMP']
  end

  def dir(host) = File.join(@tmp, host)
  def sock(host) = File.join(dir(host), 'cloudd.sock')

  def start_daemon(host)
    FileUtils.mkdir_p(dir(host))
    pid = Process.spawn(File.join(POOL_ROOT, 'bin/cloudd'), '--socket', sock(host), '--state-dir',
                        File.join(dir(host), 'state'), '--address', host, '--peer-port', @port.to_s,
                        '--log', File.join(dir(host), 'log'), '--allow-faults', in: File::NULL)
    @pids[host] = pid
    wait_for("cloudd #{host} to answer") { File.socket?(sock(host)) && call(host, 'op' => 'hello') }
  end



  def spec(ensure_ = 'running')
    {
      'name' => 'pw', 'type' => 'cloud', 'ensure' => ensure_, 'pool' => POOL_HOSTS,
      'hypervisor' => 'test:///default', 'template' => @template, 'secret_file' => @secret,
      'roles' => [{ 'name' => 'node', 'after' => [] }],
      'slots' => (0..2).map do |i|
        { 'name' => "pw-node-#{i}", 'roles' => ['node'], 'index' => i, 'ip' => "10.0.9.#{i + 1}",
          'image' => '/var/lib/cloud/images/node.qcow2' }
      end,
    }
  end

  def cloud(host) = Cloud.new(spec, socket: sock(host), state_dir: File.join(dir(host), 'state'),
                                    autostart: false)



  it 'elects the first host of the pool, seen alike by every member' do
    POOL_HOSTS.each { |h| expect(cloud(h).member?).to be(true) }
    # each daemon joins when handed the spec (the "leader" op, what common_start asks first;
    # common_start itself would also hand the spec to the leader: tested below)
    leaders = POOL_HOSTS.map { |h| call(h, 'op' => 'leader', 'spec' => spec)['leader'] }
    expect(leaders).to eq(['127.0.0.2'] * 3)
    wait_for('127.0.0.2 to act') { cloud('127.0.0.2').leader? }
    expect(cloud('127.0.0.3').leader?).to be(false)
  end

  it 'converges from the leader, one VM on each host, through the host daemons' do
    # the last member to join listens for a heartbeat timeout before it answers: wait for it
    wait_for('every member to be heard by the leader') do
      status('127.0.0.2')&.dig('election', 'members')&.all? { |m| m['alive'] }
    end
    result = cloud('127.0.0.2').leader_start
    expect(result['changed']).to eq(3)
    st = status('127.0.0.2')
    expect(st['state']).to eq('running')
    expect(st['slots'].map { |s| s['host'] }.sort).to eq(POOL_HOSTS)
    expect(st['election']['members'].map { |m| m['alive'] }).to all(be(true))
    @epoch = st['election']['epoch']
    expect(@epoch).to be >= 1
  end

  it 'shows on a follower every member live, the other followers as its leader sees them' do
    members = wait_for('127.0.0.4 to see every member live') do
      m = status('127.0.0.4')&.dig('election', 'members')
      m if m&.all? { |x| x['alive'] }
    end
    expect(members.map { |x| [x['host'], x['seen_by']] })
      .to eq([%w[127.0.0.2 direct], %w[127.0.0.3 leader], %w[127.0.0.4 self]])
    out = IO.popen([File.join(POOL_ROOT, 'bin/cloudctl'), '--socket', sock('127.0.0.4'), 'status', 'pw'], &:read)
    expect(out).to match(/leader:\s+127\.0\.0\.2, epoch \d+; this host follows/)
      .and include('127.0.0.3 (alive, says the leader, priority 1)').and include('127.0.0.4 (this host, priority 2)')
  end

  it 'refuses to act from a member that does not lead, naming the leader' do
    expect { cloud('127.0.0.4').leader_start }.to raise_error(Cloud::ElectionError, /127\.0\.0\.2/)
  end

  # A machine outside the pool: no daemon of its own (its socket does not exist), not in pool.
  def outsider(the_spec, secret: @secret, port: @port)
    Cloud.new(the_spec.merge('peer_port' => port, 'secret_file' => secret),
              socket: File.join(@tmp, 'outside.sock'), state_dir: File.join(@tmp, 'outside'),
              autostart: false)
  end

  it 'takes a spec handed over from outside the pool, converges it on the leader and reports it' do
    four = spec.merge('slots' => spec['slots'] + [{ 'name' => 'pw-node-3', 'roles' => ['node'], 'index' => 3,
                                                     'ip' => '10.0.9.4', 'image' => '/var/lib/cloud/images/node.qcow2' }])
    outside = outsider(four)
    expect(outside.member?).to be(false)
    events = []
    result = outside.not_cloud_start { |e| events << e }
    expect(result['changed']).to eq(1)
    expect(events.map { |e| e['slot'] }).to include('pw-node-3')
    expect(status('127.0.0.2')['slots'].map { |sl| sl['name'] }).to include('pw-node-3')
    expect(outside.status['slots'].size).to eq(4)
    expect(outside.plan).to eq([])
    expect(File.read(File.join(dir('127.0.0.2'), 'log'))).to include('+handover cloud=pw')
    # and back: the slot no longer declared is removed
    expect(outsider(spec).not_cloud_start['changed']).to eq(1)
    expect(status('127.0.0.2')['slots'].map { |sl| sl['name'] }.sort).to eq(%w[pw-node-0 pw-node-1 pw-node-2])
    expect(outsider(spec).not_cloud_start['changed']).to eq(0)
  end

  it "hands a member's spec to the leader, which converges it, and reports the leader" do
    four = spec.merge('slots' => spec['slots'] + [{ 'name' => 'pw-node-3', 'roles' => ['node'], 'index' => 3,
                                                     'ip' => '10.0.9.4', 'image' => '/var/lib/cloud/images/node.qcow2' }])
    member = Cloud.new(four, socket: sock('127.0.0.4'), state_dir: File.join(dir('127.0.0.4'), 'state'), autostart: false)
    events = []
    result = member.common_start { |e| events << e }
    expect(result).to include('leader' => '127.0.0.2', 'self' => false, 'changed' => 1)
    expect(events.map { |e| e['slot'] }).to include('pw-node-3')
    expect(status('127.0.0.2')['slots'].size).to eq(4)
    back = cloud('127.0.0.3').common_start
    expect(back).to include('leader' => '127.0.0.2', 'changed' => 1)
    expect(status('127.0.0.2')['slots'].map { |sl| sl['name'] }.sort).to eq(%w[pw-node-0 pw-node-1 pw-node-2])
    expect(cloud('127.0.0.3').common_start['changed']).to eq(0)
  end

  it 'refuses an outsider with another secret, and names every host tried when none answers' do
    other = File.join(@tmp, 'other-secret')
    File.write(other, 'f' * 64)
    File.chmod(0o600, other)
    expect { outsider(spec, secret: other).not_cloud_start }.to raise_error(Cloud::ElectionError) { |e|
      expect(e.message).to include('bad_mac').and include('127.0.0.2').and include('127.0.0.4')
      expect(e.operation).to eq('find leader')
    }
    closed = TCPServer.new('127.0.0.1', 0).then { |srv| srv.addr[1].tap { srv.close } }
    expect { outsider(spec, port: closed).not_cloud_start }.to raise_error(Cloud::ElectionError) { |e|
      expect(e.message).to include("port #{closed}").and include('127.0.0.3')
    }
    expect(status('127.0.0.2')['slots'].size).to eq(3)
  end

  it 'drops forged and garbage peer messages without losing the leader' do
    udp = UDPSocket.new
    udp.send("CLOUD1 pw #{'0' * 64} {\"v\":1}", 0, '127.0.0.3', @port)
    udp.send('garbage' * 50, 0, '127.0.0.3', @port)
    udp.send("CLOUD1 pw #{'a' * 64} #{'{' * 2000}", 0, '127.0.0.3', @port)
    udp.close
    wait_for('the forged message to be dropped and counted') do
      drops = status('127.0.0.3')&.dig('election', 'counters', 'drops') || {}
      drops['bad_mac'].to_i >= 1
    end
    expect(status('127.0.0.3')['election']['leader']).to eq('127.0.0.2')
  end

  it 'fails over when the leader is killed, and the new leader re-places its slots' do
    stop_pid(@pids.delete('127.0.0.2'), 'KILL')
    st = wait_for('127.0.0.3 to lead with every slot running on a live host') do
      s = status('127.0.0.3')
      s if s && s.dig('election', 'leader') == '127.0.0.3' && s['state'] == 'running' &&
           s['slots'].none? { |sl| sl['host'] == '127.0.0.2' }
    end
    expect(st['election']['epoch']).to be > 0
    expect(st['slots'].map { |s| s['name'] }.sort).to eq(%w[pw-node-0 pw-node-1 pw-node-2])
    # the takeover thread logs when it is done, and the log is flushed within 100 ms
    wait_for('the takeover in the log') { File.read(File.join(dir('127.0.0.3'), 'log')).include?('+takeover cloud=pw') }
  end

  it 'lets the first host take the lead back when it returns, with no second copy of any slot' do
    before = status('127.0.0.3')['election']['epoch']
    start_daemon('127.0.0.2')
    st = wait_for('127.0.0.2 to lead again') do
      s = status('127.0.0.2')
      s if s && s.dig('election', 'leader') == '127.0.0.2' && s.dig('election', 'acting') &&
           s['state'] == 'running'
    end
    expect(st['election']['epoch']).to be > before
    expect(st['domains']).to eq(3)
  end

  it 'runs a second cloud on the same hosts, with its own leader, independently' do
    other = spec.merge('name' => 'px', 'pool' => POOL_HOSTS.reverse,
                       'slots' => spec['slots'].map { |sl| sl.merge('name' => sl['name'].sub('pw-', 'px-'), 'ip' => sl['ip'].sub('10.0.9.', '10.0.8.')) })
    POOL_HOSTS.each { |h| expect(call(h, 'op' => 'leader', 'spec' => other)).to include('ok' => true) }
    wait_for('127.0.0.4 to lead px with every member heard') do
      el = call('127.0.0.4', 'op' => 'status', 'name' => 'px')&.dig('clouds', 0, 'election')
      el && el['acting'] && el['members'].all? { |m| m['alive'] }
    end
    res = call('127.0.0.4', 'op' => 'apply', 'spec' => other)
    expect(res).to include('ok' => true, 'changed' => 3)
    px = call('127.0.0.4', 'op' => 'status', 'name' => 'px')['clouds'].first
    expect(px['state']).to eq('running')
    expect(px['leader']).to eq('127.0.0.4')
    expect(status('127.0.0.2')['leader']).to eq('127.0.0.2') # pw keeps its own leader
    expect(status('127.0.0.2')['state']).to eq('running')
    %w[127.0.0.2 127.0.0.3].each do |h|
      expect(call(h, 'op' => 'stop', 'name' => 'px', 'spec' => other.merge('ensure' => 'stopped')))
        .to include('forgotten' => true)
    end
    stop = call('127.0.0.4', 'op' => 'stop', 'name' => 'px', 'spec' => other.merge('ensure' => 'stopped'))
    expect(stop).to include('ok' => true)
    expect(status('127.0.0.2')['state']).to eq('running') # stopping px left pw alone
  end

  # What the provider does on each pool host (lib/puppet_x/cloud/provider.rb, start).
  def apply_as_provider(host, the_spec)
    c = Cloud.new(the_spec, socket: sock(host), state_dir: File.join(dir(host), 'state'), autostart: false)
    c.leader? ? c.leader_start : c.common_start
  ensure
    c&.close
  end

  it 'converges to one placement whichever host applies first (here the last in the pool)' do
    py = spec.merge('name' => 'py',
                    'slots' => spec['slots'].map { |sl| sl.merge('name' => sl['name'].sub('pw-', 'py-'), 'ip' => sl['ip'].sub('10.0.9.', '10.0.7.')) })
    alone = apply_as_provider('127.0.0.4', py) # a minority: it joins, nothing is done
    expect(alone['changed']).to be_nil
    expect(call('127.0.0.4', 'op' => 'status', 'name' => 'py')&.dig('clouds', 0, 'domains').to_i).to eq(0)
    second = apply_as_provider('127.0.0.3', py) # a majority: its leader converges it
    expect(second['changed']).to eq(3)
    st = wait_for('py to run, led by 127.0.0.3') do
      x = call('127.0.0.3', 'op' => 'status', 'name' => 'py')&.dig('clouds', 0)
      x if x && x['state'] == 'running'
    end
    expect(st['slots'].size).to eq(3)
    third = apply_as_provider('127.0.0.2', py) # the first of the pool joins last and takes over
    expect(third['changed'].to_i).to eq(0)
    final = wait_for('127.0.0.2 to lead py with every slot running once') do
      x = call('127.0.0.2', 'op' => 'status', 'name' => 'py')&.dig('clouds', 0)
      x if x && x['leader'] == '127.0.0.2' && x['state'] == 'running'
    end
    expect(final['slots'].map { |sl| sl['name'] }.sort).to eq(%w[py-node-0 py-node-1 py-node-2])
    expect(final['domains']).to eq(3) # no second copy of any slot
    %w[127.0.0.3 127.0.0.4].each { |h| call(h, 'op' => 'stop', 'name' => 'py', 'spec' => py.merge('ensure' => 'stopped')) }
    expect(call('127.0.0.2', 'op' => 'stop', 'name' => 'py', 'spec' => py.merge('ensure' => 'stopped'))).to include('ok' => true)
  end

  it 'restarts a domain stopped on a member: the member tells the leader, which repairs it' do
    victim = status('127.0.0.2')['slots'].find { |sl| sl['host'] == '127.0.0.3' }
    out = IO.popen([File.join(POOL_ROOT, 'bin/cloudctl'), '--socket', sock('127.0.0.3'), 'fault', 'pw', victim['name']],
                   err: %i[child out], &:read)
    expect(out).to include('domain destroyed')
    wait_for('the member to tell the leader') { File.read(File.join(dir('127.0.0.3'), 'log')).include?("+forward cloud=pw slot=#{victim['name']}") }
    wait_for('the slot to run again where it was') do
      s = status('127.0.0.2')&.dig('slots')&.find { |sl| sl['name'] == victim['name'] }
      s if s && s['state'] == 'running' && s['host'] == '127.0.0.3' && s['restarts'].to_i >= 1
    end
    repair = call('127.0.0.2', 'op' => 'events', 'name' => 'pw')['events']
             .find { |e| e['type'] == '+repair' && e['slot'] == victim['name'] }
    expect(repair).to include('host' => '127.0.0.3', 'text' => 'start')
  end

  it "re-places a killed member's slot by itself once the member is fenced, the leader staying" do
    victim = status('127.0.0.2')['slots'].find { |sl| sl['host'] == '127.0.0.4' }
    expect(victim).not_to be_nil
    killed = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    stop_pid(@pids.delete('127.0.0.4'), 'KILL')
    # no Puppet run, no cloudctl monitor: the leader's monitor sees the member silent and, once
    # the fencing wait (fence_ms 1000 + 800) is over, re-places its slot
    res = wait_for('the monitor to re-place the slot', timeout: 15) do
      r = status('127.0.0.2')
      r if r && r['state'] == 'running' && r['slots'].none? { |sl| sl['host'] == '127.0.0.4' }
    end
    # never before the member could have fenced itself (fence_ms after its last word)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - killed).to be >= 1.0
    slot = res['slots'].find { |sl| sl['name'] == victim['name'] }
    expect(slot['restarts']).to be >= 1
    expect(slot['last_failure']['text']).to match(/host is gone/)
    events = call('127.0.0.2', 'op' => 'events', 'name' => 'pw')['events']
    expect(events.map { |e| e['type'] }).to include('-failure', '+repair')
    expect(events.find { |e| e['type'] == '+repair' }['epoch']).to be >= 1
    expect(status('127.0.0.2')['leader']).to eq('127.0.0.2')
    start_daemon('127.0.0.4')
    wait_for('127.0.0.4 to rejoin') do
      status('127.0.0.2')&.dig('election', 'members')&.all? { |m| m['alive'] }
    end
  end

  it 'tears the cloud down from the leader, members forgetting it' do
    stopped = spec('stopped')
    %w[127.0.0.3 127.0.0.4].each do |h|
      expect(call(h, 'op' => 'stop', 'name' => 'pw', 'spec' => stopped)).to include('forgotten' => true)
    end
    res = call('127.0.0.2', 'op' => 'stop', 'name' => 'pw', 'spec' => stopped)
    expect(res['ok']).to be(true), res.inspect
    expect(status('127.0.0.2')['state']).to eq('stopped')
    POOL_HOSTS.each do |h|
      expect(Dir.children(File.join(dir(h), 'state', 'clouds'))).to be_empty
    end
  end
end
