# frozen_string_literal: true

# Self-healing benchmark (issue 5, doc/MONITOR.md item 6): how fast cloudd's leader repairs what
# breaks, and what watching costs it, on libvirt's test driver embedded in each cloudd.
#
#   rake bench:monitor            (= rake compile && ruby bench/monitor.rb; as root for 127.0.0.2-4)
#   CELLS="crash crash_no_sweep member_crash sweep_only host_death leader_death idle"   a subset
#   CRASH_TRIALS=200 CRASH_SLOTS=4 MEMBER_CRASH_TRIALS=100 MEMBER_SLOTS=24 SWEEP_TRIALS=20
#   HOST_TRIALS=20 LEADER_TRIALS=20 PHASE_MS=100 (random pause before each fault)
#   IDLE="1x1000 10x100"  IDLE_SECONDS=60   (clouds x slots per cloud, one daemon per layout)
#   SEED=1 KEEP=1 DEBUG=1
#
# Cells
#   crash           one cloudd (defaults: domain events + the 5 s sweep), a cloud of CRASH_SLOTS
#                   slots on pool ['127.0.0.1'], health {backoff_ms 0, max_restarts 1000,
#                   window_ms 1000} so that the restart policy never holds a repair; per trial one
#                   `fault` request (what `cloudctl fault` sends: the daemon destroys the slot's
#                   domain behind the engine's back), slots in turn, after a random 0-PHASE_MS ms.
#                   Latency = from the daemon's `-vm-run dom=S why=fault` line (logged and flushed
#                   just before virDomainDestroy) to its next `+vm-run dom=S` line (logged and
#                   flushed just before virDomainCreate): "restart issued". Both are CLOCK_REALTIME
#                   stamps of the same process with 1 ms resolution (truncated). Then a second
#                   pass of CRASH_TRIALS faults in which the client, after the fault's answer, asks
#                   for `domains` (what `cloudctl domains` sends) in a loop until the slot runs
#                   again: "seen running", from sending the fault to that answer, client clock with
#                   sub-ms resolution (an upper bound: it includes both requests' round trips; the
#                   polling competes with the repair, so the log figure is taken without it).
#   crash_no_sweep  the same with `cloudd --no-sweep`: domain events only.
#   member_crash    a pool of three cloudd (127.0.0.2-4, as pool_spec), a cloud of MEMBER_SLOTS
#                   slots; the fault hits a slot on a member, not the leader: the member's monitor
#                   sees the lifecycle event and tells the leader (`+forward` in its log), whose
#                   repair starts the domain through the member's daemon (`+vm-run` in the
#                   member's log; both logs stamp the same machine's clock). A slot is faulted
#                   again only after SLOT_GAP_S (16 s): a slot is healthy again once a run sees it
#                   running CL_MONITOR_STABLE_MS (10 s) after its repair, and a second failure
#                   before that escalates to a re-placement on another host, a different repair
#                   than the restart measured here; 16 s = 10 s + one sweep (5 s) + 1 s. (On one host
#                   the escalation has nowhere to go and restarts in place: the crash cells fault
#                   their 4 slots in turn without a gap.) The leader's `+repair` lines are tallied
#                   by action to show which repair was measured.
#   sweep_only      the same pool, but the members run `--no-monitor`: no domain events are
#                   watched or forwarded there, so the leader's periodic sweep (5 s, the default)
#                   is the only way it learns; the fault lands at a random phase (0-5 s) of it.
#   host_death      a pool of three cloudd on 127.0.0.2-4 (own socket, state, log, hypervisor),
#                   a cloud of 6 slots; SIGKILL a member (not the leader) that holds slots, after a
#                   random 0-1000 ms phase. Latency = from just before kill(2) (CLOCK_REALTIME) to
#                   the last of the victim's slots' first `+vm-run dom=S` line in a surviving
#                   host's log; then the leader's status must say running, no slot on the dead
#                   host, 6 domains (no second copy). The victim is restarted and rejoins before the
#                   next trial; slots stay where they were re-placed, so the victim is drawn among
#                   the members holding slots at the time.
#   leader_death    a fresh pool per trial (the leader holds 2 of the 6 slots), SIGKILL the leader;
#                   the same latency, and the election (`+leader ... leader=127.0.0.3` in the new
#                   leader's log) apart.
#   idle            one cloudd, IDLE layouts of C clouds x S slots, converged; then IDLE_SECONDS
#                   of watching with the default sweep (5 s): CPU % of one core from utime+stime of
#                   /proc/PID/stat over the window, VmRSS of /proc/PID/status sampled every 0.5 s
#                   (min/max), VmHWM at the end, VmRSS of the daemon before its first apply, and
#                   the floor: the peak RSS of bench/bare.c making the same number of test-driver
#                   domains in a process of its own (libvirt alone). One sweep's cost: CPU time
#                   of the window per sweep run (one run per cloud per sweep, each a repair run of
#                   the engine), the gaps between a cloud's sweeps' `=converged` lines minus the
#                   interval (the next sweep is timed from the end of the last; with several
#                   clouds this includes waiting for the others' runs: one worker), and a
#                   `monitor` request's round trip (the same engine run, asked by a client).
#
# Every daemon started here is killed by PID (TERM, then KILL), also on failure; each runs under
# `setpriv --pdeathsig TERM`. The product (bin/cloudd, lib/cloud_ext.so) is copied to the
# temporary directory first: a `rake compile` in another shell does not change what is measured.
require 'etc'
require 'fileutils'
require 'json'
require 'socket'
require 'time'
require 'tmpdir'

