# frozen_string_literal: true

require 'spec_helper'

# The cloud provider of web (the mixin PuppetX::Cloud::Provider, shared by every type): which
# Cloud call each ensure transition makes, how progress is logged, how errors are mapped.
describe Puppet::Type.type(:web).provider(:cloud) do
  let(:cloud) { instance_double(FakeCloud) }
  let(:resource) { Puppet::Type.type(:web).new(web_attrs(provider: :cloud)) }
  let(:provider) { resource.provider }
  let(:spec) { PuppetX::Cloud::Spec.build(resource) }

  let(:slots_status) do
    spec['slots'].map { |s| s.merge('host' => '127.0.0.1', 'domain' => s['name'], 'state' => 'running') }
  end
  let(:running_status) { { 'name' => 'myweb', 'type' => 'web', 'state' => 'running', 'slots' => slots_status } }
  let(:stopped_status) { { 'name' => 'myweb', 'type' => 'web', 'state' => 'stopped', 'slots' => [] } }

  include_context 'with a fake Cloud'

  def notices(logs)
    logs.select { |l| l.level == :notice }.map(&:message)
  end

  it 'is confined to the cloud_ext feature' do
    expect(described_class).to be_suitable
    allow(Puppet.features).to receive(:cloud_ext?).and_return(false)
    expect(described_class).not_to be_suitable
  end

  describe 'ensure (retrieve)' do
    it 'is running when the cloud is converged to the spec, and passes Cloud.new the spec only' do
      expect(Cloud).to receive(:new).with(spec).and_return(cloud)
      expect(cloud).to receive(:status).and_return(running_status)
      expect(cloud).to receive(:plan).and_return([])
      expect(cloud).to receive(:close)
      current = resource.property(:ensure).retrieve
      expect(current).to eq(:running)
      expect(resource.property(:ensure).insync?(current)).to be(true)
    end

    it 'is degraded while the plan still has steps' do
      allow(cloud).to receive(:status).and_return(running_status)
      allow(cloud).to receive(:plan).and_return([{ 'action' => 'create', 'slot' => 'myweb-server-1', 'host' => '127.0.0.1' }])
      expect(provider.ensure).to eq(:degraded)
    end

    it 'is degraded when a VM is not running' do
      slots_status[1]['state'] = 'crashed'
      allow(cloud).to receive_messages(status: running_status, plan: [])
      expect(provider.ensure).to eq(:degraded)
    end

    it 'is degraded when the daemon runs a cloud without a slot of this spec' do
      running_status['slots'] = slots_status.reject { |s| s['name'] == 'myweb-server-1' }
      allow(cloud).to receive_messages(status: running_status, plan: [])
      expect(provider.ensure).to eq(:degraded)
    end

    it 'is degraded when the daemon says so' do
      allow(cloud).to receive_messages(status: running_status.merge('state' => 'degraded'), plan: [])
      expect(provider.ensure).to eq(:degraded)
    end

    it 'is stopped only when nothing of the cloud exists' do
      resource[:ensure] = :stopped
      allow(cloud).to receive(:status).and_return(stopped_status)
      expect(cloud).not_to receive(:plan)
      expect(provider.ensure).to eq(:stopped)
      leftover = stopped_status.merge('slots' => [slots_status.first.merge('state' => 'shutoff')])
      allow(cloud).to receive(:status).and_return(leftover)
      expect(provider.ensure).to eq(:degraded)
    end

    it 'is out of sync when stopped is wanted and the cloud runs' do
      resource[:ensure] = :stopped
      allow(cloud).to receive(:status).and_return(running_status)
      expect(resource.property(:ensure).insync?(provider.ensure)).to be(false)
    end

    it 'never starts, stops or changes anything' do
      allow(cloud).to receive_messages(status: stopped_status, plan: [{ 'action' => 'create', 'slot' => 'myweb-database-0' }])
      [:leader_start, :common_start, :not_cloud_start, :stop, :monitor].each { |m| expect(cloud).not_to receive(m) }
      expect(provider.ensure).to eq(:stopped)
    end

    it 'logs the plan in noop mode' do
      Puppet[:noop] = true
      allow(cloud).to receive(:status).and_return(stopped_status)
      allow(cloud).to receive(:plan).and_return([
                                                  { 'action' => 'create', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1', 'domain' => 'myweb-server-0' },
                                                  { 'action' => 'create', 'slot' => 'myweb-balancer-0', 'host' => '127.0.0.1', 'domain' => 'myweb-balancer-0' },
                                                ])
      logs = capture_logs { provider.ensure }
      expect(notices(logs)).to eq(['would create myweb-server-0 (server, 10.0.0.5) on 127.0.0.1',
                                   'would create myweb-balancer-0 (balancer, 10.0.0.2) on 127.0.0.1'])
    end

    it 'logs what a stop would destroy in noop mode' do
      Puppet[:noop] = true
      resource[:ensure] = :stopped
      allow(cloud).to receive(:status).and_return(running_status)
      logs = capture_logs { provider.ensure }
      expect(notices(logs)).to include('would destroy myweb-database-0 on 127.0.0.1', 'would destroy myweb-balancer-0 on 127.0.0.1')
    end

    it 'says it cannot plan in noop mode when the lists are not written yet' do
      Puppet[:noop] = true
      dir = Dir.mktmpdir('cloud-spec')
      ips = File.join(dir, 'ips')
      imgs = File.join(dir, 'imgs')
      catalog = Puppet::Resource::Catalog.new('node', Puppet.lookup(:current_environment))
      [ips, imgs].each { |path| catalog.add_resource(Puppet::Type.type(:file).new(path: path, ensure: 'file')) }
      r = Puppet::Type.type(:web).new(web_attrs(provider: :cloud, server: [ips, imgs], catalog: catalog))
      expect(Cloud).not_to receive(:new)
      logs = capture_logs { expect(r.provider.ensure).to eq(:degraded) }
      expect(notices(logs)).to eq(["cannot plan before #{ips} and #{imgs} exist (file resources not applied in noop mode)"])
      Puppet[:noop] = false
      expect { r.provider.ensure }.to raise_error(Puppet::Error, "Web[myweb]: server: #{ips} does not exist")
    ensure
      FileUtils.rm_rf(dir)
    end

    it 'logs nothing about the plan outside noop mode' do
      allow(cloud).to receive_messages(status: stopped_status, plan: [{ 'action' => 'create', 'slot' => 'myweb-server-0' }])
      expect(notices(capture_logs { provider.ensure })).to be_empty
    end

    describe 'what the leader repaired since the last run' do
      let(:repaired) do
        [{ 'seq' => 4, 'time_ms' => 1_700_000_000_000, 'epoch' => 3, 'type' => '-failure', 'slot' => 'myweb-server-1',
           'host' => '10.0.0.2', 'text' => 'its domain is not running' },
         { 'seq' => 5, 'time_ms' => 1_700_000_000_004, 'epoch' => 3, 'type' => '+repair', 'slot' => 'myweb-server-1',
           'host' => '10.0.0.2', 'text' => 'start' },
         { 'seq' => 9, 'time_ms' => 1_700_000_060_000, 'epoch' => 3, 'type' => '-flapping', 'slot' => 'myweb-server-0',
           'host' => '10.0.0.3', 'text' => 'too many failures in the window: repairs paused' }]
      end
      let(:state_dir) { Dir.mktmpdir('reported') }

      around do |example|
        old = ENV.fetch('CLOUD_STATE_DIR', nil)
        ENV['CLOUD_STATE_DIR'] = state_dir
        example.run
      ensure
        ENV['CLOUD_STATE_DIR'] = old
        FileUtils.rm_rf(state_dir)
      end

      it 'reports each drift and repair once, with its slot, host and epoch; flapping as a warning' do
        allow(cloud).to receive_messages(status: running_status.merge('repaired' => repaired), plan: [])
        logs = capture_logs { provider.ensure }
        expect(notices(logs)).to eq([
          'drifted: myweb-server-1 on 10.0.0.2 at 2023-11-14T22:13:20Z (epoch 3): its domain is not running',
          'repaired by the leader: myweb-server-1 on 10.0.0.2 at 2023-11-14T22:13:20Z (epoch 3): start',
        ])
        expect(logs.select { |l| l.level == :warning }.map(&:message))
          .to eq(['flapping, repairs paused: myweb-server-0 on 10.0.0.3 at 2023-11-14T22:14:20Z (epoch 3): ' \
                  'too many failures in the window: repairs paused'])
        # the next run has nothing new to say
        fresh = Puppet::Type.type(:web).new(web_attrs(provider: :cloud))
        expect(capture_logs { fresh.provider.ensure }).to be_empty
      end

      it 'remembers nothing in noop mode' do
        allow(cloud).to receive_messages(status: running_status.merge('repaired' => repaired), plan: [])
        noop = Puppet::Type.type(:web).new(web_attrs(provider: :cloud, noop: true))
        expect(notices(capture_logs { noop.provider.ensure }).size).to eq(2)
        expect(notices(capture_logs { noop.provider.ensure }).size).to eq(2)
        expect(File.exist?(File.join(state_dir, 'reported', 'myweb'))).to be(false)
      end
    end
  end

  describe 'ensure => running' do
    let(:result) { { 'changed' => 1, 'changes' => [], 'status' => running_status } }

    it 'converges as the leader, logging slot changes as notices and other progress as debug' do
      allow(cloud).to receive_messages(member?: true, leader?: true)
      expect(cloud).to receive(:leader_start)
        .and_yield('progress' => true, 'event' => '+define', 'cloud' => 'myweb', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1')
        .and_yield('progress' => true, 'event' => '~roles-skipped', 'cloud' => 'myweb', 'slot' => 'myweb-server-0',
                   'message' => 'test driver: no guest')
        .and_return(result)
      [:common_start, :not_cloud_start].each { |m| expect(cloud).not_to receive(m) }
      logs = capture_logs { resource.property(:ensure).sync }
      expect(notices(logs)).to eq(['defined myweb-server-0 on 127.0.0.1'])
      expect(logs.select { |l| l.level == :debug }.map(&:message)).to include('~roles-skipped myweb-server-0: test driver: no guest')
    end

    it 'tells the changes the progress did not' do
      allow(cloud).to receive_messages(member?: true, leader?: true)
      changes = [{ 'action' => 'create', 'slot' => 'myweb-database-0', 'domain' => 'myweb-database-0', 'host' => '127.0.0.1' },
                 { 'action' => 'start', 'slot' => 'myweb-server-0', 'domain' => 'myweb-server-0', 'host' => '127.0.0.1' }]
      allow(cloud).to receive(:leader_start)
        .and_yield('event' => '+start', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1')
        .and_return(result.merge('changes' => changes))
      logs = capture_logs { provider.start }
      expect(notices(logs)).to eq(['started myweb-server-0 on 127.0.0.1', 'created myweb-database-0 on 127.0.0.1'])
      # the ensure event of the report names every slot changed, with its host
      expect(resource.property(:ensure).change_to_s(:stopped, :running))
        .to eq("ensure changed 'stopped' to 'running': started myweb-server-0 on 127.0.0.1; " \
               'created myweb-database-0 on 127.0.0.1')
    end

    it 'warns when the cloud is not running after the start' do
      allow(cloud).to receive_messages(member?: true, leader?: true,
                                        leader_start: result.merge('status' => running_status.merge('state' => 'degraded')))
      logs = capture_logs { provider.start }
      expect(logs.select { |l| l.level == :warning }.map(&:message))
        .to eq(['myweb is degraded, not running, after the start; the leader keeps repairing it'])
    end

    it 'joins as a member when another host leads' do
      allow(cloud).to receive_messages(member?: true, leader?: false)
      expect(cloud).to receive(:common_start).and_return('leader' => '10.0.0.70', 'epoch' => 3)
      [:leader_start, :not_cloud_start].each { |m| expect(cloud).not_to receive(m) }
      logs = capture_logs { provider.start }
      expect(notices(logs)).to eq(['this host is a member of myweb: 10.0.0.70 leads it (epoch 3)'])
    end

    it 'hands the spec to the leader as a member and tells what the leader changed' do
      allow(cloud).to receive_messages(member?: true, leader?: false)
      expect(cloud).to receive(:common_start)
        .and_yield('event' => '+create', 'slot' => 'myweb-balancer-0', 'host' => '10.0.0.70')
        .and_return(result.merge('leader' => '10.0.0.70', 'epoch' => 3))
      expect(notices(capture_logs { provider.start }))
        .to eq(['created myweb-balancer-0 on 10.0.0.70', 'this host is a member of myweb: 10.0.0.70 leads it (epoch 3)'])
    end

    it 'says why nothing was handed over while no leader acts' do
      allow(cloud).to receive_messages(member?: true, leader?: false)
      expect(cloud).to receive(:common_start)
        .and_return('leader' => '10.0.0.70', 'epoch' => 3, 'handover' => 'no leader of cloud myweb acts after 3000 ms')
      logs = capture_logs { provider.start }
      expect(notices(logs)).to eq(['this host is a member of myweb: 10.0.0.70 leads it (epoch 3)'])
      expect(logs.select { |l| l.level == :warning }.map(&:message))
        .to eq(['the spec was not handed to a leader: no leader of cloud myweb acts after 3000 ms; ' \
                'the cloud converges when a majority of its pool has joined'])
    end

    it 'hands the spec to the leader from outside the pool' do
      allow(cloud).to receive(:member?).and_return(false)
      expect(cloud).to receive(:not_cloud_start)
        .and_yield('event' => '+create', 'slot' => 'myweb-balancer-0', 'host' => '10.0.0.70')
        .and_return(result)
      [:leader?, :leader_start, :common_start].each { |m| expect(cloud).not_to receive(m) }
      expect(notices(capture_logs { provider.start })).to eq(['created myweb-balancer-0 on 10.0.0.70'])
    end

    it 'closes the Cloud handle even when the call fails' do
      allow(cloud).to receive_messages(member?: true, leader?: true)
      allow(cloud).to receive(:leader_start).and_raise(Cloud::TimeoutError.new('no answer', host: '127.0.0.1', operation: 'apply'))
      expect(cloud).to receive(:close)
      expect { provider.start }.to raise_error(Puppet::Error)
    end
  end

  describe 'ensure => stopped' do
    it 'stops through the leader and tells what was removed' do
      resource[:ensure] = :stopped
      expect(cloud).to receive(:stop)
        .and_yield('progress' => true, 'event' => '-domain', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1',
                   'message' => 'removed domain myweb-server-0 (stop)')
        .and_yield('progress' => true, 'event' => '-disk', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1')
        .and_yield('progress' => true, 'event' => '-forget', 'message' => 'cloud myweb stopped and forgotten')
        .and_return('changed' => 3, 'changes' => [
                      { 'action' => 'remove', 'slot' => 'myweb-server-0', 'host' => '127.0.0.1' },
                      { 'action' => 'remove', 'slot' => 'myweb-balancer-0', 'host' => '127.0.0.1' },
                      { 'action' => 'forget', 'slot' => nil, 'domain' => nil, 'host' => '127.0.0.1' },
                    ])
      [:member?, :leader_start, :common_start, :not_cloud_start].each { |m| expect(cloud).not_to receive(m) }
      logs = capture_logs { resource.property(:ensure).sync }
      expect(notices(logs)).to eq(['removed myweb-server-0 on 127.0.0.1', 'deleted the disk of myweb-server-0 on 127.0.0.1',
                                   'removed myweb-balancer-0 on 127.0.0.1', 'forgot myweb on 127.0.0.1'])
      expect(logs.select { |l| l.level == :debug }.map(&:message)).to include('-forget: cloud myweb stopped and forgotten')
    end
  end

  describe 'errors' do
    it 'maps Cloud::Error subclasses to Puppet::Error naming host and operation' do
      allow(cloud).to receive_messages(member?: true, leader?: true)
      err = Cloud::VirtError.new('domain not found', code: 42, host: '10.0.0.71', operation: 'define myweb-server-0')
      allow(cloud).to receive(:leader_start).and_raise(err)
      expect { provider.start }.to raise_error(Puppet::Error) { |e|
        expect(e.message).to eq('Web[myweb]: define myweb-server-0 failed on 10.0.0.71: domain not found (VirtError, code 42)')
        expect(e.backtrace).to eq(err.backtrace)
      }
    end

    it 'maps errors of the state query too' do
      allow(cloud).to receive(:status).and_raise(Cloud::ProtocolError.new('bad answer', host: '127.0.0.1', operation: 'status'))
      expect { provider.ensure }.to raise_error(Puppet::Error, 'Web[myweb]: status failed on 127.0.0.1: bad answer (ProtocolError)')
    end

    it 'does not swallow other exceptions' do
      allow(cloud).to receive(:status).and_raise(NoMethodError, 'bug')
      expect { provider.ensure }.to raise_error(NoMethodError)
    end

    it 'fails with the spec error before talking to the daemon when a file went bad' do
      ips = temp_file('ips', "10.0.0.5\n")
      imgs = temp_file('imgs', "/var/lib/cloud/images/web.qcow2\n")
      r = Puppet::Type.type(:web).new(web_attrs(provider: :cloud, server: [ips, imgs]))
      File.write(ips, "10.0.0.5\n10.0.0.6\n")
      expect(Cloud).not_to receive(:new)
      expect { r.provider.ensure }.to raise_error(Puppet::Error, "Web[myweb]: server: #{ips} lists 2 IP addresses but #{imgs} lists 1 image")
    end
  end

  describe '.instances' do
    it 'lists the web clouds the local daemon knows' do
      allow(Cloud).to receive(:status).and_return('clouds' => [
                                                    running_status,
                                                    { 'name' => 'mytorque', 'type' => 'torque', 'state' => 'running', 'slots' => [] },
                                                    { 'name' => 'other', 'type' => 'web', 'state' => 'degraded', 'slots' => [] },
                                                  ])
      expect(described_class.instances.map { |p| [p.name, p.ensure] }).to eq([['myweb', :running], ['other', :degraded]])
    end

    it 'answers for a cloud named without a pool from what the daemon knows (puppet resource web NAME)' do
      allow(Cloud).to receive(:status).and_return('clouds' => [running_status])
      expect(Cloud).not_to receive(:new)
      expect(Puppet::Type.type(:web).new(title: 'myweb', provider: :cloud).provider.ensure).to eq(:running)
      expect(Puppet::Type.type(:web).new(title: 'other', provider: :cloud).provider.ensure).to eq(:stopped)
    end

    it 'is empty when no daemon runs' do
      allow(Cloud).to receive(:status).and_return('clouds' => [])
      expect(described_class.instances).to eq([])
    end

    it 'maps daemon errors' do
      allow(Cloud).to receive(:status).and_raise(Cloud::SystemError.new('permission denied', host: '127.0.0.1'))
      expect { described_class.instances }.to raise_error(Puppet::Error, 'web: listing the clouds failed on 127.0.0.1: permission denied')
    end
  end
end
