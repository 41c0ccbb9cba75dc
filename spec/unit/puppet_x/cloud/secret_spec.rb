# frozen_string_literal: true

require 'spec_helper'
require 'tmpdir'
require 'puppet_x/cloud/spec'

# A Sensitive `secret` reaches the daemons as a root-only key file that Puppet writes; the spec
# names the file, never the value.
describe PuppetX::Cloud::Secret do
  let(:value) { 'a-very-long-cloud-secret' }
  let(:resource) { Puppet::Type.type(:web).new(web_attrs(provider: :cloud, pool: ['127.0.0.1', '127.0.0.2'], secret: value)) }
  let(:cloud) { instance_double(FakeCloud) }

  around(:each) do |example|
    Dir.mktmpdir('cloud-secret') do |dir|
      old = ENV['CLOUD_STATE_DIR']
      ENV['CLOUD_STATE_DIR'] = dir
      example.run
    ensure
      old.nil? ? ENV.delete('CLOUD_STATE_DIR') : ENV['CLOUD_STATE_DIR'] = old
    end
  end

  include_context 'with a fake Cloud'

  it 'names the file in the spec, and never the value' do
    spec = PuppetX::Cloud::Spec.build(resource)
    expect(spec['secret_file']).to eq(File.join(ENV['CLOUD_STATE_DIR'], 'secrets', 'myweb.key'))
    expect(JSON.generate(spec)).not_to include(value)
  end

  it 'prefers secret_file when both are given' do
    resource[:secret_file] = '/etc/cloud/mine.key'
    expect(PuppetX::Cloud::Spec.build(resource)['secret_file']).to eq('/etc/cloud/mine.key')
    expect(described_class.write(resource)).to be(false)
  end

  it 'is written root-only before the cloud is contacted, once, and removed after a stop' do
    file = described_class.path('myweb')
    expect(cloud).to receive(:member?) do
      expect(File.binread(file)).to eq(value)
      expect(File.stat(file).mode & 0o777).to eq(0o600)
      expect(File.stat(File.dirname(file)).mode & 0o777).to eq(0o700)
      false
    end
    expect(cloud).to receive(:not_cloud_start).and_return('changed' => 0, 'changes' => [])
    resource.provider.start
    expect(described_class.write(resource)).to be(false) # unchanged: not rewritten
    File.chmod(0o644, file)
    expect(described_class.write(resource)).to be(true) # a loose mode is repaired
    expect(File.stat(file).mode & 0o777).to eq(0o600)
    resource[:ensure] = :stopped
    expect(cloud).to receive(:stop).and_return('changed' => 0, 'changes' => [])
    resource.provider.stop
    expect(File.exist?(file)).to be(false)
  end

  it 'is not written in noop mode' do
    resource[:noop] = true
    allow(cloud).to receive(:status).and_return('name' => 'myweb', 'state' => 'stopped', 'slots' => [])
    allow(cloud).to receive(:plan).and_return([])
    resource.provider.ensure
    expect(File.exist?(described_class.path('myweb'))).to be(false)
  end
end
