#!/usr/bin/env bash
# Check that a running dev cluster behaves the way orchestrate's tests expect.
# Non-destructive: submits a few tiny jobs, restarts nothing. On a busy
# cluster the jobs queue behind others, so the waits are generous.
#
#   smoke_test.sh [PYTHON]   PYTHON: an interpreter with submitit installed;
#                            the submitit check is skipped without one.
set -euo pipefail

PY="${1:-}"
WORK=$(mktemp -d /tmp/dev-cluster-smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

passed=0 failed=0
ok()  { echo "ok   - $*"; passed=$((passed + 1)); }
bad() { echo "FAIL - $*"; failed=$((failed + 1)); }

# wait_state JOBID STATE SECONDS: poll sacct (records reach slurmdbd a few
# seconds after the job ends) until the job has STATE.
wait_state() {
  local deadline=$((SECONDS + $3)) s=""
  while ((SECONDS < deadline)); do
    s=$(sacct -j "$1" -X -n -P -o State 2>/dev/null | head -n1)
    [[ $s == "$2" ]] && return 0
    sleep 0.2
  done
  echo "  job $1: last sacct state '${s}'" >&2
  return 1
}

# 1. batch job reaches COMPLETED in sacct
jid=$(sbatch --parsable --wrap hostname)
if wait_state "$jid" COMPLETED 300; then ok "sbatch job $jid COMPLETED in sacct"; else bad "sbatch job $jid"; fi

# 2. fake GPUs: one GPU gives CUDA_VISIBLE_DEVICES=0
out=$(timeout 300 srun --gres=gpu:1 printenv CUDA_VISIBLE_DEVICES 2>"$WORK/srun.err" || cat "$WORK/srun.err")
if [[ $out == 0 ]]; then ok "srun --gres=gpu:1 -> CUDA_VISIBLE_DEVICES=0"; else bad "gpu: got '$out'"; fi

# 3. default MaxArraySize: 1001, and a 3000-task array is refused
# Several nodes: one task on each, with its own hostname, and node names resolve everywhere.
nodes=$(sinfo -h -N -o '%N' | sort -u | wc -l)
if ((nodes >= 2)); then
  out=$(timeout 300 srun -N2 -n2 hostname 2>&1 | sort | paste -sd, -)
  if [[ $out == node1,node2 ]]; then ok "srun -N2 runs on node1 and node2"; else bad "srun -N2 hostname: '$out'"; fi
  out=$(timeout 300 srun -N1 -w node2 getent ahostsv4 node1 2>&1 | awk '{print $1}' | head -n1)
  if [[ $out == "${ORCH_SLURM_NET:-10.77.0}.11" ]]; then ok "node2 resolves node1 to $out"; else bad "node2 resolves node1 to '$out'"; fi
else
  bad "only $nodes node(s) in sinfo"
fi

max=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')
if [[ $max == 1001 ]]; then ok "MaxArraySize=1001"; else bad "MaxArraySize=$max"; fi
if out=$(sbatch --array=0-2999 --wrap true 2>&1); then
  bad "3000-task array was accepted: $out"; scancel "${out##* }" 2>/dev/null || true
elif [[ $out == *"Invalid job array specification"* ]]; then
  ok "3000-task array refused: Invalid job array specification"
else
  bad "3000-task array refused with unexpected message: $out"
fi

# 4. requeue: a running --requeue job restarts (SLURM_RESTART_COUNT=1)
# shellcheck disable=SC2016  # expanded by the job, not here
jid=$(sbatch --parsable --requeue --open-mode=append -o "$WORK/req.out" \
        --wrap 'echo "run ${SLURM_RESTART_COUNT:-0}"; sleep 120')
deadline=$((SECONDS + 300))
until grep -q 'run 0' req.out 2>/dev/null || ((SECONDS >= deadline)); do sleep 0.2; done
scontrol requeue "$jid"
deadline=$((SECONDS + 60))
until grep -q 'run 1' req.out 2>/dev/null || ((SECONDS >= deadline)); do sleep 0.5; done
if grep -q 'run 1' req.out; then ok "requeued job $jid restarted"; else bad "requeued job $jid did not restart"; fi
scancel "$jid" 2>/dev/null || true

# 5. submitit sees the job COMPLETED (it asks sacct)
if [[ -n $PY ]] && "$PY" -c 'import submitit' 2>/dev/null; then
  if "$PY" - "$WORK/submitit" <<'EOF'
import sys, time, submitit
ex = submitit.AutoExecutor(folder=sys.argv[1] + "/%j")
ex.update_parameters(timeout_min=5, slurm_partition="debug")
job = ex.submit(sum, [1, 2, 3])
assert job.result() == 6, job.result()
deadline = time.time() + 60
while job.state != "COMPLETED" and time.time() < deadline:
    time.sleep(0.5)
assert job.state == "COMPLETED", job.state
EOF
  then ok "submitit job COMPLETED"; else bad "submitit job"; fi
else
  echo "skip - submitit check (no PYTHON with submitit given)"
fi

echo "$passed passed, $failed failed"
((failed == 0))
