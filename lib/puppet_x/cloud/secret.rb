# frozen_string_literal: true

require 'fileutils'

module PuppetX
  module Cloud
    # The per-cloud secret given as a Sensitive `secret` (instead of `secret_file`): Puppet writes
    # it to a root-only file that the spec names as secret_file, so the daemons read it as they
    # read any key file. The value is never logged, never put in the spec, never in a process
    # argument.
    module Secret
      module_function

      # <state dir>/secrets (CLOUD_STATE_DIR, as the extension and cloudd use, or /var/lib/cloud).
      def dir
        File.join(ENV.fetch('CLOUD_STATE_DIR', '/var/lib/cloud'), 'secrets')
      end

      def path(name)
        File.join(dir, "#{name}.key")
      end

      # The secret_file of a resource: its own, or the file written for its `secret`, or nil.
      def file_for(resource)
        return resource[:secret_file] if resource[:secret_file]
        resource[:secret] ? path(resource[:name]) : nil
      end

      # Writes the resource's `secret` to its file (0600 in a 0700 directory), atomically and
      # only when it differs; true if it was written. Nothing to do without a `secret`.
      def write(resource)
        return false if resource[:secret].nil? || resource[:secret_file]
        secret = resource[:secret]
        secret = secret.unwrap if secret.respond_to?(:unwrap)
        file = path(resource[:name])
        FileUtils.mkdir_p(dir, mode: 0o700)
        File.chmod(0o700, dir)
        return false if File.file?(file) && (File.stat(file).mode & 0o077).zero? && File.binread(file) == secret

        tmp = "#{file}.tmp.#{Process.pid}"
        File.open(tmp, File::WRONLY | File::CREAT | File::TRUNC, 0o600) do |f|
          f.chmod(0o600)
          f.write(secret)
          f.fsync
        end
        File.rename(tmp, file)
        true
      ensure
        FileUtils.rm_f(tmp) if tmp && File.exist?(tmp)
      end

      # After the cloud is stopped: the file written for its `secret` goes too.
      def remove(resource)
        return if resource[:secret].nil? || resource[:secret_file]
        FileUtils.rm_f(path(resource[:name]))
      end
    end
  end
end