ROOT = File.expand_path('..', __dir__)
CELLS = ENV.fetch('CELLS', 'crash crash_no_sweep member_crash sweep_only host_death leader_death idle').split
CRASH_TRIALS = Integer(ENV.fetch('CRASH_TRIALS', '200'))
CRASH_SLOTS = Integer(ENV.fetch('CRASH_SLOTS', '4'))
MEMBER_CRASH_TRIALS = Integer(ENV.fetch('MEMBER_CRASH_TRIALS', '100'))
SWEEP_TRIALS = Integer(ENV.fetch('SWEEP_TRIALS', '20'))
HOST_TRIALS = Integer(ENV.fetch('HOST_TRIALS', '20'))
LEADER_TRIALS = Integer(ENV.fetch('LEADER_TRIALS', '20'))
IDLE = ENV.fetch('IDLE', '1x1000 10x100').split.map { |l| l.split('x').map { |x| Integer(x) } }
IDLE_SECONDS = Integer(ENV.fetch('IDLE_SECONDS', '60'))
PHASE_MS = Integer(ENV.fetch('PHASE_MS', '100'))
RNG = Random.new(Integer(ENV.fetch('SEED', '1')))
HEALTH = { 'backoff_ms' => 0, 'max_restarts' => 1000, 'window_ms' => 1000 }.freeze
POOL3 = %w[127.0.0.2 127.0.0.3 127.0.0.4].freeze
POOL_SLOTS = 6
MEMBER_SLOTS = Integer(ENV.fetch('MEMBER_SLOTS', '24'))
SLOT_GAP_S = 16
# INFO lines are buffered; a daemon without peers flushes them on its 2 s housekeeping timer
LOG_SETTLE_S = 2.3

def dbg(msg) = ENV['DEBUG'] && warn("debug: #{msg}")
def now_ms = Process.clock_gettime(Process::CLOCK_REALTIME, :float_millisecond)
def mono = Process.clock_gettime(Process::CLOCK_MONOTONIC)
def load_average = File.read('/proc/loadavg').split.first(3).join(' ')

def wait_for(what, timeout: 20, every: 0.01)
  deadline = mono + timeout
  loop do
    v = yield
    return v if v
    raise "timed out after #{timeout}s waiting for #{what}" if mono > deadline

    sleep every
  end
end

def pct(a, p)
  return nil if a.nil? || a.empty?

  s = a.sort
  s[[(p / 100.0 * s.size).ceil - 1, 0].max]
end

$children = []

def spawn_tracked(*cmd, **opts)
  pid = Process.spawn('setpriv', '--pdeathsig', 'TERM', *cmd, in: File::NULL, **opts)
  $children << pid
  pid
end

# Signal a process started here and reap it (TERM, then KILL after grace).
def kill_pid(pid, sig = 'TERM', grace: 3)
  return unless pid

  begin
    Process.kill(sig, pid)
  rescue Errno::ESRCH
    nil
  end
  deadline = mono + grace
  loop do
    return if Process.waitpid(pid, Process::WNOHANG)
    break if mono > deadline

    sleep 0.01
  end
  Process.kill('KILL', pid)
  Process.waitpid(pid)
rescue Errno::ESRCH, Errno::ECHILD
  nil
ensure
  $children.delete(pid)
end

TMP = Dir.mktmpdir('cloud-monitor-bench')
at_exit do
  $children.dup.each { |p| kill_pid(p) }
  FileUtils.rm_rf(TMP) unless ENV['KEEP'] == '1'
end
%w[INT TERM].each { |s| trap(s) { exit 130 } }

