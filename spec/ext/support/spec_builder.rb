# frozen_string_literal: true

# Builds valid spec Hashes (doc/INTERNALS.md section 1) for the extension specs: a small web cloud
# (database, servers, balancer) on pool ["127.0.0.1"] over libvirt's test driver, with its disk
# pool under the example's private directory. Keys are strings, as PuppetX::Cloud::Spec makes them.
module CloudExtSpecBuilder
  # A test-driver domain with every placeholder the core requires, an <os>, a disk and a NIC.
  TEST_TEMPLATE = <<~XML
    <domain type='test'>
      <name>{{name}}</name>
      <uuid>{{uuid}}</uuid>
      <memory unit='KiB'>{{memory}}</memory>
      <vcpu>{{vcpus}}</vcpu>
      <os><type>hvm</type></os>
      <devices>
        <disk type='file' device='disk'><source file='{{disk}}'/><target dev='vda'/></disk>
        <interface type='network'><mac address='{{mac}}'/><source network='default'/></interface>
      </devices>
    </domain>
  XML

  WEB_ROLES = [
    { 'name' => 'database', 'after' => [] },
    { 'name' => 'server', 'after' => ['database'] },
    { 'name' => 'balancer', 'after' => ['server'] },
  ].freeze

  # A web cloud with one database, +servers+ servers and one balancer (servers + 2 slots).
  # +net+ picks the second octet of the VM addresses so that several clouds never share an IP.
  # +overrides+ replace top-level keys (string keys), e.g. 'pool' => ['192.0.2.200'].
  def web_spec(name = 'web1', servers: 1, net: 0, **overrides)
    slots = [slot(name, 'database', 0, "10.#{net}.0.3", 'db')]
    servers.times { |i| slots << slot(name, 'server', i, "10.#{net}.#{1 + (i / 250)}.#{1 + (i % 250)}", 'web') }
    slots << slot(name, 'balancer', 0, "10.#{net}.0.2", 'lb')
    {
      'name' => name,
      'type' => 'web',
      'ensure' => 'running',
      'pool' => ['127.0.0.1'],
      'hypervisor' => 'test:///default',
      'template' => TEST_TEMPLATE,
      'template_path' => '/etc/cloud/web/template.xml',
      'vm_mem' => 65_536,
      'vm_ncpu' => 1,
      'mac_start' => nil,
      'disk_pool' => 'cloud',
      'disk_pool_path' => File.join(cloud_dir, 'pool'),
      'image_format' => 'qcow2',
      'ssh_key' => nil,
      'secret_file' => nil,
      'roles' => WEB_ROLES.map(&:dup),
      'slots' => slots,
      'options' => {},
    }.merge(overrides.transform_keys(&:to_s))
  end

  def slot_names(spec)
    spec['slots'].map { |s| s['name'] }
  end

  private

  def slot(cloud, role, index, ip, image)
    { 'name' => "#{cloud}-#{role}-#{index}", 'roles' => [role], 'services' => [role],
      'index' => index, 'ip' => ip, 'image' => File.join(cloud_dir, 'images', "#{image}.qcow2") }
  end
end
