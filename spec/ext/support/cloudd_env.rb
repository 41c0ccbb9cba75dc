# frozen_string_literal: true

require 'fileutils'
require 'json'
require 'open3'
require 'rbconfig'
require 'socket'
require 'tmpdir'

# A private world for each example: a fresh temporary directory holding the control socket, the
# state directory and the disk pool path of every Cloud the example makes, so nothing touches
# /run/cloudd or /var/lib/cloud. CLOUD_SOCKET and CLOUD_STATE_DIR point at decoys in the same
# directory: a Cloud that ignored its socket:/state_dir: options would show up there (and still
# stay private). After the example (failed or not), every cloudd serving these sockets is killed
# by PID (the PID comes from the daemon itself: its hello answer, or its +start log line) and the
# directory is removed. Should the run itself be killed (SIGTERM, Ctrl-C), at_exit does the same
# for the example in progress.
module CloudExtEnv
  DAEMON = File.expand_path('../../../bin/cloudd', __dir__)
  LIB = File.expand_path('../../../lib', __dir__)
  ENV_KEYS = %w[CLOUD_SOCKET CLOUD_STATE_DIR CLOUDD].freeze
  LIVE = {} # examples set up and not yet torn down (at most one unless run in threads)

  at_exit do
    LIVE.values.each do |env|
      env.teardown_cloud_env
    rescue StandardError
      nil
    end
  end

  attr_reader :cloud_dir

  def socket_path
    File.join(cloud_dir, 'cloudd.sock')
  end

  def state_dir
    File.join(cloud_dir, 'state')
  end

  def decoy_socket
    File.join(cloud_dir, 'decoy.sock')
  end

  def decoy_state_dir
    File.join(cloud_dir, 'decoy-state')
  end

  def log_path
    File.join(state_dir, 'cloudd.log')
  end

  # Options for Cloud.new that keep it inside the example's directory.
  def cloud_opts
    { socket: socket_path, state_dir: state_dir, daemon: DAEMON }
  end

  # Cloud.new with the private options; closed after the example.
  def new_cloud(spec, **opts)
    cloud = Cloud.new(spec, **cloud_opts, **opts)
    (@clouds ||= []) << cloud
    cloud
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Polls the block every 10 ms until it is truthy; fails after +timeout+ seconds.
  def wait_until(what, timeout: 10)
    deadline = monotonic + timeout
    loop do
      result = yield
      return result if result
      raise "timed out after #{timeout}s waiting for #{what}" if monotonic > deadline

      sleep 0.01
    end
  end

  # The daemon's hello answer (a Hash) on +socket+, or nil if none answers (bounded).
  def cloudd_hello(socket = socket_path, timeout: 3)
    return nil unless File.socket?(socket)

    UNIXSocket.open(socket) do |s|
      s.write(%({"v":1,"op":"hello"}\n))
      line = read_line(s, monotonic + timeout)
      answer = line && JSON.parse(line)
      answer && answer['ok'] ? answer : nil
    end
  rescue SystemCallError, IOError, JSON::ParserError
    nil
  end

  def cloudd_pid(socket = socket_path)
    cloudd_hello(socket)&.fetch('pid')
  end

  # Daemons started on this example's sockets, by their "+start ... pid=N socket=S" log lines.
  def logged_cloudd_pids
    [log_path, File.join(decoy_state_dir, 'cloudd.log')].flat_map do |log|
      next [] unless File.file?(log)

      File.foreach(log).filter_map do |l|
        m = l.match(/\+start cloudd \S+ pid=(\d+) socket=(\S+)/)
        m[1].to_i if m && [socket_path, decoy_socket].include?(m[2])
      end
    end
  end

  # Number of daemons ever started with this example's state directory.
  def cloudd_starts
    File.file?(log_path) ? File.foreach(log_path).count { |l| l.include?('+start cloudd') } : 0
  end

  # A live (not zombie) process that is a cloudd serving one of this example's sockets.
  def our_cloudd?(pid)
    stat = File.read("/proc/#{pid}/stat")
    return false if stat[/\) (\S)/, 1] == 'Z'

    args = File.read("/proc/#{pid}/cmdline").split("\0")
    File.basename(args.first.to_s) == 'cloudd' &&
      [socket_path, decoy_socket].any? { |s| args.each_cons(2).include?(['--socket', s]) }
  rescue SystemCallError
    false
  end

  def kill_our_cloudds
    pids = ([cloudd_pid(socket_path), cloudd_pid(decoy_socket)].compact + logged_cloudd_pids).uniq
    pids.select { |pid| our_cloudd?(pid) }.each do |pid|
      Process.kill(:TERM, pid)
      gone = begin
        wait_until("cloudd #{pid} to exit", timeout: 5) { !our_cloudd?(pid) }
      rescue RuntimeError
        false
      end
      Process.kill(:KILL, pid) if !gone && our_cloudd?(pid)
    rescue Errno::ESRCH
      next
    end
  end

  # Runs +code+ in a fresh Ruby (lib/ on its load path; ARGV = +args+), killed after +timeout+
  # seconds. For what must not take the spec process down with it (a crash) or must not depend
  # on its heap (GC.stress costs a full GC per allocation). Returns [stdout, stderr, status].
  def run_ruby(code, *args, timeout: 20)
    Open3.popen3(RbConfig.ruby, '-I', LIB, '-e', code, '--', *args) do |stdin, out, err, wait|
      stdin.close
      readers = [out, err].map { |io| Thread.new { io.read } }
      unless wait.join(timeout)
        Process.kill(:KILL, wait.pid)
        wait.join
      end
      [readers[0].value, readers[1].value, wait.value]
    end
  end

  def setup_cloud_env
    @cloud_dir = Dir.mktmpdir('cx')
    LIVE[object_id] = self
    raise "socket path too long: #{socket_path}" if socket_path.bytesize > 100

    @saved_env = ENV.to_h.slice(*ENV_KEYS)
    ENV['CLOUD_SOCKET'] = decoy_socket
    ENV['CLOUD_STATE_DIR'] = decoy_state_dir
    ENV['CLOUDD'] = DAEMON
  end

  # Returns the decoy paths that were used (a bug: options ignored) so the hook can fail on them.
  def teardown_cloud_env
    (@clouds || []).each(&:close)
    kill_our_cloudds
    [decoy_socket, decoy_state_dir].select { |p| File.exist?(p) }
  ensure
    GC.stress = false
    ENV_KEYS.each { |k| @saved_env&.key?(k) ? ENV[k] = @saved_env[k] : ENV.delete(k) }
    FileUtils.rm_rf(@cloud_dir) if @cloud_dir
    LIVE.delete(object_id)
  end

  private

  def read_line(sock, deadline)
    buf = +''
    until buf.include?("\n")
      left = deadline - monotonic
      return nil if left <= 0 || !IO.select([sock], nil, nil, left)

      chunk = sock.read_nonblock(65_536, exception: false)
      return nil if chunk.nil?

      buf << chunk unless chunk == :wait_readable
    end
    buf.lines.first
  end
end
