# frozen_string_literal: true

require_relative '../../puppet_x/cloud/common'

Puppet::Type.newtype(:web) do
  @doc = <<~DOC
    A three-tier web service as one distributed resource: a load balancer, N web servers and a
    database, each a VM placed on the `pool` hosts. Apply the same manifest on every pool host.

        web { 'myweb':
          balancer  => ['10.0.0.2', '/var/lib/cloud/images/web-lb.qcow2'],
          server    => ['/etc/cloud/myweb/server-ips.txt', '/etc/cloud/myweb/server-imgs.txt'],
          database  => ['10.0.0.3', '/var/lib/cloud/images/web-db.qcow2'],
          vm_domain => 'puppet:///modules/web/template-test.xml',
          pool      => ['10.0.0.70', '10.0.0.71'],
          ensure    => running,
        }

    Roles are set up database first, then the servers, then the balancer.
  DOC

  PuppetX::Cloud::Common.define(
    self,
    PuppetX::Cloud::Layout.new(
      shapes: { 'balancer' => :single, 'server' => :multi, 'database' => :single },
      order: ['database', 'server', 'balancer'],
      after: { 'server' => ['database'], 'balancer' => ['server'] },
      recipes: 'puppet:///modules/web/roles',
    ),
  )

  PuppetX::Cloud::Common.role(self, :balancer, <<~DESC)
    The load balancer VM: `[ip, image]` (IP address, absolute path of its disk image).
  DESC
  PuppetX::Cloud::Common.role(self, :server, <<~DESC)
    The web server VMs: `[ips_file, images_file]`, two files (absolute paths or `puppet:///`
    URIs) with one IP address, respectively one image path, a line, matched by line.
  DESC
  PuppetX::Cloud::Common.role(self, :database, <<~DESC)
    The database VM: `[ip, image]`.
  DESC
end
