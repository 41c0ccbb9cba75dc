#!/usr/bin/env ruby
# frozen_string_literal: true

# Converge / tear-down benchmark of issue 2 (see BENCHMARKS.md).
#
# For every N it converges N slots on libvirt's test driver and tears them down again, RUNS
# times, with four methods side by side (the methods of one run are interleaved):
#
#   product       Cloud.new(spec).leader_start / cloud.stop, talking to a cloudd started here on
#                 a private socket and state directory (its test:///default lives inside cloudd)
#   virsh         the seed's way: one `virsh` process per operation (vol-create, define, start;
#                 destroy, undefine, vol-delete) against a private libvirtd holding the test
#                 driver (a connection of this script keeps its state alive)
#   ruby-libvirt  the same libvirt calls through ruby-libvirt, test:///default in this process
#   bare          bench/bare.c: the same calls from a C loop linking libvirt only (the floor)
#
# Times are CLOCK_MONOTONIC around the call (Puppet's own start-up is not part of anything).
# Every run is checked: N running domains after converge, none (and no overlay) after teardown.
#
# Environment: N="10 100 500" (list), RUNS=5, VIRSH_BIG_RUNS=1 (runs of virsh when N > 100),
# METHODS="product virsh ruby-libvirt bare", KEEP=1 (keep the temporary directory).
# Output: a table on stdout, the raw results as JSON in bench/out/.

require 'fileutils'
require 'json'
require 'rbconfig'
require 'socket'
require 'time'
require 'tmpdir'

ROOT = File.expand_path('..', __dir__)
$LOAD_PATH.unshift(File.join(ROOT, 'lib'))

NS = (ENV['N'] || '10 100 500').split(/[\s,]+/).map { |s| Integer(s) }
RUNS = Integer(ENV.fetch('RUNS', '5'))
VIRSH_BIG_RUNS = Integer(ENV.fetch('VIRSH_BIG_RUNS', '1'))
ALL_METHODS = %w[product virsh ruby-libvirt bare].freeze
METHODS = (ENV['METHODS'] || ALL_METHODS.join(' ')).split(/[\s,]+/)
unknown = METHODS - ALL_METHODS
abort "converge.rb: unknown method(s) #{unknown.join(', ')} (known: #{ALL_METHODS.join(', ')})" unless unknown.empty?

CLOUD = 'bench'
POOL = 'cloud'
POOL_PATH = '/var/lib/libvirt/images/cloud'
IMAGE = '/var/lib/cloud/images/bench.qcow2'
META_URI = 'urn:x-puppet-cloud:owner:1'
MEMORY = 1_048_576
VCPUS = 1

# The domain template of every method (bare.c renders the same text with printf).
TEMPLATE = <<~XML
  <domain type='test'>
    <name>{{name}}</name>
    <uuid>{{uuid}}</uuid>
    <description>{{role}} VM at {{ip}}</description>
    <memory unit='KiB'>{{memory}}</memory>
    <currentMemory unit='KiB'>{{memory}}</currentMemory>
    <vcpu>{{vcpus}}</vcpu>
    <os>
      <type arch='x86_64'>hvm</type>
      <boot dev='hd'/>
    </os>
    <devices>
      <disk type='file' device='disk'>
        <source file='{{disk}}'/>
        <target dev='vda' bus='virtio'/>
      </disk>
      <interface type='network'>
        <mac address='{{mac}}'/>
        <source network='default'/>
      </interface>
    </devices>
  </domain>
XML

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

# Is a child this script started still running (not yet reaped)?
def child_alive?(pid)
  Process.waitpid(pid, Process::WNOHANG).nil?
rescue Errno::ECHILD
  false
end

# A child this script started: TERM, then KILL after grace seconds; reaped either way.
def terminate(pid, grace)
  Process.kill('TERM', pid)
  deadline = now + grace
  sleep 0.02 while child_alive?(pid) && now < deadline
  return unless child_alive?(pid)

  Process.kill('KILL', pid)
  Process.wait(pid)
rescue Errno::ESRCH, Errno::ECHILD
  nil
end

def log(msg)
  warn "[bench #{Time.now.strftime('%H:%M:%S')}] #{msg}"
end

def median(values)
  return nil if values.empty?
  s = values.sort
  s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
end

# ---------------------------------------------------------------------------------------------
# Slots, and the per-slot documents of the peers (the product renders its own)
# ---------------------------------------------------------------------------------------------

Slot = Struct.new(:i, :name, :vol, :ip, :uuid, :mac)

