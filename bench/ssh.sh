#!/usr/bin/env bash
#
# ssh.sh: issue 4's SSH benchmark on a real guest of the lab.  Brings up a lab of 2 hosts with
# one guest (test/lab/lab-smoke, kept up), runs bench/ssh_cmds from host 1's namespace against
# the guest (100 commands over one libssh2 session, through an OpenSSH ControlMaster, and one
# ssh process each; 3 interleaved rounds, medians), then takes the lab down, also on failure.
#
#   bash bench/ssh.sh [N [ROUNDS]]        (as root, after rake compile; LAB_DIR to move the lab)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
rounds=${2:-3}
dir=${LAB_DIR:-/tmp/cloud-ssh-bench}
make -s -f bench/Makefile ssh_cmds
[ ! -e "$dir" ] || { echo "ssh.sh: $dir exists: remove it or set LAB_DIR" >&2; exit 1; }
trap 'test/lab/lab down "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
SMOKE_KEEP=1 test/lab/lab-smoke "$dir" >&2
ns=$(sed -n "s/^LAB_NS_1='\(.*\)'$/\1/p" "$dir/lab.env")
echo "ssh benchmark: guest 10.78.0.11 of the lab (qemu TCG), from host 1; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
ip netns exec "$ns" build/bench/ssh_cmds 10.78.0.11 "$dir/id_ed25519" "$n" "$rounds"
