#!/usr/bin/env bash
# scripts/slurm/logz-array.sh under a real single-node Slurm: starts munged
# (if no munge daemon answers), slurmctld and slurmd from a slurm.conf
# written into a scratch folder, submits a 3-shard log Z array whose task 1
# fails once, checks that Slurm cancels the merge job, reruns task 1 and the
# merge with the commands the array script printed, and compares the merged
# log Z, standard error and ESS with the one-process run's. Stops the
# daemons it started and removes its folder on exit.
#
# Setup (Debian or Ubuntu, as root: the daemons run as root here):
#   apt-get install slurm-wlm munge      # the package creates /etc/munge/munge.key
# usage: BOLTZ=target/release/boltz scripts/slurm/test-real-slurm.sh
#   (cli/tests/cli_shard.rs runs it when BOLTZ_TEST_SLURM=1)
set -euo pipefail
BOLTZ=$(realpath "${BOLTZ:?set BOLTZ to the boltz binary}")
ARRAY=$(cd "$(dirname "$0")" && pwd)/logz-array.sh
for tool in slurmctld slurmd sbatch squeue scontrol munge; do
  command -v "$tool" > /dev/null || { echo "error: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 2; }
done
work=$(mktemp -d)
started_munged=0
cleanup() {
  scontrol shutdown > /dev/null 2>&1 || true
  sleep 1
  if [ "$started_munged" = 1 ] && [ -f "$work/munged.pid" ]; then
    kill "$(cat "$work/munged.pid")" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A one-node cluster on this machine, ports 6817/6818, no accounting.
host=$(hostname)
export SLURM_CONF=$work/slurm.conf
mkdir -p "$work/state" "$work/spool"
cat > "$SLURM_CONF" << EOF
ClusterName=boltztest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
if ! munge -n > /dev/null 2>&1; then
  mkdir -p /run/munge
  munged --force --pid-file="$work/munged.pid" 2> /dev/null
  started_munged=1
fi
if scontrol ping > /dev/null 2>&1; then
  echo "error: a slurmctld already answers on this machine's ports; stop it first" >&2
  exit 2
fi
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
wait_for() { # wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds
  local until=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    if [ $SECONDS -ge $until ]; then
      echo "error: $what did not happen within the time allowed; logs:" >&2
      tail -20 "$work"/slurm*.log >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}
node_idle() { [ "$(sinfo -h -o %t 2> /dev/null)" = idle ]; }
queue_empty() { [ -z "$(squeue -h 2> /dev/null)" ]; }
job_state() { scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_for 30 "the node coming up" node_idle

args=(--model rbm20 --particles 512 --temps 200)
"$BOLTZ" logz "${args[@]}" --method ais --no-reverse --json > "$work/one.json"

# A boltz that fails array task 1 once (a node lost, a full disk: any failure).
cat > "$work/boltz-flaky" << EOF
#!/usr/bin/env bash
if [ "\${SLURM_ARRAY_TASK_ID:-}" = 1 ] && [ ! -e "$work/failed-once" ]; then
  touch "$work/failed-once"
  echo "task 1: failing on purpose" >&2
  exit 3
fi
exec "$BOLTZ" "\$@"
EOF
chmod +x "$work/boltz-flaky"
out=$work/out
BOLTZ="$work/boltz-flaky" bash "$ARRAY" 3 "$out" -- "${args[@]}" | tee "$work/submitted.txt"
array_id=$(sed -n 's/^submitted shards: job array \([0-9]*\) .*/\1/p' "$work/submitted.txt")
merge_id=$(sed -n 's/.*; merge: job \([0-9]*\) .*/\1/p' "$work/submitted.txt")
wait_for 300 "the array and its merge finishing" queue_empty
[ -e "$work/failed-once" ] || { echo "error: task 1 never ran" >&2; exit 1; }
[ ! -e "$out/shard-1.boltz" ] || { echo "error: the failed task left a shard file" >&2; exit 1; }
[ ! -e "$out/logz.json" ] || { echo "error: the merge ran although a task failed" >&2; exit 1; }
state=$(job_state "$merge_id")
[ "$state" = CANCELLED ] || { echo "error: the merge job $merge_id is $state, not CANCELLED" >&2; exit 1; }
echo "array $array_id: task 1 failed, merge job $merge_id $state, as expected"

# The rerun and re-merge exactly as the array script printed them.
rerun=$(grep -m1 '^  sbatch --array=I ' "$work/submitted.txt" | sed 's/^  sbatch --array=I /sbatch --parsable --array=1 /')
rerun_id=$(eval "$rerun")
remerge=$(grep -m1 '^  sbatch .*--dependency=afterok:<the rerun' "$work/submitted.txt" |
  sed "s/^  sbatch /sbatch --parsable /; s/<the rerun's job id>/$rerun_id/")
remerge_id=$(eval "$remerge")
wait_for 300 "the rerun and the merge finishing" queue_empty
echo "rerun of task 1: job $rerun_id $(job_state "$rerun_id"); merge: job $remerge_id $(job_state "$remerge_id")"
[ -e "$out/logz.json" ] || { echo "error: no merged report; merge log:" >&2; cat "$out/merge.log" >&2 || true; exit 1; }
python3 - "$work/one.json" "$out/logz.json" << 'EOF'
import json, sys
one, merged = (json.load(open(p)) for p in sys.argv[1:3])
for key in ("log_z", "stderr", "ess", "acceptance", "contexts_done", "energy_evals"):
    if one[key] != merged[key]:
        sys.exit(f"error: merged {key} {merged[key]} differs from the one-process run's {one[key]}")
print(f"merged under Slurm: log Z {merged['log_z']} +- {merged['stderr']}, equal to the one-process run")
EOF
