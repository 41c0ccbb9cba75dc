# frozen_string_literal: true

# What the integration specs that start their own cloudd daemons on this host share (monitor,
# exec, metrics, cloudctl_status): the extension from lib/, the built programs, and the shared
# context 'cloudd daemons': a temporary directory per example group (with the test template
# read into @template), daemons started in it by name, each in a directory of its own (control
# socket, state, log), and, after the group, every daemon still running stopped by PID and the
# directory removed. Builds on ClouddPool (call, status, stop_pid, wait_for): a daemon's name is
# the `host` that ClouddPool#call asks. The including group defines cloud_name, and may define
# daemon_args (the arguments every daemon it starts gets, after --socket, --state-dir and --log).
require 'fileutils'
require 'json'
require 'open3'
require 'tmpdir'

$LOAD_PATH.unshift(File.expand_path('../../../lib', __dir__))
require 'cloud_ext'

require_relative 'cloudd_pool'

module ClouddDaemons
  ROOT = File.expand_path('../../..', __dir__)
  CLOUDD = File.join(ROOT, 'bin/cloudd')
  CLOUDCTL = File.join(ROOT, 'bin/cloudctl')
  TEMPLATE = File.join(ROOT, 'modules/web/files/template-test.xml')

  def daemon_dir(which = :main) = File.join(@tmp, which.to_s)
  def sock(which = :main) = File.join(daemon_dir(which), 'cloudd.sock')
  def state(which = :main) = File.join(daemon_dir(which), 'state')
  def log_path(which = :main) = File.join(daemon_dir(which), 'log')

  # The arguments every daemon of the group gets (a group overrides this).
  def daemon_args = []

  # Start daemon which with daemon_args and extra; does not wait for it (see start_daemon).
  def spawn_daemon(which, *extra)
    FileUtils.mkdir_p(daemon_dir(which))
    @pids[which] = Process.spawn(CLOUDD, '--socket', sock(which), '--state-dir', state(which),
                                 '--log', log_path(which), *daemon_args, *extra, in: File::NULL)
  end

  # Wait (bounded) until daemon which answers on its control socket.
  def wait_daemon(which)
    wait_for("cloudd #{which} to answer") { File.socket?(sock(which)) && call(which, 'op' => 'hello') }
  end

  # Start daemon which (default :main) and wait until it answers.
  def start_daemon(which = :main, *extra)
    spawn_daemon(which, *extra)
    wait_daemon(which)
  end

  # Stop daemon which (TERM, reaped), if this group started it and it still runs.
  def stop_daemon(which = :main)
    pid = @pids.delete(which)
    stop_pid(pid) if pid
  end

  def daemon_running?(which = :main) = @pids.key?(which)
end

RSpec.shared_context 'cloudd daemons' do |tmp_prefix|
  include ClouddPool
  include ClouddDaemons

  before(:all) do
    @tmp = Dir.mktmpdir(tmp_prefix)
    @template = File.read(ClouddDaemons::TEMPLATE)
    @pids = {}
  end

  # declared first, so it runs after the group's own after(:all) hooks
  after(:all) do
    @pids.each_value { |pid| stop_pid(pid) }
    FileUtils.rm_rf(@tmp)
  end
end
