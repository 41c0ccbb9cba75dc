# frozen_string_literal: true

# The `Cloud` class (C extension, lib/cloud_ext.so after `rake compile`) that the providers of the
# distributed types use. Puppet Server never needs it: only the pool hosts' agents do. A failed
# load answers nil, not false, so that Puppet tries again later in the run (always_retry_plugins)
# once a class of the same catalog has installed the extension.

require 'puppet/util/feature'

Puppet.features.add(:cloud_ext) do
  begin
    require 'cloud_ext'
  rescue LoadError
    require File.expand_path('../../cloud_ext', __dir__)
  end
  defined?(::Cloud) ? true : nil
rescue LoadError => e
  Puppet.debug("cloud_ext is not available: #{e.message}")
  nil
end
