# frozen_string_literal: true

# The setup the replayed chaos scenarios share (spec/chaos/*_spec.rb but chaos_spec.rb): three
# cloudd in network namespaces (Chaos::Pool, test/lab/netns-pool), a secret, the chaos cloud of
# six slots on the embedded test driver, h1 acting with every member heard, the cloud applied
# there (six creations). Needs root and `ip netns`; daemons killed by PID and namespaces
# removed after each example, also on failure. A spec includes it with its Chaos::Config:
#   include_context 'a chaos pool with its cloud applied', cfg
require_relative '../../test/chaos/chaos_harness'

RSpec.shared_context 'a chaos pool with its cloud applied' do |cfg|
  ok, why = Chaos.available?
  before { skip why } unless ok

  let(:slots) { (0..5).map { |k| "#{Chaos::CLOUD}-node-#{k}" } }

  before do
    next unless ok

    @tmp = Dir.mktmpdir('cloud-chaos-spec')
    @pool = Chaos::Pool.new(cfg, @tmp, ->(m) { warn m })
    secret = File.join(@tmp, 'secret')
    File.write(secret, Random.new.bytes(32).unpack1('H*'))
    File.chmod(0o600, secret)
    @spec = {
      'name' => Chaos::CLOUD, 'type' => 'cloud', 'ensure' => 'running', 'pool' => @pool.addrs,
      'hypervisor' => 'test:///default', 'template' => File.read(Chaos::TEMPLATE), 'secret_file' => secret,
      'roles' => [{ 'name' => 'node', 'after' => [] }],
      'slots' => slots.each_with_index.map do |s, k|
        { 'name' => s, 'roles' => ['node'], 'index' => k, 'ip' => "10.0.9.#{k + 1}", 'image' => '/var/lib/cloud/images/node.qcow2' }
      end
    }
    @pool.up
    @pool.hosts.each { |i| @pool.start(i) }
    @pool.hosts.each { |i| expect(@pool.call(i, { 'op' => 'leader', 'spec' => @spec }, timeout: 15)).to include('ok' => true) }
    wait_for('h1 to act with every member heard') do
      el = @pool.call(1, { 'op' => 'leader', 'spec' => @spec })&.dig('election')
      el && el['acting'] && el['members'].all? { |m| m['alive'] }
    end
    expect(@pool.call(1, { 'op' => 'apply', 'spec' => @spec }, timeout: 30)).to include('ok' => true, 'changed' => 6)
  end

  after do
    next unless @pool

    @pool.stop_all
    @pool.down
    FileUtils.rm_rf(@tmp)
  end

  def wait_for(what, timeout = 20, &) = Chaos.wait_for(what, timeout, &)
end
