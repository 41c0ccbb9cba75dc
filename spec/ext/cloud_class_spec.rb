# frozen_string_literal: true

require_relative 'spec_helper_ext'

# The class itself: constants, the error hierarchy, arity and argument types, and the validation
# Cloud.new does before anything is contacted.
RSpec.describe Cloud do
  let(:spec) { web_spec('web1') }

  describe 'class and constants' do
    it 'is a class with a semantic VERSION and the default socket' do
      expect(described_class).to be_a(Class)
      expect(Cloud::VERSION).to match(/\A\d+\.\d+\.\d+\z/)
      expect(Cloud::DEFAULT_SOCKET).to eq('/run/cloudd/cloudd.sock')
    end

    it 'roots its errors at Cloud::Error < StandardError' do
      expect(Cloud::Error.superclass).to be(StandardError)
    end

    %w[VirtError SSHError ProtocolError TimeoutError ElectionError SpecError SystemError
       StateError].each do |name|
      it "defines Cloud::#{name} < Cloud::Error with code, host and operation" do
        klass = Cloud.const_get(name)
        expect(klass.superclass).to be(Cloud::Error)
        err = klass.new('message')
        expect(err).to respond_to(:code, :host, :operation)
        expect([err.code, err.host, err.operation]).to eq([nil, nil, nil])
        expect(err.message).to eq('message')
      end
    end

    it 'keeps the error classes distinct (no aliasing)' do
      names = %w[VirtError SSHError ProtocolError TimeoutError ElectionError SpecError SystemError
                 StateError]
      expect(names.map { |n| Cloud.const_get(n) }.uniq.size).to eq(names.size)
    end

    it 'fills code, host and operation from a libvirt failure across the control socket' do
      cloud = new_cloud(spec.merge('hypervisor' => 'bogus:///system'))
      expect { cloud.leader_start }.to raise_error(Cloud::VirtError) { |e|
        expect(e.host).to eq('127.0.0.1')
        expect(e.operation).to eq('connect bogus:///system')
        expect(e.code).to be_a(Integer).and be_positive
        expect(e.message).to start_with('127.0.0.1: connect bogus:///system: ')
      }
    end
  end

  describe 'arity and argument types' do
    it 'requires the spec' do
      expect { Cloud.new }.to raise_error(ArgumentError)
      expect { Cloud.new(**cloud_opts) }.to raise_error(ArgumentError)
    end

    it 'takes one positional argument' do
      expect { Cloud.new(spec, {}, **cloud_opts) }.to raise_error(ArgumentError)
    end

    it 'raises TypeError unless the spec is a Hash' do
      [nil, 'web1', spec.to_a, 42, :web1].each do |bad|
        expect { Cloud.new(bad, **cloud_opts) }.to raise_error(TypeError)
      end
    end

    it 'raises TypeError for an option of the wrong type' do
      expect { Cloud.new(spec, **cloud_opts, socket: 42) }.to raise_error(TypeError)
      expect { Cloud.new(spec, **cloud_opts, state_dir: []) }.to raise_error(TypeError)
      expect { Cloud.new(spec, **cloud_opts, daemon: :cloudd) }.to raise_error(TypeError)
      expect { Cloud.status(socket: 42) }.to raise_error(TypeError)
    end

    it 'rejects an unknown keyword instead of falling back to the default socket' do
      expect { Cloud.new(spec, **cloud_opts, sokcet: socket_path) }
        .to raise_error(ArgumentError, /sokcet/)
      expect { Cloud.status(socket: socket_path, sokcet: socket_path) }
        .to raise_error(ArgumentError, /sokcet/)
    end

    it 'takes no arguments in its instance methods' do
      cloud = new_cloud(spec)
      %i[name member? leader? leader_start common_start not_cloud_start plan monitor stop status
         close].each do |m|
        expect { cloud.public_send(m, 1) }.to raise_error(ArgumentError), "#{m}(1)"
      end
      expect { Cloud.status(socket_path) }.to raise_error(ArgumentError)
    end

    it 'raises NoMethodError for unknown methods' do
      expect { new_cloud(spec).start }.to raise_error(NoMethodError)
      expect { Cloud.leader_start }.to raise_error(NoMethodError)
    end

    it 'names the cloud' do
      expect(new_cloud(spec).name).to eq('web1')
    end
  end

  describe 'validation in Cloud.new' do
    def spec_error(bad)
      Cloud.new(bad, **cloud_opts)
    rescue Cloud::SpecError => e
      e
    else
      raise 'expected Cloud::SpecError'
    end

    it 'accepts the builder spec' do
      expect { Cloud.new(spec, **cloud_opts) }.not_to raise_error
    end

    it 'rejects an empty pool, naming pool' do
      e = spec_error(spec.merge('pool' => []))
      expect(e.message).to match(/\bpool: .*empty/)
      expect(e.operation).to eq('validate spec')
      expect(e.host).to be_nil
    end

    it 'rejects a bad IP in a slot, naming the slot attribute and the value' do
      bad = spec.merge('slots' => spec['slots'].map(&:dup))
      bad['slots'][1]['ip'] = '10.0.0.300'
      expect(spec_error(bad).message).to match(/slots\[1\]\.ip: '10\.0\.0\.300' is not an IP address/)
    end

    it 'rejects a missing template while ensure is running, naming the template attribute' do
      expect(spec_error(spec.reject { |k, _| k == 'template' }).message)
        .to match(/vm_domain: .*template/)
    end

    it 'does not need a template while ensure is stopped' do
      stopped = spec.reject { |k, _| k == 'template' }.merge('ensure' => 'stopped')
      expect { Cloud.new(stopped, **cloud_opts) }.not_to raise_error
    end

    it 'rejects a template that is not a domain, naming the template and its path' do
      e = spec_error(spec.merge('template' => '<network><name>{{name}}</name></network>'))
      expect(e.message).to match(%r{vm_domain: /etc/cloud/web/template\.xml: .*<domain>})
    end

    it 'rejects a template lacking a required placeholder, naming it' do
      e = spec_error(spec.merge('template' => spec['template'].sub('{{mac}}', '52:54:00:00:00:01')))
      expect(e.message).to match(/vm_domain: .*\{\{mac\}\}/)
    end

    it 'rejects a bad cloud name and a bad vm_ncpu' do
      expect(spec_error(spec.merge('name' => '-web')).message).to match(/\bname: '-web'/)
      expect(spec_error(spec.merge('vm_ncpu' => 0)).message).to match(/vm_ncpu: 0 is out of range/)
    end

    it 'contacts nothing while validating' do
      spec_error(spec.merge('pool' => []))
      Cloud.new(spec, **cloud_opts)
      expect(File.exist?(socket_path)).to be(false)
      expect(File.exist?(state_dir)).to be(false)
    end
  end
end
