# frozen_string_literal: true

# Builds the spec Hash of doc/INTERNALS.md section 1 from a distributed resource: reads the
# template and the ips/images lists, turns role attributes into slots (one per unique IP; an IP in
# several roles is one slot holding them all), orders the roles by dependency and checks
# everything that involves more than one attribute. The type's validate block runs it leniently
# (a local file that a file resource of the catalog will create is checked later); the provider
# runs it strictly, right before it talks to the daemon.

require_relative 'validate'
require_relative 'source'
require_relative 'secret'

module PuppetX
  module Cloud
    # The spec builder.
    class Spec
      # Strict build for the provider. Errors name the resource: "Web[myweb]: server: ...".
      def self.build(resource)
        new(resource, strict: true).build
      rescue Invalid => e
        raise Puppet::Error, "#{resource.ref}: #{e.message}"
      end

      # Lenient check for the type's validate block: raises Invalid ("server: ..."), which Puppet
      # wraps with the resource; returns the [attribute, path] of local files not there yet.
      def self.check(resource)
        builder = new(resource, strict: false)
        builder.build
        builder.deferred
      end

      attr_reader :deferred

      def initialize(resource, strict:)
        @resource = resource
        @strict = strict
        @layout = resource.class.cloud_layout
        @deferred = []
      end

      def build
        ensure_value = @resource[:ensure]&.to_s
        running = ensure_value == 'running'
        pool = @resource[:pool] || []
        if ensure_value && pool.empty?
          raise Invalid.new('pool', 'is required: the hosts that run the VMs, e.g. pool => [\'10.0.0.70\']')
        end
        raise Invalid.new('vm_domain', 'is required for ensure => running') if running && @resource[:vm_domain].nil?

        @layout.check(@resource, running)
        check_health
        declared = @layout.declared(@resource)
        template = read_template
        slots = build_slots(declared, pool)
        check_mac_room(slots.size)
        {
          'name' => @resource[:name],
          'type' => @resource.class.name.to_s,
          'ensure' => ensure_value,
          'pool' => pool,
          'hypervisor' => @resource[:hypervisor],
          'template' => template,
          'template_path' => @resource[:vm_domain],
          'vm_mem' => @resource[:vm_mem],
          'vm_ncpu' => @resource[:vm_ncpu],
          'mac_start' => @resource[:starting_mac_address],
          'disk_pool' => @resource[:disk_pool],
          'disk_pool_path' => @resource[:disk_pool_path],
          'image_format' => @resource[:image_format],
          'ssh_key' => @resource[:ssh_key],
          'secret_file' => Secret.file_for(@resource),
          'peer_port' => @resource[:peer_port],
          'roles' => with_health(with_steps(@layout.order(declared.map(&:name), @resource), running)),
          'slots' => slots,
          'options' => @layout.options(@resource),
        }
      end

      private

      STEPS = ['setup', 'start', 'check', 'stop'].freeze

      # The recipes directory of the resource ('none' and unset: none), its own or its type's.
      def recipes
        given = @resource[:recipes]
        return nil if given == 'none'
        given || @layout.recipes(@resource)
      end

      # Each role with its recipe steps ("steps": {"setup": script, ...}) when it has any, each
      # step preceded by the recipes' common.sh (shared shell functions) when there is one.
      # Only for ensure => running: a stop needs none of them.
      def with_steps(roles, running)
        dir = recipes
        return roles if dir.nil? || !running
        common = read_step("#{dir.chomp('/')}/common.sh")
        roles.map do |role|
          steps = STEPS.each_with_object({}) do |step, acc|
            text = read_step("#{dir.chomp('/')}/#{role['name']}/#{step}.sh")
            acc[step] = common ? "#{common}\n#{text}" : text if text && !text.strip.empty?
          end
          steps.empty? ? role : role.merge('steps' => steps)
        end
      end

      # Every key of health but 'default' names a role of the resource.
      def check_health
        names = @layout.role_names(@resource)
        return if @resource[:health].nil? || names.nil?
        unknown = @resource[:health].keys - ['default'] - names
        return if unknown.empty?
        raise Invalid.new('health', "names #{unknown.join(', ')}, not a role " \
                                    "(#{names.empty? ? 'none' : names.join(', ')}; or 'default' for every role)")
      end

      # Each role with the health settings given for it ("health": {"interval_ms": ..., ...}):
      # its own merged over 'default', only the keys given; none given, no "health" at all.
      def with_health(roles)
        health = @resource[:health]
        return roles if health.nil?
        roles.map do |role|
          given = (health['default'] || {}).merge(health[role['name']] || {})
          next role if given.empty?
          role.merge('health' => Validate::HEALTH_DEFAULTS.keys.select { |k| given.key?(k) }.to_h { |k| [k, given[k]] })
        end
      end

      # A step's script, or nil when the recipe has no such file.
      def read_step(source)
        Source.read(source, environment)
      rescue Source::Missing
        nil
      rescue ArgumentError => e
        return nil if e.message.include?('was not found by the file server')
        raise Invalid.new('recipes', e.message)
      end

      # The template text with ERB forms rewritten, or nil (no vm_domain, or not there yet).
      def read_template
        path = @resource[:vm_domain]
        return nil if path.nil?
        text = read('vm_domain', path)
        return nil if text.nil?
        Validate.template!(text, path)
      rescue ArgumentError => e
        raise e if e.is_a?(Invalid)
        raise Invalid.new('vm_domain', e.message)
      end

      # Text of a file, or nil when it is missing but may be created by the catalog.
      def read(attribute, source)
        Source.read(source, environment)
      rescue Source::Missing => e
        raise Invalid.new(attribute, e.message) if @strict || @resource.catalog.nil?
        @deferred << [attribute, source]
        nil
      rescue ArgumentError => e
        raise Invalid.new(attribute, e.message)
      end

      def environment
        catalog = @resource.catalog
        catalog.respond_to?(:environment_instance) ? catalog.environment_instance : nil
      end

      # Slots in dependency order (of their earliest role), then by first role and index.
      def build_slots(declared, pool)
        pool_ips = pool.select { |host| Validate.ip?(host) }
        by_ip = {}
        declared.each do |role|
          entries = role_entries(role)
          next if entries.nil?
          seen = {}
          entries.each_with_index do |(ip, image, where), index|
            if seen[ip]
              raise Invalid.new(role.label, at(where, "#{ip} is listed twice (also #{seen[ip] || 'above'})"))
            end
            seen[ip] = where || role.label
            if pool_ips.include?(ip)
              raise Invalid.new(role.label, at(where, "#{ip} is a pool host; a VM needs an address of its own"))
            end
            add_to_slot(by_ip, role, ip, image, index, where)
          end
        end
        sort_slots(by_ip.values, declared.map(&:name))
      end

      def add_to_slot(by_ip, role, ip, image, index, where)
        slot = by_ip[ip]
        if slot.nil?
          by_ip[ip] = { ip: ip, image: image, roles: [role.name], index: index }
          return
        end
        if slot[:image] != image
          raise Invalid.new(role.label, at(where, "#{ip} is also the #{slot[:roles].first} VM #{slot[:index]} " \
                                                  "with image #{slot[:image]}: one VM has one image, not #{image}"))
        end
        slot[:roles] << role.name
      end

      def sort_slots(slots, declared_names)
        dependency = @layout.order(declared_names, @resource).map { |r| r['name'] }
        slots.sort_by do |slot|
          [slot[:roles].map { |r| dependency.index(r) }.min, declared_names.index(slot[:roles].first), slot[:index]]
        end.map do |slot|
          {
            'name' => "#{@resource[:name]}-#{slot[:roles].first}-#{slot[:index]}",
            'roles' => slot[:roles],
            'services' => slot[:roles].flat_map { |r| @layout.services(r) }.uniq,
            'index' => slot[:index],
            'ip' => slot[:ip],
            'image' => slot[:image],
          }
        end
      end

      # [[ip, image, where], ...] of one role; nil when one of its files is not there yet.
      def role_entries(role)
        return [[role.value[0], role.value[1], nil]] if role.shape == :single

        ips_source, images_source = role.value
        ips = list(role, ips_source) { |entry| Validate.ip!(entry) }
        images = list(role, images_source) { |entry| Validate.image!(entry) }
        return nil if ips.nil? || images.nil?
        raise Invalid.new(role.label, "#{ips_source} lists no IP address") if ips.empty?
        if ips.size != images.size
          raise Invalid.new(role.label, "#{ips_source} lists #{ips.size} IP address#{ips.size == 1 ? '' : 'es'} " \
                                        "but #{images_source} lists #{images.size} image#{images.size == 1 ? '' : 's'}")
        end
        ips.zip(images).map { |(line, ip), (_, image)| [ip, image, "line #{line} of #{ips_source}"] }
      end

      # [[line, value], ...] of a list file, each entry checked by the block; nil if not there yet.
      def list(role, source)
        text = read(role.label, source)
        return nil if text.nil?
        Validate.list_entries(text).map do |line, entry|
          [line, yield(entry)]
        rescue ArgumentError => e
          raise Invalid.new(role.label, "line #{line} of #{source}: #{e.message}")
        end
      end

      # MACs are handed out from starting_mac_address upwards within its first three octets.
      def check_mac_room(count)
        mac = @resource[:starting_mac_address]
        return if mac.nil? || count.zero?
        low = mac.split(':')[3, 3].join.to_i(16)
        room = 0x1000000 - low
        return if room >= count
        raise Invalid.new('starting_mac_address',
                          "'#{mac}' leaves room for #{room} MAC address#{room == 1 ? '' : 'es'} " \
                          "before its prefix ends; the cloud has #{count} VMs")
      end

      def at(where, message)
        where ? "#{where}: #{message}" : message
      end
    end
  end
end