def slots(n)
  (0...n).map do |i|
    name = "#{CLOUD}-server-#{i}"
    Slot.new(i, name, "#{name}.qcow2", "10.1.#{i / 250}.#{i % 250 + 2}",
             format('%08x-0000-4000-8000-%012x', 0xbe7c0000 + n, i),
             format('52:54:00:%02x:%02x:%02x', (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff))
  end
end

def spec(n)
  {
    'name' => CLOUD, 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
    'hypervisor' => 'test:///default', 'template' => TEMPLATE, 'template_path' => 'bench/converge.rb',
    'vm_mem' => MEMORY, 'vm_ncpu' => VCPUS, 'mac_start' => nil, 'disk_pool' => POOL,
    'disk_pool_path' => POOL_PATH, 'image_format' => 'qcow2', 'ssh_key' => nil, 'secret_file' => nil,
    'roles' => [{ 'name' => 'server', 'after' => [] }],
    'slots' => slots(n).map do |s|
      { 'name' => s.name, 'roles' => ['server'], 'services' => ['server'], 'index' => s.i,
        'ip' => s.ip, 'image' => IMAGE }
    end,
    'options' => {},
  }
end

# The engine's overlay XML (cl_virt_overlay) plus <allocation>0: see bench/bare.c.
def volume_xml(slot)
  "<volume><name>#{slot.vol}</name><capacity unit='G'>1</capacity><allocation>0</allocation>" \
    "<target><format type='qcow2'/></target>" \
    "<backingStore><path>#{IMAGE}</path><format type='qcow2'/></backingStore></volume>"
end

def domain_xml(slot, disk)
  vars = { 'name' => slot.name, 'uuid' => slot.uuid, 'mac' => slot.mac, 'disk' => disk,
           'memory' => MEMORY.to_s, 'vcpus' => VCPUS.to_s, 'role' => 'server', 'ip' => slot.ip }
  owner = "<cloud:owner xmlns:cloud=\"#{META_URI}\" cloud=\"#{CLOUD}\" slot=\"#{slot.name}\" " \
          "role=\"server\" index=\"#{slot.i}\" ip=\"#{slot.ip}\" host=\"127.0.0.1\" " \
          "image=\"#{IMAGE}\" disk=\"#{disk}\" config=\"0000000000000000\" epoch=\"1\"/>"
  TEMPLATE.gsub(/\{\{(\w+)\}\}/) { vars.fetch(Regexp.last_match(1)) }
          .sub('</domain>', "  <metadata>#{owner}</metadata>\n</domain>")
end

class CheckFailed < StandardError; end

def check(cond, msg)
  raise CheckFailed, msg unless cond
end

UNDEFINE_FLAGS = 1 | 2 # MANAGED_SAVE | SNAPSHOTS_METADATA (the test driver refuses NVRAM)

# Counts the run's domains (active ones or all) and overlays through a ruby-libvirt connection.
def count_domains(conn, active_only)
  flags = active_only ? 1 : 0 # VIR_CONNECT_LIST_DOMAINS_ACTIVE
  conn.list_all_domains(flags).count { |d| d.name.start_with?("#{CLOUD}-") }
end

def count_volumes(conn)
  pool = conn.lookup_storage_pool_by_name(POOL)
  pool.list_volumes.count { |v| v.start_with?("#{CLOUD}-") }
rescue Libvirt::RetrieveError
  0
end

# ---------------------------------------------------------------------------------------------
# Methods: each returns {converge_s:, teardown_s:, ...} or raises
# ---------------------------------------------------------------------------------------------

# (product) cloudd on a private socket, driven through the Cloud class.
class Product
  def initialize(tmp)
    @dir = File.join(tmp, 'cloudd')
    FileUtils.mkdir_p(@dir)
    # A private copy of the built product: a rebuild of lib/ or bin/ during the run (rake
    # compile in another shell) must neither crash this process nor change what is measured.
    snap = File.join(tmp, 'product')
    FileUtils.mkdir_p(File.join(snap, 'bin'))
    %w[lib/cloud_ext.so bin/cloudd].each do |f|
      src = File.join(ROOT, f)
      raise "#{src} is missing: run `rake compile`" unless File.exist?(src)
      FileUtils.cp(src, File.join(snap, f.sub('lib/', '')))
    end
    require File.join(snap, 'cloud_ext.so')
    cloudd = File.join(snap, 'bin', 'cloudd')
    @socket = File.join(@dir, 'cloudd.sock')
    @state = File.join(@dir, 'state')
    @log = File.join(@dir, 'cloudd.log')
    # --pdeathsig: cloudd goes away with this process even if it dies without cleaning up.
    @pid = Process.spawn('setpriv', '--pdeathsig', 'TERM', '--', cloudd, '--socket', @socket,
                         '--state-dir', @state, '--log', @log,
                         in: File::NULL, out: File::NULL, err: [@log, 'a'])
    deadline = now + 15
    sleep 0.02 until Cloud.daemon_running?(socket: @socket) || now > deadline || !child_alive?(@pid)
    raise "cloudd did not answer on #{@socket}; see #{@log}" unless Cloud.daemon_running?(socket: @socket)
    log "product: cloudd pid #{@pid} on #{@socket}"
  end

  attr_reader :pid

  def run(n)
    spec = spec(n)
    opts = { socket: @socket, state_dir: @state, autostart: false }
    events = 0
    t0 = now
    cloud = Cloud.new(spec, **opts)
    res = cloud.leader_start { |_ev| events += 1 }
    conv = now - t0
    # Checks, outside the timing: the answer, then a separate status request to the daemon.
    check(res['changed'] == n, "product: leader_start changed #{res['changed']}, expected #{n}")
    running = res['status']['slots'].count { |s| s['state'] == 'running' }
    check(running == n, "product: #{running} running slots in the answer, expected #{n}")
    st = Cloud.new(spec, **opts).status
    running = st['slots'].count { |s| s['state'] == 'running' }
    check(st['state'] == 'running' && running == n && st['domains'] == n,
          "product: status says #{st['state']}, #{running} running, #{st['domains']} domains")
    t0 = now
    cloud = Cloud.new(spec, **opts)
    res = cloud.stop { |_ev| events += 1 }
    down = now - t0
    st = Cloud.new(spec, **opts).status
    left = st['slots'].count { |s| s['state'] != 'missing' }
    check(left.zero? && st['domains'].to_i.zero?,
          "product: after stop #{left} slots are not missing, #{st['domains']} domains remain")
    check(Cloud.status(socket: @socket)['clouds'].empty?, 'product: the daemon still knows the cloud')
    { converge_s: conv, teardown_s: down, events: events, removed: res['changed'] }
  rescue Cloud::Error, CheckFailed => e
    # Leave nothing behind for the next run.
    begin
      Cloud.new(spec, **opts).stop
    rescue StandardError
      nil
    end
    raise e if e.is_a?(CheckFailed)
    raise CheckFailed, "product: #{e.class}: #{e.message}"
  end

  def close
    terminate(@pid, 5) if @pid
    @pid = nil
  end
end

# (virsh) a private libvirtd in its own mount namespace; one virsh process per operation.
class Virsh
  def initialize(tmp)
    require 'libvirt'
    @dir = File.join(tmp, 'libvirtd')
    @sockdir = File.join(@dir, 'sock')
    @etc = File.join(@dir, 'etc-libvirt')
    @xml = File.join(@dir, 'xml')
    FileUtils.mkdir_p([@sockdir, @xml])
    # A private copy of /etc/libvirt with no guest or network definitions to start.
    FileUtils.cp_r('/etc/libvirt', @etc)
    Dir[File.join(@etc, 'qemu', '*.xml')].each { |f| File.delete(f) }
    Dir[File.join(@etc, 'qemu', 'networks', 'autostart', '*')].each { |f| File.delete(f) }
    conf = File.join(@dir, 'libvirtd.conf')
    File.write(conf, <<~CONF)
      unix_sock_dir = "#{@sockdir}"
      unix_sock_rw_perms = "0700"
      auth_unix_rw = "none"
      auth_unix_ro = "none"
      listen_tls = 0
      listen_tcp = 0
      log_outputs = "3:file:#{@dir}/libvirtd.log"
    CONF
    pidfile = File.join(@dir, 'libvirtd.pid')
    # Its own mount namespace: tmpfs over libvirt's run/state directories, so it never meets
    # the lock files of a system libvirtd (ENVIRONMENT.md); exec keeps the PID spawned here.
    script = <<~SH
      set -e
      for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
        mkdir -p "$d"; mount -t tmpfs tmpfs "$d"
      done
      mount --bind "#{@etc}" /etc/libvirt
      exec libvirtd --config "#{conf}" --pid-file "#{pidfile}"
    SH
    @pid = Process.spawn('setpriv', '--pdeathsig', 'TERM', '--',
                         'unshare', '-m', '--propagation', 'private', 'sh', '-c', script,
                         in: File::NULL, out: [File.join(@dir, 'libvirtd.out'), 'w'],
                         err: [:child, :out])
    @uri = "test+unix:///default?socket=#{@sockdir}/libvirt-sock"
    deadline = now + 20
    sleep 0.05 until File.socket?("#{@sockdir}/libvirt-sock") || now > deadline || !child_alive?(@pid)
    raise "libvirtd did not start; see #{@dir}/libvirtd.out and libvirtd.log" unless child_alive?(@pid) && File.socket?("#{@sockdir}/libvirt-sock")
    # The holder: the test driver's state lives only while some client stays connected.
    @holder = nil
    until @holder
      begin
        @holder = Libvirt.open(@uri)
      rescue Libvirt::ConnectionError
        raise if now > deadline
        sleep 0.05
      end
    end
    @errlog = File.join(@dir, 'virsh.err')
    log "virsh: libvirtd pid #{@pid}, #{@uri}"
  end

  attr_reader :pid

  def virsh(*args)
    ok = system('virsh', '-q', '-c', @uri, *args, in: File::NULL, out: File::NULL, err: [@errlog, 'a'])
    raise CheckFailed, "virsh #{args.join(' ')} failed: #{File.readlines(@errlog).last(3).join.strip}" unless ok
  end

  def run(n)
    ss = slots(n)
    t0 = now
    # Storage pool ensure: one look-up process, and its creation the first time.
    unless system('virsh', '-q', '-c', @uri, 'pool-info', POOL, in: File::NULL, out: File::NULL, err: File::NULL)
      virsh('pool-define-as', POOL, 'dir', '--target', POOL_PATH)
      virsh('pool-build', POOL)
      virsh('pool-start', POOL)
      virsh('pool-autostart', POOL)
    end
    ss.each do |s|
      vfile = File.join(@xml, "#{s.vol}.xml")
      File.write(vfile, volume_xml(s))
      virsh('vol-create', POOL, vfile)
      dfile = File.join(@xml, "#{s.name}.xml")
      File.write(dfile, domain_xml(s, "#{POOL_PATH}/#{s.vol}"))
      virsh('define', dfile)
      virsh('start', s.name)
    end
    conv = now - t0
    running = count_domains(@holder, true)
    check(running == n, "virsh: #{running} running domains after converge, expected #{n}")
    t0 = now
    ss.each do |s|
      virsh('destroy', s.name)
      virsh('undefine', s.name)
      virsh('vol-delete', '--pool', POOL, s.vol)
    end
    down = now - t0
    left = count_domains(@holder, false)
    vols = count_volumes(@holder)
    check(left.zero? && vols.zero?, "virsh: #{left} domains and #{vols} overlays left after teardown")
    { converge_s: conv, teardown_s: down, processes: 3 * n + 1 }
  rescue CheckFailed
    cleanup(ss)
    raise
  end

  # After a failure: remove whatever the run left, through the holder connection.
  def cleanup(ss)
    (ss || []).each do |s|
      begin
        d = @holder.lookup_domain_by_name(s.name)
        d.destroy if d.active?
        d.undefine
      rescue Libvirt::Error
        nil
      end
      begin
        @holder.lookup_storage_pool_by_name(POOL).lookup_volume_by_name(s.vol).delete
      rescue Libvirt::Error
        nil
      end
    end
  end

  def close
    begin
      @holder&.close
    rescue StandardError
      nil
    end
    @holder = nil
    terminate(@pid, 10) if @pid
    @pid = nil
  end
end

# (ruby-libvirt) the same calls in this process against test:///default.
class RubyLibvirt
  def initialize(_tmp)
    require 'libvirt'
  end

  def pool_ensure(conn)
    pool = begin
      conn.lookup_storage_pool_by_name(POOL)
    rescue Libvirt::RetrieveError
      p = conn.define_storage_pool_xml("<pool type='dir'><name>#{POOL}</name>" \
                                       "<target><path>#{POOL_PATH}</path></target></pool>")
      begin
        p.build
      rescue Libvirt::Error
        nil # the directory may already exist
      end
      p.autostart = true
      p
    end
    pool.create unless pool.active?
    pool
  end

  def run(n)
    ss = slots(n)
    conn = Libvirt.open('test:///default') # a fresh driver state: the last run closed it
    t0 = now
    pool = pool_ensure(conn)
    ss.each do |s|
      vol = pool.create_volume_xml(volume_xml(s))
      dom = conn.define_domain_xml(domain_xml(s, vol.path))
      dom.create
    end
    conv = now - t0
    running = count_domains(conn, true)
    check(running == n, "ruby-libvirt: #{running} running domains after converge, expected #{n}")
    t0 = now
    ss.each do |s|
      dom = conn.lookup_domain_by_name(s.name)
      dom.destroy
      dom.undefine(UNDEFINE_FLAGS)
      pool.lookup_volume_by_name(s.vol).delete
    end
    down = now - t0
    left = count_domains(conn, false)
    vols = count_volumes(conn)
    check(left.zero? && vols.zero?, "ruby-libvirt: #{left} domains and #{vols} overlays left after teardown")
    { converge_s: conv, teardown_s: down }
  rescue Libvirt::Error => e
    raise CheckFailed, "ruby-libvirt: #{e.class}: #{e.message}"
  ensure
    conn&.close
  end

  def close; end
end

# (bare) bench/bare.c, built by bench/Makefile.
class Bare
  def initialize(_tmp)
    ok = system('make', '-s', '-C', ROOT, '-f', 'bench/Makefile', 'bare', out: $stderr)
    raise 'building bench/bare.c failed' unless ok
    @bin = File.join(ROOT, 'build', 'bench', 'bare')
  end

  def run(n)
    out = IO.popen([@bin, n.to_s, '--cloud', CLOUD, '--pool', POOL, '--pool-path', POOL_PATH], err: [:child, :out], &:read)
    raise CheckFailed, "bare: #{out.strip}" unless $?.success?
    r = JSON.parse(out.lines.last)
    check(r['running_after_converge'] == n && r['domains_after_teardown'].zero? && r['volumes_after_teardown'].zero?,
          "bare: #{out.strip}")
    { converge_s: r['converge_s'], teardown_s: r['teardown_s'], open_s: r['open_s'] }
  end

  def close; end
end

CLASSES = { 'product' => Product, 'virsh' => Virsh, 'ruby-libvirt' => RubyLibvirt, 'bare' => Bare }.freeze

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def runs_for(method, n)
  method == 'virsh' && n > 100 ? [VIRSH_BIG_RUNS, RUNS].min : RUNS
end

def fmt_s(v)
  v.nil? ? '-' : format('%.5f', v)
end

def fmt_x(a, b)
  a.nil? || b.nil? || b.zero? ? '-' : format('%.1fx', a / b)
end

def machine
  {
    'nproc' => Integer(`nproc`.strip),
    'cpu' => File.read('/proc/cpuinfo')[/model name\s*:\s*(.*)/, 1],
    'dev_kvm' => File.exist?('/dev/kvm'),
    'cpu_virt_flags' => File.read('/proc/cpuinfo').match?(/\b(vmx|svm)\b/),
    'kernel' => `uname -r`.strip,
    'ruby' => RUBY_VERSION,
    'libvirt' => `pkg-config --modversion libvirt 2>/dev/null`.strip,
    'loadavg' => File.read('/proc/loadavg').split[0, 3].join(' '),
    'commit' => `git -C #{ROOT} rev-parse --short HEAD 2>/dev/null`.strip,
    'ext_changes' => `git -C #{ROOT} status --porcelain -- ext 2>/dev/null`.lines.map(&:strip),
  }
end

def main
  machine_before = machine
  log "machine: #{machine_before.values_at('nproc', 'cpu').join(' x ')}, load average #{machine_before['loadavg']}"
  log "product: commit #{machine_before['commit']}#{machine_before['ext_changes'].empty? ? '' : " + uncommitted changes in ext/: #{machine_before['ext_changes'].join(', ')}"}"
  tmp = Dir.mktmpdir('cloud-bench')
  impl = {}
  results = Hash.new { |h, k| h[k] = Hash.new { |h2, k2| h2[k2] = { 'runs' => [], 'errors' => [] } } }
  status = 0
  %w[INT TERM].each { |sig| trap(sig) { raise Interrupt } }
  begin
    METHODS.each { |m| impl[m] = CLASSES.fetch(m).new(tmp) }
    NS.each do |n|
      RUNS.times do |run|
        METHODS.each do |m|
          cell = results[n][m]
          next if run >= runs_for(m, n) || !cell['errors'].empty?
          begin
            r = impl[m].run(n)
            cell['runs'] << r.transform_keys(&:to_s)
            log format('N=%-4d run %d %-12s converge %.5f s  teardown %.5f s', n, run + 1, m, r[:converge_s], r[:teardown_s])
          rescue CheckFailed => e
            cell['errors'] << e.message
            log "N=#{n} run #{run + 1} #{m} FAILED: #{e.message}"
            status = 1
          end
        end
      end
    end
  ensure
    impl.each_value do |i|
      i.close
    rescue StandardError => e
      log "closing #{i.class}: #{e.message}"
    end
    if ENV['KEEP'] == '1'
      log "kept #{tmp}"
    else
      FileUtils.rm_rf(tmp)
    end
  end

  # Medians and the table.
  summary = {}
  rows = []
  NS.each do |n|
    med = {}
    METHODS.each do |m|
      cell = results[n][m]
      med[m] = {
        'converge_s' => median(cell['runs'].map { |r| r['converge_s'] }),
        'teardown_s' => median(cell['runs'].map { |r| r['teardown_s'] }),
        'converge_min_s' => cell['runs'].map { |r| r['converge_s'] }.min,
        'teardown_min_s' => cell['runs'].map { |r| r['teardown_s'] }.min,
        'runs' => cell['runs'].size,
        'failed' => cell['errors'].first,
      }
    end
    summary[n] = med
    %w[converge teardown].each do |phase|
      key = "#{phase}_s"
      g = ->(m) { med.dig(m, key) }
      rows << [n, phase, *ALL_METHODS.map { |m| METHODS.include?(m) ? fmt_s(g.call(m)) : 'n/a' },
               fmt_x(g.call('virsh'), g.call('product')), fmt_x(g.call('product'), g.call('bare'))]
    end
  end

  head = ['N', 'phase', 'product s', 'virsh s', 'ruby-libvirt s', 'bare C s', 'virsh/product', 'product/bare']
  widths = head.each_index.map { |i| ([head[i]] + rows.map { |r| r[i].to_s }).map(&:size).max }
  line = ->(r) { '| ' + r.each_with_index.map { |c, i| c.to_s.ljust(widths[i]) }.join(' | ') + ' |' }
  puts
  puts "Medians of #{RUNS} run(s) per cell (virsh at N > 100: #{[VIRSH_BIG_RUNS, RUNS].min}); seconds, CLOCK_MONOTONIC."
  puts "Load average before #{machine_before['loadavg']}, after #{machine['loadavg']} (#{machine_before['nproc']} cores); " \
       "product at #{machine_before['commit']}#{machine_before['ext_changes'].empty? ? '' : ' (ext/ modified)'}."
  puts line.call(head)
  puts '|' + widths.map { |w| '-' * (w + 2) }.join('|') + '|'
  rows.each { |r| puts line.call(r) }
  NS.each do |n|
    METHODS.each do |m|
      f = summary[n][m]['failed']
      puts "N=#{n} #{m}: FAILED (#{summary[n][m]['runs']} good run(s)): #{f}" if f
    end
  end

  if (s100 = summary[100]) && METHODS.include?('product')
    p100 = s100['product']
    puts
    %w[converge teardown].each do |phase|
      key = "#{phase}_s"
      pr = p100[key]
      vs = s100.dig('virsh', key)
      bs = s100.dig('bare', key)
      next unless pr
      t1 = vs ? format('%.1fx faster than virsh (target >= 100x): %s', vs / pr, vs / pr >= 100 ? 'met' : 'MISSED') : 'virsh not run'
      t2 = bs ? format('%.2fx the bare C loop (target <= 2x): %s', pr / bs, pr / bs <= 2 ? 'met' : 'MISSED') : 'bare not run'
      puts "N=100 #{phase}: product #{t1}; #{t2}"
    end
  end

  out_dir = File.join(ROOT, 'bench', 'out')
  FileUtils.mkdir_p(out_dir)
  out = File.join(out_dir, "converge-#{Time.now.utc.strftime('%Y%m%dT%H%M%SZ')}.json")
  File.write(out, JSON.pretty_generate(
                    'benchmark' => 'converge', 'time' => Time.now.utc.iso8601, 'machine' => machine_before,
                    'loadavg_after' => machine['loadavg'],
                    'config' => { 'n' => NS, 'runs' => RUNS, 'virsh_big_runs' => VIRSH_BIG_RUNS, 'methods' => METHODS },
                    'medians' => summary, 'results' => results
                  ))
  puts
  puts "raw results: #{out.sub("#{ROOT}/", '')}"
  exit status
end

main if $PROGRAM_NAME == __FILE__
