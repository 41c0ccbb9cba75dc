# frozen_string_literal: true

# The chaos test's invariant checks (Chaos::Analysis) on made-up daemon logs and harness records:
# each violation it must find, and what it must let pass (a restart on one host, a copy started
# after the other's kill, a resumed copy fenced within the grace). Pure Ruby, no daemon, no root.
require 'tmpdir'
require_relative '../../test/chaos/chaos_harness'

RSpec.describe Chaos::Analysis do
  base = 1_795_926_000_000 # ms, CLOCK_REALTIME
  cfg = Chaos::Config.new(resume_grace_ms: 100)
  slots = %w[c-node-0 c-node-1]

  around do |ex|
    Dir.mktmpdir('chaos-analysis') do |d|
      @dir = d
      ex.run
    end
  end

  def line(ms, tag, event, text) = "#{Time.at(ms / 1000r).utc.iso8601(3)} #{tag} INFO #{event} #{text}"

  # one daemon start: lines as [ms offset, event, text]; ended (SIGKILL or exit) at end_ms
  define_method(:inc) do |host, lines, end_ms: nil, freezes: []|
    log = File.join(@dir, "h#{host}.#{lines.object_id}")
    File.write(log, lines.map { |t, e, x| "#{line(base + t, "10.77.0.#{host}", e, x)}\n" }.join)
    Chaos::Incarnation.new(host: host, n: 1, pid: 100 + host, log: log, start_ms: base,
                           end_ms: end_ms && base + end_ms, end_how: 'SIGKILL',
                           freezes: freezes.map { |a, b| [base + a, b && base + b] })
  end

  define_method(:analyse) { |*incs| Chaos::Analysis.new(incs, slots, cfg).run }

  it 'finds two running copies of a slot on two hosts, with the lines as evidence' do
    a = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-0 uri=test:///default'], [500, '-vm-run', 'dom=c-node-0 why=fence']]),
                inc(2, [[400, '+vm-run', 'dom=c-node-0 uri=test:///default']]))
    expect(a.violations.size).to eq(1)
    v = a.violations.first
    expect(v).to include('kind' => 'two-running-copies', 'slot' => 'c-node-0', 'ms' => 101)
    expect(v['evidence'].join("\n")).to include('+vm-run dom=c-node-0').and include('why=fence')
  end

  it 'lets a copy start once the other one stopped, and a restart on one host pass' do
    a = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-0 uri=x'], [10, '+vm-run', 'dom=c-node-0 uri=x'],
                        [300, '-vm-run', 'dom=c-node-0 why=fault']]),
                inc(2, [[301, '+vm-run', 'dom=c-node-0 uri=x'], [302, '+vm-run', 'dom=c-node-1 uri=x']]))
    expect(a.violations).to be_empty
  end

  it "ends a killed daemon's domains at the kill, not before" do
    early = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-1 uri=x']], end_ms: 1000),
                    inc(2, [[999, '+vm-run', 'dom=c-node-1 uri=x']]))
    expect(early.violations.map { |v| v['kind'] }).to eq(['two-running-copies'])
    expect(early.violations.first['evidence'].join).to include('SIGKILL')
    late = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-1 uri=x']], end_ms: 1000),
                   inc(2, [[1000, '+vm-run', 'dom=c-node-1 uri=x']]))
    expect(late.violations).to be_empty
  end

  it 'counts a frozen copy as not running, and gives a resumed one the grace to be fenced' do
    frozen = [[1000, 3000]] # SIGSTOP .. SIGCONT
    ok = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-0 uri=x'], [3050, '-vm-run', 'dom=c-node-0 why=fence']],
                     freezes: frozen),
                 inc(2, [[2000, '+vm-run', 'dom=c-node-0 uri=x']]))
    expect(ok.violations).to be_empty
    expect(ok.tolerated.map { |t| t['ms'] }).to eq([51])
    slow = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-0 uri=x'], [3500, '-vm-run', 'dom=c-node-0 why=fence']],
                       freezes: frozen),
                   inc(2, [[2000, '+vm-run', 'dom=c-node-0 uri=x']]))
    expect(slow.violations.map { |v| v['kind'] }).to eq(['two-running-copies'])
    expect(slow.violations.first['evidence'].join).to include('frozen')
    # a copy started after the SIGCONT gets no grace
    after = analyse(inc(1, [[0, '+vm-run', 'dom=c-node-0 uri=x'], [3050, '-vm-run', 'dom=c-node-0 why=fence']],
                        freezes: frozen),
                    inc(2, [[3010, '+vm-run', 'dom=c-node-0 uri=x']]))
    expect(after.violations.size).to eq(1)
  end

  it 'finds two daemons acting in one epoch, not one daemon acting twice in it' do
    two = analyse(inc(1, [[0, '+acting', 'cloud=c epoch=7'], [10, '+acting', 'cloud=c epoch=7']]),
                  inc(2, [[500, '+acting', 'cloud=c epoch=7'], [900, '+acting', 'cloud=c epoch=8']]))
    expect(two.violations.size).to eq(1)
    expect(two.violations.first).to include('kind' => 'two-acting-in-one-epoch', 'epoch' => 7)
    expect(two.violations.first['evidence'].size).to eq(3)
    one = analyse(inc(1, [[0, '+acting', 'cloud=c epoch=7'], [10, '+acting', 'cloud=c epoch=7']]),
                  inc(2, [[500, '+acting', 'cloud=c epoch=8']]))
    expect(one.violations).to be_empty
  end

  it 'finds a domain still running when the daemons exit after the stop' do
    runs = [[0, '+vm-run', 'dom=c-node-0 uri=x'], [5, '+vm-run', 'dom=c-node-1 uri=x'], [9, '-vm-run', 'dom=c-node-1 why=remove']]
    i = inc(1, runs, end_ms: 1000)
    i.end_how = 'exit at the end'
    a = Chaos::Analysis.new([i], slots, cfg, stopped: true).run
    expect(a.violations.map { |v| [v['kind'], v['slot']] }).to eq([%w[running-after-stop c-node-0]])
    expect(Chaos::Analysis.new([i], slots, cfg, stopped: false).run.violations).to be_empty
  end

  it 'ignores domains of other clouds and unparsable (cut) lines' do
    a = analyse(inc(1, [[0, '+vm-run', 'dom=keep1-node-0 uri=x']]),
                inc(2, [[1, '+vm-run', 'dom=keep1-node-0 uri=x']]))
    File.open(a.instance_variable_get(:@incs).first.log, 'a') { |f| f.write('2026-11-29T04:3') }
    expect(a.violations).to be_empty
    expect(analyse(*a.instance_variable_get(:@incs)).violations).to be_empty
  end
end
