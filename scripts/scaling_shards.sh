#!/usr/bin/env bash
# Measures sharded runs on this machine for docs/SCALING.md: each shard of
# M = 1, 2, 4, 8 run one after another on one thread (as one core of a
# cluster would run it), its wall time and file size, and the merge's.
# usage: scripts/scaling_shards.sh [OUT.jsonl]   (default results/scaling/shards.jsonl)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/target/release/boltz"
OUT=${1:-$ROOT/results/scaling/shards.jsonl}
mkdir -p "$(dirname "$OUT")"
(cd "$ROOT" && cargo build --release --quiet)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 -c "import struct" # python3 for timing arithmetic below
now() { date +%s.%N; }
: > "$OUT"
run() { # name kind M args...
  local name=$1 kind=$2 m=$3; shift 3
  rm -f "$W"/s-*.boltz
  local walls=()
  for ((i = 0; i < m; i++)); do
    local t0; t0=$(now)
    "$B" --threads 1 "$kind" "$@" --shard "$i/$m" --shard-out "$W/s-$i.boltz" --quiet --json > /dev/null
    walls+=("$(python3 -c "print($(now) - $t0)")")
  done
  local t0; t0=$(now)
  "$B" --threads 1 merge "$W"/s-*.boltz --json > "$W/merged.json"
  local mw; mw=$(python3 -c "print($(now) - $t0)")
  local bytes; bytes=$(stat -c %s "$W"/s-*.boltz | paste -sd+ | bc)
  python3 - "$name" "$m" "$mw" "$bytes" "${walls[@]}" >> "$OUT" <<'PY'
import json, sys
name, m, mw, b, *w = sys.argv[1:]
w = [float(x) for x in w]
print(json.dumps({"workload": name, "shards": int(m), "shard_wall_s": w, "max_shard_s": max(w),
                  "sum_shard_s": sum(w), "merge_s": float(mw), "shard_bytes": int(b)}))
PY
  tail -1 "$OUT" >&2
}
python3 -c "import random; import struct" 
"$B" suite > /dev/null
# Contexts for the conditional run: 1024 rows of x in [0, 1.2) (8 batches of 128 at 256 particles).
python3 - "$W/ctx.npy" <<'PY'
import struct, sys
rows = [[1.2 * i / 1024] for i in range(1024)]
hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (1024, 1), }"
hdr += " " * (127 - 10 - len(hdr)) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    for r in rows:
        f.write(struct.pack("<d", r[0]))
PY
for m in 1 2 4 8; do
  run "logz rbm20, 8192 particles x 1000 temperatures" logz "$m" --model rbm20 --method ais --particles 8192 --temps 1000
  run "logz ring (conditional), 1024 contexts x 256 particles x 100 temperatures" logz "$m" --model ring --context "$W/ctx.npy" --method ais --particles 256 --temps 100
  run "sample gauss-ill mala, 64 chains x (1000 + 1000)" sample "$m" --model gauss-ill --sampler mala --chains 64 --warmup 1000 --draws 1000 --out "$W/x.npy"
done
echo "wrote $OUT" >&2
