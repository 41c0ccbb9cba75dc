# frozen_string_literal: true

# What a distributed type knows about its roles: which role attributes it has and their shape
# ([ip, image] or [ips_file, images_file]), which are required for ensure => running, their
# dependency order, and the services a composite role stands for. The spec builder asks the
# type's layout; torque and web use this class as is, appscale and the generic type subclass it.

require_relative 'validate'

module PuppetX
  module Cloud
    # Static role layout of a typed distributed resource.
    class Layout
      # A declared role: name, shape (:single/:multi), the attribute value and the label used in
      # messages ("server", or "roles: web" for the generic type).
      Role = Struct.new(:name, :shape, :value, :label)

      attr_reader :shapes

      # shapes: role => :single | :multi, in declaration order.
      # order: roles in dependency order; after: role => roles it is set up after.
      # recipes: where the type's role recipes are by default (nil: none).
      def initialize(shapes:, order:, after: {}, required: shapes.keys, composites: {}, recipes: nil)
        @recipes = recipes
        @shapes = shapes.freeze
        @order = order.freeze
        @after = after.freeze
        @required = required.freeze
        @composites = composites.freeze
      end

      # Role attributes of this type (used to declare the parameters).
      def attributes
        @shapes.keys
      end

      # Every role the resource may have (given or not), for attributes keyed by role (health);
      # nil when they are not known.
      def role_names(_resource)
        @shapes.keys
      end

      # Roles given to the resource, in declaration order.
      def declared(resource)
        @shapes.map do |name, shape|
          value = resource[name.to_sym]
          Role.new(name, shape, value, name) unless value.nil?
        end.compact
      end

      # Cross-attribute check of the roles given; raises Invalid.
      # running: whether ensure => running (all required roles must then be given).
      def check(resource, running)
        return unless running
        missing = @required.select { |name| resource[name.to_sym].nil? }
        return if missing.empty?
        raise Invalid.new(missing.join(', '),
                          "#{missing.size == 1 ? 'is' : 'are'} required for ensure => running " \
                          "(#{missing.map { |m| "#{m} => #{shape_text(@shapes[m])}" }.join(', ')})")
      end

      # The spec's "roles": declared roles in dependency order, each with the declared roles it
      # is set up after.
      def order(names, _resource = nil)
        @order.select { |name| names.include?(name) }.map do |name|
          { 'name' => name, 'after' => (@after[name] || []).select { |dep| names.include?(dep) } }
        end
      end

      def services(role)
        @composites.fetch(role, [role])
      end

      # The type's own role recipes (a directory of <role>/<step>.sh), or nil.
      def recipes(_resource)
        @recipes
      end

      # Type-specific "options" of the spec.
      def options(_resource)
        {}
      end

      def shape_text(shape)
        shape == :single ? '[ip, image]' : '[ips_file, images_file]'
      end
    end
  end
end