SNAP = File.join(TMP, 'product')
FileUtils.mkdir_p(SNAP)
%w[bin/cloudd lib/cloud_ext.so].each do |f|
  src = File.join(ROOT, f)
  raise "#{src} is missing: run `rake compile`" unless File.exist?(src)

  FileUtils.cp(src, SNAP)
end
require File.join(SNAP, 'cloud_ext.so')
BIN = File.join(SNAP, 'cloudd')
TEMPLATE = File.read(File.join(ROOT, 'modules/web/files/template-test.xml'))
SECRET = File.join(TMP, 'secret')
File.write(SECRET, Random.new.bytes(32).unpack1('H*'))
File.chmod(0o600, SECRET)
$port = 20_000 + ((Process.pid + 13) % 20_000)

# `2026-11-29T04:34:42.207Z cloudd INFO +vm-run dom=...`: [wall ms, event, rest]
LOG_RE = /\A(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z \S+ \S+ (\S+) ?(.*)/
def log_lines(path, offset = 0)
  return [] unless File.exist?(path)

  File.open(path) do |f|
    f.seek(offset)
    f.each_line.filter_map do |l|
      m = LOG_RE.match(l) or next
      [Time.utc(*m[1..6].map(&:to_i)).to_i * 1000 + m[7].to_i, m[8], m[9]]
    end
  end
end

def spec(name, slots:, pool:, health: HEALTH, net: 9)
  s = { 'name' => name, 'type' => 'cloud', 'ensure' => 'running', 'pool' => pool,
        'hypervisor' => 'test:///default', 'template' => TEMPLATE,
        'roles' => [{ 'name' => 'node', 'after' => [], 'health' => health }],
        'slots' => (0...slots).map do |i|
          { 'name' => "#{name}-node-#{i}", 'roles' => ['node'], 'index' => i,
            'ip' => "10.#{net}.#{i / 250}.#{(i % 250) + 1}", 'image' => '/var/lib/cloud/images/node.qcow2' }
        end }
  s['secret_file'] = SECRET if pool.size > 1
  s
end

# One cloudd: its own socket, state directory, log (and, in a pool, address and peer port).
class Daemon
  attr_reader :dir, :pid, :host

  def initialize(dir, host: nil, port: nil, extra: [])
    @dir = dir
    @host = host
    @port = port
    @extra = extra
    FileUtils.mkdir_p(@dir)
    start
  end

  def sock = File.join(@dir, 'cloudd.sock')
  def state = File.join(@dir, 'state')
  def log = File.join(@dir, 'log')
  def log_size = File.exist?(log) ? File.size(log) : 0

  def start
    FileUtils.rm_f(sock)
    args = ['--socket', sock, '--state-dir', state, '--log', log]
    args += ['--address', @host, '--peer-port', @port.to_s] if @host
    @pid = spawn_tracked(BIN, *args, *@extra)
    wait_for("cloudd #{@host || @dir} to answer", every: 0.02) { File.socket?(sock) && call('op' => 'hello') }
  end

  def call(req, timeout = 30)
    UNIXSocket.open(sock) do |s|
      s.write("#{JSON.generate(req.merge('v' => 1))}\n")
      raise Errno::ETIMEDOUT unless s.wait_readable(timeout)

      JSON.parse(s.read.lines.last)
    end
  rescue SystemCallError, JSON::ParserError, NoMethodError
    nil
  end

  def status(name) = call('op' => 'status', 'name' => name)&.dig('clouds', 0)

  def apply(the_spec)
    c = Cloud.new(the_spec, socket: sock, state_dir: state, autostart: false)
    c.leader_start
  ensure
    c&.close if c.respond_to?(:close)
  end

  def kill!(sig)
    Process.kill(sig, @pid)
    Process.waitpid(@pid)
    $children.delete(@pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  def stop = kill_pid(@pid)

  # /proc: utime+stime of the whole process (clock ticks); a kB field of /proc/PID/status
  def cpu_ticks = File.read("/proc/#{@pid}/stat").split(') ').last.split[11, 2].sum(&:to_i)
  def proc_kb(key) = File.read("/proc/#{@pid}/status")[/^#{key}:\s+(\d+) kB/, 1].to_i
end

# ------------------------------------------------------------------------------------------ cells

# One fault on slot (through daemon d that hosts it); the restart found in logs (all of them:
# the leader may start it through another host's daemon). With poll, the client also asks d for
# its domains in a loop (`domains`, what `cloudctl domains` sends) until the slot runs again.
# [restart ms (logs), fault sent -> seen running ms (client) or nil]
def fault_trial(d, cloud, slot, logs, timeout: 20, poll: false)
  offsets = logs.to_h { |l| [l, File.size?(l) || 0] }
  sleep(RNG.rand(PHASE_MS + 1) / 1000.0)
  t_req = now_ms
  res = d.call('op' => 'fault', 'name' => cloud, 'slot' => slot)
  raise "fault #{slot}: #{res.inspect}" unless res && res['ok'] != false

  t_seen = nil
  if poll
    wait_for("#{slot} seen running again", timeout: timeout, every: 0) do
      doms = d.call('op' => 'domains')&.dig('domains') || []
      doms.any? { |x| x['slot'] == slot && x['state'] == 'running' } && (t_seen = now_ms)
    end
  end
  t_fault = nil
  t_run = nil
  wait_for("#{slot} to be restarted", timeout: timeout, every: 0.002) do
    t_fault ||= log_lines(d.log, offsets[d.log]).find { |_, ev, rest| ev == '-vm-run' && rest.start_with?("dom=#{slot} why=fault") }&.first
    t_fault && logs.each do |l|
      hit = log_lines(l, offsets[l]).find { |t, ev, rest| ev == '+vm-run' && rest.start_with?("dom=#{slot} uri=") && t >= t_fault }
      t_run = [t_run, hit[0]].compact.min if hit
    end
    t_run
  end
  [t_run - t_fault, t_seen && (t_seen - t_req).round(2)]
end

def crash_cell(label, extra)
  d = Daemon.new(File.join(TMP, label), extra: ['--allow-faults', *extra])
  name = label == 'crash' ? 'mc' : 'mn'
  sp = spec(name, slots: CRASH_SLOTS, pool: ['127.0.0.1'])
  res = d.apply(sp)
  raise "#{label}: converged #{res['changed']} of #{CRASH_SLOTS}" unless res['changed'] == CRASH_SLOTS

  sleep 0.3
  out = { restart: [], client: [] }
  CRASH_TRIALS.times do |i|
    ms, = fault_trial(d, name, "#{name}-node-#{i % CRASH_SLOTS}", [d.log])
    out[:restart] << ms
  end
  CRASH_TRIALS.times do |i|
    _, cl = fault_trial(d, name, "#{name}-node-#{i % CRASH_SLOTS}", [d.log], poll: true)
    out[:client] << cl
  end
  # checks: every slot running, one domain each, each fault repaired (restarts counted)
  st = wait_for("#{label}: every slot running") do
    s = d.status(name)
    s if s && s['state'] == 'running' && s['domains'] == CRASH_SLOTS
  end
  restarts = st['slots'].sum { |s| s['restarts'].to_i }
  sleep LOG_SETTLE_S
  out[:actions] = repair_actions(log_lines(d.log), name)
  failures = log_lines(d.log).count { |_, ev, rest| ev == '-failure' && rest.start_with?("cloud=#{name} ") }
  holds = log_lines(d.log).count { |_, ev, _| %w[=backoff -flapping].include?(ev) }
  raise "#{label}: #{restarts} restarts counted for #{2 * CRASH_TRIALS} faults" unless restarts == 2 * CRASH_TRIALS
  raise "#{label}: the policy held #{holds} repair(s)" unless holds.zero?

  out[:checks] = "restarts=#{restarts} failures=#{failures} held=#{holds}"
  out
ensure
  d&.stop
end

# A pool of three cloudd on 127.0.0.2-4, a cloud of 6 slots converged from the leader (.2).
class Pool
  attr_reader :daemons, :name

  def initialize(tag, name, extra: [], member_extra: [], slots: POOL_SLOTS)
    $port += 1
    @port = $port
    @name = name
    @dir = File.join(TMP, tag)
    @extra = extra
    @nslots = slots
    @spec = spec(name, slots: slots, pool: POOL3, net: 8)
    @daemons = {}
    POOL3.each do |h|
      @daemons[h] = Daemon.new(File.join(@dir, h), host: h, port: @port,
                               extra: extra + (h == POOL3[0] ? [] : member_extra))
    end
    POOL3.each { |h| join(h) }
    wait_stable
    res = leader.apply(@spec)
    raise "pool #{tag}: converged #{res['changed']} of #{slots}" unless res['changed'] == slots

    wait_converged
  rescue StandardError => e
    evidence(e)
    stop
    raise
  end

  # The pool's logs and state, kept under bench/out (git-ignored) for a failure report.
  def evidence(err)
    dest = File.join(ROOT, 'bench/out', "monitor-evidence-#{Time.now.utc.strftime('%Y%m%dT%H%M%SZ')}-#{File.basename(@dir)}")
    FileUtils.mkdir_p(dest)
    FileUtils.cp_r(Dir[File.join(@dir, '*')], dest)
    File.write(File.join(dest, 'error.txt'), "#{err.message}\n#{err.backtrace&.first(5)&.join("\n")}\n")
    warn "  evidence kept in #{dest}"
  rescue StandardError => e2
    warn "  could not keep the evidence: #{e2.message}"
  end

  def leader = @daemons[POOL3[0]]
  def logs = @daemons.values.map(&:log)
  def join(h) = @daemons[h].call('op' => 'leader', 'spec' => @spec) || raise("#{h} did not join")

  def election(h) = @daemons[h].call('op' => 'leader', 'spec' => @spec)&.dig('election')

  def wait_stable(lead = POOL3[0], timeout: 30)
    els = nil
    wait_for("#{@name}: #{lead} leading, acting, every member heard", timeout: timeout, every: 0.05) do
      els = @daemons.keys.map { |h| election(h) }
      els.all? { |e| e && e['leader'] == lead } && els[POOL3.index(lead)]['acting'] &&
        els[POOL3.index(lead)]['members'].all? { |m| m['alive'] }
    end
  rescue RuntimeError => e
    seen = @daemons.keys.zip(els || []).map do |h, el|
      next "#{h}: no answer" unless el

      "#{h}: leader=#{el['leader'].inspect} state=#{el['state']} acting=#{el['acting']} epoch=#{el['epoch']} " \
        "alive=#{(el['members'] || []).map { |m| "#{m['host']}:#{m['alive']}" }.join(',')}"
    end
    raise "#{e.message} (last seen: #{seen.join('; ')})"
  end

  # running on live hosts, one domain per slot, every member heard
  def wait_converged(lead = POOL3[0], timeout: 30)
    wait_for("#{@name}: converged under #{lead}", timeout: timeout, every: 0.05) do
      st = @daemons[lead].status(@name)
      st if st && st['state'] == 'running' && st['domains'] == @nslots &&
            st.dig('election', 'members')&.all? { |m| m['alive'] }
    end
  end

  def placement(lead = POOL3[0]) = @daemons[lead].status(@name)['slots'].to_h { |s| [s['name'], s['host']] }

  def stop = @daemons.each_value(&:stop)

  # SIGKILL victim; [ms to the last of its slots' +vm-run elsewhere, election ms or nil, slots]
  def kill_trial(victim, lead)
    slots = placement.select { |_, h| h == victim }.keys
    raise "#{victim} holds no slot" if slots.empty?

    live = @daemons.keys - [victim]
    offsets = live.to_h { |h| [h, @daemons[h].log_size] }
    sleep(RNG.rand(1000) / 1000.0) # a random phase of the heartbeats
    t0 = now_ms
    @daemons[victim].kill!('KILL')
    runs = {}
    wait_for("#{victim}'s slots #{slots.join(',')} running elsewhere", timeout: 30, every: 0.005) do
      live.each do |h|
        log_lines(@daemons[h].log, offsets[h]).each do |t, ev, rest|
          next unless ev == '+vm-run'

          s = rest[/\Adom=(\S+) uri=/, 1]
          runs[s] = [runs[s], t].compact.min if slots.include?(s)
        end
      end
      runs.size == slots.size
    end
    st = wait_for("#{@name}: status under #{lead}: running, nothing on #{victim}", timeout: 30, every: 0.05) do
      s = @daemons[lead].status(@name)
      s if s && s['state'] == 'running' && s['slots'].none? { |x| x['host'] == victim }
    end
    raise "#{@name}: #{st['domains']} domains for #{@nslots} slots" unless st['domains'] == @nslots

    elected = log_lines(@daemons[lead].log, offsets[lead]).find do |_, ev, rest|
      ev == '+leader' && rest.start_with?("cloud=#{@name} leader=#{lead}")
    end
    [(runs.values.max - t0).round(1), elected && (elected[0] - t0).round(1), slots.size]
  end

  def restart(victim)
    @daemons[victim].start
    join(victim)
    wait_stable
    wait_converged
  end
end

# Faults on slots held by members (the one with the most slots, the first of them by name);
# with sweep, after a random phase of up to one sweep interval (5 s).
def member_crash_cell(label, trials, member_extra, sweep)
  name = sweep ? 'ms' : 'mm'
  pool = Pool.new(label, name, extra: ['--allow-faults'], member_extra: member_extra, slots: MEMBER_SLOTS)
  out = { restart: [], client: [] }
  off = pool.leader.log_size
  last = Hash.new(-1e9) # slot => mono time of its last fault
  trials.times do
    pl = pool.placement
    # the member slot faulted longest ago, and not within SLOT_GAP_S (see the header)
    slot = pl.keys.reject { |s| pl[s] == POOL3[0] }.min_by { |s| [last[s], s] } or raise 'no slot on a member'
    wait = last[slot] + SLOT_GAP_S - mono
    sleep wait if wait.positive?
    sleep(RNG.rand(5000) / 1000.0) if sweep
    last[slot] = mono
    ms, = fault_trial(pool.daemons[pl[slot]], name, slot, pool.logs, timeout: 20)
    out[:restart] << ms
    pool.wait_converged
  end
  sleep LOG_SETTLE_S
  out[:actions] = repair_actions(log_lines(pool.leader.log, off), name)
  fwd = pool.logs.sum { |l| log_lines(l).count { |_, ev, _| ev == '+forward' } }
  out[:checks] = "+forward lines #{fwd} (members)"
  out
ensure
  pool&.stop
end

# `+repair cloud=C slot=S host=H epoch=E ACTION` lines of the leader: {action => count}
def repair_actions(lines, cloud)
  lines.select { |_, ev, rest| ev == '+repair' && rest.start_with?("cloud=#{cloud} ") }
       .map { |_, _, rest| rest.split.last }.tally.sort.to_h
end

def host_death_cell
  pool = Pool.new('host-death', 'mh')
  out = { restart: [], slots: [] }
  HOST_TRIALS.times do |i|
    pl = pool.placement
    cands = POOL3.drop(1).select { |h| pl.value?(h) }
    victim = cands[RNG.rand(cands.size)]
    begin
      ms, _, n = pool.kill_trial(victim, POOL3[0])
      dbg "host death #{victim} (#{n} slots): #{ms} ms"
      out[:restart] << ms
      out[:slots] << n
      pool.restart(victim)
    rescue StandardError => e
      pool.evidence(e)
      raise "trial #{i} (victim #{victim}): #{e.message}"
    end
  end
  out
ensure
  pool&.stop
end

def leader_death_cell
  out = { restart: [], election: [], slots: [] }
  LEADER_TRIALS.times do |i|
    pool = nil
    begin
      pool = Pool.new("leader-death-#{i}", 'ml')
      ms, el, n = pool.kill_trial(POOL3[0], POOL3[1])
    rescue StandardError => e
      # a trial that fails is reported (and its logs kept), the others still run
      pool&.evidence(e)
      (out[:failed] ||= []) << "trial #{i}: #{e.message}"
      warn "  leader_death trial #{i} FAILED: #{e.message}"
      next
    ensure
      pool&.stop
    end
    dbg "leader death (#{n} slots): #{ms} ms, election #{el} ms"
    out[:restart] << ms
    out[:election] << el if el
    out[:slots] << n
  end
  out
end

# The memory floor: bench/bare.c (a C loop linking libvirt only) making n test-driver domains in
# its own process, its peak RSS (GNU time's %M); nil if it cannot be built.
def bare_floor_mb(n)
  @bare_floor ||= {}
  @bare_floor[n] ||= begin
    bare = File.join(ROOT, 'build/bench/bare')
    system('make', '-s', '-C', ROOT, '-f', 'bench/Makefile', 'bare', out: File::NULL, err: File::NULL) unless File.exist?(bare)
    out = IO.popen(['/usr/bin/time', '-f', 'maxrss_kb=%M', bare, n.to_s, err: %i[child out]], &:read)
    kb = out[/maxrss_kb=(\d+)/, 1]
    kb && out.include?(%("running_after_converge":#{n})) ? (kb.to_i / 1024.0).round(1) : nil
  rescue SystemCallError
    nil
  end
end

def idle_cell(nclouds, nslots)
  d = Daemon.new(File.join(TMP, "idle-#{nclouds}x#{nslots}"))
  sleep 0.5
  rss_empty = d.proc_kb('VmRSS')
  t = mono
  names = (0...nclouds).map { |c| "mi#{c}" }
  names.each_with_index do |name, c|
    res = d.apply(spec(name, slots: nslots, pool: ['127.0.0.1'], net: 20 + c))
    raise "idle: #{name} converged #{res['changed']} of #{nslots}" unless res['changed'] == nslots
  end
  converge_s = mono - t
  names.each do |name|
    st = d.status(name)
    raise "idle: #{name} not running with #{nslots} domains" unless st['state'] == 'running' && st['domains'] == nslots
  end
  sleep 6 # the monitor's first runs after the applies, one sweep
  off = d.log_size
  load_before = load_average
  rss = []
  c0 = d.cpu_ticks
  t0 = mono
  while mono - t0 < IDLE_SECONDS
    rss << d.proc_kb('VmRSS')
    sleep 0.5
  end
  c1 = d.cpu_ticks
  wall = mono - t0
  hwm = d.proc_kb('VmHWM')
  anon = d.proc_kb('RssAnon')
  file = d.proc_kb('RssFile')
  sweeps = log_lines(d.log, off).select { |_, ev, rest| ev == '=converged' && rest.start_with?('cloud=mi') }
  # per cloud: gaps between its consecutive sweeps minus the interval = one run (+ wake-up)
  gaps = sweeps.group_by { |_, _, rest| rest[/cloud=(\S+)/, 1] }.values.flat_map do |l|
    l.map(&:first).each_cons(2).map { |a, b| b - a - 5000 }
  end
  rt = Array.new(3) do
    t1 = mono
    r = d.call('op' => 'monitor', 'name' => names[0])
    raise "idle: monitor request failed: #{r.inspect}" unless r && r['ok'] != false

    ((mono - t1) * 1000).round(1)
  end
  cpu_s = (c1 - c0).to_f / Etc.sysconf(Etc::SC_CLK_TCK)
  { cpu_pct: (cpu_s / wall * 100).round(2), cpu_ms_per_run: sweeps.empty? ? nil : (cpu_s * 1000 / sweeps.size).round(1),
    rss_empty_mb: (rss_empty / 1024.0).round(1), anon_mb: (anon / 1024.0).round(1), file_mb: (file / 1024.0).round(1), bare_floor_mb: bare_floor_mb(nclouds * nslots),
    cpu_s: cpu_s.round(2), wall_s: wall.round(1),
    rss_max_mb: (rss.max / 1024.0).round(1), rss_min_mb: (rss.min / 1024.0).round(1), hwm_mb: (hwm / 1024.0).round(1),
    sweeps: sweeps.size, sweep_gap_ms_p50: pct(gaps, 50), sweep_gap_ms_max: gaps.max,
    monitor_rt_ms: rt.sort[1], converge_s: converge_s.round(2), load_before: load_before,
    load_after: load_average, errors: log_lines(d.log, off).count { |_, ev, _| ev.start_with?('-') } }
ensure
  d&.stop
end

# ------------------------------------------------------------------------------------------ main
rev = `git -C #{ROOT} rev-parse --short HEAD 2>/dev/null`.strip
dirty = `git -C #{ROOT} status --porcelain ext 2>/dev/null`.strip.empty? ? '' : ' (+ uncommitted ext/)'
puts "monitor benchmark: CELLS=#{CELLS.join(',')} CRASH_TRIALS=#{CRASH_TRIALS} CRASH_SLOTS=#{CRASH_SLOTS} " \
     "MEMBER_CRASH_TRIALS=#{MEMBER_CRASH_TRIALS} HOST_TRIALS=#{HOST_TRIALS} LEADER_TRIALS=#{LEADER_TRIALS} " \
     "IDLE=#{IDLE.map { |a| a.join('x') }.join(',')} IDLE_SECONDS=#{IDLE_SECONDS}; cloudd at #{rev}#{dirty}; " \
     "#{Etc.nprocessors} cores; load average #{load_average}"
$stdout.flush
results = {}
failures = []
loads = {}
CELLS.each do |cell|
  before = load_average
  t = mono
  begin
    results[cell] = case cell
                    when 'crash' then crash_cell('crash', [])
                    when 'crash_no_sweep' then crash_cell('crash_no_sweep', ['--no-sweep'])
                    when 'member_crash' then member_crash_cell('member-crash', MEMBER_CRASH_TRIALS, [], false)
                    when 'sweep_only' then member_crash_cell('sweep-only', SWEEP_TRIALS, ['--no-monitor'], true)
                    when 'host_death' then host_death_cell
                    when 'leader_death' then leader_death_cell
                    when 'idle' then IDLE.to_h { |c, s| ["#{c}x#{s}", idle_cell(c, s)] }
                    else raise "unknown cell #{cell}"
                    end
  rescue StandardError => e
    failures << "#{cell}: #{e.message}"
    warn "FAILED #{cell}: #{e.message}"
    warn e.backtrace.first(3).join("\n") if ENV['DEBUG']
  end
  loads[cell] = "#{before} -> #{load_average} (#{(mono - t).round} s)"
  warn "  #{cell}: done in #{(mono - t).round} s, load #{loads[cell]}"
end

f1 = ->(x) { x.nil? ? 'NA' : (x.round(1) % 1).zero? ? x.round.to_s : x.round(1).to_s }
puts
puts "Load average per cell: #{loads.map { |c, l| "#{c} #{l}" }.join('; ')}"
puts '| cell | what | trials | p50 ms | p99 ms | max ms | seen running p50 ms | seen running p99 ms |'
puts '|---|---|---|---|---|---|---|---|'
{ 'crash' => 'domain crash -> restart issued (events + 5 s sweep)',
  'crash_no_sweep' => 'domain crash -> restart issued (--no-sweep: events only)',
  'member_crash' => 'domain crash on a member -> restart issued (event forwarded to the leader)',
  'sweep_only' => 'domain crash on a member -> restart issued (members --no-monitor: 5 s sweep only)',
  'host_death' => 'member SIGKILL -> its slots started elsewhere',
  'leader_death' => 'leader SIGKILL -> its slots started elsewhere' }.each do |cell, what|
  r = results[cell] or next
  a = r[:restart]
  c = r[:client] || []
  puts "| #{cell} | #{what} | #{a.size} | #{f1[pct(a, 50)]} | #{f1[pct(a, 99)]} | #{f1[a.max]} | " \
       "#{c.empty? ? '-' : pct(c, 50).round(2)} | #{c.empty? ? '-' : pct(c, 99).round(2)} |"
end
if (r = results['leader_death']) && !r[:election].empty?
  puts "| leader_death | of which: election (+leader line of the new leader) | #{r[:election].size} | " \
       "#{f1[pct(r[:election], 50)]} | #{f1[pct(r[:election], 99)]} | #{f1[r[:election].max]} | - | - |"
end
%w[crash crash_no_sweep member_crash sweep_only].each do |c|
  puts "#{c}: repairs by action (leader's +repair) #{results[c][:actions]}; #{results[c][:checks]}" if results[c]
end
%w[host_death leader_death].each do |c|
  puts "#{c}: slots held by the victim per trial #{results[c][:slots].tally.sort.to_h}" if results[c]
end
if (idle = results['idle'])
  puts
  puts '| layout | window s | CPU % of a core | CPU s | sweep runs | CPU ms per run | sweep gap - 5 s p50/max ms | ' \
       'monitor request ms | VmRSS min/max MB | RssAnon/RssFile MB | VmHWM MB | VmRSS empty MB | bare C floor MB | converge s | log warnings |'
  puts '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
  idle.each do |k, v|
    puts "| #{k} | #{v[:wall_s]} | #{v[:cpu_pct]} | #{v[:cpu_s]} | #{v[:sweeps]} | #{v[:cpu_ms_per_run]} | " \
         "#{v[:sweep_gap_ms_p50]}/#{v[:sweep_gap_ms_max]} | #{v[:monitor_rt_ms]} | #{v[:rss_min_mb]}/#{v[:rss_max_mb]} | " \
         "#{v[:anon_mb]}/#{v[:file_mb]} | #{v[:hwm_mb]} | " \
         "#{v[:rss_empty_mb]} | #{v[:bare_floor_mb] || 'NA'} | #{v[:converge_s]} | #{v[:errors]} |"
  end
  puts "idle load average: #{idle.map { |k, v| "#{k} #{v[:load_before]} -> #{v[:load_after]}" }.join('; ')}"
end
results.each do |cell, r|
  (r.is_a?(Hash) && r[:failed] || []).each { |f| failures << "#{cell} #{f}" }
end
failures.each { |f| puts "FAILED: #{f}" }

FileUtils.mkdir_p(File.join(ROOT, 'bench/out'))
out = File.join(ROOT, 'bench/out', "monitor-#{Time.now.utc.strftime('%Y%m%dT%H%M%SZ')}.json")
File.write(out, JSON.pretty_generate('rev' => "#{rev}#{dirty}", 'env' => ENV.select { |k, _| k =~ /TRIALS|SLOTS|IDLE|CELLS|SEED|PHASE/ },
                                     'loads' => loads, 'results' => results, 'failures' => failures))
puts "raw results: #{out}"
g = ->(c, p, k = :restart) { (r = results[c]) ? f1[pct(r[k], p)] : 'NA' }
first_idle = idle&.values&.first
puts "monitor crash_p50_ms=#{g['crash', 50]} crash_p99_ms=#{g['crash', 99]} " \
     "events_only_p99_ms=#{g['crash_no_sweep', 99]} member_p99_ms=#{g['member_crash', 99]} " \
     "sweep_only_p50_ms=#{g['sweep_only', 50]} " \
     "host_death_p50_ms=#{g['host_death', 50]} host_death_p99_ms=#{g['host_death', 99]} " \
     "leader_death_p50_ms=#{g['leader_death', 50]} leader_death_p99_ms=#{g['leader_death', 99]} " \
     "idle_cpu_pct=#{first_idle ? first_idle[:cpu_pct] : 'NA'} idle_rss_mb=#{first_idle ? first_idle[:rss_max_mb] : 'NA'}"
exit(failures.empty? ? 0 : 1)
