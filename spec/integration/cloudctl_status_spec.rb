# frozen_string_literal: true

# `cloudctl status` as an operator reads it (issue 6), against one cloudd on the embedded
# hypervisor: the header (state, leader and epoch, whether this host acts, members, monitor),
# the table of every slot (SLOT ROLES HOST STATE HEALTH RESTARTS LAST FAILURE, aligned, within 100
# columns), the summary line, colour only on a terminal without NO_COLOR, --json unchanged,
# --watch redrawing until SIGTERM/SIGINT and carrying on while the daemon is gone, and the
# read-only view without a daemon. Only the daemon and the cloudctl processes started here are
# signalled, by PID; conditions are polled with bounded waits.
require 'json'
require 'open3'
require 'pty'
require 'timeout'

require_relative 'support/cloudd_daemons'

RSpec.describe 'cloudctl status' do
  include_context 'cloudd daemons', 'cloud-status'

  def cloud_name = 'st'
  def daemon_args = %w[--sweep-ms 500 --allow-faults]

  before(:all) do
    start_daemon
    expect(Cloud.new(spec, socket: sock, state_dir: state, autostart: false).leader_start['changed']).to eq(3)
  end

  after(:all) do
    call(:main, 'op' => 'stop', 'name' => 'st') if daemon_running?
  end

  def spec
    {
      'name' => 'st', 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
      'hypervisor' => 'test:///default', 'template' => @template,
      'roles' => [{ 'name' => 'head', 'after' => [], 'health' => {} },
                  { 'name' => 'compute', 'after' => ['head'],
                    'health' => { 'max_restarts' => 1, 'window_ms' => 60_000, 'backoff_ms' => 0 } }],
      'slots' => [{ 'name' => 'st-head-0', 'roles' => %w[head compute], 'index' => 0, 'ip' => '10.0.8.1',
                    'image' => '/var/lib/cloud/images/node.qcow2' }] +
        (0..1).map do |i|
          { 'name' => "st-compute-#{i}", 'roles' => ['compute'], 'index' => i, 'ip' => "10.0.8.#{i + 2}",
            'image' => '/var/lib/cloud/images/node.qcow2' }
        end,
    }
  end

  def ctl(*args, env: {})
    out, st = Open3.capture2e(env, ClouddDaemons::CLOUDCTL, '--socket', sock, '--state-dir', state, *args)
    [out, st.exitstatus]
  end

  # The text of cloudctl on a terminal (a pty), with env.
  def on_tty(*args, env: {})
    out = +''
    PTY.spawn(env, ClouddDaemons::CLOUDCTL, '--socket', sock, *args) do |r, _w, pid|
      begin
        r.each_line { |l| out << l }
      rescue Errno::EIO
        nil # the child closed the terminal
      end
      Process.wait(pid)
    end
    out
  end

  # A --watch run with stdout on a pipe: the block gets a reader that returns what was printed so
  # far once pattern matched count times; then the process is signalled (sig) and its exit status
  # returned.
  def watching(*args, sig: 'TERM')
    r, w = IO.pipe
    pid = Process.spawn(ClouddDaemons::CLOUDCTL, '--socket', sock, '--state-dir', state, 'status', *args, out: w, err: w)
    w.close
    text = +''
    read_until = lambda do |pattern, count = 1|
      Timeout.timeout(10) do
        text << r.readpartial(65_536) until text.scan(pattern).size >= count
      end
      text
    end
    yield read_until
    Process.kill(sig, pid)
    status = nil
    Timeout.timeout(3) { _, status = Process.wait2(pid) }
    pid = nil
    status
  ensure
    stop_pid(pid) if pid
    r&.close
  end

  it 'prints a header, one aligned table of every slot and a summary, within 100 columns' do
    wait_for('the monitor to watch the cloud') { call(:main, 'op' => 'status', 'name' => 'st')&.dig('clouds', 0, 'monitor', 'watching') }
    out, code = ctl('status', 'st')
    expect(code).to eq(0)
    lines = out.lines.map(&:chomp)
    expect(lines[0]).to eq('Cloud st (cloud): running')
    expect(out).to match(/^  hypervisor: test:\/\/\/default$/)
      .and match(/^  leader:     127\.0\.0\.1 \(this host\), epoch \d+; this host acts$/)
      .and match(/^  members:    127\.0\.0\.1 \(this host, priority 0, leader\)$/)
      .and match(/^  monitor:    watching, sweep 0\.5 s, \d+ events$/)
    header = lines.find { |l| l.start_with?('  SLOT ') }
    expect(header).to match(/\A  SLOT +ROLES +HOST +STATE +HEALTH +RESTARTS  LAST FAILURE\z/)
    rows = lines.select { |l| l.match?(/\A  st-/) }
    expect(rows.size).to eq(3)
    expect(rows[0]).to match(/\A  st-head-0 +head,compute +127\.0\.0\.1 +running +ok +0  -\z/)
    %w[ROLES HOST STATE HEALTH LAST].each do |col|
      at = header.index(col)
      rows.each { |row| expect(row[at - 1]).to eq(' '), "#{col} misaligned in #{row.inspect}" }
      rows.each { |row| expect(row[at]).not_to eq(' ') }
    end
    expect(lines.last).to eq('  3/3 slots running')
    expect(lines.map(&:length).max).to be <= 100
    expect(out).not_to include("\e[") # not a terminal: no colour
  end

  it 'shows a failing slot: its state, health, restarts, last failure and the summary' do
    ctl('fault', 'st', 'st-compute-1')
    wait_for('the restart') { call(:main, 'op' => 'status', 'name' => 'st')&.dig('clouds', 0, 'slots', 2, 'restarts') == 1 }
    wait_for('the restarted domain running') { call(:main, 'op' => 'status', 'name' => 'st')&.dig('clouds', 0, 'slots', 2, 'state') == 'running' }
    ctl('fault', 'st', 'st-compute-1') # the second failure: flapping (max_restarts 1)
    wait_for('st-compute-1 flapping') { call(:main, 'op' => 'status', 'name' => 'st')&.dig('clouds', 0, 'slots', 2, 'health') == 'flapping' }
    out, = ctl('status', 'st')
    expect(out).to match(/^  st-compute-1 +compute +127\.0\.0\.1 +shutoff +flapping +1  \d+s ago: its domain is not run/)
    expect(out).to match(/^Cloud st \(cloud\): degraded$/)
    expect(out).to match(/since the last apply/)
    expect(out.lines.last.chomp).to eq('  2/3 slots running, 1 shutoff, 1 flapping')
    json, = ctl('status', 'st', '--json')
    doc = JSON.parse(json)
    expect(doc.keys).to eq(['clouds'])
    expect(doc['clouds'][0]['slots'][2]).to include('name' => 'st-compute-1', 'health' => 'flapping', 'state' => 'shutoff')
    expect(doc['clouds'][0]['slots'][2]['last_failure']).to include('text' => 'its domain is not running')
  end

  it 'colours only a terminal, and not with NO_COLOR' do
    tty = on_tty('status', 'st')
    expect(tty).to include("\e[32mrunning\e[0m").and include("\e[1mCloud st\e[0m")
    plain = on_tty('status', 'st', env: { 'NO_COLOR' => '1' })
    expect(plain).to include('Cloud st (cloud)')
    expect(plain).not_to include("\e[")
  end

  it 'watches: a frame every interval until SIGTERM, clearing the screen on a terminal' do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    status = watching('st', '--watch', '1') do |read|
      text = read.call(/^  \d+\/3 slots running/, 2)
      expect(text.scan(/^--- [-0-9]+ [:0-9]+ UTC: cloudctl status st, every 1 s ---$/).size).to be >= 2
      expect(text.scan(/^Cloud st \(cloud\)/).size).to be >= 2
    end
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be >= 1.0 # two frames, 1 s apart
    expect(status.exitstatus).to eq(0)
    # SIGINT ends it as cleanly
    expect(watching('--watch=0.2', sig: 'INT') { |read| read.call(/slots running/) }.exitstatus).to eq(0)
    # on a terminal: each frame clears the screen first
    out = +''
    PTY.spawn(ClouddDaemons::CLOUDCTL, '--socket', sock, 'status', '--watch', '0.2') do |r, _w, pid|
      Timeout.timeout(10) { out << r.readpartial(65_536) until out.scan("\e[H\e[2J").size >= 2 }
      Process.kill('TERM', pid)
      Timeout.timeout(3) { expect(Process.wait2(pid)[1].exitstatus).to eq(0) }
    end
    expect(out).to match(/Every 0\.2s: cloudctl status/)
  end

  it 'refuses bad arguments' do
    out, code = ctl('status', '--watch', '0')
    expect(code).to eq(2)
    expect(out).to include("--watch: '0' is not a number of seconds")
    out, code = ctl('status', '--watch=abc')
    expect(code).to eq(2)
    expect(out).to include('not a number of seconds')
    out, code = ctl('status', 'a', 'b')
    expect(code).to eq(2)
    expect(out).to include("unexpected argument 'b'")
  end

  it 'keeps watching while the daemon is gone, and reads the state without it' do
    status = watching('st', '--watch', '0.3') do |read|
      read.call(/slots running/)
      stop_daemon
      text = read.call(/cloudd not answering on #{Regexp.escape(sock)} \(no daemon\); trying again every 0\.3 s/)
      read.call(/read-only view from the state directory/) if text
      # the daemon is back: the watch shows it again
      start_daemon
      read.call(/cloudd not answering.*\n(?:.*\n)*?^  monitor:    (?!unknown)/)
    end
    expect(status.exitstatus).to eq(0)
    stop_daemon
    out, code = ctl('status', 'st')
    expect(code).to eq(0)
    expect(out).to include('monitor:    unknown (read-only view: no cloudd answers)')
    expect(out).to match(/^  st-head-0 .* missing /)
  end
end
