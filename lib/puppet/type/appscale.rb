# frozen_string_literal: true

require_relative '../../puppet_x/cloud/common'

Puppet::Type.newtype(:appscale) do
  @doc = <<~DOC
    An AppScale deployment as one distributed resource. Either the default deployment, a
    `controller` VM and `servers` VMs:

        appscale { 'myappscale':
          controller => ['10.0.0.20', '/var/lib/cloud/images/appscale.qcow2'],
          servers    => ['/etc/cloud/myappscale/servers-ips.txt', '/etc/cloud/myappscale/servers-imgs.txt'],
          vm_domain  => 'puppet:///modules/appscale/template-test.xml',
          pool       => ['10.0.0.70'],
          ensure     => running,
        }

    or a custom one: `master` and `login` (`[ip, image]`), `appengine`, `database` and `open`
    (`[ips_file, images_file]`), optionally `zookeeper` and `memcache`. One IP may hold several
    roles. The controller or master is set up first, then the others.
  DOC

  # Which roles make a deployment: all of DEFAULT, or all of CUSTOM (+ any of OPTIONAL).
  deployment = Class.new(PuppetX::Cloud::Layout) do
    default_roles = ['controller', 'servers'].freeze
    custom_roles = ['master', 'appengine', 'database', 'login', 'open'].freeze
    optional_roles = ['zookeeper', 'memcache'].freeze

    define_method(:check) do |resource, running|
      given = shapes.keys.reject { |name| resource[name.to_sym].nil? }
      default = given & default_roles
      custom = given & (custom_roles + optional_roles)
      unless default.empty? || custom.empty?
        raise PuppetX::Cloud::Invalid.new(
          custom.join(', '),
          "cannot be combined with #{default.join(' and ')}: use the default deployment " \
          '(controller, servers) or a custom one (master, appengine, database, login, open; ' \
          'optionally zookeeper, memcache)',
        )
      end
      next unless running
      if given.empty?
        raise PuppetX::Cloud::Invalid.new(
          'controller, servers',
          'are required for ensure => running (the default deployment; or master, appengine, ' \
          'database, login and open for a custom one)',
        )
      end
      missing = default.empty? ? custom_roles - custom : default_roles - default
      next if missing.empty?
      kind = if default.empty?
               'a custom deployment (master, appengine, database, login, open)'
             else
               'the default deployment (controller, servers)'
             end
      raise PuppetX::Cloud::Invalid.new(missing.join(', '), "#{missing.size == 1 ? 'is' : 'are'} required by #{kind}")
    end

    define_method(:options) do |resource|
      kind = if default_roles.any? { |name| resource[name.to_sym] }
               'default'
             elsif (custom_roles + optional_roles).any? { |name| resource[name.to_sym] }
               'custom'
             end
      { 'deployment' => kind, 'app_email' => resource[:app_email] }
    end
  end

  custom_after = ['master'].freeze
  PuppetX::Cloud::Common.define(
    self,
    deployment.new(
      shapes: {
        'controller' => :single, 'servers' => :multi,
        'master' => :single, 'appengine' => :multi, 'database' => :multi, 'login' => :single,
        'open' => :multi, 'zookeeper' => :multi, 'memcache' => :multi
      },
      order: ['controller', 'master', 'servers', 'zookeeper', 'database', 'login', 'appengine', 'memcache', 'open'],
      after: {
        'servers' => ['controller'],
        'zookeeper' => custom_after, 'database' => custom_after, 'login' => custom_after,
        'appengine' => custom_after, 'memcache' => custom_after, 'open' => custom_after
      },
      composites: {
        'controller' => ['shadow', 'load_balancer', 'database', 'login', 'zookeeper'],
        'servers' => ['appengine', 'database', 'load_balancer'],
        'master' => ['shadow', 'load_balancer', 'zookeeper'],
      },
      recipes: 'puppet:///modules/appscale/roles',
    ),
    legacy: {
      ip_file: 'the seed\'s YAML ips file; use the role attributes',
      img_file: 'the seed\'s YAML images file; use the role attributes',
    },
  )

  PuppetX::Cloud::Common.role(self, :controller, <<~DESC)
    Default deployment: the controller VM, `[ip, image]` (shadow, load balancer, database,
    login and zookeeper).
  DESC
  PuppetX::Cloud::Common.role(self, :servers, <<~DESC)
    Default deployment: the server VMs, `[ips_file, images_file]` (appengine, database, load
    balancer): two files (absolute paths or `puppet:///` URIs), one entry a line.
  DESC
  PuppetX::Cloud::Common.role(self, :master, <<~DESC)
    Custom deployment: the master VM, `[ip, image]` (shadow, load balancer, zookeeper).
  DESC
  PuppetX::Cloud::Common.role(self, :appengine, <<~DESC)
    Custom deployment: application server VMs, `[ips_file, images_file]`.
  DESC
  PuppetX::Cloud::Common.role(self, :database, <<~DESC)
    Custom deployment: database VMs, `[ips_file, images_file]`.
  DESC
  PuppetX::Cloud::Common.role(self, :login, <<~DESC)
    Custom deployment: the login VM, `[ip, image]`.
  DESC
  PuppetX::Cloud::Common.role(self, :open, <<~DESC)
    Custom deployment: spare VMs AppScale may use for any role, `[ips_file, images_file]`.
  DESC
  PuppetX::Cloud::Common.role(self, :zookeeper, <<~DESC)
    Custom deployment, optional: zookeeper VMs, `[ips_file, images_file]`.
  DESC
  PuppetX::Cloud::Common.role(self, :memcache, <<~DESC)
    Custom deployment, optional: memcache VMs, `[ips_file, images_file]`.
  DESC

  newparam(:app_email) do
    desc 'E-mail address of the AppScale administrator account.'
    validate do |value|
      next if value.is_a?(String) && value.match?(/\A[^@\s]+@[^@\s]+\.[^@\s]+\z/)
      raise ArgumentError, "#{PuppetX::Cloud::Validate.shown(value)} is not an e-mail address"
    end
  end

  newparam(:app_password) do
    desc 'Password of the AppScale administrator account (Sensitive, at least 6 characters). Never logged.'
    sensitive true
    validate do |value|
      password = PuppetX::Cloud::Common.unwrap(value)
      raise ArgumentError, 'must be a string (value redacted)' unless password.is_a?(String)
      raise ArgumentError, 'must be at least 6 characters long (value redacted)' if password.length < 6
    end
    munge { |value| PuppetX::Cloud::Common.sensitive(value) }
  end
end
