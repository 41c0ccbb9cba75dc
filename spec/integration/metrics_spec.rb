# frozen_string_literal: true

# The metrics endpoint (issue 6): one cloudd on the embedded hypervisor with
# `--metrics 127.0.0.1:<free port>`. A cloud is applied, then one of its domains is destroyed behind
# the daemon's back (`cloudctl fault`, cloudd --allow-faults): cloud_repairs_total and the slot's
# restarts count the restart; a second fault makes the slot flap (its policy allows one repair),
# and cloud_slot_up says 0 while it stays down. The exposition is checked as Prometheus reads it
# (HELP and TYPE before a family's samples, once). Only daemons started here are killed, by PID;
# conditions are polled with bounded waits.
require 'json'
require 'net/http'
require 'open3'
require 'socket'

require_relative 'support/cloudd_daemons'

RSpec.describe 'the metrics endpoint' do
  include_context 'cloudd daemons', 'cloud-metrics'

  def cloud_name = 'mt'

  before(:all) do
    @port = free_port
    start_daemon(:main, '--sweep-ms', '500', '--allow-faults', '--metrics', "127.0.0.1:#{@port}")
  end

  after(:all) do
    call(:main, 'op' => 'stop', 'name' => 'mt') if daemon_running?
  end

  def free_port
    s = TCPServer.new('127.0.0.1', 0)
    s.addr[1]
  ensure
    s&.close
  end

  def spec
    {
      'name' => 'mt', 'type' => 'cloud', 'ensure' => 'running', 'pool' => ['127.0.0.1'],
      'hypervisor' => 'test:///default', 'template' => @template,
      'roles' => [{ 'name' => 'node', 'after' => [],
                    'health' => { 'max_restarts' => 1, 'window_ms' => 60_000, 'backoff_ms' => 0 } }],
      'slots' => (0..2).map do |i|
        { 'name' => "mt-node-#{i}", 'roles' => ['node'], 'index' => i, 'ip' => "10.0.7.#{i + 1}",
          'image' => '/var/lib/cloud/images/node.qcow2' }
      end,
    }
  end

  def get(path = '/metrics')
    Net::HTTP.start('127.0.0.1', @port, open_timeout: 3, read_timeout: 5) { |h| h.get(path) }
  end

  # The samples of one scrape: {'name{labels}' => value}.
  def scrape
    body = get.body
    body.lines.reject { |l| l.start_with?('#') || l.strip.empty? }.to_h do |l|
      key, _, value = l.strip.rpartition(' ')
      [key, Float(value)]
    end
  end

  def sample(name, **labels)
    key = labels.empty? ? name : "#{name}{#{labels.map { |k, v| "#{k}=\"#{v}\"" }.join(',')}}"
    scrape[key]
  end

  def fault(slot)
    out, st = Open3.capture2e(ClouddDaemons::CLOUDCTL, '--socket', sock, 'fault', 'mt', slot)
    expect(st.success?).to be(true), out
  end

  it 'serves the text format 0.0.4, each family introduced once by HELP and TYPE' do
    res = get
    expect(res.code).to eq('200')
    expect(res['Content-Type']).to start_with('text/plain; version=0.0.4')
    expect(res['Connection']).to eq('close')
    types = {}
    res.body.each_line do |l|
      case l
      when /\A# HELP (\S+) \S/ then expect(types).not_to have_key(Regexp.last_match(1))
      when /\A# TYPE (\S+) (counter|gauge|histogram)\n\z/
        expect(types).not_to have_key(Regexp.last_match(1))
        types[Regexp.last_match(1)] = Regexp.last_match(2)
      when /\A([a-z_:]+)(\{[^}]*\})? (\S+)\n\z/
        name = Regexp.last_match(1)
        value = Regexp.last_match(3)
        family = types.key?(name) ? name : name.sub(/_(bucket|sum|count)\z/, '')
        expect(types).to have_key(family), "sample #{name} before its TYPE"
        expect(Float(value)).to be_a(Float)
      else raise "not exposition format: #{l.inspect}"
      end
    end
    expect(types).to include('cloud_slot_up' => 'gauge', 'cloud_repairs_total' => 'counter',
                             'cloud_repair_duration_seconds' => 'histogram',
                             'cloud_process_resident_memory_bytes' => 'gauge')
    expect(get('/').code).to eq('404')
    expect(Net::HTTP.start('127.0.0.1', @port) { |h| h.post('/metrics', 'x') }.code).to eq('405')
    expect(sample('cloud_metrics_requests_total', code: '404')).to be >= 1
    expect(sample('cloud_metrics_requests_total', code: '405')).to be >= 1
  end

  it 'counts a destroyed domain restarted, then shows the flapping slot down' do
    expect(Cloud.new(spec, socket: sock, state_dir: state, autostart: false).leader_start['changed']).to eq(3)
    wait_for('every slot up') do
      (0..2).all? { |i| sample('cloud_slot_up', cloud: 'mt', slot: "mt-node-#{i}", host: '127.0.0.1') == 1 }
    end
    m = scrape
    expect(m['cloud_repairs_total{cloud="mt",action="start"}']).to eq(0)
    expect(m['cloud_applies_total{result="ok"}']).to eq(1)
    expect(m['cloud_state{cloud="mt",state="running"}']).to eq(1)
    expect(m['cloud_process_resident_memory_bytes']).to be > 1_000_000
    runs = m['cloud_monitor_runs_total']
    repairs_seen = m['cloud_repair_duration_seconds_count']

    fault('mt-node-1')
    m = wait_for('the restart counted') do
      s = scrape
      s if s['cloud_repairs_total{cloud="mt",action="start"}'] == 1 &&
           s['cloud_slot_up{cloud="mt",slot="mt-node-1",host="127.0.0.1"}'] == 1
    end
    expect(m['cloud_slot_restarts_total{cloud="mt",slot="mt-node-1"}']).to eq(1)
    expect(m['cloud_slot_failures_total{cloud="mt",slot="mt-node-1"}']).to eq(1)
    expect(m['cloud_slot_restarts_total{cloud="mt",slot="mt-node-0"}']).to eq(0)
    expect(m['cloud_repair_duration_seconds_count']).to eq(repairs_seen + 1)
    expect(m['cloud_repair_duration_seconds_bucket{le="+Inf"}']).to eq(m['cloud_repair_duration_seconds_count'])
    expect(m['cloud_monitor_runs_total']).to be > runs

    fault('mt-node-1')
    m = wait_for('the slot down and flapping') do
      s = scrape
      s if s['cloud_slot_up{cloud="mt",slot="mt-node-1",host="127.0.0.1"}']&.zero? &&
           s['cloud_slot_health{cloud="mt",slot="mt-node-1",health="flapping"}'] == 1
    end
    expect(m['cloud_slot_failures_total{cloud="mt",slot="mt-node-1"}']).to eq(2)
    expect(m['cloud_state{cloud="mt",state="degraded"}']).to eq(1)
    sleep 1.2 # two sweeps: still down, no further repair
    m = scrape
    expect(m['cloud_slot_up{cloud="mt",slot="mt-node-1",host="127.0.0.1"}']).to eq(0)
    expect(m['cloud_repairs_total{cloud="mt",action="start"}']).to eq(1)
    expect(m['cloud_slot_up{cloud="mt",slot="mt-node-0",host="127.0.0.1"}']).to eq(1)
  end

  it 'refuses a non-loopback address unless told to' do
    out, st = Open3.capture2e(ClouddDaemons::CLOUDD, '--socket', File.join(@tmp, 'x.sock'),
                              '--state-dir', File.join(@tmp, 'x'), '--metrics', "0.0.0.0:#{free_port}")
    expect(st.exitstatus).to eq(2)
    expect(out).to include('not a loopback address').and include('--metrics-any')
    out, st = Open3.capture2e(ClouddDaemons::CLOUDD, '--metrics', 'example.org:80')
    expect(st.exitstatus).to eq(2)
    expect(out).to include("'example.org:80' is not ADDR:PORT")
  end
end
