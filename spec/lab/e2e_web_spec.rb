# frozen_string_literal: true

# End to end on real guests (issue 4): two pool hosts of the lab, each with its libvirtd and
# cloudd; `puppet apply` of a web manifest on both (the second run converges it through the
# leader); an HTTP request to the balancer returns rows from the database, answered by both
# servers in turn; a second apply changes nothing; `ensure => stopped` leaves no domain, disk or
# guest process. Slow (guests boot under TCG): run by `rake lab:e2e` and the full test command.
require 'json'
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
