# frozen_string_literal: true

# What the `cloud` provider of every distributed type does, in one mixin: build the spec, ask the
# `Cloud` class (C extension) for the real state, start the cloud in the way this host's place
# demands (leader, member or outside the pool), stop it, stream the daemon's progress into Puppet's
# log, and turn `Cloud::Error`s into Puppet errors that name the host and the operation.
# `::Cloud` is always written with its leading colons: inside PuppetX, `Cloud` is PuppetX::Cloud.

require 'fileutils'
require_relative 'spec'

module PuppetX
  module Cloud
    # Provider mixin: `include PuppetX::Cloud::Provider` in Puppet::Type.type(:x).provide(:cloud).
    module Provider
      # Progress events (their tags, as cloudd logs them) that change a slot: logged as notices
      # saying what happened. Every other event (+disk, ~roles-skipped, +converged...) is debug.
      PROGRESS_NOTICES = {
        '+define' => 'defined', '+start' => 'started', '+create' => 'created', '+recreate' => 'recreated',
        '-domain' => 'removed', '-disk' => 'deleted the disk of', '-destroy' => 'destroyed',
        '-undefine' => 'undefined', '-shutdown' => 'shut down', '+repair' => 'repaired'
      }.freeze
      # Actions of the "changes" of a result (doc/INTERNALS.md section 2), as notices say them.
      CHANGE_VERBS = {
        'create' => 'created', 'recreate' => 'recreated', 'start' => 'started', 'remove' => 'removed',
        'destroy' => 'destroyed', 'undefine' => 'undefined', 'delete-disk' => 'deleted the disk of',
        'forget' => 'forgot'
      }.freeze

      def self.included(base)
        base.extend(ClassMethods)
      end

      # The state `ensure` reports, from a status document (INTERNALS.md section 3), the plan
      # and the slots the spec wants (nil: do not compare): :running only when converged to the
      # spec, :stopped only when nothing of the cloud exists, :degraded otherwise.
      def self.observed_state(status, plan = [], wanted_slots = nil)
        slots = status['slots'] || []
        case status['state']
        when 'stopped'
          slots.all? { |slot| slot['state'] == 'missing' } ? :stopped : :degraded
        when 'running'
          return :degraded unless plan.empty? && slots.all? { |slot| slot['state'] == 'running' }
          return :running if wanted_slots.nil?
          have = slots.to_h { |slot| [slot['name'], slot['ip']] }
          wanted_slots.all? { |slot| have[slot['name']] == slot['ip'] } ? :running : :degraded
        else
          :degraded
        end
      end

      # A Cloud::Error as a Puppet::Error naming the resource, the operation and the host.
      def self.error(resource, err)
        operation = err.respond_to?(:operation) && err.operation ? err.operation : 'cloud request'
        host = err.respond_to?(:host) && err.host ? err.host : 'this host'
        code = err.respond_to?(:code) && err.code ? ", code #{err.code}" : ''
        kind = err.class.name.to_s.split('::').last
        error = Puppet::Error.new("#{resource.ref}: #{operation} failed on #{host}: #{err.message} (#{kind}#{code})")
        error.set_backtrace(err.backtrace) if err.backtrace
        error
      end

      # Class side: `puppet resource <type>` lists the clouds of this type the local daemon knows.
      module ClassMethods
        def instances
          clouds = ::Cloud.status.fetch('clouds', [])
          clouds.select { |cloud| cloud['type'] == resource_type.name.to_s }.map do |cloud|
            new(name: cloud['name'], ensure: PuppetX::Cloud::Provider.observed_state(cloud))
          end
        rescue ::Cloud::Error => e
          raise Puppet::Error.new("#{resource_type.name}: listing the clouds failed on #{e.host || 'this host'}: #{e.message}", e)
        end
      end

      # The validated spec, built once per run (after the files it reads have been synced).
      def spec
        @spec ||= PuppetX::Cloud::Spec.build(resource)
      end

      # ensure getter: the real state. Never starts a daemon (status and plan do not).
      def ensure
        return @property_hash[:ensure] if @property_hash.key?(:ensure)
        return known_state if resource[:pool].nil?
        return :degraded if unplannable_in_noop?
        running = resource.should(:ensure) == :running
        with_cloud do |cloud|
          status = cloud.status
          report_repairs(status)
          plan = running ? cloud.plan : []
          state = PuppetX::Cloud::Provider.observed_state(status, plan, running ? spec['slots'] : nil)
          log_plan(running, state, plan, status) if resource.noop?
          state
        end
      end

      # What the last start or stop changed, one "created X on HOST" per slot change: the ensure
      # property puts them in its event's message, so the run's report names every slot changed.
      def slot_changes
        @slot_changes || []
      end

      # ensure => running: converge as the leader, join as a member, or hand over from outside.
      def start
        with_cloud do |cloud|
          @noticed = []
          @slot_changes = []
          if cloud.member?
            if cloud.leader?
              report(cloud.leader_start { |event| progress(event) }, 'running')
            else
              # joins the election and hands the spec to the leader, which converges it
              joined = cloud.common_start { |event| progress(event) }
              leader = joined['leader'] ? "#{joined['leader']} leads it (epoch #{joined['epoch']})" : 'no leader yet'
              resource.notice("this host is a member of #{resource[:name]}: #{leader}")
              # nothing converged: a warning, so the run's report does not read as all done
              if joined['handover']
                resource.warning("the spec was not handed to a leader: #{joined['handover']}; " \
                                 'the cloud converges when a majority of its pool has joined')
              end
              report(joined, 'running') if joined.key?('changes')
            end
          else
            report(cloud.not_cloud_start { |event| progress(event) }, 'running')
          end
        end
      end

      # ensure => stopped: the leader tears everything down on every pool host.
      def stop
        with_cloud do |cloud|
          @noticed = []
          @slot_changes = []
          report(cloud.stop { |event| progress(event) }, nil)
          PuppetX::Cloud::Secret.remove(resource)
        end
      end

      private

      # State of a cloud named without a pool (`puppet resource web myweb`): as the local daemon
      # knows it, or stopped.
      def known_state
        cloud = ::Cloud.status.fetch('clouds', []).find do |c|
          c['name'] == resource[:name] && c['type'] == resource.class.name.to_s
        end
        cloud ? PuppetX::Cloud::Provider.observed_state(cloud) : :stopped
      rescue ::Cloud::Error => e
        raise PuppetX::Cloud::Provider.error(resource, e)
      end

      # In noop mode the file resources that write the ips/images lists did not run: without
      # them there is no spec to plan with. Say so instead of failing.
      def unplannable_in_noop?
        return false unless resource.noop?
        missing = (resource.cloud_deferred || []).map(&:last).reject { |path| File.exist?(path) }
        return false if missing.empty?
        resource.notice("cannot plan before #{missing.join(' and ')} exist#{missing.size == 1 ? 's' : ''} " \
                        '(file resources not applied in noop mode)')
        true
      end

      def with_cloud
        # a Sensitive `secret` reaches the daemons as a root-only key file (not in noop mode)
        PuppetX::Cloud::Secret.write(resource) unless resource.noop?
        cloud = ::Cloud.new(spec)
        yield cloud
      rescue ::Cloud::Error => e
        raise PuppetX::Cloud::Provider.error(resource, e)
      ensure
        cloud&.close
      end

      # One progress Hash: slot changes are notices, everything else debug.
      def progress(event)
        tag = event['event'].to_s
        slot = event['slot']
        if slot && PROGRESS_NOTICES.key?(tag)
          text = "#{PROGRESS_NOTICES[tag]} #{slot}#{" on #{event['host']}" if event['host']}"
          resource.notice(text)
          @slot_changes&.push(text)
          @noticed << slot
        else
          detail = [tag, slot, event['host'] && "on #{event['host']}"].compact.join(' ')
          resource.debug(event['message'] ? "#{detail}: #{event['message']}" : detail)
        end
      end

      # Changes not already told by progress events, and a warning if the cloud is not there yet.
      def report(result, wanted_state)
        (result['changes'] || []).each do |change|
          next if @noticed.include?(change['slot'])
          verb = CHANGE_VERBS.fetch(change['action'].to_s, change['action'].to_s)
          target = change['slot'] || change['domain'] || resource[:name]
          text = "#{verb} #{target}#{" on #{change['host']}" if change['host']}"
          resource.notice(text)
          @slot_changes&.push(text)
        end
        state = result.dig('status', 'state')
        return if wanted_state.nil? || state.nil? || state == wanted_state
        resource.warning("#{resource[:name]} is #{state}, not #{wanted_state}, after the start; the leader keeps repairing it")
      end

      # What drifted and what the leader's monitor did about it since the last apply (on the
      # leader, which keeps the history): each event once, remembered by its time in
      # <state dir>/reported/<name> (not in noop mode). Flapping slots are warnings.
      def report_repairs(status)
        events = status.is_a?(Hash) ? Array(status['repaired']) : []
        return if events.empty?
        marker = File.join(ENV.fetch('CLOUD_STATE_DIR', '/var/lib/cloud'), 'reported', resource[:name].to_s)
        seen = File.exist?(marker) ? File.read(marker).to_i : 0
        fresh = events.select { |e| e['time_ms'].to_i > seen }
        return if fresh.empty?
        fresh.each do |e|
          at = Time.at(e['time_ms'].to_i / 1000.0).utc.strftime('%Y-%m-%dT%H:%M:%SZ')
          where = e['host'] ? " on #{e['host']}" : ''
          text = "#{e['slot'] || resource[:name]}#{where} at #{at} (epoch #{e['epoch']})"
          case e['type']
          when '+repair' then resource.notice("repaired by the leader: #{text}: #{e['text']}")
          when '-flapping' then resource.warning("flapping, repairs paused: #{text}: #{e['text']}")
          when '-repair' then resource.warning("repair failed: #{text}: #{e['text']}")
          else resource.notice("drifted: #{text}: #{e['text']}")
          end
        end
        return if resource.noop?
        FileUtils.mkdir_p(File.dirname(marker), mode: 0o700)
        File.write(marker, fresh.map { |e| e['time_ms'].to_i }.max.to_s)
      rescue SystemCallError => e
        resource.debug("could not remember the reported repairs: #{e.message}")
      end

      # noop: say what a run would do.
      def log_plan(running, state, plan, status)
        if running
          return if state == :running
          slots = spec['slots'].to_h { |slot| [slot['name'], slot] }
          plan.each do |step|
            slot = slots[step['slot']]
            what = slot ? " (#{slot['roles'].join('+')}, #{slot['ip']})" : ''
            resource.notice("would #{step['action']} #{step['slot'] || step['domain']}#{what}#{" on #{step['host']}" if step['host']}")
          end
        elsif state != :stopped
          (status['slots'] || []).each do |slot|
            next if slot['state'] == 'missing'
            resource.notice("would destroy #{slot['name']}#{" on #{slot['host']}" if slot['host']}")
          end
        end
      end
    end
  end
end
