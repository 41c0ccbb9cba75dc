# frozen_string_literal: true

require 'spec_helper'
require 'puppet_x/cloud/validate'

# Value checks shared by the types.
describe PuppetX::Cloud::Validate do
  describe '.ip' do
    {
      '10.0.0.5' => '10.0.0.5', '255.255.255.255' => '255.255.255.255', '::1' => '::1',
      '2001:DB8:0::5' => '2001:db8::5', '::ffff:10.0.0.1' => '::ffff:10.0.0.1'
    }.each do |input, canonical|
      it("accepts #{input}") { expect(described_class.ip(input)).to eq(canonical) }
    end

    ['10.0.0.300', '10.0.0', '10.0.0.1.2', '010.0.0.1', '10.0.0.1/24', 'fe80::1%eth0', '[::1]', '1', '', ' 10.0.0.1',
     'ten.0.0.1', '2001:db8::g'].each do |input|
      it("rejects #{input.inspect}") { expect(described_class.ip(input)).to be_nil }
    end

    it('rejects non-strings') { expect(described_class.ip(167_772_165)).to be_nil }
  end

  describe '.host!' do
    it 'accepts IP addresses and host names' do
      expect(described_class.host!('10.0.0.70')).to eq('10.0.0.70')
      expect(described_class.host!('Node-1.Example.org.')).to eq('node-1.example.org')
      expect(described_class.host!('localhost')).to eq('localhost')
    end

    ['10.0.0.300', '10.0.0', '1.2.3.4.5', 'host_1', '-host', 'host.123', 'a..b', "#{'a' * 64}.org"].each do |input|
      it("rejects #{input}") do
        expect { described_class.host!(input) }.to raise_error(ArgumentError, "'#{input}' is not a host name or IP address")
      end
    end
  end

  describe '.puppet_uri?' do
    it 'accepts puppet:/// URIs with a mount and a path, with or without a server' do
      expect(described_class.puppet_uri?('puppet:///modules/web/server-ips.txt')).to be(true)
      expect(described_class.puppet_uri?('puppet://puppet.example.org/modules/web/x.txt')).to be(true)
    end

    it 'rejects other URIs' do
      expect(described_class.puppet_uri?('puppet:///modules')).to be(false)
      expect(described_class.puppet_uri?('http://example.org/modules/web/x')).to be(false)
      expect(described_class.puppet_uri?('/etc/cloud/x')).to be(false)
    end
  end

  describe '.absolute_path?' do
    it 'wants an absolute path without ..' do
      expect(described_class.absolute_path?('/var/lib/cloud/images/a.qcow2')).to be(true)
      expect(described_class.absolute_path?('images/a.qcow2')).to be(false)
      expect(described_class.absolute_path?('/var/lib/../../etc/shadow')).to be(false)
    end
  end

  describe '.integer!' do
    it 'takes integers and decimal strings' do
      expect(described_class.integer!('1048576', 1024, 2**34)).to eq(1_048_576)
      expect(described_class.integer!(2, 1, 256)).to eq(2)
      expect { described_class.integer!('0x400', 1024, 2**34) }.to raise_error(ArgumentError, '"0x400" is not an integer')
      expect { described_class.integer!(1.5, 1, 256) }.to raise_error(ArgumentError, '1.5 is not an integer')
    end
  end

  describe '.list_entries' do
    it 'skips blank lines and comments and keeps line numbers' do
      expect(described_class.list_entries("# c\n\n 10.0.0.5 \n#x\n10.0.0.6")).to eq([[3, '10.0.0.5'], [5, '10.0.0.6']])
    end
  end

  describe '.role_shape' do
    it 'says :single when element 0 looks like an IP address' do
      expect(described_class.role_shape(['10.0.0.5', '/i'])).to eq(:single)
      expect(described_class.role_shape(['10.0.0.300', '/i'])).to eq(:single)
      expect(described_class.role_shape(['2001:db8::5', '/i'])).to eq(:single)
      expect(described_class.role_shape(['/etc/ips', '/etc/imgs'])).to eq(:multi)
      expect(described_class.role_shape(['puppet:///modules/x/ips', '/etc/imgs'])).to eq(:multi)
    end
  end

  describe '.template!' do
    let(:body) { "<name>{{name}}</name>{{uuid}}{{mac}}{{disk}}{{memory}}{{vcpus}}</domain>" }

    it 'finds the root element after a declaration, comments and a DOCTYPE' do
      text = "\uFEFF<?xml version='1.0'?>\n<!-- a -->\n<!DOCTYPE domain>\n<!-- b -->\n<domain type='test'>#{body}"
      expect(described_class.template!(text, 't.xml')).to eq(text)
    end

    it 'rejects text that does not start with an element' do
      expect { described_class.template!("hello #{body}", 't.xml') }.to raise_error(ArgumentError, 't.xml: root element is <>, not <domain>')
    end

    it 'lists the required placeholders as the C side must' do
      expect(described_class::REQUIRED_PLACEHOLDERS).to eq(['name', 'uuid', 'mac', 'disk', 'memory', 'vcpus'])
      expect(described_class::OPTIONAL_PLACEHOLDERS).to contain_exactly('ip', 'role', 'roles', 'cloud', 'index', 'host', 'image', 'slot', 'ssh_pubkey')
    end

    it 'mirrors the lists of the C side when its source is there' do
      source = File.join(REPO_ROOT, 'ext', 'cloud', 'cl_tmpl.c')
      skip 'ext/cloud/cl_tmpl.c is not in this checkout' unless File.exist?(source)
      text = File.read(source)
      list = ->(name) { text[/#{name}\[\] = \{(.*?)\};/m, 1].scan(/"(\w+)"/).flatten }
      expect(list.call('cl_tmpl_required')).to eq(described_class::REQUIRED_PLACEHOLDERS)
      expect(list.call('cl_tmpl_known')).to match_array(described_class::PLACEHOLDERS)
    end

    it 'allows blanks inside the braces' do
      text = "<domain>{{ name }}{{uuid }}{{mac}}{{disk}}{{memory}}{{vcpus}}</domain>"
      expect(described_class.template!(text, 't.xml')).to eq(text)
    end

    it 'wants the domain element closed' do
      expect { described_class.template!("<domain>#{body.sub('</domain>', '')}", 't.xml') }
        .to raise_error(ArgumentError, 't.xml: the <domain> element is not closed')
    end

    it 'names every missing placeholder' do
      expect { described_class.template!('<domain>{{name}}</domain>', 't.xml') }
        .to raise_error(ArgumentError, 't.xml: missing placeholder {{uuid}}, {{mac}}, {{disk}}, {{memory}}, {{vcpus}}')
    end

    it 'rejects an unknown ERB placeholder' do
      expect { described_class.template!("<domain><%= vm[:ip] %>#{body}", 't.xml') }
        .to raise_error(ArgumentError, 't.xml: unsupported ERB code <%= vm[:ip] %>')
    end
  end
end
