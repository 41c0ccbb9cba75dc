# frozen_string_literal: true

require_relative '../../../puppet_x/cloud/provider'

Puppet::Type.type(:web).provide(:cloud) do
  desc 'Runs the web cloud through the cloudd daemons (Cloud class of the cloud_ext extension).'

  confine feature: :cloud_ext

  include PuppetX::Cloud::Provider
end
