# frozen_string_literal: true

# mkmf build of the Ruby extension (ext/cloud: the C core cl_*.c and the glue rb_*.c).
# cloudd, cloudctl and the C unit tests are built by ext/cloud/core.mk; `rake compile` runs both.
require 'mkmf'

src = File.expand_path('ext/cloud', __dir__)

%w[libvirt json-c libssh2 libcrypto].each do |pkg|
  next if pkg_config(pkg)

  abort "extconf.rb: pkg-config cannot find #{pkg}: apt-get install libvirt-dev libjson-c-dev libssh2-1-dev libssl-dev"
end

$CFLAGS << ' -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers'
$INCFLAGS << " -I#{src}"
$srcs = Dir[File.join(src, '{cl,rb}_*.c')].sort.map { |f| File.basename(f) }
$libs << ' -lpthread -ldl'

create_makefile('cloud_ext', src)
