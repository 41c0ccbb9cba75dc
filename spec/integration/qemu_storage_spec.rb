# frozen_string_literal: true

# Integration, real hypervisor: the engine's storage path on libvirt's qemu driver (not the test
# driver).  A private libvirtd (test/lab/private-libvirtd: own mount namespace, socket in a
# temporary directory) runs two guests of one role under software emulation (TCG), each booting
# its own copy-on-write qcow2 overlay of one base image; `stop` must leave no domain, no overlay,
# no state file and no qemu process.  The Cloud extension is used directly, with an embedded
# cloudd on a private socket and state directory; the spec kills that cloudd by the PID its
# socket reports, and stops the lab (which destroys whatever guest is left) even on failure.
#
# The base image is `qemu-img create -f qcow2 base.qcow2 64M` plus a 512-byte boot sector (see
# BOOT_SECTOR) so that the guests really use their disks: each guest reads its boot sector
# through its overlay, writes it back to sector 1 (the write must land in the overlay, never in
# the base), reports on its serial port, then waits for the ACPI power button and powers off —
# as a real OS would, so the engine's graceful shutdown on `stop` takes a moment, not its 30 s
# grace per domain.  Needs root, libvirtd, qemu-system-x86_64 and qemu-img (script/setup).
require 'digest'
require 'fileutils'
require 'json'
require 'open3'
require 'socket'
require 'tmpdir'

lib = File.expand_path('../../lib', __dir__)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)
require 'cloud_ext'

module QemuStorageSpec
  REPO = File.expand_path('../..', __dir__)
  LAB = File.join(REPO, 'test', 'lab', 'private-libvirtd')
  DAEMON = File.join(REPO, 'bin', 'cloudd')
  TOOLS = %w[unshare libvirtd virtlogd virsh qemu-system-x86_64 qemu-img qemu-io].freeze

  # Why the group cannot run here, or nil.
  def self.skip_reason
    return 'needs root (it starts a private libvirtd and qemu guests)' unless Process.uid.zero?

    path = ENV.fetch('PATH', '').split(':') | %w[/usr/sbin /sbin] # the lab script looks there too
    missing = TOOLS.reject { |t| path.any? { |d| File.executable?(File.join(d, t)) } }
    return "needs #{missing.join(', ')} (bash script/setup installs them)" unless missing.empty?

    nil
  end

  # 16-bit real-mode boot sector (GNU as, .code16, linked at 0x7c00):
  #   cli; xor ax,ax; mov ds/es/ss,ax; mov sp,0x7c00; sti
  #   mov ax,0x0301; mov cx,2; xor dh,dh; mov bx,0x7c00; int 0x13  ; write this sector to LBA 1
  #   mov si,ok; jnc print; mov si,bad
  #   print: mov dx,0x3f8; 1: lodsb; test al,al; jz 2f; out dx,al; jmp 1b  ; message to COM1
  #   2: mov dx,0x602; mov ax,0x100; out dx,ax        ; PM1a_EN: power button enabled
  #   3: hlt; mov dx,0x600; in ax,dx; test ax,0x100; jz 3b  ; PM1a_STS: button pressed?
  #   mov dx,0x604; mov ax,0x2000; out dx,ax; jmp 3b  ; PM1a_CNT: SLP_EN, S5: power off
  #   ok: "cloud-guest: booted, wrote LBA 1\r\n"  bad: "cloud-guest: booted, write FAILED\r\n"
  BOOT_MARK = 'cloud-guest: booted, wrote LBA 1'
  BOOT_SECTOR = begin
    code = ['fa31c08ed88ec08ed0bc007cfbb80103b9020030f6bb007ccd13be477c7303be6a7c' \
            'baf803ac84c07403eeebf8ba0206b80001eff4ba0006eda9000174f6ba0406b80020efebed'].pack('H*')
    code += "#{BOOT_MARK}\r\n\0cloud-guest: booted, write FAILED\r\n\0".b
    code.ljust(510, "\0".b) + "\x55\xaa".b
  end

  TEMPLATE = <<~XML
    <domain type='qemu'>
      <name>{{name}}</name>
      <uuid>{{uuid}}</uuid>
      <memory unit='KiB'>{{memory}}</memory>
      <vcpu>{{vcpus}}</vcpu>
      <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
      <features><acpi/></features>
      <on_poweroff>destroy</on_poweroff>
      <devices>
        <disk type='file' device='disk'>
          <driver name='qemu' type='qcow2'/>
          <source file='{{disk}}'/>
          <target dev='vda' bus='virtio'/>
        </disk>
        <interface type='user'><mac address='{{mac}}'/><model type='virtio'/></interface>
        <serial type='file'><source path='@SERIAL_DIR@/{{name}}.serial'/><target port='0'/></serial>
      </devices>
    </domain>
  XML
