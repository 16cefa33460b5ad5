#!/usr/bin/env bash
# log Z (AIS) of one model as a Slurm job array: one shard per array task,
# then a merge job that runs when every shard succeeded.
#
# usage: scripts/slurm/logz-array.sh SHARDS OUTDIR -- LOGZ_ARGS...
#   e.g. scripts/slurm/logz-array.sh 16 runs/rbm500 -- --model rbm500 --particles 65536 --temps 5000
#
# Submits `sbatch --array=0-(SHARDS-1)`: task I runs
#   boltz logz LOGZ_ARGS --method ais --shard I/SHARDS --shard-out OUTDIR/shard-I.boltz
# and a job with --dependency=afterok on the array that runs
#   boltz merge OUTDIR/shard-*.boltz --report OUTDIR/logz.json
# (the log Z, standard error and ESS of the one-process run, bit for bit).
# A failed or lost task is rerun alone (`sbatch --array=I ...`, or the
# task's command by hand): a shard is a pure function of the seed and
# settings, and the merge names any shard that is missing. When a task
# fails, Slurm cancels the merge job (--kill-on-invalid-dep); the script
# prints the rerun and re-merge commands when it submits.
#
# Environment: BOLTZ (the binary, default `boltz` on PATH), SBATCH_ARGS
# (extra sbatch options: partition, time, cpus-per-task, ...), and
# BOLTZ_LOCAL=1 to run the same task commands here one after another
# instead of submitting them (no Slurm needed; what the tests run).
set -euo pipefail
BOLTZ=${BOLTZ:-boltz}
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

case "${1:-}" in
  --task)
    # One array task: shard $SLURM_ARRAY_TASK_ID of $2 into $3.
    m=$2 out=$3
    shift 4 # --task M OUT --
    i=${SLURM_ARRAY_TASK_ID:?not inside a Slurm array task}
    exec "$BOLTZ" logz "$@" --method ais --shard "$i/$m" --shard-out "$out/shard-$i.boltz" --quiet --json
    ;;
  --merge)
    out=$2
    exec "$BOLTZ" merge "$out"/shard-*.boltz --report "$out/logz.json"
    ;;
esac

if [ $# -lt 3 ] || [ "$3" != "--" ]; then
  sed -n '2,6p' "$0" >&2
  exit 2
fi
m=$1 out=$2
shift 3
case "$m" in ''|*[!0-9]*|0) echo "error: SHARDS must be a positive integer, got '$m'" >&2; exit 2;; esac
mkdir -p "$out"
if [ "${BOLTZ_LOCAL:-0}" = 1 ]; then
  for ((i = 0; i < m; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash "$SELF" --task "$m" "$out" -- "$@" > "$out/shard-$i.json"
  done
  bash "$SELF" --merge "$out"
  exit 0
fi
args=$(printf '%q ' "$@")
task_cmd="bash $(printf '%q' "$SELF") --task $m $(printf '%q' "$out") -- $args"
merge_cmd="bash $(printf '%q' "$SELF") --merge $(printf '%q' "$out")"
# shellcheck disable=SC2086
jid=$(sbatch --parsable --array=0-$((m - 1)) ${SBATCH_ARGS:-} --job-name=boltz-logz \
  --output="$out/shard-%a.log" --wrap "$task_cmd")
# The merge runs when every task succeeded; if one fails, Slurm cancels it
# (--kill-on-invalid-dep) instead of leaving it pending forever.
# shellcheck disable=SC2086
mid=$(sbatch --parsable --dependency=afterok:"$jid" --kill-on-invalid-dep=yes ${SBATCH_ARGS:-} \
  --job-name=boltz-merge --output="$out/merge.log" --wrap "$merge_cmd")
echo "submitted shards: job array $jid (tasks 0-$((m - 1))); merge: job $mid -> $out/logz.json"
echo "if task I fails (sacct -j $jid), the merge job is cancelled; rerun that task alone, then the merge:"
echo "  sbatch --array=I ${SBATCH_ARGS:+$SBATCH_ARGS }--job-name=boltz-logz --output=$(printf '%q' "$out")/shard-%a.log --wrap $(printf '%q' "$task_cmd")"
echo "  sbatch ${SBATCH_ARGS:+$SBATCH_ARGS }--dependency=afterok:<the rerun's job id> --job-name=boltz-merge --output=$(printf '%q' "$out")/merge.log --wrap $(printf '%q' "$merge_cmd")"
echo "or by hand, here:"
echo "  SLURM_ARRAY_TASK_ID=I $task_cmd > $(printf '%q' "$out")/shard-I.json && $merge_cmd"
