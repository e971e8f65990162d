#!/usr/bin/env bash
# The GPU checks still open after the first H200 session (docs/benchmarks.md, "The GPU check"), in
# one command that ends within 9 minutes, each step time-boxed:
#   1. bench/gpu_repeat.py: do runs repeat bit for bit here, defaults vs `deterministic: true`;
#   2. resnet50, trainer vs bare loop (no DeepSpeed): the ratio after the non-blocking batch copies;
#   3. convnextv2_large, trainer vs bare loop (no DeepSpeed): not measured in the first session.
# Output: one block per step on stdout; `OUT=folder` also keeps each step's log there.
#
#   bench/gpu_session.sh          # on a GPU node with the project installed (PYTHON=... to pick one)
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
export PYTHON PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-$(mktemp -d)}"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its log, say how it ended
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" | grep -v -E '^(epoch|saved|resumed|stopping) '
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"
}
step repeat 150 "$PYTHON" bench/gpu_repeat.py
step resnet50 170 bench/gpu_check.sh --backbones resnet50 --deepspeed --budget-s 150
step convnextv2_large 200 bench/gpu_check.sh --backbones convnextv2_large --deepspeed --budget-s 180
