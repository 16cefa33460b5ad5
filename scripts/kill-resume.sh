#!/usr/bin/env bash
# kill -9 at N random moments per command (sample, logz, prob), resume from
# the checkpoint, and compare the whole output with an uninterrupted run:
# the npy outputs byte for byte, the JSON reports field by field except the
# wall time; an AIS shard file byte for byte too. Usage: scripts/kill-resume.sh [N=20]. Prints one line per
# command: identical/total.
set -u
N=${1:-20}
cd "$(dirname "$0")/.."
cargo build --release -q || exit 2
B=$PWD/target/release/boltz
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
python3 - <<'PY'
import struct
def npy(name, rows, cols, vals):
    h = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
    open(name, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + b''.join(struct.pack('<d', v) for v in vals))
npy('x.npy', 3, 1, [0.0, 0.5, 0.9])
npy('y.npy', 2, 2, [0.3, 0.1, -0.2, 0.8])
PY
strip() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.pop('wall_s',None); print(json.dumps(d, sort_keys=True))" "$1"; }
run_case() {  # name, out-flag ("--out" or "-"), args...
  # Both runs write the same names (the report names its outputs); the
  # kill comes at a random moment up to 1 s after the first checkpoint.
  local name=$1 outflag=$2; shift 2
  local o=(); [ "$outflag" = "-" ] || o=("$outflag" out.npy)
  rm -f out.npy report.json
  "$B" "$@" --report report.json "${o[@]}" >/dev/null 2>&1 || { echo "$name: the uninterrupted run failed"; return; }
  strip report.json > full.norm
  if [ -f out.npy ]; then mv out.npy full.npy; else : > full.npy; fi
  local same=0 tried=0
  for i in $(seq 1 "$N"); do
    rm -f ck out.npy report.json
    "$B" "$@" --report report.json "${o[@]}" --checkpoint ck --checkpoint-every 50 >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do [ -f ck ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.01; done
    sleep "$(python3 -c "import random; print(round(random.uniform(0.0, 1.0), 3))")"
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    [ -f ck ] || continue
    rm -f out.npy report.json
    tried=$((tried+1))
    "$B" "$@" --report report.json "${o[@]}" --checkpoint ck --checkpoint-every 50 --resume ck >/dev/null 2>&1 || continue
    [ -f out.npy ] || : > out.npy
    if cmp -s full.npy out.npy && [ "$(strip report.json)" = "$(cat full.norm)" ]; then same=$((same+1)); fi
  done
  echo "$name: $same of $tried kills resumed to the uninterrupted run's whole output"
}
run_case sample --out sample --model gauss-ill --sampler hmc --chains 8 --warmup 500 --draws 3000 --seed 4 --quiet
run_case logz - logz --model gmm-far --method ais --particles 512 --temps 3000 --quiet
run_case prob --out prob --model ring --context x.npy --points y.npy --method ais --particles 512 --temps 3000 --quiet
run_case logz-shard --shard-out logz --model gmm-far --method ais --particles 512 --temps 3000 --shard 1/2 --quiet
run_case pt --out sample --model gmm-ring --sampler pt --chains 4 --warmup 20000 --draws 60000 --seed 2 --quiet
