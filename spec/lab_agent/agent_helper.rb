# frozen_string_literal: true

# The normal Puppet way in the lab (issue 6): a Puppet Server (Debian's puppetserver, started once
# for the suite) in a network namespace of its own on the lab's switch, serving the modules of the
# package `rake package` built; the pool hosts run `puppet agent --test` against it, each with its
# own throwaway configuration. Everything started here is stopped by PID and every namespace made
# here is removed, also when an example fails.
require 'digest'
require 'fileutils'
require 'json'
require 'open3'
require 'rbconfig'
require 'timeout'
require 'yaml'
require_relative '../lab/lab_helper'

module AgentHelper
  ROOT = LabHelper::ROOT
  RESULTS = File.join(ROOT, 'build/lab-agent.json')
  PACKAGE = File.join(ROOT, 'build/pkg/puppet-cloud.deb')
  SERVER_IP = '10.78.0.200' # in the lab's /24, which the lab does not use (hosts .1-.9, guests .11-)
  SERVER_PORT = 8140
  CLOUD = 'lw' # the web cloud of the site manifest
  LOGS = File.join(ROOT, 'build/lab-agent-logs') # each run's output, the daemons' and the server's logs

  def self.monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Records one result ("converged" => "yes", "agent_runs" => {...}) for `rake lab:agent`.
  def self.record(key, value)
    FileUtils.mkdir_p(File.dirname(RESULTS))
    doc = File.exist?(RESULTS) ? JSON.parse(File.read(RESULTS)) : {}
    doc[key] = value
    File.write(RESULTS, JSON.pretty_generate(doc))
  end

  def self.read_results = File.exist?(RESULTS) ? JSON.parse(File.read(RESULTS)) : {}

  # Lines of a Puppet run's output without Facter's /proc/1/environ noise of this sandbox.
  def self.clean(out)
    out.lines.reject { |l| l.include?('/proc/1/environ') || l.include?('Permission denied') }.join
  end

  # The package's files (dpkg-deb -x), as a pool host would have them installed, under dir.
  def self.extract_package(dir)
    raise "#{PACKAGE} is missing: run `rake package` (rake lab:agent does)" unless File.exist?(PACKAGE)

    FileUtils.rm_rf(dir)
    out, st = Open3.capture2e('dpkg-deb', '-x', PACKAGE, dir)
    raise "dpkg-deb -x #{PACKAGE}: #{out}" unless st.success?

    dir
  end

  # Debian's puppetserver, run as its `foreground` command runs it (java -jar) but as root with a
  # conf.d, confdir, codedir, vardir, ssldir... of its own under dir, listening on SERVER_IP only,
  # in network namespace `ns` (made here, attached to the lab's switch by attach).
  class Server
    attr_reader :dir, :ns, :pid, :ready_s

    def initialize(dir, modulepath)
      @dir = dir
      @modulepath = modulepath
      @ns = "agps#{Digest::SHA1.hexdigest(File.expand_path(dir))[0, 6]}"
      @pid = nil
    end

    def etc = File.join(@dir, 'etc')
    def code = File.join(@dir, 'code')
    def log = File.join(@dir, 'log', 'puppetserver.log')
    def environments = File.join(code, 'environments')

    # The namespace with its end of a veth pair (eth0, SERVER_IP/24) and the other end (psrv)
    # still inside it: the server can bind its address before the lab's switch exists.
    def netns_up
      if `ip netns list`.lines.any? { |l| l.split.first == @ns }
        raise "network namespace #{@ns} exists (left by an interrupted run?): stop what `ip netns pids #{@ns}` " \
              "lists, then `ip netns del #{@ns}`"
      end
      run!('ip', 'netns', 'add', @ns)
      @ns_made = true
      run!('ip', '-n', @ns, 'link', 'set', 'lo', 'up')
      run!('ip', '-n', @ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'psrv')
      run!('ip', '-n', @ns, 'addr', 'add', "#{SERVER_IP}/24", 'dev', 'eth0')
      run!('ip', '-n', @ns, 'link', 'set', 'eth0', 'up')
    end

    # psrv moves into the lab's switch namespace and becomes a port of its bridge.
    def attach(switch_ns)
      run!('ip', '-n', @ns, 'link', 'set', 'psrv', 'netns', switch_ns)
      run!('ip', '-n', switch_ns, 'link', 'set', 'psrv', 'master', 'br0', 'up')
    end

    def configure
      FileUtils.rm_rf(@dir)
      %w[etc code/environments var run log ssl ca conf.d].each { |d| FileUtils.mkdir_p(File.join(@dir, d)) }
      File.write(File.join(etc, 'puppet.conf'), <<~CONF)
        # spec/lab_agent: a throwaway Puppet Server (Debian's puppet derives nothing from confdir)
        [main]
        certname = puppet
        dns_alt_names = puppet,IP:#{SERVER_IP}
        codedir = #{code}
        vardir = #{@dir}/var
        rundir = #{@dir}/run
        logdir = #{@dir}/log
        publicdir = #{@dir}/var/public
        ssldir = #{@dir}/ssl
        cadir = #{@dir}/ca
        hiera_config = #{etc}/hiera.yaml
        autosign = true
        environment_timeout = 0
        reports = store
        reportdir = #{@dir}/var/reports
      CONF
      File.write(File.join(etc, 'hiera.yaml'), "---\nversion: 5\nhierarchy: []\n")
      confd = File.join(@dir, 'conf.d')
      %w[auth.conf metrics.conf web-routes.conf].each do |f|
        FileUtils.cp(File.join('/etc/puppet/puppetserver/conf.d', f), confd)
      end
      File.write(File.join(confd, 'global.conf'), "global: {\n  logging-config: #{@dir}/logback.xml\n}\n")
      File.write(File.join(confd, 'ca.conf'), "certificate-authority: {\n}\n")
      File.write(File.join(confd, 'puppetserver.conf'), <<~CONF)
        jruby-puppet: {
          ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
          gem-home: #{@dir}/var/jruby-gems
          gem-path: [${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
          server-conf-dir: #{etc}
          server-code-dir: #{code}
          server-var-dir: #{@dir}/var
          server-run-dir: #{@dir}/run
          server-log-dir: #{@dir}/log
          max-active-instances: 1
        }
        http-client: {
        }
        profiler: {
        }
      CONF
      # TLS 1.2: under TLS 1.3 a new agent's first request waits 30 s for the server's idle timeout
      File.write(File.join(confd, 'webserver.conf'), <<~CONF)
        webserver: {
          client-auth: want
          ssl-host: #{SERVER_IP}
          ssl-port: #{SERVER_PORT}
          ssl-protocols: [TLSv1.2]
        }
      CONF
      File.write(File.join(@dir, 'logback.xml'), <<~XML)
        <configuration>
          <appender name="F1" class="ch.qos.logback.core.FileAppender">
            <file>#{log}</file>
            <append>true</append>
            <encoder><pattern>%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %-5p [%t] [%c{2}] %m%n</pattern></encoder>
          </appender>
          <logger name="org.eclipse.jetty" level="WARN"/>
          <root level="info"><appender-ref ref="F1"/></root>
        </configuration>
      XML
    end

    # An environment: its site manifest, the package's modules as its modulepath.
    def environment(name, site)
      env = File.join(environments, name)
      FileUtils.mkdir_p(File.join(env, 'manifests'))
      File.write(File.join(env, 'environment.conf'), "modulepath = #{@modulepath}\n")
      File.write(File.join(env, 'manifests', 'site.pp'), site)
      File.chmod(0o600, File.join(env, 'manifests', 'site.pp'))
    end

    # Starts the JVM in the namespace (setsid: a session of its own; its PID is java's, as
    # `ip netns exec` and setsid exec). Returns at once: wait_ready waits.
    def start
      @t0 = AgentHelper.monotonic
      java = %w[/usr/bin/java -Xms512m -Xmx1g -XX:TieredStopAtLevel=1
                --add-opens java.base/sun.nio.ch=ALL-UNNAMED --add-opens java.base/java.io=ALL-UNNAMED
                -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger
                -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError] +
             ["-XX:ErrorFile=#{@dir}/log/java_err_pid%p.log", '-jar', '/usr/share/puppetserver/puppetserver.jar',
              '--config', File.join(@dir, 'conf.d'), '--bootstrap-config', '/etc/puppet/puppetserver/services.d']
      @pid = Process.spawn('ip', 'netns', 'exec', @ns, 'setsid', *java,
                           chdir: '/usr/share/puppetserver', umask: 0o022, in: File::NULL,
                           out: [File.join(@dir, 'log', 'stdout.log'), 'w'], err: %i[child out])
    end

    # Until the status service answers (from inside the namespace); the seconds since start.
    def wait_ready(timeout = 180)
      deadline = @t0 + timeout
      loop do
        out, st = Open3.capture2e('ip', 'netns', 'exec', @ns, 'curl', '-sk', '--max-time', '2',
                                  "https://#{SERVER_IP}:#{SERVER_PORT}/status/v1/simple")
        break if st.success? && out.strip == 'running'
        raise "Puppet Server exited during start-up:\n#{tail}" unless alive?
        raise "Puppet Server did not answer within #{timeout} s:\n#{tail}" if AgentHelper.monotonic > deadline

        sleep 0.5
      end
      @ready_s = (AgentHelper.monotonic - @t0).round(1)
    end

    def alive?
      return false unless @pid

      Process.waitpid(@pid, Process::WNOHANG).nil?
    rescue Errno::ECHILD
      false
    end

    def tail = File.exist?(log) ? File.readlines(log).last(30).join : '(no log)'

    # The JVM by its PID (TERM, KILL after 30 s), then the namespace (its veth pair with it).
    def stop
      if @pid
        begin
          Process.kill('TERM', @pid)
          Timeout.timeout(30) { Process.wait(@pid) }
        rescue Errno::ESRCH, Errno::ECHILD
          nil
        rescue Timeout::Error
          Process.kill('KILL', @pid)
          Process.wait(@pid)
        end
        @pid = nil
      end
      system('ip', 'netns', 'del', @ns, err: File::NULL) if @ns_made
      @ns_made = false
    end

    # What is left of the server: its namespace, processes naming its directory.
    def leftovers
      ns = `ip netns list`.lines.count { |l| l.split.first == @ns }
      procs = Dir['/proc/[0-9]*/cmdline'].count do |f|
        File.read(f).include?(@dir) && File.basename(File.dirname(f)).to_i != Process.pid
      rescue SystemCallError
        false
      end
      ns + procs
    end

    private

    def run!(*cmd)
      out, st = Open3.capture2e(*cmd)
      raise "#{cmd.join(' ')}: #{out}" unless st.success?

      out
    end
  end

  # One pool host's Puppet agent: its own confdir (puppet.conf with every directory set), run in
  # the host's namespaces (`lab exec`: where its libvirtd is qemu:///system) with the
  # environment the providers need (the lab's socket and state directory, the package's
  # extension on RUBYLIB).
  class Agent
    Run = Struct.new(:host, :rc, :out, :seconds, :summary, :report, keyword_init: true) do
      def changes = summary&.dig('changes', 'total')
      def failures = summary&.dig('events', 'failure')
    end

    attr_reader :i, :confdir

    def initialize(lab, i, pkgroot)
      @lab = lab
      @i = i
      @pkgroot = pkgroot
      @confdir = File.join(lab.dir, 'agents', "h#{i}")
    end

    def certname = "h#{@i}.lab"
    def vardir = File.join(@confdir, 'var')

    def configure
      FileUtils.mkdir_p(@confdir, mode: 0o700)
      File.write(File.join(@confdir, 'puppet.conf'), <<~CONF)
        # spec/lab_agent: pool host #{@i}'s agent (Debian's puppet derives nothing from confdir)
        [main]
        certname = #{certname}
        server = #{SERVER_IP}
        codedir = #{@confdir}/code
        vardir = #{vardir}
        rundir = #{@confdir}/run
        logdir = #{@confdir}/log
        publicdir = #{vardir}/public
        ssldir = #{@confdir}/ssl
        hiera_config = #{@confdir}/hiera.yaml
      CONF
    end

    def env
      vendorarch = RbConfig::CONFIG.fetch('vendorarchdir')
      { 'CLOUD_SOCKET' => @lab.socket(@i), 'CLOUD_STATE_DIR' => @lab.state(@i),
        'RUBYLIB' => File.join(@pkgroot, vendorarch) }
    end

    # `puppet agent --test` (detailed exit codes); extra: e.g. --noop, --environment stopped.
    def run(*extra, timeout: 600)
      FileUtils.rm_f(summary_file)
      FileUtils.rm_f(File.join(vardir, 'state', 'last_run_report.yaml'))
      t0 = AgentHelper.monotonic
      out, st = puppet(%w[agent --test] + extra, timeout: timeout)
      Run.new(host: @i, rc: st.exitstatus, out: AgentHelper.clean(out), seconds: (AgentHelper.monotonic - t0).round(1),
              summary: summary, report: read_state('last_run_report.yaml'))
    end

    # Any puppet subcommand with this agent's configuration, in the host's namespaces.
    def puppet(args, timeout: 300)
      Open3.capture2e(env, 'timeout', '-k', '10', timeout.to_s, LabHelper::LAB, 'exec', @lab.dir, @i.to_s,
                      'puppet', *args, '--confdir', @confdir, chdir: @lab.dir)
    end

    private

    # lastrunfile: $publicdir/last_run_summary.yaml in Puppet 7
    def summary_file = File.join(vardir, 'public', 'last_run_summary.yaml')

    def summary
      File.exist?(summary_file) ? YAML.safe_load(File.read(summary_file)) : nil
    end

    def read_state(name)
      path = File.join(vardir, 'state', name)
      File.exist?(path) ? File.read(path) : nil
    end
  end
end
