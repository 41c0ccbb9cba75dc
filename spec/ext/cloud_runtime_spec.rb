# frozen_string_literal: true

require_relative 'spec_helper_ext'

# How the extension behaves as a citizen of the Ruby VM: under GC stress, with other threads
# (the GVL is released while a call blocks; #close from another thread is safe), and when the
# progress block raises. The GC-stress and #close-race examples run in a fresh Ruby: a crash
# then fails the example instead of the run, and GC.stress (a full GC per allocation) costs the
# same whatever else this process has loaded.
RSpec.describe Cloud do
  let(:spec) { web_spec('web1') }

  def child_args(specs)
    JSON.generate('opts' => { 'socket' => socket_path, 'state_dir' => state_dir,
                              'daemon' => CloudExtEnv::DAEMON },
                  'specs' => specs)
  end

  def run_child(code, specs)
    out, err, status = run_ruby(code, child_args(specs))
    expect(status).to be_success, "child Ruby failed (#{status.inspect}):\n#{err}"
    JSON.parse(out.lines.last)
  end

  def child_prelude
    <<~RUBY
      require 'cloud_ext'
      require 'json'
      cfg = JSON.parse(ARGV.fetch(0))
      opts = cfg['opts'].transform_keys(&:to_sym)
      specs = cfg['specs']
    RUBY
  end

  describe 'GC stress' do
    it 'survives creating, using and closing many Cloud objects' do
      new_cloud(spec).leader_start
      code = child_prelude + <<~RUBY
        out = []
        GC.stress = true
        begin
          specs.drop(1).each_with_index do |s, i|
            c = Cloud.new(s, **opts)
            out << c.status['name'] << c.plan.size
            c.close if i.even? # the odd ones are left to the GC
            begin
              Cloud.new(s.merge('pool' => []), **opts)
            rescue Cloud::SpecError => e
              out << e.operation
            end
          end
          events = []
          res = Cloud.new(specs[0], **opts).leader_start { |ev| events << ev['event'] }
          out << res['status']['state'] << !events.empty?
          out << Cloud.status(socket: opts[:socket])['clouds'].map { |c| c['name'] }
        ensure
          GC.stress = false
        end
        GC.start
        puts JSON.generate(out)
      RUBY
      others = (0...4).map { |i| web_spec("gc#{i}") }
      out = run_child(code, [spec] + others)
      expect(out).to eq((0...4).flat_map { |i| ["gc#{i}", 3, 'validate spec'] } +
                        ['running', true, ['web1']])
    end
  end

  describe 'the GVL' do
    # Counts, in a second Ruby thread, while the block runs in a third; returns the count made
    # during the block (the block's thread records the counter right before and after).
    def ticks_during
      counter = 0
      running = true
      ticker = Thread.new do
        while running
          counter += 1
          Thread.pass
        end
      end
      wait_until('the ticker to run') { counter.positive? }
      during = nil
      value = Thread.new do
        before = counter
        v = yield
        during = counter - before
        v
      end.value
      [value, during]
    ensure
      running = false
      ticker&.join
    end

    # ~90 slots: test:///default gives a new storage pool 100 GiB and each overlay takes 1 GiB.
    it 'is released while leader_start blocks, so other Ruby threads run' do
      big = web_spec('big', servers: 90)
      cloud = new_cloud(big)
      res, during = ticks_during { cloud.leader_start }
      expect(res['changed']).to eq(big['slots'].size)
      # With the GVL held for the whole call the ticker could only run at its edges (a couple of
      # increments); released, it spins throughout (tens of thousands here).
      expect(during).to be > 100
    end

    it 'is released by the read-only calls too' do
      cloud = new_cloud(web_spec('big', servers: 90))
      cloud.leader_start
      _, during = ticks_during { 10.times { cloud.status } }
      expect(during).to be > 100
    end
  end

  describe 'leaving the progress block' do
    let(:boom) { Class.new(StandardError) }

    it 'by an exception: it propagates out of leader_start; the daemon stays usable' do
      cloud = new_cloud(spec)
      seen = []
      expect {
        cloud.leader_start do |ev|
          seen << ev['event']
          raise boom, 'stop here' if ev['event'] == '+define'
        end
      }.to raise_error(boom, 'stop here')
      expect(seen.last).to eq('+define')

      pid = cloudd_pid
      expect(pid).not_to be_nil
      res = cloud.leader_start
      expect(res['status']['state']).to eq('running')
      expect(cloud.status['slots'].map { |s| s['state'] }).to all(eq('running'))
      expect(cloudd_pid).to eq(pid)
    end

    it 'by break: leader_start returns its value' do
      cloud = new_cloud(spec)
      expect(cloud.leader_start { |ev| break :left if ev['event'] == '+define' }).to eq(:left)
      expect(cloud.leader_start['status']['state']).to eq('running')
    end

    it 'by an exception from stop: it propagates as well' do
      cloud = new_cloud(spec)
      cloud.leader_start
      expect { cloud.stop { |_ev| raise boom } }.to raise_error(boom)
      wait_until('the cloud to be stopped') { cloud.status['state'] == 'stopped' }
      expect(cloud.stop['changed']).to eq(0)
    end
  end

  describe '#close from another thread' do
    it 'never frees what a blocked call is using' do
      new_cloud(spec).leader_start
      code = child_prelude + <<~RUBY
        results = Array.new(20) do
          c = Cloud.new(specs[0], **opts)
          t = Thread.new do
            loop { c.member? && c.status }
          rescue Cloud::Error => e
            e.message
          end
          sleep 0.001 until t.status == 'sleep' || !t.alive? # in a call without the GVL
          c.close
          t.value
        end
        puts JSON.generate(results)
      RUBY
      expect(run_child(code, [spec])).to eq(['this Cloud is closed'] * 20)
    end
  end
end
