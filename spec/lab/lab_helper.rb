# frozen_string_literal: true

# The lab for end-to-end tests (test/lab/lab): N pool hosts as network namespaces, each with its
# own libvirtd and a cloudd started here, real guests under TCG. Everything started here is
# stopped by PID, and the lab is taken down, also when an example fails.
require 'fileutils'
require 'json'
require 'open3'
require 'shellwords'
require 'timeout'

module LabHelper
  ROOT = File.expand_path('../..', __dir__)
  LAB = File.join(ROOT, 'test/lab/lab')
  RESULTS = File.join(ROOT, 'build/lab-e2e.json')

  # Records one end-to-end result ("web" => "pass", "leftovers" => n) for `rake lab:e2e`.
  def self.record(key, value)
    FileUtils.mkdir_p(File.dirname(RESULTS))
    doc = File.exist?(RESULTS) ? JSON.parse(File.read(RESULTS)) : {}
    doc[key] = key == 'leftovers' ? doc.fetch('leftovers', 0).to_i + value.to_i : value
    File.write(RESULTS, JSON.generate(doc))
  end

  def self.env_of(dir)
    File.readlines(File.join(dir, 'lab.env')).each_with_object({}) do |line, h|
      h[Regexp.last_match(1)] = Regexp.last_match(2) if line =~ /\A([A-Z0-9_]+)='(.*)'\s*\z/
    end
  end

  # After an example group: the lab down, what is left of it and the group's verdict recorded.
  def self.finish(lab, key, group)
    lab&.down
    record('leftovers', lab ? lab.leftovers : 0)
    examples = RSpec.world.filtered_examples.values.flatten
                    .select { |ex| ex.example_group.top_level_description == group.top_level_description }
    record(key, examples.all? { |ex| ex.execution_result.status == :passed } ? 'pass' : 'fail')
  end

  # One lab: up, cloudd on each host, and down.
  class Lab
    attr_reader :dir, :env, :hosts

    # cloudd_args: extra options of every cloudd started here (e.g. --sweep-ms 2000);
    # cloudd: false starts none (the Puppet runs start them: spec/lab_agent)
    def initialize(dir, nhosts, cloudd_args: [], cloudd: true)
      @dir = dir
      @nhosts = nhosts
      # guests under TCG take 1.2-2.3 s each to destroy (libvirtd's autodestroy of a dead
      # daemon's guests goes one by one): the leader budgets that for a silent host
      @cloudd_args = ['--destroy-ms', '2500', *cloudd_args]
      @cloudd = cloudd
      @pids = {}
    end

    def up
      FileUtils.rm_rf(@dir)
      out, st = Open3.capture2e(LAB, 'up', @dir, @nhosts.to_s)
      raise "lab up failed:\n#{out}" unless st.success?
      @env = LabHelper.env_of(@dir)
      @tag = File.read(File.join(@dir, 'pool', 'netns-pool.tag')).strip
      @hosts = (1..@nhosts).map { |i| @env["LAB_ADDR_#{i}"] }
      File.write(secret, Random.new.bytes(32).unpack1('H*'))
      File.chmod(0o600, secret)
      (1..@nhosts).each { |i| start_cloudd(i) } if @cloudd
      self
    end

    def secret = File.join(@dir, 'secret')

    # A multi-VM role's [ips_file, images_file], every VM on the lab's image, as Puppet text.
    def role_files(role, ips)
      ips_file = File.join(@dir, "#{role}-ips.txt")
      imgs_file = File.join(@dir, "#{role}-imgs.txt")
      File.write(ips_file, ips.map { |ip| "#{ip}\n" }.join)
      File.write(imgs_file, ips.map { "#{@env['LAB_IMAGE']}\n" }.join)
      "['#{ips_file}', '#{imgs_file}']"
    end

    # A single VM's [ip, image] on the lab's image, as Puppet text.
    def role_vm(ip) = "['#{ip}', '#{@env['LAB_IMAGE']}']"

    # The attributes every lab manifest shares: template, memory, pool, hypervisor, key, secret.
    def common_attrs
      <<~PP
        vm_domain   => '#{@env['LAB_TEMPLATE']}',
        vm_mem      => 524288,
        pool        => [#{@hosts.map { |h| "'#{h}'" }.join(', ')}],
        hypervisor  => 'qemu:///system',
        ssh_key     => '#{@env['LAB_SSH_KEY']}',
        secret_file => '#{secret}',
      PP
    end
    def host_dir(i) = @env["LAB_HOST_DIR_#{i}"]
    def socket(i) = File.join(host_dir(i), 'cloudd.sock')
    def state(i) = File.join(host_dir(i), 'cloud')
    def log(i) = File.join(host_dir(i), 'cloudd.log')
    def ns(i) = @env["LAB_NS_#{i}"]

    # cloudd of host i, in that host's namespaces (`lab exec`: its libvirtd is qemu:///system);
    # log_file: its log (a restarted daemon may get a new one). Returns its PID, once it answers.
    def start_cloudd(i, log_file: log(i))
      pid = Process.spawn(LAB, 'exec', @dir, i.to_s, File.join(ROOT, 'bin/cloudd'), '--address', @env["LAB_ADDR_#{i}"],
                          '--socket', socket(i), '--state-dir', state(i), '--log', log_file, *@cloudd_args,
                          in: File::NULL, out: File::NULL, err: [File.join(host_dir(i), 'cloudd.err'), 'a'])
      @pids[i] = pid
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
      until system(File.join(ROOT, 'bin/cloudctl'), '--socket', socket(i), 'hello', out: File::NULL, err: File::NULL)
        raise "cloudd of host #{i} did not answer" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.1
      end
      pid
    end

    # The PID of host i's cloudd started here (nil: none running). Our own child, not reaped
    # yet: the number cannot have been reused.
    def cloudd_pid(i) = @pids[i]

    # The PID host i's socket says its daemon has (`cloudctl hello`), nil if none answers.
    def hello_pid(i)
      out, st = Open3.capture2e('timeout', '5', File.join(ROOT, 'bin/cloudctl'), '--socket', socket(i), 'hello')
      st.success? ? JSON.parse(out)['pid'] : nil
    rescue JSON::ParserError
      nil
    end

    # Stops host i's cloudd by its PID. KILL: a crash, reaped at once; TERM: an orderly exit,
    # KILL after 10 s. Returns the PID (nil: none was running).
    def stop_cloudd(i, signal = 'TERM')
      pid = @pids.delete(i) or return nil
      begin
        Process.kill(signal, pid)
        Timeout.timeout(10) { Process.wait(pid) }
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      rescue Timeout::Error
        Process.kill('KILL', pid)
        Process.wait(pid)
      end
      pid
    end

    # A command in host i's network namespace (the root's filesystem); [output, status].
    def in_host(i, *cmd, env: {})
      Open3.capture2e(env, 'ip', 'netns', 'exec', ns(i), *cmd)
    end

    # `puppet apply` of manifest text on host i, as its operator would: [output, exit status];
    # timeout: seconds, then it is stopped (TERM, KILL 10 s later) and the status is 124.
    def puppet_apply(i, manifest, extra = [], timeout: nil)
      path = File.join(@dir, "manifest-#{Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)}.pp")
      File.write(path, manifest)
      limit = timeout ? ['timeout', '-k', '10', timeout.to_s] : []
      out, st = in_host(i, *limit, 'puppet', 'apply', '--detailed-exitcodes', "--modulepath=#{File.join(ROOT, 'modules')}",
                        *extra, path,
                        env: { 'CLOUD_SOCKET' => socket(i), 'CLOUD_STATE_DIR' => state(i) })
      [out.lines.reject { |l| l.include?('/proc/1/environ') || l.include?('Permission denied') }.join, st.exitstatus]
    end

    # Domains of host i's libvirtd (name => state), seen from outside the product.
    def domains(i)
      out, st = Open3.capture2e('virsh', '-c', @env["LAB_URI_#{i}"], 'list', '--all', '--name')
      raise "virsh on host #{i}: #{out}" unless st.success?
      out.split.map(&:strip).reject(&:empty?)
    end

    def volumes(i)
      out, = Open3.capture2e('virsh', '-c', @env["LAB_URI_#{i}"], 'vol-list', '--pool', 'cloud')
      out.lines.drop(2).map { |l| l.split.first }.compact
    end

    # What of the lab is left after down: namespaces, processes and mounts naming its directory.
    def leftovers
      nss = @tag ? `ip netns list`.lines.count { |l| l.start_with?(@tag) } : 0
      procs = Dir['/proc/[0-9]*/cmdline'].count do |f|
        File.read(f).include?(@dir) && File.basename(File.dirname(f)).to_i != Process.pid
      rescue SystemCallError
        false
      end
      mounts = File.readlines('/proc/mounts').count { |l| l.include?(@dir) }
      nss + procs + mounts
    end

    def down
      @pids.keys.each { |i| stop_cloudd(i) }
      system(LAB, 'down', @dir, out: File::NULL, err: File::NULL)
    end
  end
end
