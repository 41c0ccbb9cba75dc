# frozen_string_literal: true

# What every distributed type's cloud provider must do; web's spec covers the details.
# let(:resource) must be a valid resource of the type with ensure => running.
RSpec.shared_examples 'a cloud provider' do |type_name|
  let(:cloud) { instance_double(FakeCloud, close: nil) }

  before(:each) do
    stub_const('Cloud', FakeCloud)
    allow(Puppet.features).to receive(:cloud_ext?).and_return(true)
  end

  it 'is the cloud provider of the type, confined to the cloud_ext feature' do
    expect(described_class.name).to eq(:cloud)
    expect(described_class.resource_type.name).to eq(type_name)
    expect(described_class).to be_suitable
    allow(Puppet.features).to receive(:cloud_ext?).and_return(false)
    expect(described_class).not_to be_suitable
  end

  it "hands Cloud.new the type's spec and converges as the leader" do
    expect(Cloud).to receive(:new) { |spec|
      expect(spec['type']).to eq(type_name.to_s)
      expect(spec['slots']).not_to be_empty
      cloud
    }
    allow(cloud).to receive_messages(member?: true, leader?: true)
    expect(cloud).to receive(:leader_start).and_return('changed' => 0, 'changes' => [], 'status' => { 'state' => 'running' })
    resource.provider.start
  end

  it 'lists only the clouds of its type' do
    allow(Cloud).to receive(:status).and_return('clouds' => [
                                                  { 'name' => 'a', 'type' => type_name.to_s, 'state' => 'stopped', 'slots' => [] },
                                                  { 'name' => 'b', 'type' => 'other', 'state' => 'running', 'slots' => [] },
                                                ])
    expect(described_class.instances.map { |p| [p.name, p.ensure] }).to eq([['a', :stopped]])
  end
end
