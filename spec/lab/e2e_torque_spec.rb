# frozen_string_literal: true

# End to end on real guests (issue 4): a torque cloud with the SLURM recipes, 1 head and 2
# compute nodes, on two pool hosts of the lab; a job submitted on the head runs on a compute
# node and its output comes back; `ensure => stopped` leaves no domain, disk or guest process.
require 'json'
require_relative 'lab_helper'

RSpec.describe 'a torque (SLURM) cloud on real guests in the lab', :lab do
  before(:all) do
    @lab = LabHelper::Lab.new(ENV.fetch('LAB_DIR_TORQUE', '/tmp/cloud-lab-e2e-torque'), 2).up
    computes = @lab.role_files('compute', ['10.78.0.12', '10.78.0.13'])
    @manifest = lambda do |ensure_|
      <<~PP
        torque { 'lt':
          ensure      => #{ensure_},
          batch       => slurm,
          head        => #{@lab.role_vm('10.78.0.11')},
          compute     => #{computes},
          #{@lab.common_attrs}
        }
      PP
    end
  end

  after(:all) { LabHelper.finish(@lab, 'torque', self.class) }

  # A command on the head as root, over ssh with the lab's key, from host 1's namespace.
  def on_head(command)
    @lab.in_host(1, 'ssh', '-i', @lab.env['LAB_SSH_KEY'], '-o', 'StrictHostKeyChecking=no', '-o',
                 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes',
                 'root@10.78.0.11', command)
  end

  it 'converges, and a job submitted on the head runs on a compute node with its output back' do
    _, rc2 = @lab.puppet_apply(2, @manifest.call('running'))
    expect([0, 2]).to include(rc2)
    out1, rc1 = @lab.puppet_apply(1, @manifest.call('running'))
    expect(rc1).to eq(2), out1
    expect(out1).to include('started lt-head-0').and include('started lt-compute-1')
    out, st = on_head('srun -N1 -p batch hostname')
    expect(st.success?).to be(true), out
    expect(out.strip).to match(/\Alt-compute-[01]\z/)
    out, st = on_head('sinfo -h -o "%D %t"')
    expect(st.success?).to be(true), out
    expect(out).to match(/\A2 idle/)
  end

  it 'leaves no domain, disk or guest process after ensure => stopped' do
    out, rc = @lab.puppet_apply(1, @manifest.call('stopped'))
    expect([0, 2]).to include(rc), out
    [1, 2].each do |i|
      expect(@lab.domains(i).grep(/\Alt-/)).to be_empty
      expect(@lab.volumes(i).grep(/\Alt-/)).to be_empty
    end
    guests = Dir['/proc/[0-9]*/cmdline'].select do |f|
      File.read(f).include?('guest=lt-')
    rescue SystemCallError
      false
    end
    expect(guests).to be_empty
  end
end
