#!/usr/bin/env bash
# The log Z merge's time and memory against the number of shards
# (docs/SCALING.md, "The log Z merge streams"): one run of `ring` over C
# contexts x 1024 particles x 2 temperatures (fixed step and base: no
# pilots) split into M shards for each M, every shard with --threads 1, two
# at a time; each merge timed by /usr/bin/time (wall s, max RSS) and its
# report compared with the one-process run's.
#
# usage: BOLTZ=target/release/boltz scripts/scaling_merge.sh [C] [M...]
#   defaults: C = 32768, M = 10 100 1000 (about 3 minutes on two cores)
set -euo pipefail
BOLTZ=$(realpath "${BOLTZ:-target/release/boltz}")
C=${1:-32768}
shift || true
MS=("${@:-10 100 1000}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 - "$C" << 'EOF2'
import struct, sys, random
# contexts.npy: C x 1 float64 in (-0.9, 0.9), written without numpy
c = int(sys.argv[1]); rng = random.Random(1)
header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, 1), }" % c
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open("contexts.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<%dd" % c, *(rng.uniform(-0.9, 0.9) for _ in range(c))))
EOF2
common=(--model ring --context contexts.npy --method ais --no-reverse --temps 2 --step-size 0.05 --base-scale 1 --quiet)
/usr/bin/time -f "one-process run: %e s, max RSS %M KB" "$BOLTZ" logz "${common[@]}" --report one.json > /dev/null 2> one.err
tail -1 one.err
for m in ${MS[*]}; do
  mkdir "m$m"
  seq 0 $((m - 1)) | xargs -P 2 -I{} "$BOLTZ" logz "${common[@]}" --threads 1 --shard {}/"$m" --shard-out "m$m/s{}.boltz" > /dev/null
  /usr/bin/time -f "merge of $m shards ($(du -sb "m$m" | cut -f1) bytes): %e s, max RSS %M KB" \
    "$BOLTZ" merge "m$m"/*.boltz --report "m$m.json" > /dev/null 2> merge.err
  tail -1 merge.err
  python3 - one.json "m$m.json" << 'EOF2'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
same = all(a[k] == b[k] for k in ("log_z", "stderr", "ess", "acceptance", "contexts_done", "energy_evals"))
print("  merged report equal to the one-process run's:", same)
EOF2
  rm -rf "m$m"
done
