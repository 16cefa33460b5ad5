#!/usr/bin/env bash
# Side by side: boltz and the peer samplers (BlackJAX, NumPyro, JAX, PyTorch,
# scikit-learn) on the suite's workloads, alternating, in one run, on the same
# machine, then results/peers.md with each figure and the ratios.
#
# usage: scripts/compare-peers.sh [W1 W3 W4 W5 W2]     (default: all five, ~20 minutes)
#
# Needs the peers' Python environment (made by ../shared/peers/setup.sh on
# first use: a few minutes and ~5 GB). Run nothing else meanwhile: on two
# cores any other load ruins both sides' timings. Writes, under results/:
#   bench.jsonl, README.md   boltz's measurements (boltz bench, same run)
#   peers.md                 the side-by-side table
#   peers-run/               the raw JSON lines of both sides and the peers' logs
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
VENV=${PEERS_VENV:-$HOME/.cache/boltz-peers}
OUT=${OUT:-$ROOT/results}
THREADS=${THREADS:-2}
WORKLOADS=${*:-W1 W3 W4 W5 W2}
[ -d "$PEERS" ] || { echo "no peers folder at $PEERS (set PEERS_DIR)" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "== setting up the peers' environment (one time)" >&2
  bash "$PEERS/setup.sh"
fi
(cd "$ROOT" && cargo build --release --quiet)
RUN="$OUT/peers-run"
rm -rf "$RUN"
mkdir -p "$RUN"
export PEERS_OUT="$RUN"
: > "$RUN/boltz.jsonl"
for w in $WORKLOADS; do
  echo "== $(date +%T) boltz $w" >&2
  "$ROOT/target/release/boltz" --threads "$THREADS" bench --workloads "$w" --out "$OUT" --jsonl \
    >> "$RUN/boltz.jsonl"
  echo "== $(date +%T) peers $w" >&2
  bash "$PEERS/run.sh" "$w" > /dev/null
done
mv "$RUN/results.jsonl" "$RUN/peers.jsonl" 2>/dev/null || : > "$RUN/peers.jsonl"
# numpy's GEMM on this machine (the yardstick of W3's GFLOP/s), same threads.
OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$VENV/bin/python" - > "$RUN/numpy_gemm.json" <<'PY' || echo '{}' > "$RUN/numpy_gemm.json"
import json, time
import numpy as np
out = {}
for name, dt in (("f64", np.float64), ("f32", np.float32)):
    a = np.random.default_rng(0).random((1024, 1024)).astype(dt)
    a @ a
    best = 0.0
    for _ in range(5):
        t = time.perf_counter(); r = 0
        while time.perf_counter() - t < 0.4:
            a @ a; r += 1
        best = max(best, 2 * 1024**3 * r / (time.perf_counter() - t) / 1e9)
    out[name] = best
print(json.dumps(out))
PY
python3 "$ROOT/scripts/peers_table.py" "$RUN/boltz.jsonl" "$RUN/peers.jsonl" \
  --machine "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores" \
  --commit "$(cd "$ROOT" && git rev-parse --short=12 HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml || echo +dirty)" \
  --date "$(date -u +%F)" --workloads "$WORKLOADS" --gemm "$RUN/numpy_gemm.json" > "$OUT/peers.md"
echo "wrote $OUT/peers.md" >&2
