# @summary The peer secret of one cloud, as the root-only key file its `secret_file` names.
#
# Writes `<dir>/<title>.key` (owner root, mode 0600) from a Sensitive value: the content never
# appears in logs, reports, diffs or the filebucket. Give every pool host of the cloud the same
# secret, and the cloud's resource `secret_file => '<dir>/<title>.key'`. The directory is not
# declared here: `cloud::host` declares it (mode 0700) and declares this type for each entry of
# its `secrets`; declare the directory yourself when you use this type alone.
#
# @param secret
#   The secret, at least 16 characters (the daemons sign the cloud's peer messages with it).
# @param dir
#   Directory of the key files (absolute).
# @param ensure
#   `present`, or `absent` to remove the key file (after the cloud is stopped everywhere).
#
# @example
#   cloud::secret { 'myweb':
#     secret => Sensitive(lookup('myweb_secret')),
#   }
#   web { 'myweb':
#     secret_file => '/var/lib/cloud/secrets/myweb.key',
#     # ...
#   }
define cloud::secret (
  Sensitive[String] $secret,
  Cloud::Path $dir = '/var/lib/cloud/secrets',
  Enum['present', 'absent'] $ensure = 'present',
) {
  unless $title =~ Cloud::Cloudname {
    fail("Cloud::Secret[${title}]: the title must be a cloud name ([A-Za-z0-9][A-Za-z0-9_.-], at most 40 characters)")
  }
  # Puppet 7 drops the size of Sensitive[String[16]]: checked here (the value is not shown)
  if length($secret.unwrap) < 16 {
    fail("Cloud::Secret[${title}]: the secret has fewer than 16 characters")
  }

  $file_ensure = $ensure ? {
    'present' => 'file',
    default   => 'absent',
  }
  file { "${dir}/${title}.key":
    ensure    => $file_ensure,
    owner     => 'root',
    group     => 'root',
    mode      => '0600',
    content   => $secret,
    show_diff => false,
    backup    => false,
  }
}
