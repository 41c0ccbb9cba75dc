# frozen_string_literal: true

# Reads the files a distributed resource points to (vm_domain template, ips/images lists): a local
# absolute path, or a puppet:/// URI fetched through Puppet's file serving (the local module path
# under `puppet apply`, the Puppet Server under `puppet agent`), exactly as a file resource would.

require_relative 'validate'

module PuppetX
  module Cloud
    # File access for the spec builder.
    module Source
      # A local file that does not exist (yet): a file resource of the same catalog may create it.
      class Missing < ArgumentError; end

      module_function

      # => the file's text (UTF-8). Raises Missing or ArgumentError with a message naming the file.
      def read(source, environment = nil)
        text = if Validate.puppet_uri?(source)
                 fetch(source, environment)
               else
                 read_local(source)
               end
        text = text.dup.force_encoding(Encoding::UTF_8)
        raise ArgumentError, "#{source} is not valid UTF-8 text" unless text.valid_encoding?
        text
      end

      def read_local(path)
        raise Missing, "#{path} does not exist" unless File.exist?(path)
        raise ArgumentError, "#{path} is not a regular file" unless File.file?(path)
        raise ArgumentError, "#{path} is not readable" unless File.readable?(path)
        if File.size(path) > Validate::MAX_FILE_BYTES
          raise ArgumentError, "#{path} is larger than #{Validate::MAX_FILE_BYTES} bytes"
        end
        File.binread(path)
      rescue SystemCallError => e
        raise ArgumentError, "#{path} cannot be read: #{e.message}"
      end

      def fetch(uri, environment)
        require 'puppet/file_serving/content'
        env = environment || Puppet.lookup(:current_environment)
        content = Puppet::FileServing::Content.indirection.find(uri, environment: env)
        raise ArgumentError, "#{uri} was not found by the file server" if content.nil?
        data = content.content
        raise ArgumentError, "#{uri} is larger than #{Validate::MAX_FILE_BYTES} bytes" if data.bytesize > Validate::MAX_FILE_BYTES
        data
      rescue ArgumentError
        raise
      rescue StandardError => e
        raise ArgumentError, "#{uri} cannot be fetched: #{e.message}"
      end
    end
  end
end
