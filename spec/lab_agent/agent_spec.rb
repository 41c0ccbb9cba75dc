# frozen_string_literal: true

# The normal Puppet way, end to end (issue 6): a Puppet Server (Debian's puppetserver) in a
# network namespace of its own on the lab's switch serves a site manifest that declares, on each
# of the three lab hosts, the class cloud::host (the guests' key, the cloud's secret, cloudd
# started by the class: service_provider base, there is no systemd in the namespaces) and the
# web cloud. The server's modulepath is the package's (`rake package`, extracted): the types
# reach the agents by pluginsync; the hosts have the package's cloudd and extension (extracted
# too: the hosts share this machine's filesystem, so nothing is installed with dpkg). The agents
# run `puppet agent --test` in the hosts' namespaces: h2, h3, then h1 — the cloud converges
# through whichever agent runs first with a majority; a second round changes nothing; `puppet
# resource web` shows the real state; `--noop` of the stop plans without changing anything; the
# stop round leaves no domain, disk, state file or qemu process. Puppet Server starts once (in
# parallel with the lab). Run alone by `rake lab:agent`.
require_relative 'agent_helper'

RSpec.describe 'puppet agent against a Puppet Server in the lab', :lab do
  before(:all) do
    @t_all = AgentHelper.monotonic
    File.delete(AgentHelper::RESULTS) if File.exist?(AgentHelper::RESULTS)
    FileUtils.rm_rf(AgentHelper::LOGS)
    @dir = ENV.fetch('LAB_DIR', '/tmp/cloud-lab-agent')
    @pkgroot = AgentHelper.extract_package("#{@dir}-pkg")
    @server = AgentHelper::Server.new("#{@dir}-server", File.join(@pkgroot, 'usr/share/puppet/modules'))
    @server.configure
    @server.netns_up
    @server.start
    t0 = AgentHelper.monotonic
    @lab = LabHelper::Lab.new(@dir, 3, cloudd: false)
    @lab.up
    lab_up = (AgentHelper.monotonic - t0).round(1)
    @server.attach(@lab.env['LAB_SWITCH_NS'])
    @secret = Random.new.bytes(24).unpack1('H*')
    %w[running stopped].each do |ensure_|
      @server.environment(ensure_ == 'running' ? 'production' : 'stopped', site(ensure_))
    end
    @server.wait_ready
    @agents = (1..3).to_h { |i| [i, AgentHelper::Agent.new(@lab, i, @pkgroot)] }
    @agents.each_value(&:configure)
    AgentHelper.record('lab_up_s', lab_up)
    AgentHelper.record('server_ready_s', @server.ready_s)
    puts "\nagent: lab up #{lab_up} s; Puppet Server (started before the lab) answering #{@server.ready_s} s after its start " \
         "(checked once the lab was up)"
    @runs = {}
  end

  after(:all) do
    keep_logs if @lab&.env
    # what the stop round left (measured here when it did not run), then what the teardown left
    if @lab&.env && @stop_left.nil?
      left = begin
        leftovers
      rescue StandardError => e
        ["(leftovers not counted: #{e.message})"]
      end
      puts "agent: left before the teardown: #{left.join('; ')}" unless left.empty?
      @stop_left = left.size
    end
    stop_class_daemons if @lab&.env
    @server&.stop
    @lab&.down
    teardown_left = (@lab&.env ? @lab.leftovers : 0) + (@server ? @server.leftovers : 0)
    puts "agent: #{teardown_left} namespaces, processes or mounts left after the teardown" if teardown_left.positive?
    FileUtils.rm_rf(["#{@dir}-pkg", "#{@dir}-server"]) if @dir
    # the agents' confdirs, the secrets and the lab's secret file, once the lab is down (kept
    # for `test/lab/lab down` to finish otherwise)
    FileUtils.rm_rf(@dir) if @dir && teardown_left.zero? && !File.exist?(File.join(@dir, 'lab.created'))
    AgentHelper.record('leftovers', @stop_left.to_i + teardown_left)
    AgentHelper.record('agent_runs', @runs) if @runs
    if @t_all
      AgentHelper.record('total_s', (AgentHelper.monotonic - @t_all).round(1))
      puts "agent: down; the whole test took #{(AgentHelper.monotonic - @t_all).round(1)} s"
    end
  end

  def cloud = AgentHelper::CLOUD

  # The site manifest: the three lab hosts, each with its own paths (they share one filesystem)
  # but the same secret file (a cloud's members must name the same one), and the web cloud of
  # spec/lab/e2e_web_spec.rb with its servers written by web::cluster.
  def site(ensure_)
    key = File.read(@lab.env['LAB_SSH_KEY'])
    pub = File.read("#{@lab.env['LAB_SSH_KEY']}.pub").strip
    image = @lab.env['LAB_IMAGE']
    <<~PP
      # spec/lab_agent: the lab's pool hosts h1..h3 (certnames h<i>.lab), cloud #{cloud} #{ensure_}
      $lab = '#{@lab.dir}'
      $pkg = '#{@pkgroot}'
      $guest_key = @(KEY)
      #{key.chomp}
      | KEY
      node /\\Ah[1-3]\\.lab\\z/ {
        $i = $trusted['certname'].match(/\\Ah([1-3])\\./)[1]
        $hdir = "${lab}/h${i}"
        class { 'cloud':
          confdir => "${hdir}/etc-cloud",
        }
        class { 'cloud::host':
          install          => 'none',
          cloudd_path      => "${pkg}/usr/local/sbin/cloudd",
          cloudctl_path    => "${pkg}/usr/local/bin/cloudctl",
          address          => "10.78.0.${i}",
          socket           => "${hdir}/cloudd.sock",
          state_dir        => "${hdir}/cloud",
          log_file         => "${hdir}/cloudd.log",
          secrets_dir      => "${lab}/secrets",
          secrets          => { '#{cloud}' => Sensitive('#{@secret}') },
          ssh_private_key  => Sensitive($guest_key),
          ssh_public_key   => '#{pub}',
          manage_libvirt   => false,
          service_provider => 'base',
          destroy_ms       => 2500, # as the lab's daemons (guests under TCG)
        }
        web::cluster { '#{cloud}':
          ensure        => #{ensure_},
          database      => ['10.78.0.11', '#{image}'],
          server_ips    => ['10.78.0.12', '10.78.0.13'],
          server_images => ['#{image}', '#{image}'],
          balancer      => ['10.78.0.14', '#{image}'],
          pool          => ['10.78.0.1', '10.78.0.2', '10.78.0.3'],
          vm_domain     => 'puppet:///modules/web/template-lab.xml',
          hypervisor    => 'qemu:///system',
          options       => {
            'vm_mem'      => 524288,
            'ssh_key'     => "${hdir}/etc-cloud/ssh/id_ed25519",
            'secret_file' => "${lab}/secrets/#{cloud}.key",
          },
          require       => Class['cloud::host'],
        }
      }
    PP
  end

  # Each run's output and, at the end, the daemons' logs and the server's, in build/lab-agent-logs.
  def keep_logs
    FileUtils.mkdir_p(AgentHelper::LOGS)
    (1..3).each { |i| FileUtils.cp(@lab.log(i), File.join(AgentHelper::LOGS, "cloudd-h#{i}.log")) if File.exist?(@lab.log(i)) }
    FileUtils.cp(@server.log, File.join(AgentHelper::LOGS, 'puppetserver.log')) if @server && File.exist?(@server.log)
  rescue SystemCallError => e
    puts "agent: logs not kept: #{e.message}"
  end

  def run_agent(i, *extra, label:, timeout: 600)
    run = @agents.fetch(i).run(*extra, timeout: timeout)
    FileUtils.mkdir_p(AgentHelper::LOGS)
    File.write(File.join(AgentHelper::LOGS, "#{label}-h#{i}.log"), run.out)
    @runs[label] ||= {}
    @runs[label]["h#{i}"] = { 'rc' => run.rc, 'seconds' => run.seconds, 'changes' => run.changes }
    puts "agent: #{label} h#{i}: exit #{run.rc}, #{run.changes.inspect} changes, #{run.seconds} s"
    run
  end

  def cloudctl(i, *args)
    Open3.capture2e('timeout', '10', File.join(@pkgroot, 'usr/local/bin/cloudctl'), '--socket', @lab.socket(i), *args)
  end

  def status(i)
    out, st = cloudctl(i, 'status', cloud, '--json')
    return nil unless st.success?

    doc = JSON.parse(out)
    doc['clouds'] ? doc['clouds'].find { |c| c['name'] == cloud } : doc
  rescue JSON::ParserError
    nil
  end

  # The leader's own status of the cloud once it says running with every slot running (nil
  # after timeout s).
  def leader_running(timeout)
    deadline = AgentHelper.monotonic + timeout
    loop do
      leader = (1..3).filter_map { |i| status(i)&.dig('leader') }.first
      i = leader && @lab.hosts.index(leader)&.+(1)
      doc = i && status(i)
      return [i, doc] if doc && doc['state'] == 'running' && !doc['slots'].to_a.empty? &&
                         doc['slots'].all? { |s| s['state'] == 'running' }
      return nil if AgentHelper.monotonic > deadline

      sleep 1
    end
  end

  def http_get(url)
    out, st = @lab.in_host(1, 'curl', '-sf', '--max-time', '10', url)
    st.success? ? out : nil
  end

  # The cloudd each host's class started (its pidfile), if it runs and is that host's.
  def class_daemon(i)
    pidfile = File.join(@lab.state(i), 'cloudd.pid')
    pid = File.exist?(pidfile) ? File.read(pidfile).to_i : 0
    return nil unless pid.positive?

    cmd = File.read("/proc/#{pid}/cmdline").split("\0")
    cmd.include?(@lab.socket(i)) ? [pid, cmd] : nil
  rescue SystemCallError
    nil
  end

  # By PID (TERM, then KILL after 10 s): the daemons the Puppet runs started.
  def stop_class_daemons
    (1..3).each do |i|
      pid, = class_daemon(i)
      next unless pid

      Process.kill('TERM', pid)
      100.times { break unless class_daemon(i); sleep 0.1 }
      Process.kill('KILL', pid) if class_daemon(i)
    rescue Errno::ESRCH
      nil
    end
  end

  def leftovers
    (1..3).flat_map do |i|
      doms = @lab.domains(i).grep(/\A#{cloud}-/)
      vols = @lab.volumes(i).grep(/\A#{cloud}-/)
      dir = File.join(@lab.state(i), 'clouds')
      files = Dir.exist?(dir) ? Dir.children(dir).grep(/\A#{cloud}\b/) : []
      doms.map { |d| "h#{i}: domain #{d}" } + vols.map { |v| "h#{i}: volume #{v}" } + files.map { |f| "h#{i}: state file #{f}" }
    end + Dir['/proc/[0-9]*/cmdline'].filter_map do |f|
      cmd = File.read(f)
      "qemu process #{File.basename(File.dirname(f))}" if cmd.include?("guest=#{cloud}-") && cmd.include?(@lab.dir)
    rescue SystemCallError
      nil
    end
  end

  it 'converges the cloud from whichever agent runs first (h2, h3, h1), the types delivered by pluginsync' do
    t0 = AgentHelper.monotonic
    runs = [2, 3, 1].map { |i| run_agent(i, label: 'first') }
    round = (AgentHelper.monotonic - t0).round(1)
    runs.each do |run|
      expect([0, 2]).to include(run.rc), "h#{run.host}:\n#{run.out}"
      expect(run.failures).to eq(0), "h#{run.host}:\n#{run.out}"
    end
    # the types came from the server (the agents have no module of their own), not the
    # extension: that is the package's
    (1..3).each do |i|
      libdir = File.join(@agents[i].vardir, 'lib')
      expect(File).to exist(File.join(libdir, 'puppet/type/web.rb'))
      expect(File).to exist(File.join(libdir, 'puppet/provider/web/cloud.rb'))
      expect(Dir[File.join(libdir, '**', '*.so')]).to be_empty
      expect(Dir.exist?(File.join(@agents[i].confdir, 'code', 'environments', 'production', 'modules'))).to be(false)
    end
    expect(runs.first.out).to include("this host is a member of #{cloud}")
    found = leader_running(300)
    converged = (AgentHelper.monotonic - t0).round(1)
    AgentHelper.record('converged', found ? 'yes' : 'no')
    AgentHelper.record('first_round_s', round)
    AgentHelper.record('converged_s', converged)
    puts "agent: first round #{round} s; running on the leader #{converged} s after the first agent started"
    expect(found).not_to be_nil, runs.map { |r| "h#{r.host}:\n#{r.out}" }.join("\n")
    leader, doc = found
    puts "agent: leader h#{leader} (epoch #{doc['epoch']}), slots: " +
         doc['slots'].map { |s| "#{s['name']}@#{s['host']}" }.join(' ')
    expect(doc['slots'].map { |s| s['name'] }.sort).to eq(%W[#{cloud}-balancer-0 #{cloud}-database-0 #{cloud}-server-0 #{cloud}-server-1])
    # the guests really serve: the balancer returns rows from the database
    body = nil
    60.times { break if (body = http_get('http://10.78.0.14/')); sleep 1 }
    expect(body).to start_with("served by #{cloud}-server-")
    expect(body).to include("hello from the database of #{cloud}")
  end

  it 'ran cloudd, the secret and the guests key as the class says, root-only' do
    (1..3).each do |i|
      pid, cmd = class_daemon(i)
      expect(pid).not_to be_nil, "h#{i}: no cloudd from the pidfile"
      expect(cmd.first).to eq(File.join(@pkgroot, 'usr/local/sbin/cloudd'))
      expect(cmd.each_cons(2).to_a).to include(['--address', "10.78.0.#{i}"], ['--peer-port', '7946'], ['--fence-ms', '1000'],
                                             ['--destroy-ms', '2500'])
      expect(cmd).to include('--daemonize')
      out, st = cloudctl(i, 'hello')
      expect(st.success?).to be(true), out
      expect(JSON.parse(out)['pid']).to eq(pid)
      key = File.join(@dir, "h#{i}", 'etc-cloud', 'ssh', 'id_ed25519')
      expect(File.stat(key).mode & 0o777).to eq(0o600)
      expect(File.stat("#{key}.pub").mode & 0o777).to eq(0o600)
      expect(File.stat(File.dirname(key)).mode & 0o777).to eq(0o700)
      expect(File.read(key)).to eq(File.read(@lab.env['LAB_SSH_KEY']))
      expect(File.stat(@lab.state(i)).mode & 0o777).to eq(0o700)
    end
    secret = File.join(@dir, 'secrets', "#{cloud}.key")
    expect(File.stat(secret).mode & 0o777).to eq(0o600)
    expect(File.stat(File.dirname(secret)).mode & 0o777).to eq(0o700)
    expect(File.stat(secret).uid).to eq(0)
    expect(File.read(secret)).to eq(@secret)
  end

  it 'changes nothing on a second round of agents, and no report holds a secret' do
    runs = [1, 2, 3].map { |i| run_agent(i, label: 'second') }
    changes = runs.sum { |r| r.changes || 1 }
    AgentHelper.record('second_run_changes', changes)
    runs.each do |run|
      expect(run.rc).to eq(0), "h#{run.host}:\n#{run.out}"
      expect(run.changes).to eq(0), "h#{run.host}:\n#{run.out}"
      expect(run.report).not_to be_nil
      expect(run.report).not_to include(@secret)
      expect(run.report).not_to include(File.read(@lab.env['LAB_SSH_KEY']).lines[1].strip)
    end
    expect(changes).to eq(0)
  end

  it 'lists the cloud with its real state: puppet resource web on a pool host' do
    out, st = @agents[3].puppet(%w[resource web])
    out = AgentHelper.clean(out)
    expect(st.success?).to be(true), out
    expect(out).to match(/^web \{ '#{cloud}':\n\s+ensure\s+=> 'running',\n/)
  end

  it 'plans the stop with --noop and changes nothing' do
    run = run_agent(1, '--noop', '--environment', 'stopped', label: 'noop-stop')
    expect([0, 2]).to include(run.rc), run.out
    expect(run.changes).to eq(0), run.out
    expect(run.out.scan(/would destroy (#{cloud}-\S+)/).flatten.sort)
      .to eq(%W[#{cloud}-balancer-0 #{cloud}-database-0 #{cloud}-server-0 #{cloud}-server-1]), run.out
    expect(leader_running(5)).not_to be_nil
    expect((1..3).sum { |i| @lab.domains(i).grep(/\A#{cloud}-/).size }).to eq(4)
  end

  it 'leaves no domain, disk, state file or qemu process after a round with ensure => stopped' do
    runs = [2, 3, 1].map { |i| run_agent(i, '--environment', 'stopped', label: 'stop') }
    runs.each do |run|
      expect([0, 2]).to include(run.rc), "h#{run.host}:\n#{run.out}"
      expect(run.failures).to eq(0), "h#{run.host}:\n#{run.out}"
    end
    left = leftovers
    deadline = AgentHelper.monotonic + 30
    until left.empty? || AgentHelper.monotonic > deadline
      sleep 1
      left = leftovers
    end
    @stop_left = left.size
    expect(left).to be_empty, "#{left.join("\n")}\n#{runs.map { |r| "h#{r.host}:\n#{r.out}" }.join("\n")}"
  end
end
