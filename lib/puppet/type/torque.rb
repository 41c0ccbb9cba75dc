# frozen_string_literal: true

require_relative '../../puppet_x/cloud/common'

Puppet::Type.newtype(:torque) do
  @doc = <<~DOC
    A batch cluster as one distributed resource: a head node (batch server and scheduler) and N
    compute nodes, each a VM placed on the `pool` hosts. `batch` chooses SLURM (default) or
    TORQUE inside the guests. Apply the same manifest on every pool host.

        torque { 'mytorque':
          head      => ['10.0.0.73', '/var/lib/cloud/images/tor-head.qcow2'],
          compute   => ['/etc/cloud/mytorque/compute-ips.txt', '/etc/cloud/mytorque/compute-imgs.txt'],
          vm_domain => '/etc/cloud/mytorque/template.xml',
          pool      => ['10.0.0.70', '10.0.0.71'],
          ensure    => running,
        }

    The head is set up before the compute nodes.
  DOC

  layout = Class.new(PuppetX::Cloud::Layout) do
    def options(resource)
      { 'batch' => resource[:batch] }
    end

    # SLURM or TORQUE recipes, as `batch` says.
    def recipes(resource)
      "puppet:///modules/torque/roles/#{resource[:batch]}"
    end
  end

  PuppetX::Cloud::Common.define(
    self,
    layout.new(
      shapes: { 'head' => :single, 'compute' => :multi },
      order: ['head', 'compute'],
      after: { 'compute' => ['head'] },
    ),
  )

  PuppetX::Cloud::Common.role(self, :head, <<~DESC)
    The head node VM: `[ip, image]` (IP address, absolute path of its disk image).
  DESC
  PuppetX::Cloud::Common.role(self, :compute, <<~DESC)
    The compute node VMs: `[ips_file, images_file]`, two files (absolute paths or `puppet:///`
    URIs) with one IP address, respectively one image path, a line, matched by line.
  DESC

  newparam(:batch) do
    desc 'Batch system run in the guests: `slurm` (default) or `torque` (the seed\'s).'
    newvalues(:slurm, :torque)
    defaultto :slurm
    munge { |value| value.to_s }
  end
end
