# frozen_string_literal: true

# The chaos test of issue 5 (doc/MONITOR.md, item 5), on the embedded hypervisor: N cloudd
# daemons (default 3), each in a network namespace of test/lab/netns-pool, run one cloud of
# several slots with short timers while, for CHAOS_SECONDS, faults are injected at random
# (seeded: CHAOS_SEED replays the choices) — the leader's daemon or a member's SIGKILLed and
# restarted later on the same state directory, a daemon frozen (SIGSTOP/SIGCONT), a slot's
# domain destroyed behind the daemon's back (`cloudctl fault`), a host's link cut and healed —
# never more than a minority of the hosts down, frozen or cut at once. Then every fault is
# undone and the cloud must converge within a bound; then it is stopped from its leader and
# nothing of it may be left on any host.
#
# The invariants are checked afterwards from the daemons' logs (one file per daemon start) and
# the harness's own records (kill, freeze, thaw, cut times), not by sampling:
#   (a) never two running domains of one slot at once on different hosts: running intervals
#       per (daemon, domain) from `+vm-run` (logged and flushed before the start) to `-vm-run`
#       (or the SIGKILL/exit of the daemon: the test driver's domains live in it);
#   (b) never two daemons acting in one epoch of the cloud (`+acting cloud=.. epoch=..`);
#   (c) after the faults stop, the cloud converges within CHAOS_CONVERGE_S: the acting leader
#       says running, every slot running, exactly one running copy of each slot over all hosts'
#       `domains`, on the host the leader placed it, every member following that leader — and
#       it stays so for CHAOS_HOLD_S;
#   (d) a stop from the leader (then the members forget the cloud) leaves no
#       domain of the cloud on any host, now or CHAOS_HOLD_S later, and no running interval
#       open in any log.
#
# A frozen daemon (SIGSTOP) freezes its test-driver domains with it: a frozen host, as a host
# whose kernel stalls. Its domains are taken as not running while it is frozen (nothing of
# them executes), and as running again from SIGCONT until its `-vm-run`. When another host
# started a copy of the slot meanwhile, the resumed copy must be gone within
# CHAOS_RESUME_GRACE_MS of the SIGCONT (default 100, the daemon's self-fencing tick): the
# daemon cannot act before it is scheduled again, but it must act first thing then. Longer is
# a violation; every such resume window is reported with its length.
#
# Timestamps: log lines carry CLOCK_REALTIME in ms, taken when the line is made; the harness
# records its own actions with the same clock, rounded so that an interval is never shorter
# than it can have been (a start rounds down, an end rounds up: the `-vm-run` of a fault, fence
# or restart is logged just before the destroy).
#
# Limits: a SIGKILLed daemon loses the lines it had not flushed yet (up to 100 ms; never the
# vm-run ones, flushed at once), so a `+acting` logged just before a kill can escape (b).
# `domains` lists only the hypervisors of the clouds a daemon knows: each host also runs a
# one-slot cloud of its own (`keepN`), so that (d) still sees the chaos cloud's leftovers on a
# member that has forgotten it.
#
# Only what this harness started is touched: daemons by PID, the namespaces it created
# (`netns-pool down`), its temporary directory. Needs root and `ip netns`.
require 'fileutils'
require 'json'
require 'open3'
require 'socket'
require 'time'
require 'tmpdir'

