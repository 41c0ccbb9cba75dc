# frozen_string_literal: true

# The attributes every distributed type shares (name, ensure, vm_domain, pool, VM sizing,
# hypervisor, secrets, disk pool, recipes, health, the seed's legacy parameters) and the
# type-level validation that runs the spec builder before anything changes. A type calls
# `PuppetX::Cloud::Common.define(self, layout)` and then declares its role attributes with
# `PuppetX::Cloud::Common.role(self, name, desc)`.

require_relative 'validate'
require_relative 'layout'
require_relative 'spec'

module PuppetX
  module Cloud
    # Common attributes of the distributed types.
    module Common
      # Parameters whose values are secrets: kept as Sensitive, never logged.
      SENSITIVE = [:secret, :pm_password, :root_password, :app_password].freeze
      # The seed's parameters that no longer do anything; accepted so seed manifests still apply.
      LEGACY = {
        pm_user: 'pool hosts are reached by the cloudd daemons, not over SSH as a user',
        pm_password: 'pool hosts are reached by the cloudd daemons, not over SSH with a password',
        vm_user: 'guests are reached as root with ssh_key',
        root_password: 'guests are reached with ssh_key, never with a password',
      }.freeze

      # Instance methods mixed into each distributed type.
      module InstanceMethods
        # Local files named by the resource that did not exist at validation; File resources of
        # the catalog are expected to create them ([[attribute, path], ...]).
        attr_accessor :cloud_deferred

        # Secret parameters are redacted by being Sensitive values: no warning that a parameter
        # "cannot be automatically redacted".
        def set_sensitive_parameters(sensitive_parameters)
          own = sensitive_parameters & SENSITIVE
          own.each do |name|
            param = parameter(name)
            param.sensitive = true if param
          end
          super(sensitive_parameters - own)
        end

        # Called once the whole catalog is converted, before anything is applied: a file that was
        # missing at validation must be managed by a file resource of the catalog.
        def finish
          (cloud_deferred || []).each do |attribute, path|
            next if File.exist?(path) || catalog&.resource(:file, path)
            raise Puppet::ResourceError, "#{ref}: #{attribute}: #{path} does not exist " \
                                         'and no file resource of the catalog manages it'
          end
          super
        end
      end

      module_function

      def sensitive(value)
        return value if value.is_a?(Puppet::Pops::Types::PSensitiveType::Sensitive)
        Puppet::Pops::Types::PSensitiveType::Sensitive.new(value)
      end

      def unwrap(value)
        value.is_a?(Puppet::Pops::Types::PSensitiveType::Sensitive) ? value.unwrap : value
      end

      # Adds the common attributes, the validate block and autorequires to type.
      # legacy: the type's own ignored seed parameters (name => why), declared here too.
      def define(type, layout, legacy: {})
        all_legacy = LEGACY.merge(legacy).freeze
        type.include(InstanceMethods)
        type.define_singleton_method(:cloud_layout) { layout }
        type.define_singleton_method(:cloud_legacy) { all_legacy }
        define_name_and_ensure(type)
        define_placement(type)
        define_vm(type)
        define_access(type)
        define_health(type)
        define_legacy(type, legacy.keys)
        type.validate { PuppetX::Cloud::Common.validate(self) }
        type.autorequire(:file) { PuppetX::Cloud::Common.local_files(self) }
      end

      # Declares a role attribute of type (shape from the type's layout).
      def role(type, name, desc)
        shape = type.cloud_layout.shapes.fetch(name.to_s)
        type.newparam(name) do
          desc desc
          validate { |value| PuppetX::Cloud::Validate.role!(value, shape) }
          munge { |value| PuppetX::Cloud::Validate.role!(value, shape) }
        end
      end

      def validate(resource)
        resource.class.cloud_legacy.each do |name, why|
          next if resource[name].nil?
          resource.warning("#{name} is ignored (#{why}); remove it from the manifest")
        end
        resource.cloud_deferred = []
        return if resource[:ensure].nil?
        resource.cloud_deferred = Spec.check(resource)
      end

      # Local files the resource reads: a file resource creating them must be applied first.
      def local_files(resource)
        files = [resource[:vm_domain]]
        resource.class.cloud_layout.declared(resource).each do |role|
          files.concat(role.value) if role.shape == :multi
        end
        files.compact.select { |f| Validate.absolute_path?(f) }
      end

      def define_name_and_ensure(type)
        type.newparam(:name, namevar: true) do
          desc "The cloud's name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,39}`. VMs are named `<name>-<role>-<n>`."
          validate do |value|
            next if value.is_a?(String) && value.match?(PuppetX::Cloud::Validate::NAME_RE)
            raise ArgumentError, "#{PuppetX::Cloud::Validate.shown(value)} is not a valid cloud name " \
                                 '(1 to 40 of A-Z a-z 0-9 _ . -, starting with a letter or digit)'
          end
        end

        type.newproperty(:ensure) do
          desc <<~DESC
            `running`: every VM of the cloud is defined and running and its roles are set up; the
            leader keeps it so. `stopped`: nothing of the cloud remains on any pool host. The
            current value is the real state: `running` only when the cloud has converged to this
            spec, `stopped` when nothing of it exists, otherwise `degraded` (so Puppet acts).
          DESC
          newvalue(:running) { provider.start }
          newvalue(:stopped) { provider.stop }

          # The event of a start or stop names each slot it changed, with its host.
          def change_to_s(current, newvalue)
            base = super
            changes = provider.respond_to?(:slot_changes) ? provider.slot_changes : []
            changes.empty? ? base : "#{base}: #{changes.join('; ')}"
          end
        end
      end

      def define_placement(type)
        type.newparam(:vm_domain) do
          desc <<~DESC
            libvirt domain XML template for the VMs: an absolute path or a `puppet:///modules/...`
            URI (fetched through Puppet's file serving). It must contain the placeholders
            #{PuppetX::Cloud::Validate::REQUIRED_PLACEHOLDERS.map { |p| "`{{#{p}}}`" }.join(', ')}
            (the seed's `<%= vm[:name] %>` ERB forms are accepted); optional:
            #{PuppetX::Cloud::Validate::OPTIONAL_PLACEHOLDERS.map { |p| "`{{#{p}}}`" }.join(', ')}.
            Required for `ensure => running`.
          DESC
          validate { |value| PuppetX::Cloud::Validate.source!(value, 'template') }
        end

        type.newparam(:pool) do
          desc <<~DESC
            The physical hosts that run the VMs (IP addresses or host names), in priority order:
            the first live host leads. Non-empty, no duplicates. The same manifest is applied on
            every pool host.
          DESC
          validate do |value|
            hosts = Array(value)
            raise ArgumentError, 'must list at least one host' if hosts.empty?
            canonical = hosts.map { |host| PuppetX::Cloud::Validate.host!(host) }
            dup = canonical.detect { |host| canonical.count(host) > 1 }
            raise ArgumentError, "lists #{dup} twice" if dup
          end
          munge { |value| Array(value).map { |host| PuppetX::Cloud::Validate.host!(host) } }
        end

        type.newparam(:hypervisor) do
          desc <<~DESC
            libvirt URI of each pool host's hypervisor; `%{host}` is replaced by the pool host
            (e.g. `qemu+tcp://%{host}/system`). The default, libvirt's test driver, runs the whole
            cloud on one machine without VMs.
          DESC
          defaultto 'test:///default'
          validate do |value|
            unless value.is_a?(String) && value.match?(%r{\A[a-z][a-z0-9+.-]*://[^\s]*\z})
              raise ArgumentError, "#{PuppetX::Cloud::Validate.shown(value)} is not a libvirt URI (driver[+transport]://[host]/path)"
            end
            bad = value.scan(/%\{([^}]*)\}/).flatten - ['host']
            raise ArgumentError, "'#{value}': unknown substitution %{#{bad.first}} (only %{host})" unless bad.empty?
          end
        end
      end

      def define_vm(type)
        type.newparam(:vm_mem) do
          desc 'Memory of each VM in KiB (integer >= 1024; a decimal string is accepted).'
          defaultto 1_048_576
          validate { |value| PuppetX::Cloud::Validate.integer!(value, 1024, 2**34) }
          munge { |value| PuppetX::Cloud::Validate.integer!(value, 1024, 2**34) }
        end

        type.newparam(:vm_ncpu) do
          desc 'Virtual CPUs of each VM (1..256; a decimal string is accepted).'
          defaultto 1
          validate { |value| PuppetX::Cloud::Validate.integer!(value, 1, 256) }
          munge { |value| PuppetX::Cloud::Validate.integer!(value, 1, 256) }
        end

        type.newparam(:starting_mac_address) do
          desc <<~DESC
            First MAC address handed out (`xx:xx:xx:xx:xx:xx`, unicast); the VMs get consecutive
            addresses. Default: stable MACs derived from the cloud and slot names.
          DESC
          validate { |value| PuppetX::Cloud::Validate.mac!(value) }
          munge { |value| PuppetX::Cloud::Validate.mac!(value) }
        end

        type.newparam(:disk_pool) do
          desc 'libvirt storage pool that holds the per-VM copy-on-write disks.'
          defaultto 'cloud'
          validate do |value|
            next if value.is_a?(String) && value.match?(/\A[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\z/)
            raise ArgumentError, "#{PuppetX::Cloud::Validate.shown(value)} is not a storage pool name"
          end
        end

        type.newparam(:disk_pool_path) do
          desc 'Directory of `disk_pool` when the pool must be created.'
          defaultto '/var/lib/libvirt/images/cloud'
          validate { |value| PuppetX::Cloud::Common.absolute!(value) }
        end

        type.newparam(:image_format) do
          desc 'Format of the base images: `qcow2` or `raw`.'
          newvalues(:qcow2, :raw)
          defaultto :qcow2
          munge { |value| value.to_s }
        end
      end

      def define_access(type)
        type.newparam(:ssh_key) do
          desc 'Private SSH key (ed25519) used to reach the guests.'
          defaultto '/etc/cloud/ssh/id_ed25519'
          validate { |value| PuppetX::Cloud::Common.absolute!(value) }
        end

        type.newparam(:secret_file) do
          desc 'Root-only file holding the per-cloud secret that authenticates the pool daemons.'
          validate { |value| PuppetX::Cloud::Common.absolute!(value) }
        end

        type.newparam(:recipes) do
          desc <<~DESC
            Where the role recipes are: a directory (absolute path, or a `puppet:///modules/...`
            URI) with, for each role, `<role>/setup.sh`, `start.sh`, `check.sh`, `stop.sh` (each
            optional), run in the role's guests over SSH with the cloud's facts (see the README,
            "Role recipes"). Default: the type's own (`web`: `puppet:///modules/web/roles`,
            `torque`: `puppet:///modules/torque/roles/<batch>`); the generic `cloud` has none.
            `none`: no steps at all.
          DESC
          validate do |value|
            next if value == 'none'
            PuppetX::Cloud::Validate.source!(value, 'directory')
          end
        end

        type.newparam(:peer_port) do
          desc <<~DESC
            The pool daemons' peer port (`cloudd --peer-port`, UDP for the election and TCP for
            commands). Only a machine outside the pool uses it, to find the leader and hand it
            the spec.
          DESC
          defaultto 7946
          validate { |value| PuppetX::Cloud::Validate.integer!(value, 1, 65_535) }
          munge { |value| PuppetX::Cloud::Validate.integer!(value, 1, 65_535) }
        end

        type.newparam(:secret) do
          desc <<~DESC
            The per-cloud secret itself (Sensitive, at least 16 characters), instead of
            `secret_file`: Puppet writes it to `/var/lib/cloud/secrets/<name>.key` (mode 0600,
            directory 0700; under `$CLOUD_STATE_DIR` if set), which the daemons then read, and
            removes that file after `ensure => stopped`. Never logged, never put in the spec.
          DESC
          sensitive true
          validate do |value|
            secret = PuppetX::Cloud::Common.unwrap(value)
            raise ArgumentError, 'must be a string (value redacted)' unless secret.is_a?(String)
            raise ArgumentError, 'must be at least 16 characters long (value redacted)' if secret.length < 16
          end
          munge { |value| PuppetX::Cloud::Common.sensitive(value) }
        end
      end

      def define_health(type)
        type.newparam(:health) do
          desc <<~DESC
            How the leader watches and repairs each role's VMs: a Hash of role name (or
            `default`, for every role without an entry of its own; a role's entry is merged over
            it) to a Hash with any of `interval` (seconds between two checks of a guest, default
            10), `timeout` (of one check, 5), `retries` (a failed check is run again this many
            times before a repair, 1), `max_restarts` (more repairs than this within `window`
            seconds is flapping, 5 in 600), `backoff` (seconds before the second repair in a
            row, doubling each time, 1) and `backoff_max` (its cap, 60). Seconds may be
            fractions (`0.5`); `retries` and `max_restarts` are integers. Ranges: `interval`
            0.1..86400, `timeout` 0.1..3600, `retries` 0..10, `max_restarts` 1..1000, `window`
            1..86400, `backoff` 0..3600, `backoff_max` 0..86400 and at least `backoff`.

            The leader runs each role's check step every `interval` in every running guest; a
            check failing `retries` + 1 times in a row is repaired: the role's start step again,
            then the domain restarted, then the VM re-placed on another host. More than
            `max_restarts` repairs within `window` is flapping: the repairs stop for a window and
            it is reported. Each key but `default` must be a role of the type (for `cloud`: a key
            of `roles`). Default: none given, every role has the defaults above.
          DESC
          validate { |value| PuppetX::Cloud::Validate.health!(value) }
          munge { |value| PuppetX::Cloud::Validate.health!(value) }
        end
      end

      def define_legacy(type, others)
        [:pm_user, :vm_user, *others].each do |name|
          type.newparam(name) do
            desc "Ignored (the seed's #{name}): accepted with a warning so seed manifests still apply."
          end
        end
        [:pm_password, :root_password].each do |name|
          type.newparam(name) do
            desc "Ignored (the seed's #{name}, Sensitive): accepted with a warning, never logged."
            sensitive true
            munge { |value| PuppetX::Cloud::Common.sensitive(value) }
          end
        end
      end

      def absolute!(value)
        return if Validate.absolute_path?(value)
        raise ArgumentError, "#{Validate.shown(value)} must be an absolute path"
      end
    end
  end
end