end

RSpec.describe 'the engine on libvirt\'s qemu driver (private libvirtd, TCG guests)',
               order: :defined, **(QemuStorageSpec.skip_reason ? { skip: QemuStorageSpec.skip_reason } : {}) do
  before(:all) do
    @tmp = Dir.mktmpdir('cloud-qemu')
    @lab = File.join(@tmp, 'lab')
    out, err, st = Open3.capture3(QemuStorageSpec::LAB, 'start', @lab)
    raise "private libvirtd did not start: #{err}" unless st.success?

    @uri = out.strip
    @base = File.join(@tmp, 'base.qcow2')
    boot = File.join(@tmp, 'boot.bin')
    File.binwrite(boot, QemuStorageSpec::BOOT_SECTOR)
    run!('qemu-img', 'create', '-q', '-f', 'qcow2', @base, '64M')
    run!('qemu-io', '-f', 'qcow2', '-c', "write -q -s #{boot} 0 512", @base)
    @base_sha = Digest::SHA256.file(@base).hexdigest
    @pool_path = File.join(@tmp, 'pool')
    @serial_dir = File.join(@tmp, 'serial')
    FileUtils.mkdir_p(@serial_dir)
    @socket = File.join(@tmp, 'cloudd.sock')
    @state_dir = File.join(@tmp, 'state')
    @name = 'qemuspec'
    @cloud = Cloud.new(spec, socket: @socket, state_dir: @state_dir, daemon: QemuStorageSpec::DAEMON)
  end

  after(:all) do
    begin
      @cloud&.close
      pid = cloudd_pid
      if pid
        Process.kill('TERM', pid)
        begin
          wait_until('cloudd to exit', timeout: 10) { !alive?(pid) }
        rescue RuntimeError
          Process.kill('KILL', pid)
          raise
        end
      end
    ensure
      begin
        if @lab && File.exist?(@lab)
          _out, err, st = Open3.capture3(QemuStorageSpec::LAB, 'stop', @lab)
          raise "private libvirtd did not stop cleanly: #{err}" unless st.success?
        end
      ensure
        FileUtils.rm_rf(@tmp) if @tmp
      end
    end
  end

  def spec
    slots = Array.new(2) do |i|
      { 'name' => "#{@name}-node-#{i}", 'roles' => ['node'], 'services' => ['node'], 'index' => i,
        'ip' => "10.99.0.#{10 + i}", 'image' => @base }
    end
    {
      'name' => @name, 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
      'hypervisor' => @uri,
      'template' => QemuStorageSpec::TEMPLATE.sub('@SERIAL_DIR@', @serial_dir),
      'template_path' => File.join(@tmp, 'template.xml'),
      'vm_mem' => 65_536, 'vm_ncpu' => 1, 'mac_start' => nil,
      'disk_pool' => "cloud-qemu-spec-#{Process.pid}", 'disk_pool_path' => @pool_path,
      'image_format' => 'qcow2', 'ssh_key' => nil, 'secret_file' => nil,
      'roles' => [{ 'name' => 'node', 'after' => [] }],
      'slots' => slots, 'options' => {}
    }
  end

  def domains
    spec['slots'].map { |s| s['name'] }
  end

  def run!(*cmd)
    out, err, st = Open3.capture3(*cmd)
    raise "#{cmd.join(' ')} failed: #{err}#{out}" unless st.success?

    out
  end

  def alive?(pid)
    Process.kill(0, pid)
    !File.read("/proc/#{pid}/stat").split[2].eql?('Z')
  rescue Errno::ESRCH, Errno::ENOENT
    false
  end

  # The embedded cloudd's PID, asked over its socket (nil when none answers).
  def cloudd_pid
    return nil unless @socket

    UNIXSocket.open(@socket) do |s|
      s.write(%({"v":1,"op":"hello"}\n))
      JSON.parse(s.gets)['pid'] if s.wait_readable(5)
    end
  rescue SystemCallError, JSON::ParserError, TypeError
    nil
  end

  def wait_until(what, timeout: 20)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      result = yield
      return result if result
      raise "timed out after #{timeout}s waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  # Every domain of the private libvirtd, by name.
  def lab_domains
    run!('virsh', '-q', '-c', @uri, 'list', '--all', '--name').split
  end

  # { domain => qemu PID } for the guests of this spec that run now.
  def qemu_pids
    Dir.glob('/proc/[0-9]*').each_with_object({}) do |dir, h|
      args = File.binread("#{dir}/cmdline").split("\0")
      next unless args.first.to_s.include?('qemu-system')

      dom = domains.find { |d| args.any? { |a| a.include?("guest=#{d},") || a == "guest=#{d}" } }
      h[dom] = Integer(File.basename(dir)) if dom
    rescue SystemCallError
      next
    end
  end

  # { path => open read-only? } of the regular files a process holds open.
  def open_files(pid)
    Dir.glob("/proc/#{pid}/fd/*").each_with_object({}) do |fd, h|
      target = File.readlink(fd)
      next unless target.start_with?('/')

      flags = File.read(fd.sub('/fd/', '/fdinfo/'))[/^flags:\s*(\d+)/, 1].to_i(8)
      h[target] = h.fetch(target, true) && (flags & 3).zero?
    rescue SystemCallError
      next
    end
  end

  def img_info(path)
    JSON.parse(run!('qemu-img', 'info', '-U', '--output=json', path))
  end

  def disks
    @cloud.status['slots'].to_h { |s| [s['name'], s['disk']] }
  end

  it 'converges two slots on the real driver, each with a disk in the storage pool' do
    events = []
    res = @cloud.leader_start { |ev| events << ev }
    expect(res['changed']).to eq(2), res.inspect
    expect(res['changes'].map { |c| c['action'] }).to eq(%w[create create])
    expect(res['status']['state']).to eq('running')
    expect(res['status']['slots']).to all(include('state' => 'running', 'host' => '127.0.0.1'))
    expect(events.select { |e| e['event'] == '+disk' }.map { |e| e['slot'] }).to match_array(domains)
    expect(lab_domains).to match_array(domains)
    expect(cloudd_pid).to be_a(Integer)
  end

  it 'gives each slot a qcow2 overlay of its own in the pool directory, backed by the base image' do
    paths = disks
    expect(paths.keys).to match_array(domains)
    expect(paths.values.uniq.size).to eq(2)
    paths.each do |dom, path|
      expect(File.dirname(path)).to eq(@pool_path)
      expect(File.basename(path)).to eq("#{dom}.qcow2")
      expect(path).not_to eq(@base)
      info = img_info(path)
      expect(info['format']).to eq('qcow2')
      expect(info['backing-filename']).to eq(@base)
      expect(info['backing-filename-format']).to eq('qcow2')
      expect(info['virtual-size']).to eq(64 * 1024 * 1024)
    end
  end

  it 'boots each guest from its own overlay, the base image open read-only' do
    pids = wait_until('a qemu process per domain') { (p = qemu_pids).size == 2 && p }
    expect(pids.values.uniq.size).to eq(2)
    paths = disks
    pids.each do |dom, pid|
      files = open_files(pid)
      other = (domains - [dom]).first
      expect(files).to have_key(paths[dom])
      expect(files[paths[dom]]).to be(false) # the overlay is the writable top layer
      expect(files).not_to have_key(paths[other])
      expect(files).to include(@base => true) # the backing file, read-only
    end
    # the guests ran their boot sector (read through the overlay) and wrote their disk
    domains.each do |dom|
      serial = File.join(@serial_dir, "#{dom}.serial")
      wait_until("#{dom} to boot") { File.exist?(serial) && File.read(serial).include?(QemuStorageSpec::BOOT_MARK) }
    end
    paths.each_value do |path|
      map = JSON.parse(run!('qemu-img', 'map', '-U', '--output=json', path))
      expect(map).to include(include('start' => 0, 'depth' => 0, 'data' => true)) # written in the overlay
    end
  end

  it 'never writes the base image' do
    expect(Digest::SHA256.file(@base).hexdigest).to eq(@base_sha)
    expect(img_info(@base)).not_to have_key('backing-filename')
  end

  it 'changes nothing on a second leader_start' do
    uuids = @cloud.status['slots'].to_h { |s| [s['name'], s['uuid']] }
    pids = qemu_pids
    res = @cloud.leader_start
    expect(res['changed']).to eq(0), res.inspect
    expect(res['changes']).to eq([])
    expect(res['status']['state']).to eq('running')
    expect(@cloud.status['slots'].to_h { |s| [s['name'], s['uuid']] }).to eq(uuids)
    expect(qemu_pids).to eq(pids)
    expect(Dir.children(@pool_path).sort).to eq(domains.map { |d| "#{d}.qcow2" }.sort)
  end

  # The dead man's switch (doc/MONITOR.md, Fencing): guests started by a cloudd are destroyed by
  # libvirtd when that daemon dies, so a host whose daemon is gone keeps no copy running; the
  # next daemon's monitor starts them again from their overlays, with nobody running Puppet.
  it "has libvirtd destroy a SIGKILLed daemon's guests, and the next daemon's monitor start them" do
    pid = cloudd_pid
    expect(pid).to be_a(Integer)
    before = qemu_pids
    expect(before.keys.sort).to eq(domains.sort)
    Process.kill('KILL', pid)
    wait_until('libvirtd to destroy the guests of the dead daemon') { qemu_pids.empty? }
    expect(lab_domains.sort).to eq(domains.sort) # still defined, disks kept
    # a new daemon, started as the provider starts one (nobody applies anything), adopts the
    # stopped guests and starts them
    run!(QemuStorageSpec::DAEMON, '--embedded', '--daemonize', '--socket', @socket, '--state-dir', @state_dir)
    wait_until('the new daemon to start both guests again', timeout: 60) { qemu_pids.keys.sort == domains.sort }
    expect(cloudd_pid).not_to eq(pid)
    expect(Dir.children(@pool_path).sort).to eq(domains.map { |d| "#{d}.qcow2" }.sort)
  end

  it 'stops: no domain, no overlay, no state file, no qemu process left, the base untouched' do
    events = []
    res = @cloud.stop { |ev| events << ev }
    expect(res['changed']).to eq(3), res.inspect # two domains and the cloud's state
    expect(res['changes'].map { |c| c['action'] }).to eq(%w[remove remove])
    expect(events.select { |e| e['event'] == '-domain' }.map { |e| e['slot'] }).to match_array(domains)
    expect(lab_domains).to eq([])
    expect(Dir.children(@pool_path)).to eq([])
    expect(Dir.glob(File.join(@state_dir, 'clouds', '*'))).to eq([])
    wait_until('the qemu processes to exit', timeout: 10) { qemu_pids.empty? }
    expect(Digest::SHA256.file(@base).hexdigest).to eq(@base_sha)
  end

  it 'changes nothing on a second stop' do
    expect(@cloud.stop).to eq('changed' => 0, 'changes' => [])
    expect(lab_domains).to eq([])
  end
end