module Chaos
  ROOT = File.expand_path('../..', __dir__)
  NETNS_POOL = File.join(ROOT, 'test/lab/netns-pool')
  CLOUDD = File.join(ROOT, 'bin/cloudd')
  TEMPLATE = File.join(ROOT, 'modules/web/files/template-test.xml')
  RESULT = File.join(ROOT, 'build/chaos.json')
  KEPT_LOGS = File.join(ROOT, 'build/chaos-logs')
  CLOUD = 'chaos'
  PEER_PORT = 7946

  # Settings, from the environment (CHAOS_*), each with a moderate default.
  KINDS = %w[kill_leader kill_member freeze isolate slot_fault].freeze
  # The role's restart policy (spec roles[].health): no flapping pause (a slot hit six times in
  # a minute, its hosts' crashes counted, would otherwise stay down for the 10 min window: the
  # pause is monitor_spec's to test) and backoffs of at most 8 s, well inside the convergence
  # bound. CHAOS_HEALTH='{}' runs with the daemon's defaults.
  HEALTH = { 'max_restarts' => 1000, 'backoff_ms' => 1000, 'backoff_max_ms' => 8000 }.freeze

  Config = Struct.new(:seconds, :seed, :hosts, :slots, :converge_s, :hold_s, :fence_ms, :sweep_ms,
                      :gap_s, :down_s, :freeze_s, :cut_s, :kinds, :resume_grace_ms, :health,
                      :keep_logs, keyword_init: true) do
    def self.from_env(env = ENV)
      int = ->(k, d) { Integer(env.fetch(k, d.to_s), 10) }
      flt = ->(k, d) { Float(env.fetch(k, d.to_s)) }
      range = lambda do |k, d|
        lo, hi = env.fetch(k, d).split('-', 2).map { |x| Float(x) }
        raise ArgumentError, "#{k} must be LOW-HIGH seconds" unless hi && lo.positive? && hi >= lo

        lo..hi
      end
      kinds = env.fetch('CHAOS_KINDS', KINDS.join(',')).split(',').map(&:strip)
      raise ArgumentError, "CHAOS_KINDS: one or more of #{KINDS.join(',')}" if kinds.empty? || (kinds - KINDS).any?

      cfg = new(seconds: flt.call('CHAOS_SECONDS', 60), seed: int.call('CHAOS_SEED', Random.new_seed % (2**31)),
                hosts: int.call('CHAOS_HOSTS', 3), slots: int.call('CHAOS_SLOTS', 8),
                converge_s: flt.call('CHAOS_CONVERGE_S', 30), hold_s: flt.call('CHAOS_HOLD_S', 3),
                fence_ms: int.call('CHAOS_FENCE_MS', 1000), sweep_ms: int.call('CHAOS_SWEEP_MS', 1000),
                gap_s: range.call('CHAOS_GAP_S', '1-3'), down_s: range.call('CHAOS_DOWN_S', '1.5-5'),
                freeze_s: range.call('CHAOS_FREEZE_S', '0.2-3'), cut_s: range.call('CHAOS_CUT_S', '1-5'),
                kinds: kinds.map(&:to_sym), resume_grace_ms: int.call('CHAOS_RESUME_GRACE_MS', 100),
                health: JSON.parse(env.fetch('CHAOS_HEALTH', JSON.generate(HEALTH))),
                keep_logs: !env['CHAOS_KEEP_LOGS'].to_s.empty?)
      raise ArgumentError, 'CHAOS_HEALTH must be a JSON object' unless cfg.health.is_a?(Hash)
      raise ArgumentError, 'CHAOS_HOSTS must be 3..9' unless (3..9).cover?(cfg.hosts)
      raise ArgumentError, 'CHAOS_SLOTS must be 1..50' unless (1..50).cover?(cfg.slots)

      cfg
    end
  end

  def self.mono = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  # CLOCK_REALTIME in ms, as cl_log stamps its lines; rounded down (a start) or up (an end)
  def self.ms_floor = Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
  def self.ms_ceil = Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond) + 1
  def self.stamp(ms) = Time.at(ms / 1000r).utc.strftime('%H:%M:%S.%L')

  # Whether this machine can run the test, and why not.
  # Polls the block every `every` s until it gives a true value (returned); raises after timeout s.
  def self.wait_for(what, timeout, every: 0.1)
    deadline = mono + timeout
    loop do
      v = yield
      return v if v
      raise "timed out after #{timeout} s waiting for #{what}" if mono > deadline

      sleep every
    end
  end

  # The fault loop of a chaos run (this file's and the lab's, spec/lab_chaos): for @cfg.seconds,
  # one fault (inject) every rand(@cfg.gap_s) s, each fault's undo (undo(i, what)) when due in
  # @pending ([at, host, what]); then the count of @faults by kind. FAULT_TICK_S: the polling.
  module FaultLoop
    def chaos
      t_end = Chaos.mono + @cfg.seconds
      next_at = Chaos.mono + @rng.rand(@cfg.gap_s)
      while Chaos.mono < t_end
        undo_due
        if Chaos.mono >= next_at
          inject
          next_at = Chaos.mono + @rng.rand(@cfg.gap_s)
        end
        sleep self.class::FAULT_TICK_S
      end
      note("faults end: #{@faults.values.sum} injected (#{@faults.map { |k, v| "#{k} #{v}" }.join(', ')})")
    end

    def undo_due
      due, @pending = @pending.partition { |at, _, _| at <= Chaos.mono }
      due.each { |_, i, what| undo(i, what) }
    end
  end

  def self.available?
    return [false, 'needs root (network namespaces)'] unless Process.uid.zero?
    return [false, "#{CLOUDD} is not built (rake compile)"] unless File.executable?(CLOUDD)

    _out, st = Open3.capture2e('ip', 'netns', 'list')
    st.success? ? [true, nil] : [false, 'needs a working `ip netns`']
  rescue SystemCallError
    [false, 'needs `ip` (iproute2)']
  end

  # One daemon start on a host: its PID, log file and the times it began and ended.
  Incarnation = Struct.new(:host, :n, :pid, :log, :start_ms, :end_ms, :end_how, :freezes,
                           keyword_init: true) do
    def label = "h#{host}##{n}"
  end

  # ------------------------------------------------------------------------------------------
  # The pool: namespaces, daemons, control sockets
  # ------------------------------------------------------------------------------------------

  class Pool
    attr_reader :dir, :addrs, :incs

    def initialize(cfg, dir, say)
      @cfg = cfg
      @dir = dir
      @say = say
      @addrs = (1..cfg.hosts).map { |i| "10.77.0.#{i}" }
      @incs = [] # every daemon start, in order
      @current = {} # host index => Incarnation running now (nil: down)
      @up = false
    end

    def lab(*args)
      out, st = Open3.capture2e(NETNS_POOL, *args.map(&:to_s))
      raise "netns-pool #{args.join(' ')} failed: #{out}" unless st.success?

      out
    end

    def up
      @up = true # `down` undoes a partial `up` too
      lab('up', @dir, @cfg.hosts)
      @ns = (1..@cfg.hosts).to_h { |i| [i, lab('ns', @dir, i).strip] }
    end

    def hdir(i) = File.join(@dir, "h#{i}")
    def sock(i) = File.join(hdir(i), 'cloudd.sock')
    def state_dir(i) = File.join(hdir(i), 'state')
    def current(i) = @current[i]
    def hosts = (1..@cfg.hosts).to_a

    # Starts host i's daemon (a new incarnation, its own log file) and waits until it answers.
    def start(i)
      FileUtils.mkdir_p(hdir(i))
      n = @incs.count { |x| x.host == i } + 1
      log = File.join(hdir(i), "log.#{n}")
      start_ms = Chaos.ms_floor
      # `ip netns exec` execs the command: the PID is cloudd's
      pid = Process.spawn('ip', 'netns', 'exec', @ns.fetch(i), CLOUDD, '--socket', sock(i),
                          '--state-dir', state_dir(i), '--address', @addrs[i - 1],
                          '--peer-port', PEER_PORT.to_s, '--log', log, '--allow-faults',
                          '--fence-ms', @cfg.fence_ms.to_s, '--sweep-ms', @cfg.sweep_ms.to_s,
                          in: File::NULL, out: [File.join(hdir(i), "out.#{n}"), 'w'], err: %i[child out])
      inc = Incarnation.new(host: i, n: n, pid: pid, log: log, start_ms: start_ms, freezes: [])
      @incs << inc
      @current[i] = inc
      deadline = Chaos.mono + 10
      until call(i, { 'op' => 'hello' }, timeout: 1)&.dig('pid') == pid
        raise "cloudd h#{i} (pid #{pid}) did not answer within 10 s" if Chaos.mono > deadline
        raise "cloudd h#{i} (pid #{pid}) exited" if Process.wait(pid, Process::WNOHANG)

        sleep 0.02
      end
      inc
    end

    # SIGKILL: the host crashes, its domains with it (they end when the process is reaped).
    def kill(i)
      inc = @current.delete(i) or return
      Process.kill('KILL', inc.pid)
      Process.wait(inc.pid)
      inc.end_ms = Chaos.ms_ceil
      inc.end_how = 'SIGKILL'
      inc
    rescue Errno::ESRCH, Errno::ECHILD
      inc.end_ms ||= Chaos.ms_ceil
      inc.end_how ||= 'gone'
      inc
    end

    # SIGSTOP, and the time from which the process is known stopped (/proc state T).
    def freeze(i)
      inc = @current[i] or return
      Process.kill('STOP', inc.pid)
      deadline = Chaos.mono + 2
      sleep 0.001 until stopped?(inc.pid) || Chaos.mono > deadline
      inc.freezes << [Chaos.ms_ceil, nil]
      inc
    end

    # SIGCONT, its time taken before the signal (the domains may run from then on).
    def thaw(i)
      inc = @current[i] or return
      return inc unless inc.freezes.last && inc.freezes.last[1].nil?

      inc.freezes.last[1] = Chaos.ms_floor
      Process.kill('CONT', inc.pid)
      inc
    end

    def stopped?(pid)
      File.read("/proc/#{pid}/stat").split(') ').last.split.first == 'T'
    rescue SystemCallError
      true
    end

    def cut(i) = lab('cut', @dir, i)
    def heal(i) = lab('heal', @dir, i)

    # One request on host i's control socket: its final answer, or nil (no daemon, no answer
    # within timeout, not JSON).
    def call(i, req, timeout: 3)
      deadline = Chaos.mono + timeout
      UNIXSocket.open(sock(i)) do |s|
        s.write("#{JSON.generate(req.merge('v' => 1))}\n")
        buf = +''
        loop do
          left = deadline - Chaos.mono
          return nil if left <= 0
          next unless s.wait_readable(left)

          chunk = s.read_nonblock(1 << 16, exception: false)
          break if chunk.nil?
          next if chunk == :wait_readable

          buf << chunk
        end
        last = buf.lines.last
        last && JSON.parse(last)
      end
    rescue SystemCallError, IOError, JSON::ParserError
      nil
    end

    # Every daemon still running: SIGCONT if frozen, SIGTERM, SIGKILL after 5 s; end times kept.
    def stop_all
      @current.each_key.to_a.each do |i|
        inc = @current.delete(i)
        thaw_pid(inc)
        begin
          Process.kill('TERM', inc.pid)
          deadline = Chaos.mono + 5
          until Process.wait(inc.pid, Process::WNOHANG)
            if Chaos.mono > deadline
              Process.kill('KILL', inc.pid)
              Process.wait(inc.pid)
              break
            end
            sleep 0.02
          end
        rescue Errno::ESRCH, Errno::ECHILD
          nil
        end
        inc.end_ms = Chaos.ms_ceil
        inc.end_how = 'exit at the end'
      end
    end

    def thaw_pid(inc)
      thaw(inc.host) if inc.freezes.last && inc.freezes.last[1].nil?
    rescue SystemCallError
      nil
    end

    def down
      return unless @up

      out, st = Open3.capture2e(NETNS_POOL, 'down', @dir)
      @say.call("netns-pool down failed: #{out}") unless st.success?
    end
  end

  # ------------------------------------------------------------------------------------------
  # The analysis: logs and records -> violations
  # ------------------------------------------------------------------------------------------

  class Analysis
    LINE = /\A(\d{4}-\d\d-\d\dT[\d:.]+Z) (\S+) (\w+) (\S+) ?(.*)\z/
    Piece = Struct.new(:inc, :dom, :from, :to, :open_ev, :close_ev, :resumed, keyword_init: true)

    attr_reader :violations, :tolerated, :stats, :repairs

    # stopped: whether the cloud was stopped before the daemons exited (a domain of it still
    # running at their exit is then a leftover)
    def initialize(incs, slots, cfg, stopped: false)
      @incs = incs
      @slots = slots
      @cfg = cfg
      @stopped = stopped
      @violations = []
      @tolerated = []
      @stats = Hash.new(0)
      @starts = Hash.new { |h, k| h[k] = [] } # domain => every +vm-run time, any host
      @faulted = [] # [domain, time, evidence] of each `-vm-run why=fault`
      @repairs = [] # [ms from a fault to the slot's next start anywhere, evidence]
    end

    def run
      pieces = []
      acting = Hash.new { |h, k| h[k] = [] }
      @incs.each do |inc|
        lines = File.exist?(inc.log) ? File.readlines(inc.log, chomp: true) : []
        pieces.concat(intervals(inc, lines))
        lines.each_with_index do |l, no|
          m = LINE.match(l) or next
          next unless m[4] == '+acting' && m[5] =~ /cloud=(\S+) epoch=(\d+)/

          acting[[Regexp.last_match(1), Integer(Regexp.last_match(2))]] << ev(inc, no, l)
          @stats['acting'] += 1
        end
      end
      check_overlaps(pieces)
      repair_times
      acting.each do |(cloud, epoch), evs|
        next if evs.map { |e| e[:inc].host }.uniq.size < 2

        @violations << { 'kind' => 'two-acting-in-one-epoch', 'cloud' => cloud, 'epoch' => epoch,
                         'evidence' => evs.map { |e| e[:text] } }
      end
      @stats['epochs'] = acting.keys.map(&:last).uniq.size
      self
    end

    private

    def ms_of(ts) = (Time.iso8601(ts).to_r * 1000).floor

    def ev(inc, no, line) = { inc: inc, text: "#{File.basename(File.dirname(inc.log))}/#{File.basename(inc.log)}:#{no + 1}: #{line}" }

    # Running intervals of each domain of the cloud in one daemon's log, without its frozen
    # spans; a domain still running when the daemon ended ends with it.
    def intervals(inc, lines)
      open = {}
      out = []
      lines.each_with_index do |l, no|
        m = LINE.match(l) or next
        next unless %w[+vm-run -vm-run].include?(m[4])

        dom = m[5][/dom=(\S+)/, 1]
        next unless @slots.include?(dom)

        t = ms_of(m[1])
        if m[4] == '+vm-run'
          @stats['vm_runs'] += 1
          @starts[dom] << t
          open[dom] ||= [t, ev(inc, no, l)] # a second start without a stop: a restart here
        elsif open[dom]
          from, oev = open.delete(dom)
          why = m[5][/why=(\S+)/, 1]
          @stats["end_#{why}"] += 1
          @faulted << [dom, t, ev(inc, no, l)] if why == 'fault'
          out.concat(split(inc, dom, from, t + 1, oev, ev(inc, no, l)))
        end
      end
      open.each do |dom, (from, oev)|
        if @stopped && inc.end_how == 'exit at the end'
          @violations << { 'kind' => 'running-after-stop', 'slot' => dom, 'host' => inc.label,
                           'evidence' => [oev[:text], 'no -vm-run before the daemon exited, after the stop'] }
        end
        to = inc.end_ms || Float::INFINITY
        cev = { inc: inc, text: "harness: #{inc.label} (pid #{inc.pid}) #{inc.end_how || 'still running'} " \
                                "at #{inc.end_ms ? Chaos.stamp(inc.end_ms) : '-'}" }
        out.concat(split(inc, dom, from, to, oev, cev))
      end
      out
    end

    # [from, to) less the frozen spans of the daemon; a piece after a SIGCONT is "resumed".
    def split(inc, dom, from, to, oev, cev)
      pieces = []
      cur = from
      resumed = nil
      inc.freezes.each do |fs, fe|
        fe ||= Float::INFINITY
        next if fe <= cur || fs >= to

        pieces << Piece.new(inc: inc, dom: dom, from: cur, to: fs, open_ev: oev, close_ev: cev, resumed: resumed) if fs > cur
        cur = fe
        resumed = fe
      end
      pieces << Piece.new(inc: inc, dom: dom, from: cur, to: to, open_ev: oev, close_ev: cev, resumed: resumed) if to > cur
      pieces
    end

    # How long each slot whose domain the harness destroyed stayed without a start: from the
    # `-vm-run why=fault` to the slot's next `+vm-run` on any host (not counted: no start after).
    def repair_times
      @faulted.each do |dom, t, e|
        nxt = @starts[dom].select { |x| x >= t }.min or next
        @repairs << [nxt - t, e[:text]]
      end
      @repairs.sort_by!(&:first)
    end

    def check_overlaps(pieces)
      pieces.group_by(&:dom).each_value do |ps|
        ps.combination(2) do |a, b|
          next if a.inc.host == b.inc.host

          from = [a.from, b.from].max
          to = [a.to, b.to].min
          next unless from < to

          record_overlap(a, b, from, to)
        end
      end
    end

    def record_overlap(a, b, from, to)
      # a resumed copy (its daemon thawed meanwhile, the other copy started while it was frozen)
      # gets the grace after the SIGCONT
      r = [[a, b], [b, a]].find do |p, q|
        p.resumed && p.from == p.resumed && q.from < p.resumed && to <= p.resumed + @cfg.resume_grace_ms
      end
      item = { 'kind' => r ? 'resume-window' : 'two-running-copies', 'slot' => a.dom,
               'from' => Chaos.stamp(from), 'ms' => (to == Float::INFINITY ? 'open' : to - from),
               'hosts' => [a.inc.label, b.inc.label],
               'evidence' => [a, b].flat_map do |p|
                 fr = p.inc.freezes.map { |fs, fe| "#{Chaos.stamp(fs)}-#{fe ? Chaos.stamp(fe) : 'end'}" }
                 ["#{p.inc.label}: #{p.open_ev[:text]}", "#{p.inc.label}: #{p.close_ev[:text]}"] +
                   (fr.empty? ? [] : ["#{p.inc.label}: frozen (SIGSTOP..SIGCONT) #{fr.join(', ')}"])
               end }
      (r ? @tolerated : @violations) << item
    end
  end

  # ------------------------------------------------------------------------------------------
  # The run: setup, faults, recovery, convergence, stop, analysis
  # ------------------------------------------------------------------------------------------

  class Run
    include FaultLoop
    FAULT_TICK_S = 0.02
    attr_reader :result

    def initialize(cfg = Config.from_env, out: $stdout)
      @cfg = cfg
      @out = out
      @rng = Random.new(cfg.seed)
      @faults = Hash.new(0)
      @journal = [] # the harness's actions, for the report
      @violations = []
      @state = {} # host index => :up, :down, :frozen, :cut
      @pending = [] # [mono time, host, :restart | :thaw | :heal]
      @slots = (0...cfg.slots).map { |k| "#{CLOUD}-node-#{k}" }
    end

    def say(msg)
      @out.puts("chaos: #{msg}")
      @out.flush
    end

    def note(msg)
      @journal << "#{Chaos.stamp(Chaos.ms_floor)} #{msg}"
      say(msg)
    end

    def run
      ok, why = Chaos.available?
      raise "chaos test cannot run: #{why}" unless ok

      t_begin = Chaos.mono
      @tmp = Dir.mktmpdir('cloud-chaos')
      @pool = Pool.new(@cfg, @tmp, method(:say))
      say("seed=#{@cfg.seed} (replay: CHAOS_SEED=#{@cfg.seed}) hosts=#{@cfg.hosts} slots=#{@cfg.slots} " \
          "seconds=#{@cfg.seconds} fence_ms=#{@cfg.fence_ms} sweep_ms=#{@cfg.sweep_ms} dir=#{@tmp}")
      converge_s = nil
      error = nil
      stopped = false
      begin
        setup
        chaos
        converge_s = recover_and_converge
        stop_and_check
        stopped = true
      rescue StandardError => e
        error = "#{e.class}: #{e.message}"
        say("ERROR #{error}")
        e.backtrace.first(5).each { |l| say("  #{l}") }
      ensure
        @pool.stop_all
        analysis = Analysis.new(@pool.incs, @slots, @cfg, stopped: stopped).run
        @violations.concat(analysis.violations)
        finish(analysis, converge_s, error, Chaos.mono - t_begin)
        cleanup
      end
      @result
    end

    private

    def spec
      @spec ||= {
        'name' => CLOUD, 'type' => 'cloud', 'ensure' => 'running', 'pool' => @pool.addrs,
        'hypervisor' => 'test:///default', 'template' => File.read(TEMPLATE), 'secret_file' => @secret,
        'roles' => [{ 'name' => 'node', 'after' => [] }.merge(@cfg.health.empty? ? {} : { 'health' => @cfg.health })],
        'slots' => @slots.each_with_index.map do |s, k|
          { 'name' => s, 'roles' => ['node'], 'index' => k, 'ip' => "10.0.9.#{k + 1}",
            'image' => '/var/lib/cloud/images/node.qcow2' }
        end
      }
    end

    # A one-host cloud of one slot on each host, never touched: it keeps test:///default in the
    # host's state, so that `domains` still lists the host's domains once the chaos cloud is
    # forgotten there (the daemon only scans the hypervisors of the clouds it knows).
    def keeper(i)
      spec.merge('name' => "keep#{i}", 'pool' => [@pool.addrs[i - 1]],
                 'slots' => [{ 'name' => "keep#{i}-node-0", 'roles' => ['node'], 'index' => 0,
                               'ip' => "10.0.8.#{i}", 'image' => '/var/lib/cloud/images/node.qcow2' }])
    end

    def setup
      @secret = File.join(@tmp, 'secret')
      File.write(@secret, Random.new.bytes(32).unpack1('H*'))
      File.chmod(0o600, @secret)
      @pool.up
      @pool.hosts.each do |i|
        @pool.start(i)
        @state[i] = :up
        res = @pool.call(i, { 'op' => 'apply', 'spec' => keeper(i) }, timeout: 20)
        raise "keeper cloud on h#{i}: #{res.inspect}" unless res && res['ok']
      end
      # each member joins the election when it is handed the spec
      @pool.hosts.each do |i|
        res = @pool.call(i, { 'op' => 'leader', 'spec' => spec }, timeout: 15)
        raise "h#{i} did not join: #{res.inspect}" unless res && res['ok']
      end
      wait_for('the first host to act with every member heard', 20) do
        el = election(1)
        el && el['acting'] && el['members'].all? { |m| m['alive'] }
      end
      res = @pool.call(1, { 'op' => 'apply', 'spec' => spec }, timeout: 60)
      raise "first apply: #{res.inspect}" unless res && res['ok'] && res['changed'] == @cfg.slots

      t = Chaos.mono
      wait_for('the first converge', 20) { converged? }
      say("converged: #{@cfg.slots} slots on #{@cfg.hosts} hosts in #{(Chaos.mono - t).round(1)} s after the apply")
    end

    def election(i) = @pool.call(i, { 'op' => 'leader', 'spec' => spec }, timeout: 2)&.dig('election')

    def wait_for(what, timeout, &) = Chaos.wait_for(what, timeout, &)

    # -- faults --------------------------------------------------------------------------------

    def budget = (@cfg.hosts - 1) / 2
    def faulty = @state.count { |_, s| s != :up }
    def up_hosts = @state.select { |_, s| s == :up }.keys


    def undo(i, what)
      case what
      when :restart
        inc = @pool.start(i)
        note("restart h#{i} (pid #{inc.pid}, log.#{inc.n})")
      when :thaw
        @pool.thaw(i)
        note("SIGCONT h#{i}")
      when :heal
        @pool.heal(i)
        note("heal h#{i}")
      end
      @state[i] = :up
    end

    # a fault of a kind allowed by CHAOS_KINDS, weighted (a slot's domain 3, the others 2); the
    # kinds that take a host out only while a minority is out
    def inject
      kinds = @cfg.kinds.flat_map { |k| [k] * (k == :slot_fault ? 3 : 2) }
      kinds -= %i[kill_leader kill_member freeze isolate] if faulty >= budget
      return if kinds.empty?

      send(kinds[@rng.rand(kinds.size)])
    end

    # The daemon acting for the cloud, as its election says (nil: none found).
    def leader_host
      up_hosts.find do |i|
        el = election(i)
        el && el['acting'] && el['self'] == el['leader']
      end
    end

    def hold(i, what, range)
      d = range.min + (@rng.rand * (range.max - range.min))
      @state[i] = what == :restart ? :down : what == :thaw ? :frozen : :cut
      @pending << [Chaos.mono + d, i, what]
      d
    end

    def kill_leader
      i = leader_host
      return kill_member(nil) unless i

      inc = @pool.kill(i)
      d = hold(i, :restart, @cfg.down_s)
      @faults['kill-leader'] += 1
      note("SIGKILL leader h#{i} (pid #{inc.pid}), restart in #{d.round(1)} s")
    end

    def kill_member(leader = leader_host)
      cands = up_hosts - [leader]
      if cands.empty?
        slot_fault if @cfg.kinds.include?(:slot_fault)
        return
      end

      i = cands[@rng.rand(cands.size)]
      inc = @pool.kill(i)
      d = hold(i, :restart, @cfg.down_s)
      @faults['kill-member'] += 1
      note("SIGKILL member h#{i} (pid #{inc.pid}), restart in #{d.round(1)} s")
    end

    def freeze
      cands = up_hosts
      i = cands[@rng.rand(cands.size)]
      @pool.freeze(i)
      d = hold(i, :thaw, @cfg.freeze_s)
      @faults['freeze'] += 1
      note("SIGSTOP h#{i} for #{d.round(1)} s")
    end

    def isolate
      cands = up_hosts
      i = cands[@rng.rand(cands.size)]
      @pool.cut(i)
      d = hold(i, :heal, @cfg.cut_s)
      @faults['isolate'] += 1
      note("cut h#{i} for #{d.round(1)} s")
    end

    # destroys a running domain of the cloud behind its daemon's back (a reachable daemon: up or cut)
    def slot_fault
      cands = @state.select { |_, s| %i[up cut].include?(s) }.keys.shuffle(random: @rng)
      cands.each do |i|
        doms = @pool.call(i, { 'op' => 'domains' }, timeout: 2)&.fetch('domains', nil) or next
        running = doms.select { |d| d['cloud'] == CLOUD && d['state'] == 'running' }.map { |d| d['slot'] }.sort
        next if running.empty?

        slot = running[@rng.rand(running.size)]
        res = @pool.call(i, { 'op' => 'fault', 'name' => CLOUD, 'slot' => slot }, timeout: 2)
        next unless res && res['ok']

        @faults['slot-fault'] += 1
        note("fault #{slot} on h#{i}")
        return
      end
      say('no running domain to fault')
    end

    # -- convergence ---------------------------------------------------------------------------

    def recover_and_converge
      @pending.sort_by(&:first).each { |_, i, what| undo(i, what) }
      @pending.clear
      t0 = Chaos.mono
      note('every fault undone: waiting for the cloud to converge')
      first = nil
      loop do
        elapsed = Chaos.mono - t0
        if converged?
          first ||= elapsed
          if elapsed - first >= @cfg.hold_s
            note("converged after #{first.round(1)} s (held #{@cfg.hold_s} s)")
            return first
          end
        elsif first
          say("converged at #{first.round(1)} s but not at #{elapsed.round(1)} s: #{@why}")
          first = nil
        end
        if first.nil? && elapsed > @cfg.converge_s
          @violations << { 'kind' => 'no-convergence', 'bound_s' => @cfg.converge_s,
                           'evidence' => [@why.to_s] + @last_view.to_a }
          note("NOT converged within #{@cfg.converge_s} s: #{@why}")
          return elapsed
        end
        sleep 0.2
      end
    end

    # One look at the pool: the acting leader's status and every host's domains agree.
    def converged?
      els = @pool.hosts.to_h { |i| [i, election(i)] }
      actors = els.select { |_, e| e && e['acting'] }.keys
      return fail_why("acting: #{actors.map { |i| "h#{i}" }.inspect}") unless actors.size == 1

      li = actors.first
      laddr = @pool.addrs[li - 1]
      lagging = els.reject { |_, e| e && e['leader'] == laddr }.keys
      return fail_why("members not following h#{li}: #{lagging.inspect}") unless lagging.empty?

      st = @pool.call(li, { 'op' => 'status', 'name' => CLOUD }, timeout: 5)&.dig('clouds', 0)
      return fail_why("no status from h#{li}") unless st

      @last_view = ["leader h#{li} says #{st['state']}: " +
                    st['slots'].map { |s| "#{s['name']}@#{s['host']}:#{s['state']}" }.join(' ')]
      return fail_why("leader says #{st['state']}") unless st['state'] == 'running' &&
                                                           st['slots'].all? { |s| s['state'] == 'running' }

      copies = Hash.new { |h, k| h[k] = [] }
      @pool.hosts.each do |i|
        doms = @pool.call(i, { 'op' => 'domains' }, timeout: 3)&.fetch('domains', nil)
        return fail_why("no domains from h#{i}") unless doms

        doms.each { |d| copies[d['slot']] << @pool.addrs[i - 1] if d['cloud'] == CLOUD && d['state'] == 'running' }
      end
      @last_view << "running copies: #{copies.map { |s, hs| "#{s}@#{hs.join('+')}" }.sort.join(' ')}"
      bad = st['slots'].reject { |s| copies[s['name']] == [s['host']] }.map { |s| s['name'] }
      bad += copies.keys - @slots
      return fail_why("copies not one per slot where placed: #{bad.sort.uniq.join(', ')}") unless bad.empty?

      true
    end

    def fail_why(why)
      @why = why
      false
    end

    # -- stop ----------------------------------------------------------------------------------

    def stop_and_check
      li = leader_host or raise 'no acting leader to stop the cloud from'
      stopped = spec.merge('ensure' => 'stopped')
      # The leader first (it tears the cloud down everywhere, as README says an operator does):
      # members that left the election first could take its majority away mid-stop.
      res = @pool.call(li, { 'op' => 'stop', 'name' => CLOUD, 'spec' => stopped }, timeout: 60)
      raise "stop from the leader h#{li}: #{res.inspect}" unless res && res['ok']
      # then the members forget it (one of them may lead by then: its stop finds nothing left)
      (@pool.hosts - [li]).each do |i|
        res = @pool.call(i, { 'op' => 'stop', 'name' => CLOUD, 'spec' => stopped }, timeout: 30)
        raise "h#{i} did not forget the cloud: #{res.inspect}" unless res && res['ok']
      end

      note("stopped from the leader h#{li}")
      left = leftovers
      unless left.empty?
        sleep @cfg.hold_s
        left = leftovers
      end
      if left.empty?
        sleep @cfg.hold_s # nothing may come back either (a sweep, a member's takeover)
        left = leftovers
      end
      return if left.empty?

      @violations << { 'kind' => 'left-after-stop', 'evidence' => left }
      note("left after the stop: #{left.join('; ')}")
    end

    def leftovers
      @pool.hosts.flat_map do |i|
        doms = @pool.call(i, { 'op' => 'domains' }, timeout: 3)&.fetch('domains', nil)
        next ["h#{i}: no answer to domains"] unless doms

        st = File.join(@pool.state_dir(i), 'clouds')
        files = Dir.exist?(st) ? Dir.children(st).grep(/\A#{CLOUD}\b/) : []
        doms.select { |d| d['cloud'] == CLOUD || @slots.include?(d['name']) }
            .map { |d| "h#{i}: domain #{d['name']} #{d['state']} (epoch #{d['epoch']})" } +
          files.map { |f| "h#{i}: state file #{f}" }
      end
    end

    # -- report --------------------------------------------------------------------------------

    def finish(analysis, converge_s, error, wall)
      # a run that did not finish is not a pass: it counts as a violation of its own
      @violations << { 'kind' => 'harness-error', 'evidence' => [error] } if error
      converged = !converge_s.nil? && @violations.none? { |v| v['kind'] == 'no-convergence' }
      stats = analysis.stats
      say("logs: #{@pool.incs.size} daemon starts, #{stats['vm_runs']} domain starts, " \
          "#{stats['acting']} +acting in #{stats['epochs']} epochs; ends: " +
          stats.select { |k, _| k.start_with?('end_') }.map { |k, v| "#{k.sub('end_', '')} #{v}" }.join(', '))
      unless analysis.repairs.empty?
        ms = analysis.repairs.map(&:first)
        say("slot faults repaired (fault -> next start): #{ms.size}, p50 #{ms[ms.size / 2]} ms, " \
            "p90 #{ms[(ms.size * 9) / 10]} ms, max #{ms.last} ms (#{analysis.repairs.last.last})")
      end
      analysis.tolerated.each do |t|
        say("resume window (tolerated, <= #{@cfg.resume_grace_ms} ms after SIGCONT): #{t['slot']} #{t['ms']} ms #{t['hosts'].join(' ')}")
      end
      @violations.each_with_index do |v, k|
        say("VIOLATION #{k + 1}: #{v.reject { |kk, _| kk == 'evidence' }.map { |kk, vv| "#{kk}=#{vv}" }.join(' ')}")
        Array(v['evidence']).each { |l| say("    #{l}") }
      end
      @result = {
        'seed' => @cfg.seed, 'hosts' => @cfg.hosts, 'slots' => @cfg.slots, 'seconds' => @cfg.seconds,
        'faults' => @faults.values.sum, 'by_kind' => @faults, 'violations' => @violations.size,
        'converged' => converged, 'converge_s' => converge_s&.round(1), 'wall_s' => wall.round(1),
        'resume_windows_ms' => analysis.tolerated.map { |t| t['ms'] },
        'repair_ms' => analysis.repairs.map(&:first), 'details' => @violations,
        'journal' => @journal, 'error' => error
      }
      FileUtils.mkdir_p(File.dirname(RESULT))
      File.write(RESULT, JSON.pretty_generate(@result))
      keep_logs if @violations.any? || @cfg.keep_logs
    end

    def keep_logs
      FileUtils.rm_rf(KEPT_LOGS)
      FileUtils.mkdir_p(KEPT_LOGS)
      @pool.incs.each do |inc|
        FileUtils.cp(inc.log, File.join(KEPT_LOGS, "h#{inc.host}.log.#{inc.n}")) if File.exist?(inc.log)
      end
      File.write(File.join(KEPT_LOGS, 'journal'), @journal.join("\n") + "\n")
      say("logs kept in #{KEPT_LOGS}")
    end

    def cleanup
      @pool&.stop_all
      @pool&.down
      FileUtils.rm_rf(@tmp) if @tmp
    end
  end

  # The line `rake chaos` ends with.
  def self.summary(result)
    return 'chaos faults=NA violations=NA converge_s=NA' unless result

    cs = result['converge_s'] ? format('%.1f', result['converge_s']) : 'NA'
    "chaos faults=#{result['faults']} violations=#{result['violations']} converge_s=#{cs}"
  end

  def self.passed?(result) = result && result['violations'].zero? && result['converged']
end
