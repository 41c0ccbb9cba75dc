#!/usr/bin/env ruby
# frozen_string_literal: true

# Where the product's time goes (BENCHMARKS.md, "Breakdown"): the same converge / tear-down as
# bench/converge.rb, peeled layer by layer, each layer a median of RUNS runs at each N:
#
#   bare            bench/bare.c, the floor
#   virt_calls      only the cl_virt calls the engine makes per slot        (bench/phases.c)
#   engine          cl_engine_apply/stop in-process, quiet, no progress     (bench/phases.c)
#   engine+log      ... plus cloudd's log lines to a file                   (bench/phases.c)
#   engine+progress ... plus progress lines serialised to a socket          (bench/phases.c)
#   engine+both     ... both, what cloudd's engine does per request         (bench/phases.c)
#   daemon raw      a raw request to cloudd over its socket, lines read and discarded (no Ruby)
#   Cloud no block  Cloud.new(spec).leader_start / #stop without a block
#   Cloud + block   the same with a block counting progress events (the provider passes one;
#                   this is the "product" of converge.rb)
#
# Environment: N="10 100" (list; the engine layers stop at 100, see bench/bare.c), RUNS=7.
# Output: a table on stdout, raw numbers in bench/out/breakdown-*.json.

require_relative 'converge'

BD_NS = (ENV['N'] || '10 100').split(/[\s,]+/).map { |s| Integer(s) }
BD_RUNS = Integer(ENV.fetch('RUNS', '7'))

def raw_call(socket, req)
  lines = 0
  UNIXSocket.open(socket) do |s|
    s.write(req)
    s.each_line { lines += 1 }
  end
  lines
end

