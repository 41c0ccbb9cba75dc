# frozen_string_literal: true

# End to end on real guests (issue 4): two pool hosts of the lab, each with its libvirtd and
# cloudd; `puppet apply` of a web manifest on both (the second run converges it through the
# leader); an HTTP request to the balancer returns rows from the database, answered by both
# servers in turn; a second apply changes nothing; `ensure => stopped` leaves no domain, disk or
# guest process. Self-healing (issue 5), with nobody running Puppet: nginx killed in the balancer
# guest is restarted by the leader's role check; a server VM destroyed behind the daemons' back
# (virsh on its host) is started again and its role set up again. Slow (guests boot under TCG):
# run by `rake lab:e2e` and the full test command.
require 'json'
require 'open3'
require_relative 'lab_helper'

RSpec.describe 'a web cloud on real guests in the lab', :lab do
  before(:all) do
    @lab = LabHelper::Lab.new(ENV.fetch('LAB_DIR', '/tmp/cloud-lab-e2e'), 2).up
    servers = @lab.role_files('server', ['10.78.0.12', '10.78.0.13'])
    @manifest = lambda do |ensure_|
      <<~PP
        web { 'lw':
          ensure      => #{ensure_},
          database    => #{@lab.role_vm('10.78.0.11')},
          server      => #{servers},
          balancer    => #{@lab.role_vm('10.78.0.14')},
          health      => { 'balancer' => { 'interval' => 2, 'retries' => 0 } },
          #{@lab.common_attrs}
        }
      PP
    end
  end

  after(:all) { LabHelper.finish(@lab, 'web', self.class) }

  def http_get(url)
    out, st = @lab.in_host(1, 'python3', '-c',
                           "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(#{url.inspect}, timeout=10).read().decode())")
    st.success? ? out : nil
  end

  it 'converges from whichever host applies first, and the balancer serves rows from the database' do
    out2, rc2 = @lab.puppet_apply(2, @manifest.call('running')) # a member alone: joins
    expect([0, 2]).to include(rc2), out2
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out1, rc1 = @lab.puppet_apply(1, @manifest.call('running')) # the leader: converges
    expect(rc1).to eq(2), out1
    first = nil
    60.times do
      break if (first = http_get('http://10.78.0.14/'))

      sleep 0.5
    end
    serving = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).round(1)
    LabHelper.record('web_serving_s', serving)
    puts "\ne2e: the web cloud serves #{serving} s after the leader's puppet apply started (4 VMs, 2 hosts, TCG)"
    expect(out1).to include('started lw-balancer-0').and include('started lw-database-0')
    bodies = Array.new(4) { http_get('http://10.78.0.14/') }
    expect(bodies).to all(start_with('served by lw-server-'))
    expect(bodies.map { |b| b.lines.first[/lw-server-\d/] }.uniq.sort).to eq(['lw-server-0', 'lw-server-1'])
    expect(bodies.first).to include("1\thello from the database of lw")
  end

  it 'changes nothing on a second run, on either host' do
    [1, 2].each do |i|
      out, rc = @lab.puppet_apply(i, @manifest.call('running'))
      expect(rc).to eq(0), out
    end
  end

  def ctl(i, *args) = Open3.capture3(File.join(LabHelper::ROOT, 'bin/cloudctl'), '--socket', @lab.socket(i), *args)

  it 'runs a command in every guest of a role at once from a member, and tells which failed' do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out, err, st = ctl(2, 'exec', 'lw', 'server', '--json', '--', 'sh', '-c', 'hostname; echo "$1" >&2; sleep 2', 'sh', "it's $HOME")
    wall = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    expect(st.exitstatus).to eq(0), out + err
    res = JSON.parse(out)
    slots = res['slots'] || res.dig('answer', 'slots')
    expect(slots.map { |x| x['slot'] }.sort).to eq(%w[lw-server-0 lw-server-1])
    slots.each do |x|
      expect(x['exit']).to eq(0)
      expect(x['stderr']).to eq("it's $HOME\n") # quoted: no expansion in the guest
    end
    expect(wall).to be < 2 * 2 + 1.5 # at once: not one after the other
    out, err, st = ctl(1, 'exec', 'lw', '--', 'sh', '-c', 'test "$(hostname)" != lw-database-0')
    expect(st.exitstatus).to eq(1), out + err
    expect(out).to match(/lw-database-0.*exit 1/)
    _, err, st = ctl(1, 'exec', 'lw', 'nosuch', '--', 'true')
    expect(st.exitstatus).to eq(1)
    expect(err).to include('nosuch')
    ev = events
    expect(ev.map { |e| e['type'] }).to include('+exec', '+exec-slot', '-exec-slot')
    expect(ev.to_json).not_to include("it's")
  end

  def events
    out, = Open3.capture2e(File.join(LabHelper::ROOT, 'bin/cloudctl'), '--socket', @lab.socket(1), 'events', 'lw', '--json')
    JSON.parse(out)
  rescue JSON::ParserError
    []
  end

  def wait_serving(timeout)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until http_get('http://10.78.0.14/')&.start_with?('served by')
      return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.1
    end
    true
  end

  it 'restarts nginx killed in the balancer guest, by its role check, with nobody running Puppet' do
    expect(wait_serving(10)).to be(true)
    out, st = @lab.in_host(1, 'ssh', '-i', @lab.env['LAB_SSH_KEY'], '-o', 'StrictHostKeyChecking=no',
                           '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', 'root@10.78.0.14',
                           'pkill -x nginx; sleep 0.2; pgrep -x nginx || echo stopped')
    expect(st.success?).to be(true), out
    expect(out).to include('stopped')
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect(http_get('http://10.78.0.14/')).to be_nil
    expect(wait_serving(60)).to be(true)
    back = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).round(2)
    LabHelper.record('service_repair_s', back)
    puts "\ne2e: nginx killed -> serving again after #{back} s (check interval 2 s)"
    ev = events.select { |e| e['slot'] == 'lw-balancer-0' }
    expect(ev.map { |e| e['type'] }).to include('-check', '+repair')
    expect(ev.find { |e| e['type'] == '+repair' }['text']).to start_with('service')
  end

  it 'starts a server VM destroyed behind its back and sets its role up again' do
    host = (1..2).find { |i| @lab.domains(i).include?('lw-server-1') }
    out, st = Open3.capture2e('virsh', '-c', @lab.env["LAB_URI_#{host}"], 'destroy', 'lw-server-1')
    expect(st.success?).to be(true), out
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    answered = lambda do
      Array.new(4) { http_get('http://10.78.0.14/') }.compact.map { |b| b.lines.first[/lw-server-\d/] }.uniq.sort
    end
    deadline = t0 + 180
    sleep 1 until answered.call == %w[lw-server-0 lw-server-1] || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
    expect(answered.call).to eq(%w[lw-server-0 lw-server-1])
    back = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).round(1)
    LabHelper.record('domain_repair_s', back)
    puts "\ne2e: server VM destroyed -> both servers answering again after #{back} s (guest boot under TCG)"
    ev = events.select { |e| e['slot'] == 'lw-server-1' }
    # seen stopped (libvirt's event, or the sweep) or its check unanswered, whichever came first
    expect(ev.map { |e| e['type'] }).to include('+repair').and(satisfy { |t| t.include?('-failure') || t.include?('-check') })
    # the next Puppet run on the leader says what was repaired, and changes nothing
    out, rc = @lab.puppet_apply(1, @manifest.call('running'))
    expect(rc).to eq(0), out
    expect(out).to include('repaired by the leader: lw-server-1')
  end

  it 'leaves no domain, disk or guest process after ensure => stopped' do
    out, rc = @lab.puppet_apply(1, @manifest.call('stopped'))
    expect([0, 2]).to include(rc), out
    # the roles' stop steps ran in the guests before they were shut down (balancer first)
    log = File.read(@lab.log(1))
    stopped = log.scan(/\+role-stop cloud=lw slot=(\S+)/).flatten
    expect(stopped.sort).to eq(%w[lw-balancer-0 lw-database-0 lw-server-0 lw-server-1])
    expect([stopped.first, stopped.last]).to eq(%w[lw-balancer-0 lw-database-0])
    [1, 2].each do |i|
      expect(@lab.domains(i).grep(/\Alw-/)).to be_empty
      expect(@lab.volumes(i).grep(/\Alw-/)).to be_empty
    end
    guests = Dir['/proc/[0-9]*/cmdline'].select do |f|
      File.read(f).include?('guest=lw-')
    rescue SystemCallError
      false
    end
    expect(guests).to be_empty
  end
end
