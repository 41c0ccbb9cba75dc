# frozen_string_literal: true

# Self-healing on one host (issue 5): a cloudd with its embedded hypervisor repairs a cloud by
# itself — no Puppet run, no `cloudctl monitor` — when a domain is destroyed behind its back
# (`cloudctl fault`, the chaos tests' fault injection), under the slot's restart policy:
# immediate restart, backoff, flapping (repairs paused and reported). Visible in `cloudctl
# status` (health, restarts, last failure), `cloudctl events` and the next apply's result.
# A daemon with --no-monitor repairs nothing (the control). Only daemons started here are
# killed, by PID; conditions are polled with bounded waits.
require 'json'
require 'open3'

require_relative 'support/cloudd_daemons'

RSpec.describe 'self-healing on one host' do
  include_context 'cloudd daemons', 'cloud-monitor'

  def cloud_name = 'mh'
  def daemon_args = %w[--sweep-ms 1000]
  def log(which = :main) = File.read(log_path(which))

  # ClouddPool#call(host, req) asks sock(host): here a host is which daemon (:main, :off...)

  def spec(name, health = {})
    {
      'name' => name, 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
      'hypervisor' => 'test:///default', 'template' => @template,
      'roles' => [{ 'name' => 'node', 'after' => [], 'health' => health }],
      'slots' => (0..2).map do |i|
        { 'name' => "#{name}-node-#{i}", 'roles' => ['node'], 'index' => i, 'ip' => "10.0.6.#{i + 1}",
          'image' => '/var/lib/cloud/images/node.qcow2' }
      end,
    }
  end

  def apply(which, the_spec) = Cloud.new(the_spec, socket: sock(which), state_dir: state(which), autostart: false).leader_start

  def ctl(which, *args)
    out, st = Open3.capture2e(ClouddDaemons::CLOUDCTL, '--socket', sock(which), *args)
    [out, st.success?]
  end

  def slot_state(which, slot)
    doms = JSON.parse(ctl(which, 'domains', '--json').first)['domains']
    doms.find { |d| d['slot'] == slot }&.dig('state')
  end

  def slot_status(which, name, slot)
    call(which, 'op' => 'status', 'name' => name)&.dig('clouds', 0, 'slots')&.find { |s| s['name'] == slot }
  end

  it 'restarts a domain destroyed behind its back, by itself, and says so' do
    start_daemon(:main, '--allow-faults')
    expect(apply(:main, spec('mh'))['changed']).to eq(3)
    out, ok = ctl(:main, 'fault', 'mh', 'mh-node-1')
    expect(ok).to be(true), out
    expect(out).to include('domain destroyed')
    wait_for('mh-node-1 to run again') { slot_state(:main, 'mh-node-1') == 'running' }
    st = wait_for('the repair to be counted') do
      s = slot_status(:main, 'mh', 'mh-node-1')
      s if s && s['restarts'] == 1
    end
    expect(st).to include('health' => 'repairing').or include('health' => 'ok')
    expect(st['last_failure']['text']).to match(/not running/)
    events = call(:main, 'op' => 'events', 'name' => 'mh')['events']
    failure = events.find { |e| e['type'] == '-failure' && e['slot'] == 'mh-node-1' }
    repair = events.find { |e| e['type'] == '+repair' && e['slot'] == 'mh-node-1' }
    expect(failure).not_to be_nil
    expect(repair).to include('text' => 'start', 'host' => '127.0.0.1')
    expect(repair['epoch']).to be >= 1
    expect(repair['seq']).to be > failure['seq']
    expect(log(:main)).to match(/\+repair cloud=mh slot=mh-node-1 host=127\.0\.0\.1 epoch=\d+ start/)
    # the operator's view
    out, = ctl(:main, 'events', 'mh')
    expect(out).to match(/-failure\s+mh-node-1/).and match(/\+repair\s+mh-node-1\s+127\.0\.0\.1\s+start/)
    out, = ctl(:main, 'status', 'mh')
    expect(out).to include('HEALTH').and include('LAST FAILURE').and match(/mh-node-1\s.*\ds ago: its domain is not running/)
    expect(out).to match(/1 repair since the last apply/)
    # what the next Puppet run reports (the provider reads it from the status)
    repaired = Cloud.new(spec('mh'), socket: sock(:main), state_dir: state(:main), autostart: false).status['repaired']
    expect(repaired.map { |e| [e['type'], e['slot']] }).to include(['-failure', 'mh-node-1'], ['+repair', 'mh-node-1'])
  end

  it 'reports the repairs in the next apply, then starts counting again' do
    res = apply(:main, spec('mh'))
    expect(res['changed']).to eq(0)
    expect(res['status']['repairs']).to eq(1)
    expect(call(:main, 'op' => 'status', 'name' => 'mh')['clouds'][0]).to include('repairs' => 0, 'repaired' => [])
  end

  it 'backs off, then stops repairing a flapping slot and reports it' do
    health = { 'max_restarts' => 2, 'window_ms' => 60_000, 'backoff_ms' => 300, 'backoff_max_ms' => 300 }
    expect(apply(:main, spec('mf', health))['changed']).to eq(3)
    # failure 1: restarted at once; failure 2: after the backoff; failure 3: flapping
    2.times do |k|
      ctl(:main, 'fault', 'mf', 'mf-node-0')
      wait_for("mf-node-0 to run again after fault #{k + 1}") { slot_state(:main, 'mf-node-0') == 'running' }
    end
    ctl(:main, 'fault', 'mf', 'mf-node-0')
    st = wait_for('mf-node-0 to be reported flapping') do
      s = slot_status(:main, 'mf', 'mf-node-0')
      s if s && s['health'] == 'flapping'
    end
    expect(st['state']).to eq('shutoff')
    sleep 1.5 # two sweeps: it stays down while flapping
    expect(slot_state(:main, 'mf-node-0')).to eq('shutoff')
    types = call(:main, 'op' => 'events', 'name' => 'mf')['events'].select { |e| e['slot'] == 'mf-node-0' }.map { |e| e['type'] }
    expect(types).to include('=backoff', '-flapping')
    expect(types.count('+repair')).to be >= 2
    # the other slots are untouched
    expect(slot_state(:main, 'mf-node-1')).to eq('running')
    out, = ctl(:main, 'status', 'mf')
    expect(out).to match(/mf-node-0\s.*shutoff\s+flapping/)
  end

  it 'keeps its history across a restart of the daemon' do
    before = call(:main, 'op' => 'events', 'name' => 'mh')['events'].size
    stop_daemon(:main)
    start_daemon(:main, '--allow-faults')
    after = call(:main, 'op' => 'events', 'name' => 'mh')['events']
    expect(after.size).to be >= before
    expect(after.map { |e| e['type'] }).to include('+repair')
  end

  it 'repairs nothing with --no-monitor (the control)' do
    start_daemon(:off, '--no-monitor', '--allow-faults')
    expect(apply(:off, spec('mo'))['changed']).to eq(3)
    ctl(:off, 'fault', 'mo', 'mo-node-2')
    sleep 2.5 # more than two sweeps of the monitored daemon
    expect(slot_state(:off, 'mo-node-2')).to eq('shutoff')
    out, ok = ctl(:off, 'fault', 'mo', 'mo-node-2')
    expect(ok).to be(false)
    expect(out).to include('no running domain')
  end

  it 'refuses fault injection unless started with --allow-faults' do
    start_daemon(:strict)
    expect(apply(:strict, spec('ms'))['changed']).to eq(3)
    out, ok = ctl(:strict, 'fault', 'ms', 'ms-node-0')
    expect(ok).to be(false)
    expect(out).to include('--allow-faults')
    %i[main off strict].each do |w|
      %w[mh mf mo ms].each { |n| call(w, 'op' => 'stop', 'name' => n) }
    end
  end
end
