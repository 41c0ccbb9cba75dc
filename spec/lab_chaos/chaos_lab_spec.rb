# frozen_string_literal: true

# In the suite (`rake lab:e2e` and the README's test command, after the web and torque
# end-to-end tests); alone, as root: rspec spec/lab_chaos/chaos_lab_spec.rb

# The chaos test on real guests (issue 5, item 4): a shorter run of test/chaos/chaos_harness.rb's
# test in the lab (test/lab/lab). Three pool hosts, each a network namespace with its own
# libvirtd (qemu under TCG) and a cloudd started here (spec/lab/lab_helper.rb); a web cloud of
# four VMs (database, two servers, balancer), applied with `puppet apply` as an operator would.
# Then, for CHAOS_LAB_SECONDS (default 90), seeded faults (CHAOS_LAB_SEED; the seed replays the
# kinds, targets among what runs and durations — not the guests' timing), one every
# CHAOS_LAB_GAP_S (4-9 s), never more than one host out of three at once:
#   - vm-destroy: `virsh destroy` of a running domain of the cloud on its host's libvirtd,
#     behind the daemons' back;
#   - service-kill: nginx in the balancer or the application in a server killed over ssh;
#   - kill-member / kill-leader: SIGKILL of a cloudd (its PID checked against `cloudctl hello`);
#     libvirtd then destroys that host's guests, started with autodestroy (the dead man's
#     switch); the daemon is restarted on its state directory after CHAOS_LAB_DOWN_S (6-14 s);
#   - isolate: the host's switch port cut (test/lab/netns-pool cut on the lab's pool) for
#     CHAOS_LAB_CUT_S (4-10 s): its guests, on the host's bridge, are cut off with it; its daemon
#     fences itself (stops its copies) and the majority's leader re-places them.
# Then every fault is undone and the cloud must converge within CHAOS_LAB_CONVERGE_S (180: guests
# boot in 15-30 s under TCG) and stay so for 5 s: one daemon acting, every member following it,
# the leader says running, each slot running exactly once over the three libvirtds (`virsh
# list`), where the leader placed it, and the balancer serves a page from a server with the
# database's rows. Then `ensure => stopped` (on the leader: it tears the cloud down; then on the
# members: they forget it) must leave no domain, disk, state file or qemu process of the cloud,
# now and 5 s later. Other knobs: CHAOS_LAB_KINDS (vm_destroy,service_kill,kill_member,
# kill_leader,isolate), CHAOS_LAB_SWEEP_MS (cloudd --sweep-ms, 2000), CHAOS_LAB_KEEP_LOGS,
# LAB_DIR_CHAOS (/tmp/cloud-lab-chaos). The roles' restart policy: checks every 3 s, no flapping
# pause, backoffs of at most 8 s (HEALTH).
#
# The invariants come from logs, with the embedded chaos test's analysis (Chaos::Analysis), in
# two views:
#   (A) the daemons' view, as in the embedded test: `+vm-run`/`-vm-run`/`+acting` of every daemon
#       start (one log file per start), plus the harness's records: a `virsh destroy` ends its
#       domain's interval when virsh returned; a SIGKILLed (or exiting) daemon's guests end when
#       libvirt says each of them stopped (view B's time), not at the kill: with real qemu they
#       outlive the daemon until libvirtd has destroyed them, one after the other.
#   (B) the hypervisors' view: libvirt's own record of every qemu process, the domain's log
#       (<host>/log/qemu/<dom>.log): `starting up` (libvirtd, before qemu is executed: the start
#       rounded down) to the moment the guest stops executing: qemu's own `terminating on signal
#       N` line (every destroy, autodestroy and self-fence is a SIGTERM from libvirtd; qemu prints
#       it and pauses the vCPUs next, before its cleanup), else libvirtd's `shutting down`
#       (rounded up). The overlap check (no two running copies of a slot on different hosts at
#       once) runs on both views; a libvirt run with no end after the stop is a leftover.
#   The qemu process itself lives on after that SIGTERM while it frees its memory (0.2-2 s under
#   load; libvirtd polls it every 200 ms and a dead host's guests are destroyed one after the
#   other): overlaps counting that teardown (to `shutting down`) are listed as "teardown", not
#   counted as violations — no guest code runs twice there. Each killed daemon's guests must
#   be gone (libvirt's record) within CHAOS_LAB_AUTODESTROY_S (15) of the kill; each delay is
#   reported. Also: never two daemons acting in one epoch (`+acting`, view A).
#
# The result goes to build/chaos-lab.json and to LabHelper.record ('chaos' pass|fail,
# 'chaos_faults', 'chaos_violations', 'chaos_converge_s'); the run prints
# `lab chaos faults=<n> violations=<n> converge_s=<n>`. With violations (or CHAOS_LAB_KEEP_LOGS)
# the daemons' and libvirt's logs (and the guests' last consoles) are kept in
# build/chaos-lab-logs. Also reported, not counted: how long each killed daemon's and each cut-off
# host's guests ran on (libvirtd's autodestroy and the self-fence stop them one after the other). The lab goes down after the
# run, also on failure; daemons are stopped by PID. As root, slow: `rspec spec/lab/chaos_lab_spec.rb`
# or `rake lab:e2e`.
require 'fileutils'
require 'json'
require 'open3'
require 'time'
require_relative '../lab/lab_helper'
require_relative '../../test/chaos/chaos_harness'

