# frozen_string_literal: true

# Stand-in for the `Cloud` class of the C extension (doc/INTERNALS.md section 4), for provider
# specs: `stub_const('Cloud', FakeCloud)` for one example, so that the real extension, when another
# spec loads it, is never shadowed. Every method must be stubbed by the example that uses it.
class FakeCloud
  # Errors as the extension raises them: code, host, operation.
  class Error < StandardError
    attr_reader :code, :host, :operation

    def initialize(message = nil, code: nil, host: nil, operation: nil)
      super(message)
      @code = code
      @host = host
      @operation = operation
    end
  end

  ['VirtError', 'SSHError', 'ProtocolError', 'TimeoutError', 'ElectionError', 'SpecError',
   'SystemError', 'StateError'].each { |name| const_set(name, Class.new(Error)) }

  def self.status(socket: nil)
    raise NotImplementedError, "stub Cloud.status (socket: #{socket.inspect})"
  end

  def initialize(spec, socket: nil, state_dir: nil, daemon: nil, autostart: true)
    raise NotImplementedError, "stub Cloud.new (#{spec['name']}, #{[socket, state_dir, daemon, autostart].inspect})"
  end

  def member?; end

  def leader?; end

  def leader_start; end

  def common_start; end

  def not_cloud_start; end

  def plan; end

  def monitor; end

  def stop; end

  def status; end

  def close; end
end

# The fake in place of Cloud for each example, the extension's feature on, and Cloud.new
# answering let(:cloud) (an instance_double of FakeCloud that the group defines).
RSpec.shared_context 'with a fake Cloud' do
  before(:each) do
    stub_const('Cloud', FakeCloud)
    allow(Puppet.features).to receive(:cloud_ext?).and_return(true)
    allow(Cloud).to receive(:new).and_return(cloud)
    allow(cloud).to receive(:close)
  end
end
