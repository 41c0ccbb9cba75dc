# frozen_string_literal: true

require 'spec_helper'

# The web type, and through it the attributes and checks every distributed type shares.
describe Puppet::Type.type(:web) do
  def web(overrides = {})
    described_class.new(web_attrs(overrides))
  end

  # Expects creating the resource to fail with exactly this error text (a String) or pattern.
  def expect_invalid(overrides, message)
    expect { web(overrides) }.to raise_error(Puppet::ResourceError) { |e|
      if message.is_a?(Regexp)
        expect(e.message).to match(message)
      else
        expect(e.message).to eq(message)
      end
    }
  end

  def validation(detail)
    "Validation of Web[myweb] failed: #{detail}"
  end

  def parameter(name, detail, title = 'myweb')
    "Parameter #{name} failed on Web[#{title}]: #{detail}"
  end

  describe 'attributes' do
    it 'has ensure as its only property: pool and the roles are parameters' do
      expect(described_class.validproperties).to eq([:ensure])
      expect(described_class.parameters).to include(:pool, :balancer, :server, :database, :vm_domain)
    end

    it 'documents every attribute' do
      described_class.allattrs.each do |name|
        next if Puppet::Type.metaparam?(name) || name == :provider
        expect(described_class.attrclass(name).doc.to_s.strip).not_to be_empty, "#{name} has no desc"
      end
    end

    it 'has the documented defaults' do
      r = web
      expect(r[:vm_mem]).to eq(1_048_576)
      expect(r[:vm_ncpu]).to eq(1)
      expect(r[:hypervisor]).to eq('test:///default')
      expect(r[:ssh_key]).to eq('/etc/cloud/ssh/id_ed25519')
      expect(r[:disk_pool]).to eq('cloud')
      expect(r[:disk_pool_path]).to eq('/var/lib/libvirt/images/cloud')
      expect(r[:image_format]).to eq('qcow2')
      expect(r[:starting_mac_address]).to be_nil
      expect(r[:secret_file]).to be_nil
      expect(r[:secret]).to be_nil
    end

    it 'accepts ensure running and stopped only' do
      expect(web[:ensure]).to eq(:running)
      expect(web(ensure: 'stopped')[:ensure]).to eq(:stopped)
      expect_invalid({ ensure: 'present' }, parameter(:ensure, 'Invalid value "present". Valid values are running, stopped.'))
    end

    it 'normalises IPv6 pool hosts and host names, and accepts a single host as a string' do
      expect(web(pool: ['2001:DB8::70', 'Host1.Example.org'])[:pool]).to eq(['2001:db8::70', 'host1.example.org'])
      expect(web(pool: '10.0.0.70')[:pool]).to eq(['10.0.0.70'])
    end

    it 'munges the sizes from strings, as the seed wrote them' do
      r = web(vm_mem: '2097152', vm_ncpu: '2')
      expect(r[:vm_mem]).to eq(2_097_152)
      expect(r[:vm_ncpu]).to eq(2)
    end

    it 'lower-cases starting_mac_address' do
      expect(web(starting_mac_address: '52:54:00:0A:0B:0C')[:starting_mac_address]).to eq('52:54:00:0a:0b:0c')
    end

    it 'accepts hypervisor URIs with %{host}' do
      expect(web(hypervisor: 'qemu+tcp://%{host}/system')[:hypervisor]).to eq('qemu+tcp://%{host}/system')
    end

    it 'accepts puppet:/// URIs for the template and the lists' do
      r = with_repo_modules do
        web(vm_domain: 'puppet:///modules/web/template-test.xml',
            server: ['puppet:///modules/web/server-ips.txt', 'puppet:///modules/web/server-imgs.txt'])
      end
      expect(r[:server]).to eq(['puppet:///modules/web/server-ips.txt', 'puppet:///modules/web/server-imgs.txt'])
    end
  end

  describe 'seed manifests' do
    it "accepts the seed's init-web2.pp shapes (role arrays, string vm_mem, legacy parameters)" do
      r = nil
      logs = capture_logs do
        r = described_class.new(
          title: 'myweb', ensure: 'running',
          balancer: ['10.0.0.75', '/var/tmp/lucid-web1.img'],
          server: [fixture('server-ips.txt'), fixture('server-imgs.txt')],
          database: ['10.0.0.77', '/var/tmp/lucid-db.img'],
          vm_domain: fixture('template-seed.xml'),
          pool: ['10.0.0.70'],
          vm_mem: '1048576', vm_ncpu: '1',
          starting_mac_address: '52:54:00:01:00:00',
          pm_user: 'operator', pm_password: 'pm-secret-123', vm_user: 'root', root_password: 'root-secret-456'
        )
      end
      expect(r[:vm_mem]).to eq(1_048_576)
      warnings = logs.select { |l| l.level == :warning }.map(&:message)
      expect(warnings).to include(a_string_matching(/\Apm_user is ignored/), a_string_matching(/\Apm_password is ignored/),
                                  a_string_matching(/\Avm_user is ignored/), a_string_matching(/\Aroot_password is ignored/))
      expect(logs.map(&:message).join("\n")).not_to include('pm-secret-123', 'root-secret-456')
    end

    it 'accepts a stop manifest with only pool and ensure => stopped' do
      r = described_class.new(title: 'myweb', pool: ['10.0.0.70'], ensure: 'stopped')
      expect(r[:ensure]).to eq(:stopped)
      expect(r[:vm_domain]).to be_nil
    end

    it 'accepts a resource with no ensure and no pool (puppet resource web)' do
      expect(described_class.new(title: 'myweb')[:pool]).to be_nil
    end
  end

  describe 'secrets' do
    it 'keeps secret and the legacy passwords Sensitive and out of the logs' do
      r = nil
      logs = capture_logs { r = web(secret: 'a-very-long-cloud-secret', root_password: 'root-secret-456') }
      expect(r[:secret]).to be_a(Puppet::Pops::Types::PSensitiveType::Sensitive)
      expect(r[:secret].unwrap).to eq('a-very-long-cloud-secret')
      expect(r[:root_password]).to be_a(Puppet::Pops::Types::PSensitiveType::Sensitive)
      expect(r.parameter(:secret).sensitive).to be(true)
      shown = [r[:secret].to_s, r[:secret].inspect, r.parameter(:secret).value.to_s, r.to_s].join("\n")
      expect(shown).not_to include('a-very-long-cloud-secret')
      expect(logs.map(&:message).join("\n")).not_to include('a-very-long-cloud-secret', 'root-secret-456')
    end

    it 'does not warn that a Sensitive parameter cannot be redacted' do
      resource = Puppet::Resource.new(:web, 'myweb', parameters: web_attrs(secret: 'a-very-long-cloud-secret').except(:title))
      resource.sensitive_parameters = [:secret]
      logs = capture_logs { described_class.new(resource) }
      expect(logs.map(&:message).grep(/Unable to mark/)).to be_empty
    end

    it 'rejects a short secret without showing it' do
      expect_invalid({ secret: 'short-secret' }, parameter(:secret, 'must be at least 16 characters long (value redacted)'))
    end
  end

  describe 'attribute validation' do
    it 'rejects a cloud name that cannot name domains' do
      expect_invalid({ title: 'my web' }, parameter(:name, "'my web' is not a valid cloud name " \
                                                           '(1 to 40 of A-Z a-z 0-9 _ . -, starting with a letter or digit)', 'my web'))
      expect_invalid({ title: 'a' * 41 }, /Parameter name failed .* is not a valid cloud name/)
      expect_invalid({ title: '-web' }, /'-web' is not a valid cloud name/)
    end

    it 'rejects malformed pools' do
      expect_invalid({ pool: [] }, parameter(:pool, 'must list at least one host'))
      expect_invalid({ pool: ['10.0.0.300'] }, parameter(:pool, "'10.0.0.300' is not a host name or IP address"))
      expect_invalid({ pool: ['10.0.0'] }, parameter(:pool, "'10.0.0' is not a host name or IP address"))
      expect_invalid({ pool: ['bad_host!'] }, parameter(:pool, "'bad_host!' is not a host name or IP address"))
      expect_invalid({ pool: ['10.0.0.70', 'h1', '10.0.0.70'] }, parameter(:pool, 'lists 10.0.0.70 twice'))
      expect_invalid({ pool: ['H1.example.org', 'h1.example.org'] }, parameter(:pool, 'lists h1.example.org twice'))
    end

    it 'requires pool whenever ensure is set' do
      expect_invalid({ pool: nil }, validation("pool: is required: the hosts that run the VMs, e.g. pool => ['10.0.0.70']"))
      expect { described_class.new(title: 'myweb', ensure: 'stopped') }
        .to raise_error(Puppet::ResourceError, /pool: is required/)
    end

    it 'rejects bad single-node role values' do
      expect_invalid({ balancer: ['10.0.0.300', '/img/lb.qcow2'] }, parameter(:balancer, "'10.0.0.300' is not an IP address"))
      expect_invalid({ database: ['10.0.0', '/img/db.qcow2'] }, parameter(:database, "'10.0.0' is not an IP address"))
      expect_invalid({ balancer: ['10.0.0.2', 'lb.qcow2'] }, parameter(:balancer, "image 'lb.qcow2' must be an absolute path"))
      expect_invalid({ balancer: ['10.0.0.2'] }, parameter(:balancer, 'expects [ip, image], got ["10.0.0.2"]'))
      expect_invalid({ balancer: '10.0.0.2' }, parameter(:balancer, 'expects [ip, image], got "10.0.0.2"'))
    end

    it 'rejects bad multi-node role values' do
      expect_invalid({ server: ['10.0.0.5', '/img/web.qcow2'] },
                     parameter(:server, "expects [ips_file, images_file], got an IP address '10.0.0.5': " \
                                        'list the IP addresses in a file, one a line'))
      expect_invalid({ server: ['ips.txt', '/x/imgs.txt'] },
                     parameter(:server, "ips file 'ips.txt' must be an absolute path or a puppet:/// URI"))
      expect_invalid({ server: ['/x/ips.txt', 'http://example.org/imgs.txt'] },
                     parameter(:server, "images file 'http://example.org/imgs.txt' must be an absolute path or a puppet:/// URI"))
    end

    it 'rejects bad sizes' do
      expect_invalid({ vm_mem: 512 }, parameter(:vm_mem, '512 is out of range 1024..17179869184'))
      expect_invalid({ vm_mem: '1G' }, parameter(:vm_mem, '"1G" is not an integer'))
      expect_invalid({ vm_ncpu: 0 }, parameter(:vm_ncpu, '0 is out of range 1..256'))
      expect_invalid({ vm_ncpu: '257' }, parameter(:vm_ncpu, '"257" is out of range 1..256'))
    end

    it 'rejects bad MAC addresses' do
      expect_invalid({ starting_mac_address: '52:54:00:01:00' },
                     parameter(:starting_mac_address, '"52:54:00:01:00" is not a MAC address (xx:xx:xx:xx:xx:xx)'))
      expect_invalid({ starting_mac_address: '01:00:5e:00:00:01' },
                     parameter(:starting_mac_address, "'01:00:5e:00:00:01' is a multicast MAC address"))
      expect_invalid({ starting_mac_address: '00:00:00:00:00:00' },
                     parameter(:starting_mac_address, "'00:00:00:00:00:00' is the null MAC address"))
    end

    it 'rejects a starting_mac_address without room for every VM' do
      expect_invalid({ starting_mac_address: '52:54:00:ff:ff:fe' },
                     validation("starting_mac_address: '52:54:00:ff:ff:fe' leaves room for 2 MAC addresses " \
                                'before its prefix ends; the cloud has 4 VMs'))
    end

    it 'rejects bad hypervisor URIs' do
      expect_invalid({ hypervisor: 'qemu' },
                     parameter(:hypervisor, "'qemu' is not a libvirt URI (driver[+transport]://[host]/path)"))
      expect_invalid({ hypervisor: 'qemu+ssh://%{hostname}/system' },
                     parameter(:hypervisor, "'qemu+ssh://%{hostname}/system': unknown substitution %{hostname} (only %{host})"))
    end

    it 'rejects bad paths and names' do
      expect_invalid({ ssh_key: 'id_ed25519' }, parameter(:ssh_key, "'id_ed25519' must be an absolute path"))
      expect_invalid({ secret_file: 'secret' }, parameter(:secret_file, "'secret' must be an absolute path"))
      expect_invalid({ disk_pool_path: 'images' }, parameter(:disk_pool_path, "'images' must be an absolute path"))
      expect_invalid({ disk_pool: 'my pool' }, parameter(:disk_pool, "'my pool' is not a storage pool name"))
      expect_invalid({ image_format: 'vmdk' }, parameter(:image_format, 'Invalid value "vmdk". Valid values are qcow2, raw.'))
    end
  end

  describe 'health' do
    let(:all_keys) do
      { 'interval' => 2, 'timeout' => 1, 'retries' => 1, 'max_restarts' => 5, 'window' => 600,
        'backoff' => 1, 'backoff_max' => 60 }
    end

    it 'is not set by default (every role then has the daemon\'s defaults)' do
      expect(web[:health]).to be_nil
    end

    it 'munges seconds to whole milliseconds, rounding, and keeps the counts' do
      r = web(health: { 'default' => { 'interval' => 10 }, 'server' => all_keys })
      expect(r[:health]).to eq(
        'default' => { 'interval_ms' => 10_000 },
        'server' => { 'interval_ms' => 2000, 'timeout_ms' => 1000, 'retries' => 1, 'max_restarts' => 5,
                      'window_ms' => 600_000, 'backoff_ms' => 1000, 'backoff_max_ms' => 60_000 },
      )
      r = web(health: { 'database' => { 'interval' => 0.5, 'timeout' => 0.57, 'backoff' => 0.0006, 'backoff_max' => 0.0024,
                                         'retries' => 0 } })
      expect(r[:health]).to eq('database' => { 'interval_ms' => 500, 'timeout_ms' => 570, 'retries' => 0, 'backoff_ms' => 1,
                                               'backoff_max_ms' => 2 })
    end

    it 'accepts the bounds' do
      r = web(health: { 'server' => { 'interval' => 0.1, 'timeout' => 3600, 'retries' => 10, 'max_restarts' => 1000,
                                       'window' => 86_400, 'backoff' => 3600, 'backoff_max' => 86_400 } })
      expect(r[:health]['server']).to include('interval_ms' => 100, 'timeout_ms' => 3_600_000, 'backoff_max_ms' => 86_400_000)
    end

    it 'rejects a value that is not a Hash of roles' do
      expect_invalid({ health: ['server'] },
                     parameter(:health, "expects a Hash of role (or 'default') => { interval, timeout, retries, " \
                                        'max_restarts, window, backoff, backoff_max }, got ["server"]'))
      expect_invalid({ health: { 'server' => 5 } },
                     parameter(:health, 'server must be a Hash of interval, timeout, retries, max_restarts, window, ' \
                                        'backoff, backoff_max, got 5'))
      expect_invalid({ health: { 'Server' => {} } }, parameter(:health, "\"Server\" is not a role name or 'default'"))
    end

    it 'rejects an unknown key, listing the valid ones' do
      expect_invalid({ health: { 'server' => { 'intervall' => 1 } } },
                     parameter(:health, 'server: unknown key "intervall" (valid: interval, timeout, retries, ' \
                                        'max_restarts, window, backoff, backoff_max)'))
    end

    it 'rejects seconds that are not positive numbers, naming the role, the key and the value' do
      expect_invalid({ health: { 'server' => { 'interval' => 'x' } } },
                     parameter(:health, 'server.interval must be a number of seconds > 0, got "x"'))
      expect_invalid({ health: { 'server' => { 'interval' => '10' } } },
                     parameter(:health, 'server.interval must be a number of seconds > 0, got "10"'))
      expect_invalid({ health: { 'default' => { 'timeout' => 0 } } },
                     parameter(:health, 'default.timeout must be a number of seconds > 0, got 0'))
      expect_invalid({ health: { 'database' => { 'window' => -5 } } },
                     parameter(:health, 'database.window must be a number of seconds > 0, got -5'))
      expect_invalid({ health: { 'server' => { 'backoff' => -1 } } },
                     parameter(:health, 'server.backoff must be a number of seconds >= 0, got -1'))
      expect_invalid({ health: { 'server' => { 'backoff_max' => Float::INFINITY } } },
                     parameter(:health, 'server.backoff_max must be a number of seconds >= 0, got Infinity'))
      expect_invalid({ health: { 'server' => { 'interval' => nil } } },
                     parameter(:health, 'server.interval must be a number of seconds > 0, got nil'))
    end

    it 'rejects seconds out of range' do
      expect_invalid({ health: { 'server' => { 'interval' => 0.05 } } },
                     parameter(:health, 'server.interval must be 0.1..86400 seconds, got 0.05'))
      expect_invalid({ health: { 'server' => { 'interval' => 86_401 } } },
                     parameter(:health, 'server.interval must be 0.1..86400 seconds, got 86401'))
      expect_invalid({ health: { 'server' => { 'timeout' => 3601 } } },
                     parameter(:health, 'server.timeout must be 0.1..3600 seconds, got 3601'))
      expect_invalid({ health: { 'server' => { 'window' => 0.5 } } },
                     parameter(:health, 'server.window must be 1..86400 seconds, got 0.5'))
      expect_invalid({ health: { 'server' => { 'backoff' => 3601 } } },
                     parameter(:health, 'server.backoff must be 0..3600 seconds, got 3601'))
    end

    it 'rejects counts that are not integers in range' do
      expect_invalid({ health: { 'server' => { 'retries' => 1.5 } } },
                     parameter(:health, 'server.retries must be an integer 0..10, got 1.5'))
      expect_invalid({ health: { 'server' => { 'retries' => 11 } } },
                     parameter(:health, 'server.retries must be an integer 0..10, got 11'))
      expect_invalid({ health: { 'balancer' => { 'max_restarts' => 0 } } },
                     parameter(:health, 'balancer.max_restarts must be an integer 1..1000, got 0'))
      expect_invalid({ health: { 'balancer' => { 'max_restarts' => '5' } } },
                     parameter(:health, 'balancer.max_restarts must be an integer 1..1000, got "5"'))
    end

    it 'rejects a backoff above its cap, the default cap included, and for a role under default' do
      expect_invalid({ health: { 'server' => { 'backoff' => 10, 'backoff_max' => 5 } } },
                     parameter(:health, 'server.backoff_max must be >= backoff (10 seconds), got 5'))
      expect_invalid({ health: { 'default' => { 'backoff' => 120 } } },
                     parameter(:health, 'default.backoff_max must be >= backoff (120 seconds), got 60 (the default)'))
      expect_invalid({ health: { 'default' => { 'backoff' => 30 }, 'server' => { 'backoff_max' => 20 } } },
                     parameter(:health, 'server.backoff_max must be >= backoff (30 seconds), got 20'))
      expect(web(health: { 'server' => { 'backoff' => 120, 'backoff_max' => 120 } })[:health]['server'])
        .to eq('backoff_ms' => 120_000, 'backoff_max_ms' => 120_000)
    end

    it 'rejects a role that the type does not have, at the cross-attribute check' do
      expect_invalid({ health: { 'cache' => { 'retries' => 2 } } },
                     validation("health: names cache, not a role (balancer, server, database; or 'default' for every role)"))
    end

    it 'accepts a role of the type that the resource does not declare, and health in a stop manifest' do
      r = described_class.new(title: 'myweb', pool: ['10.0.0.70'], ensure: 'stopped', health: { 'server' => { 'retries' => 2 } })
      expect(r[:health]).to eq('server' => { 'retries' => 2 })
      expect { described_class.new(title: 'myweb', pool: ['10.0.0.70'], ensure: 'stopped', health: { 'db' => {} }) }
        .to raise_error(Puppet::ResourceError, /health: names db, not a role/)
    end
  end

  describe 'ensure => running requirements' do
    it 'requires vm_domain' do
      expect_invalid({ vm_domain: nil }, validation('vm_domain: is required for ensure => running'))
    end

    it 'requires every role' do
      expect_invalid({ server: nil, database: nil },
                     validation('server, database: are required for ensure => running ' \
                                '(server => [ips_file, images_file], database => [ip, image])'))
      expect_invalid({ balancer: nil }, validation('balancer: is required for ensure => running (balancer => [ip, image])'))
    end
  end

  describe 'ips and images files' do
    it 'names the line of a malformed IP address' do
      path = fixture('ips-bad-line3.txt')
      expect_invalid({ server: [path, fixture('server-imgs.txt')] },
                     validation("server: line 3 of #{path}: '10.0.0.300' is not an IP address"))
      path = fixture('ips-truncated.txt')
      expect_invalid({ server: [path, fixture('imgs-one.txt')] },
                     validation("server: line 1 of #{path}: '10.0.0' is not an IP address"))
    end

    it 'names the line of a relative image path' do
      path = fixture('imgs-relative.txt')
      expect_invalid({ server: [fixture('server-ips.txt'), path] },
                     validation("server: line 2 of #{path}: image 'images/b.qcow2' must be an absolute path"))
    end

    it 'rejects files of different lengths' do
      ips = fixture('server-ips.txt')
      imgs = fixture('imgs-three.txt')
      expect_invalid({ server: [ips, imgs] }, validation("server: #{ips} lists 2 IP addresses but #{imgs} lists 3 images"))
    end

    it 'rejects an empty list' do
      ips = fixture('ips-empty.txt')
      expect_invalid({ server: [ips, fixture('ips-empty.txt')] }, validation("server: #{ips} lists no IP address"))
    end

    it 'rejects an IP address listed twice in a role' do
      ips = fixture('ips-dup.txt')
      expect_invalid({ server: [ips, fixture('imgs-three.txt')] },
                     validation("server: line 3 of #{ips}: 10.0.0.5 is listed twice (also line 1 of #{ips})"))
    end

    it 'rejects a VM address that is also a pool host' do
      expect_invalid({ pool: ['10.0.0.3'] }, validation('database: 10.0.0.3 is a pool host; a VM needs an address of its own'))
      ips = fixture('ips-with-pool.txt')
      expect_invalid({ pool: ['10.0.0.70'], server: [ips, fixture('server-imgs.txt')] },
                     validation("server: line 1 of #{ips}: 10.0.0.70 is a pool host; a VM needs an address of its own"))
    end

    it 'rejects one IP address in two roles with different images' do
      ips = fixture('ips-with-db.txt')
      expect_invalid({ server: [ips, fixture('server-imgs.txt')] },
                     validation("database: 10.0.0.3 is also the server VM 0 with image /var/lib/cloud/images/web-server.qcow2: " \
                                'one VM has one image, not /var/lib/cloud/images/web-db.qcow2'))
    end

    it 'rejects missing, unreadable and non-regular files' do
      expect_invalid({ server: ['/nonexistent/ips.txt', fixture('server-imgs.txt')] },
                     validation('server: /nonexistent/ips.txt does not exist'))
      expect_invalid({ server: [FIXTURES, fixture('server-imgs.txt')] },
                     validation("server: #{FIXTURES} is not a regular file"))
      allow(File).to receive(:readable?).and_call_original
      allow(File).to receive(:readable?).with(fixture('server-imgs.txt')).and_return(false)
      expect_invalid({}, validation("server: #{fixture('server-imgs.txt')} is not readable"))
    end

    it 'rejects files that are not UTF-8 text or too large to be lists' do
      path = fixture('ips-latin1.txt')
      expect_invalid({ server: [path, fixture('server-imgs.txt')] }, validation("server: #{path} is not valid UTF-8 text"))
      allow(File).to receive(:size).and_call_original
      allow(File).to receive(:size).with(fixture('server-ips.txt')).and_return(2**20 + 1)
      expect_invalid({}, validation("server: #{fixture('server-ips.txt')} is larger than 1048576 bytes"))
    end

    it 'rejects a puppet:/// URI the file server does not have' do
      with_repo_modules do
        expect(web(server: ['puppet:///modules/web/server-ips.txt', fixture('server-imgs.txt')])[:server]).not_to be_nil
      end
      with_repo_modules do
        expect_invalid({ server: ['puppet:///modules/web/no-such-ips.txt', fixture('server-imgs.txt')] },
                       validation('server: puppet:///modules/web/no-such-ips.txt was not found by the file server'))
      end
    end
  end

  describe 'vm_domain template' do
    it 'accepts the seed ERB forms' do
      expect(web(vm_domain: fixture('template-seed.xml'))[:vm_domain]).to eq(fixture('template-seed.xml'))
    end

    it 'rejects a relative path' do
      expect_invalid({ vm_domain: 'template.xml' },
                     parameter(:vm_domain, "template 'template.xml' must be an absolute path or a puppet:/// URI"))
    end

    it 'rejects a missing template file' do
      expect_invalid({ vm_domain: '/nonexistent/template.xml' }, validation('vm_domain: /nonexistent/template.xml does not exist'))
    end

    it 'rejects a template without a required placeholder' do
      path = fixture('template-no-vcpus.xml')
      expect_invalid({ vm_domain: path }, validation("vm_domain: #{path}: missing placeholder {{vcpus}}"))
      path = fixture('template-vcpus-in-comment.xml')
      expect_invalid({ vm_domain: path }, validation("vm_domain: #{path}: missing placeholder {{vcpus}}"))
    end

    it 'rejects an unknown placeholder, naming it' do
      path = fixture('template-unknown.xml')
      expect_invalid({ vm_domain: path }, /\AValidation of Web\[myweb\] failed: vm_domain: #{Regexp.escape(path)}: unknown placeholder \{\{rack\}\} \(known: name, uuid/)
    end

    it 'rejects a root element other than <domain>' do
      path = fixture('template-network.xml')
      expect_invalid({ vm_domain: path }, validation("vm_domain: #{path}: root element is <network>, not <domain>"))
    end

    it 'rejects ERB code beyond the seed placeholders' do
      path = fixture('template-erb-code.xml')
      expect_invalid({ vm_domain: path }, validation("vm_domain: #{path}: unsupported ERB code <% if vm[:gpu] %>"))
    end
  end

  describe 'files created by the catalog' do
    let(:dir) { Dir.mktmpdir('cloud-spec') }
    let(:ips) { File.join(dir, 'server-ips.txt') }
    let(:imgs) { File.join(dir, 'server-imgs.txt') }

    after(:each) { FileUtils.rm_rf(dir) }

    def catalog_with_files(*paths)
      catalog = Puppet::Resource::Catalog.new('node', Puppet.lookup(:current_environment))
      paths.each { |path| catalog.add_resource(Puppet::Type.type(:file).new(path: path, ensure: 'file', content: "x\n")) }
      catalog
    end

    it 'defers the check of a missing list that a file resource creates, and autorequires it' do
      catalog = catalog_with_files(ips, imgs)
      resource = web(server: [ips, imgs], catalog: catalog)
      catalog.add_resource(resource)
      expect(resource.cloud_deferred).to eq([['server', ips], ['server', imgs]])
      expect { resource.finish }.not_to raise_error
      required = resource.autorequire.map { |edge| edge.source.ref }
      expect(required).to contain_exactly("File[#{ips}]", "File[#{imgs}]")
    end

    it 'fails at finish when no file resource manages the missing list' do
      catalog = catalog_with_files(ips)
      resource = web(server: [ips, imgs], catalog: catalog)
      catalog.add_resource(resource)
      expect { resource.finish }.to raise_error(Puppet::ResourceError,
                                                "Web[myweb]: server: #{imgs} does not exist and no file resource of the catalog manages it")
    end

    it 'still fails at once without a catalog' do
      expect_invalid({ server: [ips, imgs] }, validation("server: #{ips} does not exist"))
    end
  end
end
