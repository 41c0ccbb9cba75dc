# frozen_string_literal: true

# Helpers shared by the specs that run several cloudd daemons (pool_spec, partition_spec): the
# including group defines `sock(host)` (the daemon's control socket) and `cloud_name`.
require 'json'
require 'socket'

module ClouddPool
  # One request on a daemon's control socket; its final answer, or nil if it does not answer.
  def call(host, req)
    UNIXSocket.open(sock(host)) do |s|
      s.write("#{JSON.generate(req.merge('v' => 1))}\n")
      JSON.parse(s.read.lines.last)
    end
  rescue SystemCallError, JSON::ParserError
    nil
  end

  # The cloud's status document as host's daemon sees it (nil if it does not answer).
  def status(host)
    doc = call(host, 'op' => 'status', 'name' => cloud_name)
    doc && doc['clouds'] && doc['clouds'].first
  end

  # Signal a daemon this spec started and reap it (already gone: nothing to do).
  def stop_pid(pid, sig = 'TERM')
    Process.kill(sig, pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  # Poll until the block returns a truthy value (returned), bounded.
  def wait_for(what, timeout: 10)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value
      raise "timed out after #{timeout}s waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end
end
