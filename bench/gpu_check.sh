#!/usr/bin/env bash
# The GPU check in one command (see bench/gpu_check.py): trainer vs bare loop on resnet50 and
# convnextv2_large at 224 px, fp32 / bf16 / bf16+channels_last / compile / ZeRO-2 / ZeRO-3,
# synthetic data and the real loader; prints one table. Stops within 8 minutes.
#
#   bench/gpu_check.sh                      # on a GPU node
#   bench/gpu_check.sh --reduced            # anywhere: tiny model, 32 px, 2 steps (CPU: ZeRO in fp32)
#   bench/gpu_check.sh --backbones resnet50 --batch 256   # any bench/gpu_check.py option
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" == "--reduced" ]]; then
    shift
    set -- --backbones test_resnet --size 32 --batch 8 --steps 2 --epochs 2 --workers 0 --threads 1 \
        --deepspeed zero2-fp32 zero3-fp32 "$@"
fi
# 8 minutes in all: groups stop being started after --budget-s, the rest is the margin.
exec timeout 480 "$PYTHON" bench/gpu_check.py --budget-s 420 "$@"
