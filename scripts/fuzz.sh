#!/usr/bin/env bash
# Fuzzes the readers of untrusted files (tests/fuzz.rs: the npy reader, the
# model-file parser, the checkpoint loaders, forged shard files) for SECONDS each (default 600),
# in rounds of fresh random seeds seeded by the committed corpus in
# tests/corpus/. Prints the cases run and exits 1 if a round failed (proptest
# then writes the failing case to tests/fuzz.proptest-regressions).
set -u
SECONDS_EACH=${1:-600}
CASES=${CASES:-2000}
cd "$(dirname "$0")/.."
cargo test --release -p boltz --test fuzz --no-run >/dev/null 2>&1 || exit 2
status=0
for prop in npy_reader_never_panics safetensors_reader_never_panics model_parser_never_panics checkpoint_loaders_never_panic forged_shards_never_panic_or_change_the_merge; do
  start=$(date +%s); rounds=0; failed=0
  while [ $(( $(date +%s) - start )) -lt "$SECONDS_EACH" ]; do
    if ! PROPTEST_CASES=$CASES cargo test --release -p boltz --test fuzz "$prop" -- --exact >/tmp/fuzz-$prop.log 2>&1; then
      failed=$((failed + 1)); status=1; cp /tmp/fuzz-$prop.log /tmp/fuzz-$prop.failed.log
    fi
    rounds=$((rounds + 1))
  done
  echo "$prop: $rounds rounds x $CASES cases in $(( $(date +%s) - start )) s, $failed failed"
done
exit $status
