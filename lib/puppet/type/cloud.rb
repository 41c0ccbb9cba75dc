# frozen_string_literal: true

require_relative '../../puppet_x/cloud/common'

Puppet::Type.newtype(:cloud) do
  @doc = <<~DOC
    A distributed resource with roles of your own: each role is `[ip, image]` (one VM) or
    `[ips_file, images_file]` (one VM per line), told apart by element 0 being an IP address.
    Roles are set up in `role_order` (default: the order of `roles`), each after the previous.

        cloud { 'mycluster':
          roles      => {
            'store'  => ['10.0.0.30', '/var/lib/cloud/images/store.qcow2'],
            'worker' => ['/etc/cloud/mycluster/worker-ips.txt', '/etc/cloud/mycluster/worker-imgs.txt'],
          },
          role_order => ['store', 'worker'],
          vm_domain  => '/etc/cloud/mycluster/template.xml',
          pool       => ['10.0.0.70', '10.0.0.71'],
          ensure     => running,
        }
  DOC

  # Roles come from the `roles` hash instead of one attribute per role.
  generic = Class.new(PuppetX::Cloud::Layout) do
    def declared(resource)
      (resource[:roles] || {}).map do |name, value|
        PuppetX::Cloud::Layout::Role.new(name, PuppetX::Cloud::Validate.role_shape(value), value, "roles: #{name}")
      end
    end

    # The keys of roles; not known without them (a stop manifest).
    def role_names(resource)
      resource[:roles]&.keys
    end

    def check(resource, running)
      names = (resource[:roles] || {}).keys
      raise PuppetX::Cloud::Invalid.new('roles', 'is required for ensure => running') if running && names.empty?
      order = resource[:role_order]
      return if order.nil?
      unknown = order - names
      unless unknown.empty?
        raise PuppetX::Cloud::Invalid.new('role_order', "names #{unknown.join(', ')}, not a key of roles " \
                                                        "(#{names.empty? ? 'none' : names.join(', ')})")
      end
      missing = names - order
      return if missing.empty?
      raise PuppetX::Cloud::Invalid.new('role_order', "does not list #{missing.join(', ')}: list every role of roles")
    end

    # Each role is set up after the one before it.
    def order(names, resource = nil)
      ordered = (resource && resource[:role_order]) || names
      ordered = ordered.select { |name| names.include?(name) }
      ordered.each_with_index.map { |name, i| { 'name' => name, 'after' => i.zero? ? [] : [ordered[i - 1]] } }
    end
  end

  PuppetX::Cloud::Common.define(self, generic.new(shapes: {}, order: []))

  newparam(:roles) do
    desc <<~DESC
      Hash of role name (`[a-z][a-z0-9_]*`) to `[ip, image]` (one VM: IP address, absolute path
      of its disk image) or `[ips_file, images_file]` (absolute paths or `puppet:///` URIs of two
      files with one IP address, respectively one image path, a line). Required for
      `ensure => running`.
    DESC
    validate do |value|
      raise ArgumentError, "expects a Hash of role => [ip, image] or [ips_file, images_file], got #{value.inspect}" unless value.is_a?(Hash)
      value.each do |name, role|
        unless name.is_a?(String) && name.match?(PuppetX::Cloud::Validate::ROLE_RE)
          raise ArgumentError, "role name #{PuppetX::Cloud::Validate.shown(name)} is not valid ([a-z][a-z0-9_]*, at most 32 characters)"
        end
        begin
          PuppetX::Cloud::Validate.role!(role, PuppetX::Cloud::Validate.role_shape(role))
        rescue ArgumentError => e
          raise ArgumentError, "#{name}: #{e.message}"
        end
      end
    end
    munge do |value|
      value.to_h { |name, role| [name, PuppetX::Cloud::Validate.role!(role, PuppetX::Cloud::Validate.role_shape(role))] }
    end
  end

  newparam(:role_order) do
    desc 'Dependency order of the roles (every key of `roles` once). Default: the order of `roles`.'
    validate do |value|
      names = Array(value)
      bad = names.find { |name| !(name.is_a?(String) && name.match?(PuppetX::Cloud::Validate::ROLE_RE)) }
      raise ArgumentError, "#{PuppetX::Cloud::Validate.shown(bad)} is not a role name" if bad
      dup = names.detect { |name| names.count(name) > 1 }
      raise ArgumentError, "lists #{dup} twice" if dup
    end
    munge { |value| Array(value) }
  end
end
