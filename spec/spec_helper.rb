# frozen_string_literal: true

# Unit specs (types, providers, PuppetX helpers) and rspec-puppet specs of the modules' classes
# and defined types. rspec-puppet uses the repository's modules/ directly as its module path
# (modules/cloud/lib is the repository's lib/): no fixture symlinks, so nothing runs twice.
# Run: rspec spec/unit spec/classes spec/defines

require 'fileutils'
require 'json'

RSpec.configure { |c| c.mock_with :rspec }

# Facter reads /etc/facter/facter.conf (HOCON) lazily when one exists; under rspec-puppet's
# patched `require` that lazy load fails, so load the parser up front (it is Facter's own
# dependency).  The specs then pass with or without a facter.conf.
begin
  require 'hocon'
  require 'hocon/config_factory'
rescue LoadError
  nil
end

# module_spec_helper insists on spec/fixtures/modules (git-ignored; we keep no fixtures there).
FileUtils.mkdir_p(File.join(__dir__, 'fixtures', 'modules'))
require 'puppetlabs_spec_helper/module_spec_helper'

REPO_ROOT = File.expand_path('..', __dir__)
FIXTURES = File.join(__dir__, 'fixtures', 'files')
$LOAD_PATH.unshift(File.join(REPO_ROOT, 'lib')) unless $LOAD_PATH.include?(File.join(REPO_ROOT, 'lib'))

Dir[File.join(__dir__, 'support', '*.rb')].sort.each { |f| require f }

RSpec.configure do |c|
  c.module_path = File.join(REPO_ROOT, 'modules')
  # puppet:/// URIs are served from the module path, as under `puppet apply`.
  c.before(:each) { Puppet[:default_file_terminus] = :file_server }
  # These specs never use the real extension, built or not: provider specs stub the feature
  # (true) and the Cloud class (FakeCloud) themselves.
  c.before(:each, file_path: %r{spec/(unit|classes|defines)/}) do
    allow(Puppet.features).to receive(:cloud_ext?).and_return(false)
  end
  c.include CloudSpecHelpers
end
