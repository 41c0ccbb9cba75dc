# frozen_string_literal: true

# The chaos test (test/chaos/chaos_harness.rb) as an example of the suite: `rake chaos` runs this
# file alone and prints the harness's summary line last; `rake test` runs it after the
# integration specs. Faults for CHAOS_SECONDS (default 60) on three daemons in network
# namespaces, then the invariants: no slot running twice, one daemon acting per epoch,
# convergence within the bound once the faults stop, nothing left after the stop. Needs root
# and `ip netns`; skipped otherwise (and then `rake chaos` fails: the test did not run).
require_relative '../../test/chaos/chaos_harness'

RSpec.describe 'the chaos test (embedded hypervisor, network namespaces)' do
  ok, why = Chaos.available?
  before { skip why } unless ok

  it 'keeps one copy of each slot and one leader per epoch under faults, converges, leaves nothing' do
    FileUtils.rm_f(Chaos::RESULT)
    result = Chaos::Run.new.run
    details = result['details'].map do |v|
      ([v.reject { |k, _| k == 'evidence' }.to_json] + Array(v['evidence']).map { |l| "    #{l}" }).join("\n")
    end.join("\n")
    expect(result['error']).to be_nil, "the run did not finish: #{result['error']}"
    expect(result['violations']).to eq(0), "#{Chaos.summary(result)} (seed #{result['seed']})\n#{details}"
    expect(result['converged']).to be(true), "did not converge within the bound:\n#{details}"
    expect(result['faults']).to be > 0
  end
end
