# frozen_string_literal: true

# Extension specs: the Cloud class of lib/cloud_ext.so against libvirt's test:///default, each
# example with its own embedded cloudd (bin/cloudd) on a private socket and state directory.
# Build first (`rake compile`); run with `rspec spec/ext`. Nothing here needs Puppet, and the
# hooks below apply to the examples under spec/ext only, so a combined run with spec/unit is fine.

lib = File.expand_path('../../lib', __dir__)
$LOAD_PATH.unshift(lib) unless $LOAD_PATH.include?(lib)
require 'cloud_ext'

Dir[File.join(__dir__, 'support', '*.rb')].sort.each { |f| require f }

RSpec.configure do |c|
  c.define_derived_metadata(file_path: %r{/spec/ext/}) { |meta| meta[:cloud_ext] = true }
  c.include CloudExtEnv, :cloud_ext
  c.include CloudExtSpecBuilder, :cloud_ext
  c.before(:each, :cloud_ext) { setup_cloud_env }
  # after hooks run when the example failed too; a failure here fails the example.
  c.after(:each, :cloud_ext) do
    used = teardown_cloud_env
    raise "a Cloud ignored its socket:/state_dir: options and used #{used.join(', ')}" if used.any?
  end
end
