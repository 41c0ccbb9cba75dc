# frozen_string_literal: true

# The `Cloud` class (C extension) that the providers of the distributed types use. Puppet Server
# never needs it: only the pool hosts' agents do. The one next to this file comes first (a
# checkout's lib/cloud_ext.so after `rake compile`), then Ruby's load path (the package of `rake
# package` installs it in Ruby's vendor directory, which Ruby searches before the modules' lib
# directories: a package installed on a development machine must not hide the checkout's own
# build). A failed load answers nil, not false, so that Puppet tries again later in the run
# (always_retry_plugins) once a class of the same catalog has installed the extension.

require 'puppet/util/feature'

Puppet.features.add(:cloud_ext) do
  beside = File.expand_path('../../cloud_ext.so', __dir__)
  begin
    raise LoadError, "no #{beside}" unless File.exist?(beside)

    require beside
  rescue LoadError
    require 'cloud_ext'
  end
  defined?(::Cloud) ? true : nil
rescue LoadError => e
  Puppet.debug("cloud_ext is not available: #{e.message}")
  nil
end
