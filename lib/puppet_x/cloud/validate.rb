# frozen_string_literal: true

# Value checks shared by the distributed types: IP addresses, host names, paths, puppet:/// URIs,
# role value shapes, the ips/images list files and the libvirt domain template. Pure functions:
# each check returns a normalised value or raises ArgumentError with a message that names the bad
# value (the caller adds the resource and the attribute).

require 'ipaddr'
require 'uri'

module PuppetX
  module Cloud
    # A validation failure of one attribute: "<attribute>: <detail>". The type's validate block
    # lets Puppet prefix the resource ("Validation of Web[myweb] failed: ..."); Spec.build
    # prefixes it itself ("Web[myweb]: server: ...").
    class Invalid < ArgumentError
      attr_reader :attribute, :detail

      def initialize(attribute, detail)
        @attribute = attribute.to_s
        @detail = detail
        super("#{@attribute}: #{detail}")
      end
    end

    # Checks for attribute values and the files they point to.
    module Validate
      # Cloud names become part of libvirt domain names (<cloud>-<role>-<n>).
      NAME_RE = /\A[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\z/.freeze
      # Role names of the generic type (and of every slot name).
      ROLE_RE = /\A[a-z][a-z0-9_]{0,31}\z/.freeze
      MAC_RE = /\A\h\h(:\h\h){5}\z/.freeze
      HOST_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
      HOSTNAME_RE = /\A(?=.{1,253}\z)#{HOST_LABEL}(?:\.#{HOST_LABEL})*\.?\z/.freeze
      # Files are small; anything bigger is a mistake (an image given where a list was expected...).
      MAX_FILE_BYTES = 1024 * 1024

      # Placeholders a vm_domain template must contain: the C side substitutes them per slot.
      REQUIRED_PLACEHOLDERS = %w[name uuid mac disk memory vcpus].freeze
      # Placeholders a template may contain (documented in modules/cloud/README.md).
      # (The same lists as cl_tmpl_required / cl_tmpl_known in ext/cloud/cl_tmpl.c.)
      OPTIONAL_PLACEHOLDERS = %w[ip role roles cloud host index image slot ssh_pubkey].freeze
      PLACEHOLDERS = (REQUIRED_PLACEHOLDERS + OPTIONAL_PLACEHOLDERS).freeze
      # The seed's ERB forms (<%= vm[:mem] %>) and the placeholder each one stands for.
      ERB_PLACEHOLDERS = {
        'name' => 'name', 'uuid' => 'uuid', 'mac' => 'mac', 'disk' => 'disk',
        'mem' => 'memory', 'ncpu' => 'vcpus'
      }.freeze
      ERB_RE = /<%=\s*vm\[:(\w+)\]\s*-?%>/.freeze

      # The `health` keys given in seconds => [spec key (milliseconds), min ms, max ms], and
      # the counts => [spec key, min, max]: the ranges of cl_spec.c (health_keys).
      HEALTH_SECONDS = {
        'interval' => ['interval_ms', 100, 86_400_000],
        'timeout' => ['timeout_ms', 100, 3_600_000],
        'window' => ['window_ms', 1000, 86_400_000],
        'backoff' => ['backoff_ms', 0, 3_600_000],
        'backoff_max' => ['backoff_max_ms', 0, 86_400_000],
      }.freeze
      HEALTH_COUNTS = { 'retries' => ['retries', 0, 10], 'max_restarts' => ['max_restarts', 1, 1000] }.freeze
      # The order of the keys in messages and in the spec.
      HEALTH_KEYS = ['interval', 'timeout', 'retries', 'max_restarts', 'window', 'backoff', 'backoff_max'].freeze
      # What the daemon uses for a key not given (CL_HEALTH_* of cl_spec.h), in spec keys.
      HEALTH_DEFAULTS = {
        'interval_ms' => 10_000, 'timeout_ms' => 5000, 'retries' => 1, 'max_restarts' => 5,
        'window_ms' => 600_000, 'backoff_ms' => 1000, 'backoff_max_ms' => 60_000
      }.freeze

      module_function

      # IP literal (IPv4 dotted quad or IPv6, no prefix, no zone) => canonical String, or nil.
      def ip(value)
        return nil unless value.is_a?(String) && value.match?(/\A[0-9A-Fa-f:.]+\z/)
        addr = IPAddr.new(value)
        return nil if addr.ipv4? && !value.match?(/\A\d{1,3}(\.\d{1,3}){3}\z/)
        addr.to_s
      rescue IPAddr::Error, ArgumentError
        nil
      end

      def ip?(value)
        !ip(value).nil?
      end

      # Strings that look like an IP address but are malformed must not pass as host names.
      def looks_like_ip?(value)
        value.is_a?(String) &&
          (value.match?(/\A[\d.]+\z/) || (value.include?(':') && value.match?(/\A[0-9A-Fa-f:.]+\z/)))
      end

      # Pool host: IP literal or host name => canonical String (IP normalised, name lower-cased).
      def host!(value)
        raise ArgumentError, "#{value.inspect} is not a host name or IP address" unless value.is_a?(String)
        canonical = ip(value)
        return canonical if canonical
        if looks_like_ip?(value) || !value.match?(HOSTNAME_RE) || value.split('.').last.match?(/\A\d+\z/)
          raise ArgumentError, "'#{value}' is not a host name or IP address"
        end
        value.downcase.chomp('.')
      end

      def ip!(value)
        canonical = ip(value)
        return canonical if canonical
        raise ArgumentError, "#{shown(value)} is not an IP address"
      end

      # A value as shown in messages: strings quoted, anything else inspected.
      def shown(value)
        value.is_a?(String) ? "'#{value}'" : value.inspect
      end

      def absolute_path?(value)
        value.is_a?(String) && value.start_with?('/') && !value.include?("\0") &&
          !value.split('/').include?('..')
      end

      def puppet_uri?(value)
        return false unless value.is_a?(String) && value.start_with?('puppet://')
        uri = URI.parse(value)
        uri.scheme == 'puppet' && uri.path.to_s.match?(%r{\A/[^/]+/.+}) && uri.query.nil?
      rescue URI::InvalidURIError
        false
      end

      # A file given as an absolute path or a puppet:///<mount>/... URI.
      def source!(value, what)
        return value if absolute_path?(value) || puppet_uri?(value)
        raise ArgumentError, "#{what} #{shown(value)} must be an absolute path or a puppet:/// URI"
      end

      def image!(value)
        return value if absolute_path?(value)
        raise ArgumentError, "image #{shown(value)} must be an absolute path"
      end

      # Shape of a role attribute. :single is [ip, image]; :multi is [ips_file, images_file].
      # Returns the value with a normalised IP.
      def role!(value, shape)
        unless value.is_a?(Array) && value.size == 2
          expected = shape == :single ? '[ip, image]' : '[ips_file, images_file]'
          raise ArgumentError, "expects #{expected}, got #{value.inspect}"
        end
        if shape == :single
          [ip!(value[0]), image!(value[1])]
        else
          if ip?(value[0])
            raise ArgumentError, "expects [ips_file, images_file], got an IP address '#{value[0]}': " \
                                 'list the IP addresses in a file, one a line'
          end
          [source!(value[0], 'ips file'), source!(value[1], 'images file')]
        end
      end

      # The generic type distinguishes the shapes by element 0: an IP literal means one node.
      def role_shape(value)
        return :single if value.is_a?(Array) && value[0].is_a?(String) && looks_like_ip?(value[0]) &&
                          !value[0].start_with?('/')
        :multi
      end

      def mac!(value)
        unless value.is_a?(String) && value.match?(MAC_RE)
          raise ArgumentError, "#{value.inspect} is not a MAC address (xx:xx:xx:xx:xx:xx)"
        end
        mac = value.downcase
        raise ArgumentError, "'#{value}' is a multicast MAC address" if mac[0, 2].to_i(16).odd?
        raise ArgumentError, "'#{value}' is the null MAC address" if mac == '00:00:00:00:00:00'
        mac
      end

      # Integer from an Integer or a decimal String (the seed wrote vm_mem => "1048576").
      def integer!(value, min, max)
        int = case value
              when Integer then value
              when /\A\s*\+?\d+\s*\z/ then value.to_i
              end
        raise ArgumentError, "#{value.inspect} is not an integer" if int.nil?
        raise ArgumentError, "#{value.inspect} is out of range #{min}..#{max}" unless int.between?(min, max)
        int
      end

      # The `health` parameter: { role or 'default' => { key => value } }, seconds and counts as
      # in HEALTH_SECONDS and HEALTH_COUNTS. Returns it with each role's settings in spec keys
      # (whole milliseconds, rounded), in HEALTH_KEYS order. Messages name the role and the key.
      def health!(value)
        unless value.is_a?(Hash)
          raise ArgumentError, "expects a Hash of role (or 'default') => { #{HEALTH_KEYS.join(', ')} }, " \
                               "got #{value.inspect}"
        end
        munged = value.to_h do |role, settings|
          unless role.is_a?(String) && (role == 'default' || role.match?(ROLE_RE))
            raise ArgumentError, "#{role.inspect} is not a role name or 'default'"
          end
          [role, health_settings!(role, settings)]
        end
        check_backoff!(munged)
        munged
      end

      # One role's settings => { spec key => integer }.
      def health_settings!(role, settings)
        unless settings.is_a?(Hash)
          raise ArgumentError, "#{role} must be a Hash of #{HEALTH_KEYS.join(', ')}, got #{settings.inspect}"
        end
        unknown = settings.keys.find { |key| !HEALTH_KEYS.include?(key) }
        if unknown
          raise ArgumentError, "#{role}: unknown key #{unknown.inspect} (valid: #{HEALTH_KEYS.join(', ')})"
        end
        HEALTH_KEYS.select { |key| settings.key?(key) }.to_h do |key|
          if HEALTH_SECONDS.key?(key)
            spec_key, min, max = HEALTH_SECONDS[key]
            [spec_key, health_seconds!("#{role}.#{key}", settings[key], min, max)]
          else
            spec_key, min, max = HEALTH_COUNTS[key]
            [spec_key, health_count!("#{role}.#{key}", settings[key], min, max)]
          end
        end
      end

      # Seconds (Integer or fraction) => whole milliseconds within min..max.
      def health_seconds!(what, value, min, max)
        sign = min.positive? ? '> 0' : '>= 0'
        unless value.is_a?(Numeric) && value.real? && (!value.is_a?(Float) || value.finite?) &&
               (min.positive? ? value.positive? : !value.negative?)
          raise ArgumentError, "#{what} must be a number of seconds #{sign}, got #{value.inspect}"
        end
        ms = (value * 1000).round
        return ms if ms.between?(min, max)
        raise ArgumentError, "#{what} must be #{seconds(min)}..#{seconds(max)} seconds, got #{value.inspect}"
      end

      def health_count!(what, value, min, max)
        return value if value.is_a?(Integer) && value.between?(min, max)
        raise ArgumentError, "#{what} must be an integer #{min}..#{max}, got #{value.inspect}"
      end

      # Milliseconds as seconds in messages: 100 => 0.1, 86400000 => 86400.
      def seconds(ms)
        (ms % 1000).zero? ? ms / 1000 : ms / 1000.0
      end

      # The backoff starts at most at its cap, for 'default' and for each role with 'default'
      # under it (a key not given anywhere is the daemon's default).
      def check_backoff!(munged)
        base = munged['default'] || {}
        munged.each do |role, settings|
          given = role == 'default' ? settings : base.merge(settings)
          backoff = given.fetch('backoff_ms', HEALTH_DEFAULTS['backoff_ms'])
          cap = given.fetch('backoff_max_ms', HEALTH_DEFAULTS['backoff_max_ms'])
          next if cap >= backoff
          cap_text = given.key?('backoff_max_ms') ? seconds(cap).to_s : "#{seconds(cap)} (the default)"
          raise ArgumentError, "#{role}.backoff_max must be >= backoff (#{seconds(backoff)} seconds), got #{cap_text}"
        end
      end

      # Entries of an ips or images list: one a line; blank lines and '#' comments are skipped.
      # Returns [[line_number, entry], ...].
      def list_entries(text)
        entries = []
        text.each_line.with_index(1) do |line, number|
          entry = line.strip
          next if entry.empty? || entry.start_with?('#')
          entries << [number, entry]
        end
        entries
      end

      # Checks a vm_domain template. Returns it with the seed's ERB forms rewritten as {{...}}
      # placeholders, so that the C side sees one syntax.
      def template!(text, origin)
        erb_left = nil
        normalised = text.gsub(ERB_RE) do
          name = ERB_PLACEHOLDERS[Regexp.last_match(1)]
          erb_left ||= Regexp.last_match(0) unless name
          name ? "{{#{name}}}" : Regexp.last_match(0)
        end
        erb_left ||= normalised[/<%.*?%>/m]
        raise ArgumentError, "#{origin}: unsupported ERB code #{erb_left[0, 60]}" if erb_left

        found = placeholders(normalised)
        unknown = found.uniq - PLACEHOLDERS
        unless unknown.empty?
          raise ArgumentError, "#{origin}: unknown placeholder #{unknown.map { |u| "{{#{u}}}" }.join(', ')} " \
                               "(known: #{PLACEHOLDERS.join(', ')})"
        end
        # A placeholder only inside an XML comment does not count as present.
        missing = REQUIRED_PLACEHOLDERS - placeholders(normalised.gsub(/<!--.*?-->/m, ''))
        unless missing.empty?
          raise ArgumentError, "#{origin}: missing placeholder #{missing.map { |m| "{{#{m}}}" }.join(', ')}"
        end
        root = root_element(normalised)
        raise ArgumentError, "#{origin}: root element is <#{root}>, not <domain>" unless root == 'domain'
        raise ArgumentError, "#{origin}: the <domain> element is not closed" unless normalised.include?('</domain>')
        normalised
      end

      # Names of the {{...}} placeholders of text (blanks around the name are allowed).
      def placeholders(text)
        text.scan(/\{\{(.*?)\}\}/m).flatten.map(&:strip)
      end

      # Name of the root element, after an XML declaration, comments, processing instructions
      # and a DOCTYPE; nil when the text does not start with an element.
      def root_element(text)
        rest = text.sub(/\A\uFEFF/, '')
        loop do
          rest = rest.lstrip
          stripped = rest.sub(/\A<\?.*?\?>/m, '').sub(/\A<!--.*?-->/m, '').sub(/\A<!DOCTYPE[^>]*>/m, '')
          break if stripped == rest
          rest = stripped
        end
        rest[/\A<([A-Za-z_][\w.:-]*)[\s>\/]/, 1]
      end
    end
  end
end
