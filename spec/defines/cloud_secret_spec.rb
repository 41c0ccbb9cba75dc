# frozen_string_literal: true

require 'spec_helper'

describe 'cloud::secret' do
  let(:title) { 'myweb' }
  let(:params) { { secret: sensitive('0123456789abcdef0123') } }

  it { is_expected.to compile.with_all_deps }

  it 'writes <dir>/<title>.key root-only from the Sensitive value, never shown or backed up' do
    is_expected.to contain_file('/var/lib/cloud/secrets/myweb.key').with(
      ensure: 'file', owner: 'root', group: 'root', mode: '0600', show_diff: false, backup: false,
      content: sensitive('0123456789abcdef0123'),
    )
  end

  context 'with dir and ensure => absent' do
    let(:params) { { secret: sensitive('0123456789abcdef0123'), dir: '/srv/secrets', ensure: 'absent' } }

    it { is_expected.to contain_file('/srv/secrets/myweb.key').with_ensure('absent') }
  end

  context 'with a title that is not a cloud name' do
    let(:title) { 'my web' }

    it { is_expected.to compile.and_raise_error(%r{title must be a cloud name}) }
  end

  context 'with a secret shorter than 16 characters' do
    let(:params) { { secret: sensitive('short') } }

    it { is_expected.to compile.and_raise_error(%r{Cloud::Secret\[myweb\]: the secret has fewer than 16 characters}) }
  end

  context 'with a secret that is not Sensitive' do
    let(:params) { { secret: '0123456789abcdef0123' } }

    it { is_expected.to compile.and_raise_error(%r{secret}) }
  end

  context 'with a relative dir' do
    let(:params) { { secret: sensitive('0123456789abcdef0123'), dir: 'secrets' } }

    it { is_expected.to compile.and_raise_error(%r{dir}) }
  end
end