module ChaosLab
  ROOT = LabHelper::ROOT
  NETNS_POOL = File.join(ROOT, 'test/lab/netns-pool')
  CLOUDCTL = File.join(ROOT, 'bin/cloudctl')
  RESULT = File.join(ROOT, 'build/chaos-lab.json')
  KEPT_LOGS = File.join(ROOT, 'build/chaos-lab-logs')
  CLOUD = 'cw'
  IPS = { 'cw-database-0' => '10.78.0.11', 'cw-server-0' => '10.78.0.12', 'cw-server-1' => '10.78.0.13',
          'cw-balancer-0' => '10.78.0.14' }.freeze
  SLOTS = IPS.keys.freeze
  BALANCER = 'http://10.78.0.14/'
  HOSTS = 3
  HOLD_S = 5
  APPLY_TIMEOUT_S = 240 # one puppet apply that converges the cloud (4 guests boot: ~60 s)
  STOP_TIMEOUT_S = 180 # one that stops it (it waits for a repair run in progress)
  # each fault kind and its weight; the host kinds only while no host is out
  KINDS = { vm_destroy: 3, service_kill: 2, kill_member: 2, kill_leader: 2, isolate: 2 }.freeze
  HOST_KINDS = %i[kill_member kill_leader isolate].freeze
  # a role service killed over ssh: the command, which prints "killed" once it did
  SERVICES = { 'balancer' => 'pkill -x nginx && echo killed',
               'server' => 'kill "$(cat /run/cloud-web.pid)" && echo killed' }.freeze
  # the restart policy of every role: checks every 3 s (a second failure in a row counts), no
  # flapping pause, backoffs of at most 8 s (as the embedded chaos test)
  HEALTH = "{ 'default' => { 'interval' => 3, 'retries' => 1, 'max_restarts' => 1000, 'backoff' => 1, " \
           "'backoff_max' => 8 } }"

  Config = Struct.new(:seconds, :seed, :converge_s, :gap_s, :down_s, :cut_s, :autodestroy_s, :sweep_ms,
                      :kinds, :keep_logs, keyword_init: true) do
    def self.from_env(env = ENV)
      range = lambda do |k, d|
        lo, hi = env.fetch(k, d).split('-', 2).map { |x| Float(x) }
        raise ArgumentError, "#{k} must be LOW-HIGH seconds" unless hi && lo.positive? && hi >= lo

        lo..hi
      end
      kinds = env.fetch('CHAOS_LAB_KINDS', KINDS.keys.join(',')).split(',').map { |k| k.strip.tr('-', '_').to_sym }
      raise ArgumentError, "CHAOS_LAB_KINDS: one or more of #{KINDS.keys.join(',')}" if kinds.empty? || (kinds - KINDS.keys).any?

      new(seconds: Float(env.fetch('CHAOS_LAB_SECONDS', '90')),
          seed: Integer(env.fetch('CHAOS_LAB_SEED', (Random.new_seed % (2**31)).to_s), 10),
          converge_s: Float(env.fetch('CHAOS_LAB_CONVERGE_S', '180')),
          gap_s: range.call('CHAOS_LAB_GAP_S', '4-9'), down_s: range.call('CHAOS_LAB_DOWN_S', '6-14'),
          cut_s: range.call('CHAOS_LAB_CUT_S', '4-10'),
          autodestroy_s: Float(env.fetch('CHAOS_LAB_AUTODESTROY_S', '15')),
          sweep_ms: Integer(env.fetch('CHAOS_LAB_SWEEP_MS', '2000'), 10),
          kinds: kinds, keep_logs: !env['CHAOS_LAB_KEEP_LOGS'].to_s.empty?)
    end
  end

  # ------------------------------------------------------------------------------------------
  # libvirt's record of each qemu process of a domain (view B)
  # ------------------------------------------------------------------------------------------

  # One run of a domain on a host: start (libvirtd's `starting up`, ms rounded down), term
  # (qemu's `terminating on signal`, rounded up), stop (libvirtd's `shutting down`, rounded up).
  QemuRun = Struct.new(:host, :dom, :start_ms, :term_ms, :stop_ms, :reason, :file, keyword_init: true) do
    # when the guest stopped executing (nil: it still runs)
    def guest_end = term_ms || stop_ms
    def text = "h#{host} #{dom}: starting up #{ChaosLab.stamp(start_ms)}, terminating #{term_ms ? ChaosLab.stamp(term_ms) : '-'}, " \
                "shutting down #{stop_ms ? "#{ChaosLab.stamp(stop_ms)} (#{reason})" : '-'} (#{file})"
  end

  LIBVIRT_STAMP = '(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\+0000'
  QEMU_START = /\A#{LIBVIRT_STAMP}: starting up/
  QEMU_STOP = /\A#{LIBVIRT_STAMP}: shutting down, reason=(\S+)/
  QEMU_TERM = /\A(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z qemu-system-\S+: terminating on signal (\d+)/

  def self.ms_r(text) = Time.iso8601("#{text.sub(' ', 'T')}Z").to_r * 1000
  def self.stamp(ms) = Chaos.stamp(ms)
  def self.iso(ms) = Time.at(ms / 1000r).utc.strftime('%Y-%m-%dT%H:%M:%S.%LZ')

  # Every run of the cloud's domains in a host's qemu logs (DIR/hI/log/qemu/<dom>.log).
  def self.qemu_runs(qemu_log_dir, host)
    SLOTS.flat_map do |dom|
      f = File.join(qemu_log_dir, "#{dom}.log")
      next [] unless File.exist?(f)

      runs = []
      File.foreach(f) do |l|
        cur = runs.last && runs.last.stop_ms.nil? ? runs.last : nil
        if (m = QEMU_START.match(l))
          runs << QemuRun.new(host: host, dom: dom, start_ms: ms_r(m[1]).floor, file: f)
        elsif cur && (m = QEMU_TERM.match(l))
          cur.term_ms ||= ms_r(m[1]).ceil
        elsif cur && (m = QEMU_STOP.match(l))
          cur.stop_ms = ms_r(m[1]).floor + 1 # printed truncated to the ms
          cur.reason = m[2]
        end
      end
      runs
    end
  end

  # ------------------------------------------------------------------------------------------
  # The run
  # ------------------------------------------------------------------------------------------

  class Run
    include Chaos::FaultLoop
    FAULT_TICK_S = 0.1
    attr_reader :result

    def initialize(lab, cfg, out: $stdout)
      @lab = lab
      @cfg = cfg
      @out = out
      @rng = Random.new(cfg.seed)
      @faults = Hash.new(0)
      @journal = []
      @violations = []
      @incs = [] # Chaos::Incarnation of every daemon start
      @current = {} # host => its running Incarnation
      @kills = [] # { host:, inc:, kill_ms:, reaped_ms:, gone_ms:, running: }
      @cuts = [] # { host:, from:, to: }
      @destroys = [] # { host:, inc:, dom:, from:, to: }
      @exits = [] # { host:, inc:, at_ms: } of the daemons stopped at the end (TERM)
      @autodestroyed = [] # { inc:, dom:, at: }: a dead daemon's guest stopped by libvirtd (view B's time)
      @state = {} # host => :up, :down, :cut
      @pending = [] # [mono time, host, :restart | :heal]
      @work = File.join(lab.dir, 'analysis')
    end

    def say(msg)
      @out.puts("lab chaos: #{msg}")
      @out.flush
    end

    def note(msg)
      @journal << "#{Chaos.stamp(Chaos.ms_floor)} #{msg}"
      say(msg)
    end

    def hosts = (1..HOSTS).to_a
    def addr(i) = @lab.env["LAB_ADDR_#{i}"]

    def run
      t_begin = Chaos.mono
      say("seed=#{@cfg.seed} (replay: CHAOS_LAB_SEED=#{@cfg.seed}) seconds=#{@cfg.seconds} " \
          "kinds=#{@cfg.kinds.join(',')} dir=#{@lab.dir}")
      converge_s = nil
      error = nil
      stopped = false
      begin
        setup
        chaos
        converge_s = recover_and_converge
        stopped = stop_and_check
      rescue StandardError => e
        error = "#{e.class}: #{e.message}"
        say("ERROR #{error}")
        e.backtrace.first(5).each { |l| say("  #{l}") }
      ensure
        # every daemon stopped by its PID (the lab goes down after this), then the logs read
        begin
          stop_daemons
          an = analyse(stopped)
        rescue StandardError => e
          error ||= "#{e.class}: #{e.message} (after the run)"
        end
        finish(an, converge_s, error, Chaos.mono - t_begin)
      end
      @result
    end

    # -- the lab's daemons, the cloud -----------------------------------------------------------

    def adopt(i, log, start_ms)
      inc = Chaos::Incarnation.new(host: i, n: @incs.count { |x| x.host == i } + 1, pid: @lab.cloudd_pid(i),
                                   log: log, start_ms: start_ms, freezes: [])
      @incs << inc
      @current[i] = inc
      @state[i] = :up
      inc
    end

    def manifest(ensure_)
      @servers ||= @lab.role_files('server', [IPS['cw-server-0'], IPS['cw-server-1']])
      <<~PP
        web { '#{CLOUD}':
          ensure      => #{ensure_},
          database    => #{@lab.role_vm(IPS['cw-database-0'])},
          server      => #{@servers},
          balancer    => #{@lab.role_vm(IPS['cw-balancer-0'])},
          health      => #{HEALTH},
          #{@lab.common_attrs}
        }
      PP
    end

    # puppet apply on host i; raises unless its exit status is one of ok_codes (a stop's failure
    # is recorded instead: what it left is checked all the same).
    def apply(i, ensure_, ok_codes, timeout: APPLY_TIMEOUT_S)
      t = Chaos.mono
      out, rc = @lab.puppet_apply(i, manifest(ensure_), timeout: timeout)
      took = "exit #{rc} in #{(Chaos.mono - t).round(1)} s#{rc == 124 ? " (stopped after #{timeout} s)" : ''}"
      unless ok_codes.include?(rc)
        raise "puppet apply (ensure => #{ensure_}) on h#{i}: #{took}:\n#{out}" unless ensure_ == 'stopped'

        @violations << { 'kind' => 'stop-failed', 'host' => "h#{i}", 'evidence' => [took] + out.lines.last(15).map(&:rstrip) }
      end
      note("puppet apply ensure => #{ensure_} on h#{i}: #{took}")
      out
    end

    def setup
      hosts.each { |i| adopt(i, @lab.log(i), Chaos.ms_floor) }
      t = Chaos.mono
      apply(2, 'running', [0, 2]) # a member alone: joins
      apply(1, 'running', [2])    # the leader, with a majority: converges
      apply(3, 'running', [0, 2]) # the last member joins
      wait_for('the balancer to serve', 120) { serving? }
      note("serving #{(Chaos.mono - t).round(1)} s after the first apply; " \
           "placement: #{hosts.map { |i| "h#{i}=#{running(i).join('+')}" }.join(' ')}")
    end

    # each poll asks three libvirtds and the balancer: every 0.5 s
    def wait_for(what, timeout, &) = Chaos.wait_for(what, timeout, every: 0.5, &)

    def virsh(i, *args)
      Open3.capture2e('timeout', '30', 'virsh', '-q', '-c', @lab.env["LAB_URI_#{i}"], *args)
    end

    # The cloud's active domains on host i's libvirtd (seen from outside the product).
    def running(i)
      out, st = virsh(i, 'list', '--name')
      raise "virsh list on h#{i}: #{out}" unless st.success?

      out.split.select { |d| SLOTS.include?(d) }
    end

    # cloudctl status of the cloud on host i (nil: no daemon or no answer).
    def status(i)
      return nil unless @current[i]

      out, st = Open3.capture2e('timeout', '10', CLOUDCTL, '--socket', @lab.socket(i), 'status', CLOUD, '--json')
      st.success? ? JSON.parse(out)['clouds']&.first : nil
    rescue JSON::ParserError
      nil
    end

    # The host whose daemon acts as the cloud's leader (nil: none found).
    def leader_host(among = hosts)
      among.find do |i|
        el = status(i)&.dig('election')
        el && el['acting'] && el['state'] == 'leader'
      end
    end

    def http_get(url)
      out, st = @lab.in_host(1, 'timeout', '15', 'python3', '-c',
                             'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(' \
                             "#{url.inspect}, timeout=10).read().decode())")
      st.success? ? out : nil
    end

    def serving?
      body = http_get(BALANCER)
      body&.start_with?('served by') && body.include?("hello from the database of #{CLOUD}") ? body : nil
    end

    def ssh(i, ip, command)
      @lab.in_host(i, 'timeout', '15', 'ssh', '-i', @lab.env['LAB_SSH_KEY'], '-o', 'StrictHostKeyChecking=no',
                   '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes',
                   '-o', 'ConnectTimeout=5', "root@#{ip}", command)
    end

    def pool(cmd, i)
      out, st = Open3.capture2e(NETNS_POOL, cmd, @lab.env['LAB_POOL_DIR'], i.to_s)
      raise "netns-pool #{cmd} #{i}: #{out}" unless st.success?
    end

    # -- faults ---------------------------------------------------------------------------------

    def up_hosts = @state.select { |_, s| s == :up }.keys.sort
    def host_out? = @state.any? { |_, s| s != :up }


    def undo(i, what)
      case what
      when :restart
        n = @incs.count { |x| x.host == i } + 1
        log = "#{@lab.log(i)}.#{n}"
        start_ms = Chaos.ms_floor
        @lab.start_cloudd(i, log_file: log)
        inc = adopt(i, log, start_ms)
        note("restart h#{i} (pid #{inc.pid}, #{File.basename(log)})")
      when :heal
        pool('heal', i)
        @cuts.reverse.find { |c| c[:host] == i && c[:to].nil? }&.store(:to, Chaos.ms_floor)
        @state[i] = :up
        note("heal h#{i}")
      end
    end

    def hold(i, what, range)
      d = range.min + (@rng.rand * (range.max - range.min))
      @state[i] = what == :restart ? :down : :cut
      @pending << [Chaos.mono + d, i, what]
      d
    end

    def inject
      kinds = @cfg.kinds.flat_map { |k| [k] * KINDS[k] }
      kinds -= HOST_KINDS if host_out?
      return if kinds.empty?

      send(kinds[@rng.rand(kinds.size)])
    end

    def vm_destroy
      cands = up_or_cut.flat_map { |i| running(i).map { |d| [i, d] } }
      return say('no running domain to destroy') if cands.empty?

      i, dom = cands[@rng.rand(cands.size)]
      from = Chaos.ms_floor
      out, st = virsh(i, 'destroy', dom)
      to = Chaos.ms_ceil
      return say("virsh destroy #{dom} on h#{i} failed: #{out.strip}") unless st.success?

      @destroys << { host: i, inc: @current[i], dom: dom, from: from, to: to }
      @faults['vm-destroy'] += 1
      note("virsh destroy #{dom} on h#{i} (#{to - from} ms)")
    end

    def up_or_cut = @state.select { |_, s| %i[up cut].include?(s) }.keys.sort

    def service_kill
      cands = up_or_cut.flat_map { |i| running(i).map { |d| [i, d] } }
                       .select { |_, d| SERVICES.key?(d[/-(\w+)-\d+\z/, 1]) }
      tried = []
      cands.shuffle(random: @rng).each do |i, dom|
        role = dom[/-(\w+)-\d+\z/, 1]
        out, st = ssh(i, IPS[dom], SERVICES[role]) # from the guest's own host: reachable even when cut
        unless st.success? && out.include?('killed')
          tried << "#{dom}: exit #{st.exitstatus} #{out.strip.lines.last&.strip}"
          next
        end

        @faults['service-kill'] += 1
        note("#{role} service killed in #{dom} (on h#{i})")
        return
      end
      say("no service killed (#{tried.empty? ? 'no balancer or server runs' : tried.join('; ')})")
    end

    def kill_leader
      i = leader_host(up_hosts)
      return kill_member(nil) unless i

      kill_daemon(i, 'leader')
    end

    def kill_member(leader = leader_host(up_hosts))
      cands = up_hosts - [leader]
      return vm_destroy if cands.empty?

      kill_daemon(cands[@rng.rand(cands.size)], 'member')
    end

    # SIGKILL of host i's daemon, by the PID its socket says (the one started here); then waits
    # until libvirtd destroyed its guests (autodestroy) before anything else happens.
    def kill_daemon(i, role)
      inc = @current[i]
      said = @lab.hello_pid(i)
      raise "h#{i}: cloudctl hello says pid #{said.inspect}, the daemon started here is #{inc.pid}" unless said == inc.pid

      before = running(i)
      kill_ms = Chaos.ms_floor
      @lab.stop_cloudd(i, 'KILL')
      inc.end_ms = Chaos.ms_ceil
      inc.end_how = 'SIGKILL'
      @current.delete(i)
      deadline = Chaos.mono + 60
      left = before
      sleep 0.05 until (left = running(i)).empty? || Chaos.mono > deadline
      gone_ms = Chaos.ms_ceil
      @kills << { host: i, inc: inc, kill_ms: kill_ms, reaped_ms: inc.end_ms, gone_ms: gone_ms, running: before }
      d = hold(i, :restart, @cfg.down_s)
      @faults["kill-#{role}"] += 1
      note("SIGKILL #{role} h#{i} (pid #{inc.pid}; guests #{before.join(' ').then { |s| s.empty? ? 'none' : s }}" \
           "#{left.empty? ? ", gone after #{gone_ms - kill_ms} ms (virsh)" : ", STILL RUNNING: #{left.join(' ')}"}), " \
           "restart in #{d.round(1)} s")
    end

    def isolate
      cands = up_hosts
      i = cands[@rng.rand(cands.size)]
      leader = leader_host(cands)
      pool('cut', i)
      @cuts << { host: i, from: Chaos.ms_floor, to: nil }
      d = hold(i, :heal, @cfg.cut_s)
      @faults['isolate'] += 1
      note("cut h#{i}#{i == leader ? ' (the leader)' : ''} for #{d.round(1)} s")
    end

    # -- convergence ----------------------------------------------------------------------------

    def recover_and_converge
      @pending.sort_by(&:first).each { |_, i, what| undo(i, what) }
      @pending.clear
      t0 = Chaos.mono
      note('every fault undone: waiting for the cloud to converge')
      first = nil
      loop do
        ok = converged?
        elapsed = Chaos.mono - t0
        if ok
          first ||= elapsed
          if elapsed - first >= HOLD_S
            note("converged after #{first.round(1)} s (held #{HOLD_S} s): #{@view.join('; ')}")
            return first
          end
        elsif first
          say("converged at #{first.round(1)} s but not at #{elapsed.round(1)} s: #{@why}")
          first = nil
        end
        if first.nil? && elapsed > @cfg.converge_s
          @violations << { 'kind' => 'no-convergence', 'bound_s' => @cfg.converge_s,
                           'evidence' => [@why.to_s] + @view.to_a }
          note("NOT converged within #{@cfg.converge_s} s: #{@why}")
          return nil
        end
        sleep 0.5
      end
    end

    # One look: one daemon acting, followed by all; it says running; one running copy of each
    # slot over the hosts' libvirtds, where it placed it; the balancer serves the database's rows.
    def converged?
      sts = hosts.to_h { |i| [i, status(i)] }
      missing = sts.select { |_, s| s.nil? }.keys
      return fail_why("no status from #{missing.map { |i| "h#{i}" }.join(', ')}") unless missing.empty?

      actors = sts.select { |_, s| s['election']['acting'] && s['election']['state'] == 'leader' }.keys
      return fail_why("acting: #{actors.map { |i| "h#{i}" }.inspect}") unless actors.size == 1

      li = actors.first
      lagging = sts.reject { |_, s| s['election']['leader'] == addr(li) }.keys
      return fail_why("not following h#{li}: #{lagging.map { |i| "h#{i}" }.join(', ')}") unless lagging.empty?

      st = sts[li]
      @view = ["leader h#{li} (epoch #{st['election']['epoch']}) says #{st['state']}: " +
               st['slots'].map { |s| "#{s['name']}@#{s['host']}:#{s['state']}/#{s['health']}" }.join(' ')]
      unless st['state'] == 'running' && st['slots'].all? { |s| s['state'] == 'running' }
        return fail_why("the leader says #{st['state']}")
      end

      copies = Hash.new { |h, k| h[k] = [] }
      hosts.each { |i| running(i).each { |d| copies[d] << addr(i) } }
      @view << "running: #{copies.map { |d, hs| "#{d}@#{hs.join('+')}" }.sort.join(' ')}"
      bad = st['slots'].reject { |s| copies[s['name']] == [s['host']] }.map { |s| s['name'] }
      bad += SLOTS - st['slots'].map { |s| s['name'] }
      return fail_why("not one running copy per slot where placed: #{bad.sort.uniq.join(', ')}") unless bad.empty?
      return fail_why('the balancer does not serve the database rows') unless serving?

      true
    end

    def fail_why(why)
      @why = why
      false
    end

    # -- stop -----------------------------------------------------------------------------------

    # The stop; whether every stop apply succeeded (if not, the failure and what is left are
    # the violations; domains still running at the end are then not "running after the stop").
    def stop_and_check
      # the leader first: it tears the cloud down everywhere; then each member forgets it. (Members
      # first would leave the leader without its majority: its own stop would then only forget
      # the cloud, and the members' VMs would run on, managed by nobody.)
      li = leader_host or raise 'no acting leader to stop the cloud from'
      failed = @violations.size
      apply(li, 'stopped', [0, 2], timeout: STOP_TIMEOUT_S)
      (hosts - [li]).each { |i| apply(i, 'stopped', [0, 2], timeout: STOP_TIMEOUT_S) }
      ok = @violations.size == failed
      left = leftovers
      unless left.empty?
        sleep HOLD_S
        left = leftovers
      end
      if left.empty?
        sleep HOLD_S # nothing may come back either
        left = leftovers
      end
      if left.empty?
        note('stopped: nothing of the cloud left on any host')
      else
        @violations << { 'kind' => 'left-after-stop', 'evidence' => left }
        note("left after the stop: #{left.join('; ')}")
      end
      ok
    end

    def leftovers
      hosts.flat_map do |i|
        out, st = virsh(i, 'list', '--all', '--name')
        doms = st.success? ? out.split.grep(/\A#{CLOUD}-/) : ["(virsh list failed: #{out.strip})"]
        vols = @lab.volumes(i).grep(/\A#{CLOUD}-/)
        dir = File.join(@lab.state(i), 'clouds')
        files = Dir.exist?(dir) ? Dir.children(dir).grep(/\A#{CLOUD}\b/) : []
        doms.map { |d| "h#{i}: domain #{d}" } + vols.map { |v| "h#{i}: volume #{v}" } +
          files.map { |f| "h#{i}: state file #{f}" }
      end + Dir['/proc/[0-9]*/cmdline'].filter_map do |f|
        cmd = File.read(f)
        "qemu process #{File.basename(File.dirname(f))}: #{cmd[/guest=#{CLOUD}-[^,\0]+/]}" if cmd.include?("guest=#{CLOUD}-") &&
                                                                                              cmd.include?(@lab.dir)
      rescue SystemCallError
        nil
      end
    end

    def stop_daemons
      @current.keys.each do |i|
        inc = @current.delete(i)
        at = Chaos.ms_floor
        @lab.stop_cloudd(i, 'TERM')
        inc.end_ms = Chaos.ms_ceil
        inc.end_how = 'exit at the end'
        @exits << { host: i, inc: inc, at_ms: at }
      end
      # libvirtd destroys the exited daemons' guests one after the other: its record (view B) is
      # read once none of the cloud's domains runs any more (or 60 s have passed)
      deadline = Chaos.mono + 60
      sleep 0.2 until hosts.all? { |i| running(i).empty? } || Chaos.mono > deadline
    end

    # -- analysis -------------------------------------------------------------------------------

    def analyse(stopped)
      FileUtils.mkdir_p(@work)
      runs = hosts.to_h { |i| [i, ChaosLab.qemu_runs(File.join(@lab.host_dir(i), 'log', 'qemu'), i)] }
      autodestroy = check_kills(runs)
      acfg = Chaos::Config.new(resume_grace_ms: 0)
      daemons = Chaos::Analysis.new(@incs.map { |inc| with_harness_records(inc) }, SLOTS, acfg, stopped: stopped).run
      libvirt = Chaos::Analysis.new(libvirt_incs(runs, :guest_end, stopped), SLOTS, acfg, stopped: stopped).run
      teardown = Chaos::Analysis.new(libvirt_incs(runs, :stop_ms, stopped), SLOTS, acfg, stopped: stopped).run
      counted = libvirt.violations.map { |v| [v['slot'], v['hosts']] }
      # how long a cut-off host's guests ran on after the cut (it fences itself after fence_ms)
      fenced = @cuts.map do |c|
        { 'host' => c[:host], 'cut' => ChaosLab.stamp(c[:from]),
          'delays_ms' => open_at(runs, c[:host], c[:from]).to_h { |r| [r.dom, r.guest_end && (r.guest_end - c[:from])] } }
      end
      { runs: runs, autodestroy: autodestroy, fenced: fenced, daemons: daemons, libvirt: libvirt,
        teardown: teardown.violations.select { |v| v['kind'] == 'two-running-copies' }
                          .reject { |v| counted.include?([v['slot'], v['hosts']]) } }
    end

    # A daemon that dies takes its guests with it (autodestroy), but only once libvirtd has
    # destroyed them: in view A, each of its domains that libvirt ran at the death ends when
    # libvirt says that guest stopped (a `-vm-run why=autodestroy` line after the daemon's last
    # one), and the daemon's other intervals at its reaping. A guest with no such end keeps its
    # interval open to the end of the run. A killed daemon's guests must stop within the bound.
    def check_kills(runs)
      @exits.each do |x|
        open_at(runs, x[:host], x[:at_ms]).each do |r|
          @autodestroyed << { inc: x[:inc], dom: r.dom, at: r.guest_end } if r.guest_end
        end
      end
      @kills.map do |k|
        open = open_at(runs, k[:host], k[:kill_ms])
        delays = open.to_h { |r| [r.dom, r.guest_end && (r.guest_end - k[:kill_ms])] }
        late = open.select { |r| r.guest_end.nil? || r.guest_end - k[:kill_ms] > @cfg.autodestroy_s * 1000 }
        unless late.empty?
          @violations << { 'kind' => 'autodestroy', 'host' => k[:inc].label, 'bound_s' => @cfg.autodestroy_s,
                           'evidence' => ["SIGKILL of #{k[:inc].label} (pid #{k[:inc].pid}) at #{ChaosLab.stamp(k[:kill_ms])}"] +
                                         late.map(&:text) }
        end
        open.each { |r| @autodestroyed << { inc: k[:inc], dom: r.dom, at: r.guest_end } if r.guest_end }
        k[:inc].end_ms = nil if open.any? { |r| r.guest_end.nil? }
        k[:inc].end_how = "SIGKILL at #{ChaosLab.stamp(k[:kill_ms])}, reaped at #{ChaosLab.stamp(k[:reaped_ms])}"
        { 'host' => k[:host], 'kill' => ChaosLab.stamp(k[:kill_ms]), 'delays_ms' => delays,
          'virsh_gone_ms' => k[:gone_ms] - k[:kill_ms] }
      end
    end

    # The libvirt runs of host i that had started by ms and not stopped before it.
    def open_at(runs, i, ms) = runs[i].select { |r| r.start_ms <= ms && (r.guest_end.nil? || r.guest_end > ms) }

    # A daemon start's log with a `-vm-run why=virsh-destroy` line for each domain the harness
    # destroyed on its host meanwhile, at the time virsh returned (placed before the first line
    # logged after the destroy began: a misplacement could only make an interval longer).
    def with_harness_records(inc)
      lines = File.exist?(inc.log) ? File.readlines(inc.log, chomp: true) : []
      @destroys.select { |d| d[:inc].equal?(inc) }.each do |d|
        at = lines.index do |l|
          m = Chaos::Analysis::LINE.match(l)
          m && (Time.iso8601(m[1]).to_r * 1000).floor >= d[:from]
        end
        lines.insert(at || lines.size, "#{ChaosLab.iso(d[:to] - 1)} harness INFO -vm-run dom=#{d[:dom]} why=virsh-destroy")
      end
      @autodestroyed.select { |x| x[:inc].equal?(inc) }.sort_by { |x| x[:at] }.each do |x|
        lines << "#{ChaosLab.iso(x[:at] - 1)} libvirt INFO -vm-run dom=#{x[:dom]} why=autodestroy"
      end
      path = File.join(@work, "h#{inc.host}", File.basename(inc.log))
      FileUtils.mkdir_p(File.dirname(path))
      File.write(path, lines.map { |l| "#{l}\n" }.join)
      inc.dup.tap { |x| x.log = path }
    end

    # Each host's libvirt runs as one "daemon log" of +vm-run/-vm-run lines (view B), each run
    # ending at `upto` (:guest_end: the guest stops executing; :stop_ms: the qemu process is gone).
    def libvirt_incs(runs, upto, stopped)
      hosts.map do |i|
        lines = runs[i].flat_map do |r|
          e = r.public_send(upto)
          ["#{ChaosLab.iso(r.start_ms)} libvirt-h#{i} INFO +vm-run dom=#{r.dom} uri=#{File.basename(r.file)}"] +
            (e ? ["#{ChaosLab.iso(e - 1)} libvirt-h#{i} INFO -vm-run dom=#{r.dom} why=#{r.term_ms && upto == :guest_end ? 'sigterm' : r.reason}"] : [])
        end
        path = File.join(@work, "libvirt-#{upto}", "h#{i}")
        FileUtils.mkdir_p(File.dirname(path))
        File.write(path, lines.map { |l| "#{l}\n" }.join)
        Chaos::Incarnation.new(host: i, n: 0, pid: 0, log: path, start_ms: 0, freezes: [],
                               end_ms: stopped ? Chaos.ms_ceil : nil, end_how: stopped ? 'exit at the end' : nil)
      end
    end

    # -- report ---------------------------------------------------------------------------------

    def finish(an, converge_s, error, wall)
      @violations << { 'kind' => 'harness-error', 'evidence' => [error] } if error
      an ||= { runs: {}, autodestroy: [], teardown: [] } # the analysis failed: the error says why
      @violations.concat(an[:daemons].violations.map { |v| v.merge('view' => 'daemons') }) if an[:daemons]
      @violations.concat(an[:libvirt].violations.map { |v| v.merge('view' => 'libvirt') }) if an[:libvirt]
      converged = !converge_s.nil?
      st = an[:daemons]&.stats || Hash.new(0)
      nruns = an[:runs].values.sum(&:size)
      say("logs: #{@incs.size} daemon starts, #{st['vm_runs']} +vm-run, #{st['acting']} +acting in " \
          "#{st['epochs']} epochs; libvirt: #{nruns} qemu runs of the cloud")
      delays = an[:autodestroy].flat_map { |k| k['delays_ms'].values.compact }.sort
      an[:autodestroy].each do |k|
        say("SIGKILL h#{k['host']} at #{k['kill']}: guests stopped (qemu SIGTERM) after " \
            "#{k['delays_ms'].map { |d, ms| "#{d} #{ms || 'never'} ms" }.join(', ').then { |s| s.empty? ? '(none ran)' : s }}; " \
            "virsh saw them gone after #{k['virsh_gone_ms']} ms")
      end
      an[:fenced].to_a.each do |c|
        say("cut h#{c['host']} at #{c['cut']}: guests stopped (self-fence) after " +
            c['delays_ms'].map { |d, ms| "#{d} #{ms || 'never'} ms" }.join(', ').then { |x| x.empty? ? '(none ran)' : x })
      end
      an[:teardown].each do |t|
        say("teardown overlap (a qemu process exiting after SIGTERM while the next copy starts; not counted): " \
            "#{t['slot']} #{t['ms']} ms #{t['hosts'].join(' ')}")
      end
      @violations.each_with_index do |v, k|
        say("VIOLATION #{k + 1}: #{v.reject { |kk, _| kk == 'evidence' }.map { |kk, vv| "#{kk}=#{vv}" }.join(' ')}")
        Array(v['evidence']).each { |l| say("    #{l}") }
      end
      @result = {
        'seed' => @cfg.seed, 'seconds' => @cfg.seconds, 'faults' => @faults.values.sum, 'by_kind' => @faults,
        'violations' => @violations.size, 'converged' => converged, 'converge_s' => converge_s&.round(1),
        'wall_s' => wall.round(1), 'autodestroy_ms' => delays, 'kills' => an[:autodestroy], 'cuts' => an[:fenced].to_a,
        'teardown_overlaps_ms' => an[:teardown].map { |t| t['ms'] }, 'details' => @violations,
        'journal' => @journal, 'error' => error
      }
      FileUtils.mkdir_p(File.dirname(RESULT))
      File.write(RESULT, JSON.pretty_generate(@result))
      keep_logs if @violations.any? || @cfg.keep_logs
    end

    def keep_logs
      FileUtils.rm_rf(KEPT_LOGS)
      FileUtils.mkdir_p(KEPT_LOGS)
      @incs.each do |inc|
        FileUtils.cp(inc.log, File.join(KEPT_LOGS, "h#{inc.host}.#{File.basename(inc.log)}")) if File.exist?(inc.log)
      end
      hosts.each do |i| # libvirt's log of each domain, and its console (the last boot's)
        SLOTS.each do |dom|
          %W[#{dom}.log #{dom}-console.log].each do |name|
            f = File.join(@lab.host_dir(i), 'log', 'qemu', name)
            FileUtils.cp(f, File.join(KEPT_LOGS, "h#{i}.qemu.#{name}")) if File.exist?(f)
          end
        end
      end
      File.write(File.join(KEPT_LOGS, 'journal'), "#{@journal.join("\n")}\n")
      say("logs kept in #{KEPT_LOGS}")
    end
  end

  def self.summary(result)
    return 'lab chaos faults=NA violations=NA converge_s=NA' unless result

    cs = result['converge_s'] ? format('%.1f', result['converge_s']) : 'NA'
    "lab chaos faults=#{result['faults']} violations=#{result['violations']} converge_s=#{cs}"
  end
end

RSpec.describe 'the chaos test on real guests in the lab', :lab do
  before(:all) do
    @cfg = ChaosLab::Config.from_env
    @lab = LabHelper::Lab.new(ENV.fetch('LAB_DIR_CHAOS', '/tmp/cloud-lab-chaos'), ChaosLab::HOSTS,
                              cloudd_args: ['--sweep-ms', @cfg.sweep_ms.to_s]).up
  end

  after(:all) { LabHelper.finish(@lab, 'chaos', self.class) }

  it 'keeps one running copy of each slot and one leader per epoch under faults, converges, serves, leaves nothing' do
    FileUtils.rm_f(ChaosLab::RESULT)
    result = ChaosLab::Run.new(@lab, @cfg).run
    LabHelper.record('chaos_faults', result['faults'])
    LabHelper.record('chaos_violations', result['violations'])
    LabHelper.record('chaos_converge_s', result['converge_s'])
    puts "\n#{ChaosLab.summary(result)} (seed #{result['seed']}, #{result['wall_s']} s)"
    details = result['details'].map do |v|
      ([v.reject { |k, _| k == 'evidence' }.to_json] + Array(v['evidence']).map { |l| "    #{l}" }).join("\n")
    end.join("\n")
    expect(result['error']).to be_nil, "the run did not finish: #{result['error']}"
    expect(result['violations']).to eq(0), "#{ChaosLab.summary(result)} (seed #{result['seed']})\n#{details}"
    expect(result['converged']).to be(true)
    expect(result['faults']).to be > 0
  end
end