def bd_main
  tmp = Dir.mktmpdir('cloud-breakdown')
  product = nil
  out = {}
  begin
    system('make', '-s', '-C', ROOT, '-f', 'bench/Makefile', 'bare', 'phases', out: $stderr) ||
      raise('building bench/bare.c and bench/phases.c failed (run `rake compile` first)')
    product = Product.new(tmp)
    sock = product.instance_variable_get(:@socket)
    state = product.instance_variable_get(:@state)
    bare = Bare.new(tmp)
    BD_NS.each do |n|
      sp = spec(n)
      apply_req = JSON.generate('v' => 1, 'op' => 'apply', 'spec' => sp) + "\n"
      stop_req = JSON.generate('v' => 1, 'op' => 'stop', 'name' => CLOUD, 'spec' => sp) + "\n"
      opts = { socket: sock, state_dir: state, autostart: false }
      t = Hash.new { |h, k| h[k] = [] }
      BD_RUNS.times do |run|
        r = bare.run(n)
        t['bare converge'] << r[:converge_s]
        t['bare teardown'] << r[:teardown_s]

        t0 = now
        lines = raw_call(sock, apply_req)
        t['daemon raw converge'] << now - t0
        t0 = now
        raw_call(sock, stop_req)
        t['daemon raw teardown'] << now - t0
        st = Cloud.new(sp, **opts).status
        check(st['state'] == 'stopped' || st['slots'].none? { |x| x['state'] == 'running' }, 'raw stop left domains')
        t['progress lines converge'] << lines

        t0 = now
        c = Cloud.new(sp, **opts)
        t['Cloud.new'] << now - t0
        c.leader_start
        t['Cloud no block converge'] << now - t0
        t0 = now
        Cloud.new(sp, **opts).stop
        t['Cloud no block teardown'] << now - t0

        r = product.run(n)
        t['Cloud + block converge'] << r[:converge_s]
        t['Cloud + block teardown'] << r[:teardown_s]
        log "breakdown N=#{n} run #{run + 1} done"
      end
      ph = JSON.parse(IO.popen([File.join(ROOT, 'build', 'bench', 'phases'), n.to_s, BD_RUNS.to_s], &:read))
      raise 'bench/phases failed' unless $?.success?
      out[n] = { 'medians' => t.transform_values { |v| median(v) }, 'phases' => ph, 'raw' => t }
    end
  ensure
    product&.close
    FileUtils.rm_rf(tmp)
  end

  layers = [
    ['bare C loop (floor)', 'bare', ->(m, _p) { m['bare converge'] }, ->(m, _p) { m['bare teardown'] }],
    ["the engine's cl_virt calls only", 'phases', ->(_m, p) { p['virt_calls_converge_s'] }, ->(_m, p) { p['virt_calls_teardown_s'] }],
    ['engine in-process, quiet', 'phases', ->(_m, p) { p['engine_converge_s'] }, ->(_m, p) { p['engine_teardown_s'] }],
    ['engine + log file', 'phases', ->(_m, p) { p['engine_log_converge_s'] }, ->(_m, p) { p['engine_log_teardown_s'] }],
    ['engine + progress lines', 'phases', ->(_m, p) { p['engine_progress_converge_s'] }, ->(_m, p) { p['engine_progress_teardown_s'] }],
    ['engine + log + progress', 'phases', ->(_m, p) { p['engine_daemonlike_converge_s'] }, ->(_m, p) { p['engine_daemonlike_teardown_s'] }],
    ['cloudd, raw socket request', 'daemon', ->(m, _p) { m['daemon raw converge'] }, ->(m, _p) { m['daemon raw teardown'] }],
    ['Cloud, no block', 'ruby', ->(m, _p) { m['Cloud no block converge'] }, ->(m, _p) { m['Cloud no block teardown'] }],
    ['Cloud + block (= product)', 'ruby', ->(m, _p) { m['Cloud + block converge'] }, ->(m, _p) { m['Cloud + block teardown'] }],
  ]
  out.each do |n, d|
    m = d['medians']
    p = d['phases']
    puts
    puts "N=#{n}: medians of #{BD_RUNS} runs, milliseconds (x = multiple of the bare C loop)"
    puts format('| %-33s | %9s | %7s | %9s | %7s |', 'layer', 'converge', 'x bare', 'teardown', 'x bare')
    puts "|#{'-' * 35}|#{'-' * 11}|#{'-' * 9}|#{'-' * 11}|#{'-' * 9}|"
    bc = m['bare converge']
    bt = m['bare teardown']
    layers.each do |name, _src, fc, ft|
      c = fc.call(m, p)
      td = ft.call(m, p)
      puts format('| %-33s | %9.2f | %6.2fx | %9.2f | %6.2fx |', name, c * 1000, c / bc, td * 1000, td / bt)
    end
    puts format('Components at N=%d (ms): one scan %.2f (with foreign ids %.2f; of which list %.3f, ' \
                'virDomainGetMetadata x N %.2f, virDomainGetXMLDesc x N %.2f), state save with fsync %.2f, ' \
                'spec parse %.2f, Cloud.new %.2f; %d progress lines per converge',
                n, p['scan_s'] * 1000, p['scan_foreign_s'] * 1000, p['scan_list_s'] * 1000,
                p['scan_get_metadata_s'] * 1000, p['scan_get_xml_desc_s'] * 1000, p['state_save_s'] * 1000,
                p['spec_parse_s'] * 1000, m['Cloud.new'] * 1000, m['progress lines converge'])
  end
  out_dir = File.join(ROOT, 'bench', 'out')
  FileUtils.mkdir_p(out_dir)
  path = File.join(out_dir, "breakdown-#{Time.now.utc.strftime('%Y%m%dT%H%M%SZ')}.json")
  File.write(path, JSON.pretty_generate('machine' => machine, 'runs' => BD_RUNS, 'results' => out))
  puts "product at #{machine['commit']}#{machine['ext_changes'].empty? ? '' : ' (ext/ modified)'}"

  puts
  puts "raw results: #{path.sub("#{ROOT}/", '')}"
end

bd_main if $PROGRAM_NAME == __FILE__
