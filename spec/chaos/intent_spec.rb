# frozen_string_literal: true

# What the pool last ordered for a cloud (its intent: running or stopped, with the ordering
# leader's epoch, kept in every pool host's state file) decides what a new leader does when
# none of the cloud's domains runs anywhere. Found by the chaos test (seed 1703528393): every
# daemon was killed in turn (the embedded hypervisor's domains die with it, as real guests do
# with libvirt's autodestroy), and the last leader left the cloud down for good, taking it for
# a stopped one. Now:
# - every daemon killed and restarted: the new leader makes the cloud again by itself (a
#   majority says it was ordered running);
# - a stop ordered on a majority that did not finish (here: written into two hosts' state
#   files while the daemons are down): the new leader finishes the stop, never makes it again;
# - a stop on the leader: the members forget the cloud too (state removed);
# - a stop asked on a member: handed to the leader, which tears it down everywhere.
#
# Three cloudd in network namespaces (test/lab/netns-pool), as the chaos test; needs root and
# `ip netns`; daemons killed by PID and namespaces removed after each example, also on failure.
require_relative 'pool_context'

RSpec.describe 'the pool remembers what was ordered' do
  cfg = Chaos::Config.from_env({ 'CHAOS_SEED' => '1', 'CHAOS_HEALTH' => '{}' })
  include_context 'a chaos pool with its cloud applied', cfg

  def state_file(i) = File.join(@pool.state_dir(i), 'clouds', "#{Chaos::CLOUD}.json")

  # The cloud's domains running anywhere, from each daemon's own list.
  def running_domains
    @pool.hosts.sum do |i|
      doms = @pool.call(i, { 'op' => 'domains' })&.dig('domains') || []
      doms.count { |d| d['name'].to_s.start_with?("#{Chaos::CLOUD}-") && d['state'] == 'running' }
    end
  end

  def leader_host
    wait_for('a leader that acts', 30) do
      @pool.hosts.find { |i| @pool.call(i, { 'op' => 'leader', 'spec' => @spec })&.dig('election', 'acting') }
    end
  end

  def restart_all
    @pool.hosts.each { |i| @pool.kill(i) }
    yield if block_given?
    @pool.hosts.each { |i| @pool.start(i) }
  end

  it 'has every host record the apply as an order to run, in the leader\'s epoch' do
    intents = @pool.hosts.map { |i| JSON.parse(File.read(state_file(i)))['intent'] }
    expect(intents.map { |x| x && x['ensure'] }).to eq(%w[running running running])
    expect(intents.map { |x| x['epoch'] }.uniq.size).to eq(1)
    expect(intents.first['epoch']).to be > 0
  end

  it 'makes a cloud whose domains were all lost again, without an apply' do
    restart_all
    expect(running_domains).to eq(0) # the embedded hypervisor's domains died with the daemons
    leader_host
    wait_for('the six slots running again', 30) { running_domains == 6 }
    expect(running_domains).to eq(6)
  end

  it 'finishes a stop ordered on a majority instead of making the cloud again' do
    restart_all do
      # the leader died after ordering the stop on h2 and h3, before it removed anything
      [2, 3].each do |i|
        doc = JSON.parse(File.read(state_file(i)))
        doc['intent'] = { 'ensure' => 'stopped', 'epoch' => doc['intent']['epoch'] + 1 }
        File.write(state_file(i), JSON.generate(doc))
      end
    end
    leader_host
    wait_for('every host to forget the cloud', 30) { @pool.hosts.none? { |i| File.exist?(state_file(i)) } }
    sleep 2 # a sweep or two: nothing is made again
    expect(running_domains).to eq(0)
  end

  it 'has the members forget a cloud stopped on the leader' do
    res = @pool.call(1, { 'op' => 'stop', 'name' => Chaos::CLOUD, 'spec' => @spec.merge('ensure' => 'stopped') }, timeout: 30)
    expect(res).to include('ok' => true)
    expect(running_domains).to eq(0)
    wait_for('the members to forget it', 10) { [2, 3].none? { |i| File.exist?(state_file(i)) } }
    expect(File.exist?(state_file(1))).to be false
    # then Puppet's stop manifest on a member: its status does not join the cloud again (the
    # lab chaos run found a member re-joined that way, electing itself for a forgotten cloud)
    stopped = @spec.merge('ensure' => 'stopped')
    expect(@pool.call(2, { 'op' => 'status', 'name' => Chaos::CLOUD, 'spec' => stopped }, timeout: 10)).to include('ok' => true)
    expect(File.exist?(state_file(2))).to be false
    again = @pool.call(2, { 'op' => 'stop', 'name' => Chaos::CLOUD, 'spec' => stopped }, timeout: 30)
    expect(again).to include('ok' => true, 'changed' => 0)
  end

  it 'hands a stop asked on a member to the leader, which tears the cloud down everywhere' do
    res = @pool.call(2, { 'op' => 'stop', 'name' => Chaos::CLOUD, 'spec' => @spec.merge('ensure' => 'stopped') }, timeout: 30)
    expect(res).to include('ok' => true)
    expect(running_domains).to eq(0)
    expect(@pool.hosts.none? { |i| File.exist?(state_file(i)) }).to be true
    # asked again on the other member: already forgotten, nothing to do
    again = @pool.call(3, { 'op' => 'stop', 'name' => Chaos::CLOUD, 'spec' => @spec.merge('ensure' => 'stopped') }, timeout: 30)
    expect(again).to include('ok' => true, 'changed' => 0)
  end
end
