# frozen_string_literal: true

require 'socket'

require_relative 'spec_helper_ext'

# A cloud's life against test:///default: membership, read-only answers without a daemon, the
# converge that autostarts the embedded cloudd, status, several clouds on one daemon, tear-down
# and the daemon leaving by itself, and the calls that must fail.
RSpec.describe Cloud do
  let(:spec) { web_spec('web1', servers: 2) }
  let(:cloud) { new_cloud(spec) }
  let(:slots) { slot_names(spec) }

  def started_cloud(the_spec = spec)
    c = new_cloud(the_spec)
    expect(c.leader_start['changed']).to eq(the_spec['slots'].size)
    c
  end

  def cloudd_gone?(pid)
    cloudd_hello.nil? && !File.exist?(socket_path) && !our_cloudd?(pid)
  end

  describe 'membership' do
    it 'is member and leader of a pool of 127.0.0.1' do
      expect(cloud.member?).to be(true)
      expect(cloud.leader?).to be(true)
    end

    it 'is neither member nor leader of a pool of a documentation address (never contacted)' do
      other = new_cloud(web_spec('web2', 'pool' => ['192.0.2.200']))
      expect(other.member?).to be(false)
      expect(other.leader?).to be(false)
    end

    it 'takes this host\'s identity from the running daemon (its --address)' do
      expect(system(CloudExtEnv::DAEMON, '--embedded', '--daemonize', '--socket', socket_path,
                    '--state-dir', state_dir, '--address', '192.0.2.200')).to be(true)
      expect(cloudd_hello['addresses']).to eq(['192.0.2.200'])
      expect(new_cloud(web_spec('web2', 'pool' => ['192.0.2.200'])).member?).to be(true)
      expect(new_cloud(web_spec('web2', 'pool' => ['192.0.2.200'])).leader?).to be(true)
      expect(cloud.member?).to be(false)
    end

    it 'starts no daemon to answer' do
      cloud.member?
      cloud.leader?
      expect(File.exist?(socket_path)).to be(false)
    end
  end

  describe 'without a daemon' do
    it 'reports the cloud stopped, every slot missing, and starts no daemon' do
      st = cloud.status
      expect(st['name']).to eq('web1')
      expect(st['state']).to eq('stopped')
      expect(st['slots'].map { |s| s['name'] }).to eq(slots)
      expect(st['slots'].map { |s| s['state'] }.uniq).to eq(['missing'])
      expect(File.exist?(socket_path)).to be(false)
      expect(cloudd_starts).to eq(0)
    end

    it 'plans a create for every slot on 127.0.0.1 and starts no daemon' do
      plan = cloud.plan
      expect(plan.map { |p| p['action'] }).to all(eq('create'))
      expect(plan.map { |p| p['slot'] }).to match_array(slots)
      expect(plan.map { |p| p['host'] }).to all(eq('127.0.0.1'))
      expect(File.exist?(socket_path)).to be(false)
      expect(cloudd_starts).to eq(0)
    end

    it 'lists no cloud in Cloud.status and starts no daemon' do
      expect(Cloud.status(socket: socket_path, state_dir: state_dir)).to eq('clouds' => [])
      expect(Cloud.daemon_running?(socket: socket_path)).to be(false)
      expect(File.exist?(socket_path)).to be(false)
    end

    it 'stops a cloud that never ran with no change and no daemon' do
      expect(cloud.stop).to eq('changed' => 0, 'changes' => [])
      expect(File.exist?(socket_path)).to be(false)
      expect(cloudd_starts).to eq(0)
    end

    it 'does not autostart when asked not to' do
      quiet = new_cloud(spec, autostart: false)
      expect { quiet.leader_start }.to raise_error(Cloud::SystemError, /connect cloudd/)
      expect(File.exist?(socket_path)).to be(false)
    end
  end

  describe '#leader_start' do
    it 'autostarts the embedded daemon, yields progress, creates every slot' do
      events = []
      res = cloud.leader_start { |ev| events << ev }

      expect(res['changed']).to eq(slots.size)
      expect(res['changes'].map { |c| c['action'] }).to all(eq('create'))
      expect(res['changes'].map { |c| c['slot'] }).to match_array(slots)
      expect(res['status']['state']).to eq('running')

      expect(events).to all(be_a(Hash).and(include('progress' => true, 'cloud' => 'web1')))
      %w[+define +start].each do |kind|
        expect(events.select { |e| e['event'] == kind }.map { |e| e['slot'] }).to match_array(slots)
      end
      started = events.select { |e| e['event'] == '+start' }.map { |e| e['slot'] }
      expect(started.first).to eq('web1-database-0')
      expect(started.last).to eq('web1-balancer-0')

      hello = cloudd_hello
      expect(hello).to include('embedded' => true, 'clouds' => 1, 'version' => Cloud::VERSION)
      expect(our_cloudd?(hello['pid'])).to be(true)
      expect(File.file?(log_path)).to be(true)
    end

    it 'changes nothing the second time, on the same daemon' do
      started_cloud
      pid = cloudd_pid
      res = cloud.leader_start
      expect(res['changed']).to eq(0)
      expect(res['changes']).to eq([])
      expect(res['status']['state']).to eq('running')
      expect(cloudd_pid).to eq(pid)
      expect(cloudd_starts).to eq(1)
    end

    it 'then reports every slot running on 127.0.0.1' do
      started_cloud
      st = cloud.status
      expect(st['state']).to eq('running')
      expect(st['leader']).to eq('127.0.0.1')
      expect(st['slots'].map { |s| s['name'] }).to eq(slots)
      st['slots'].each do |s|
        expect(s).to include('host' => '127.0.0.1', 'state' => 'running', 'domain' => s['name'])
      end
      expect(cloud.plan).to eq([])
    end

    it 'is listed by Cloud.status' do
      started_cloud
      clouds = Cloud.status(socket: socket_path)['clouds']
      expect(clouds.map { |c| c['name'] }).to eq(['web1'])
      expect(clouds.first['state']).to eq('running')
      expect(Cloud.daemon_running?(socket: socket_path)).to be(true)
    end

    it 'reports the leader through common_start' do
      started_cloud
      expect(cloud.common_start).to include('leader' => '127.0.0.1', 'self' => true,
                                            'member' => true)
    end
  end

  describe 'two clouds on one daemon' do
    it 'keeps them independent' do
      one = started_cloud
      two_spec = web_spec('web2', servers: 1, net: 1)
      two = started_cloud(two_spec)
      pid = cloudd_pid
      expect(cloudd_hello['clouds']).to eq(2)
      expect(Cloud.status(socket: socket_path)['clouds'].map { |c| c['name'] })
        .to match_array(%w[web1 web2])

      expect(one.stop['changes'].map { |c| c['slot'] }).to match_array(slots)
      expect(one.status['state']).to eq('stopped')
      st = two.status
      expect(st['state']).to eq('running')
      expect(st['slots'].map { |s| s['state'] }).to all(eq('running'))
      expect(cloudd_pid).to eq(pid)
      expect(cloudd_hello['clouds']).to eq(1)
      expect(Cloud.status(socket: socket_path)['clouds'].map { |c| c['name'] }).to eq(['web2'])
    end
  end

  describe '#stop' do
    it 'returns the removals and leaves the cloud stopped' do
      started_cloud
      res = cloud.stop
      expect(res['changes'].map { |c| c['slot'] }).to match_array(slots)
      expect(res['changes'].map { |c| c['host'] }).to all(eq('127.0.0.1'))
      expect(res['changed']).to be >= slots.size
      st = cloud.status
      expect(st['state']).to eq('stopped')
      expect(st['slots'].map { |s| s['state'] }).to all(eq('missing'))
    end

    it 'yields its progress' do
      started_cloud
      events = []
      cloud.stop { |ev| events << ev['event'] }
      expect(events).to include('-forget')
    end

    it 'lets the embedded daemon exit by itself once the last cloud is stopped' do
      started_cloud
      pid = cloudd_pid
      cloud.stop
      wait_until("cloudd #{pid} to exit") { cloudd_gone?(pid) }
    end

    it 'changes nothing the second time and starts no daemon' do
      started_cloud
      pid = cloudd_pid
      cloud.stop
      wait_until("cloudd #{pid} to exit") { cloudd_gone?(pid) }
      expect(cloud.stop).to eq('changed' => 0, 'changes' => [])
      expect(cloud.status['state']).to eq('stopped')
      expect(File.exist?(socket_path)).to be(false)
      expect(cloudd_starts).to eq(1)
    end

    it 'answers status and a second stop while the daemon is leaving' do
      started_cloud
      cloud.stop
      expect(cloud.status['state']).to eq('stopped')
      expect(cloud.stop['changed']).to eq(0)
      expect(Cloud.status(socket: socket_path, state_dir: state_dir)['clouds']).to eq([])
    end

    # The embedded daemon decides to leave on its event loop, only with no request in flight,
    # and stops listening before it goes: a connection it has accepted keeps it serving (so a
    # leader_start arriving then is served, not lost), and once it leaves, the next call starts
    # a successor that owns the socket.
    it 'keeps serving while a request is in flight after the last stop, then hands over cleanly' do
      started_cloud
      old = cloudd_pid
      idle = UNIXSocket.new(socket_path)
      expect(cloudd_hello).not_to be_nil # served after idle was accepted
      cloud.stop
      expect(cloudd_hello).not_to be_nil # idle is still in flight: the daemon stays
      expect(cloud.leader_start['changed']).to eq(slots.size)
      expect(cloudd_pid).to eq(old)
      idle.close
      cloud.stop
      wait_until("cloudd #{old} to exit") { cloudd_gone?(old) }
      expect(File.exist?(socket_path)).to be(false)
      expect(cloud.leader_start['changed']).to eq(slots.size)
      pid = cloudd_pid
      expect(pid).to be_a(Integer).and(satisfy { |p| p != old })
      expect(cloud.status['state']).to eq('running')
    ensure
      idle&.close unless idle.nil? || idle.closed?
    end
  end

  describe '#not_cloud_start' do
    # a pool on loopback addresses where no daemon listens (a port just closed)
    def outside_spec(extra = {})
      port = TCPServer.new('127.0.0.1', 0).then { |srv| srv.addr[1].tap { srv.close } }
      web_spec('web2', 'pool' => ['127.0.0.250', '127.0.0.251'], 'peer_port' => port, **extra)
    end

    it 'needs the cloud\'s secret to talk to the pool' do
      expect { new_cloud(outside_spec).not_cloud_start }.to raise_error(Cloud::SpecError, /secret_file/)
    end

    it 'raises Cloud::ElectionError naming every pool host tried when none answers' do
      secret = File.join(state_dir, 'secret')
      FileUtils.mkdir_p(state_dir)
      File.write(secret, 'k' * 32)
      File.chmod(0o600, secret)
      outside = new_cloud(outside_spec('secret_file' => secret))
      expect { outside.not_cloud_start }.to raise_error(Cloud::ElectionError) { |e|
        expect(e.message).to include('web2').and include('127.0.0.250').and include('127.0.0.251')
        expect(e.message).to match(/refused/i)
        expect(e.host).to eq('127.0.0.250')
        expect(e.operation).to eq('find leader')
      }
      expect(File.exist?(socket_path)).to be(false)
    end
  end

  describe '#close' do
    it 'makes every later call raise Cloud::Error' do
      cloud.close
      expect(cloud.close).to be_nil
      %i[name member? leader? leader_start common_start not_cloud_start plan monitor stop
         status].each do |m|
        expect { cloud.public_send(m) }.to raise_error(Cloud::Error, /closed/), m.to_s
      end
      expect(File.exist?(socket_path)).to be(false)
    end
  end
end
