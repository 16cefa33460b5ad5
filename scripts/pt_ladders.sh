#!/usr/bin/env bash
# Parallel tempering's stepping-stone log Z with one pooled ladder against a
# ladder per chain (`--ladder per-chain`, what `--shard` needs), over seeds:
# rms error, rms z-score (error / reported standard error) and mean error
# against the exact log Z. The figures in the README's "Parallel tempering".
#
#   BOLTZ=target/release/boltz bash scripts/pt_ladders.sh [MODEL] [EXACT] [SEEDS]
#
# Defaults: examples/models/separated-modes.json (exact log Z 0), 30 seeds;
# the library's `logz --method pt` settings (16 chains x 16 replicas, 2000
# warm-up and 8000 steps), one thread. About 45 s per ladder mode.
set -euo pipefail
BOLTZ=${BOLTZ:-boltz}
MODEL=${1:-examples/models/separated-modes.json}
EXACT=${2:-0}
SEEDS=${3:-30}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ladder in pooled per-chain; do
  for s in $(seq 1 "$SEEDS"); do
    "$BOLTZ" --threads 1 sample --model "$MODEL" --sampler pt --ladder "$ladder" \
      --chains 16 --replicas 16 --warmup 2000 --draws 8000 --seed "$s" \
      --json --quiet --out "$tmp/draws.npy" > "$tmp/$ladder-$s.json"
  done
done
python3 - "$tmp" "$SEEDS" "$EXACT" "$MODEL" <<'PY'
import json, math, sys
tmp, n, exact, model = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"{model}: stepping-stone log Z over seeds 1-{n} (exact {exact})")
print("| ladder | rms error | rms z | max abs z | mean error | mean se |")
print("|---|---|---|---|---|---|")
for ladder in ("pooled", "per-chain"):
    errs, zs, ses = [], [], []
    for s in range(1, n + 1):
        p = json.load(open(f"{tmp}/{ladder}-{s}.json"))["pt"]
        e = p["log_z"] - exact
        errs.append(e); ses.append(p["log_z_stderr"]); zs.append(e / p["log_z_stderr"])
    rms = lambda v: math.sqrt(sum(x * x for x in v) / len(v))
    print(f"| {ladder} | {rms(errs):.4f} | {rms(zs):.2f} | {max(abs(z) for z in zs):.1f} "
          f"| {sum(errs) / n:+.4f} | {sum(ses) / n:.4f} |")
PY
