#!/usr/bin/env bash
# The GPU check of issue 23 (see bench/README.md, "GPU check"): on one GPU, in under 8 minutes,
# builds every paper-scale method, runs one training step of every stage of every method (loss
# finite, gradients non-zero, peak memory, step time), times Table 2's inference at 512 px with
# `ugpnet bench`, trains one tiny stage (NAFNet, denoise) through the Snakemake workflow on the
# GPU in a temporary folder (data loader workers, pinned batches, validation, checkpoints), and
# writes one JSON summary. Random weights. Installs nothing beyond `make
# setup` (run only when .venv is missing; its time is not part of the 8 minutes).
#
#   bench/gpu_check.sh [--cpu] [--out FILE.json] [--time-limit SECONDS] [--threads N]
#
# --cpu (or UGPNET_GPU_CHECK_MODE=cpu): the same code path on the CPU with the tiny profile's
# networks and size (CI: tests/test_gpu_check.py). Default summary: bench/gpu-check-<device>.json.
# UGPNET_PYTHON: a Python that has ugpnet-bench's requirements (default: .venv/bin/python).
# Exit status: 0 passed, 1 a check failed or was skipped, 2 it could not run.
set -euo pipefail

cd "$(dirname "$0")/.."
mode="${UGPNET_GPU_CHECK_MODE:-gpu}"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) mode=cpu ;;
        --gpu) mode=gpu ;;
        --out|--time-limit|--threads)
            [ $# -ge 2 ] || { echo "gpu_check.sh: $1 needs a value" >&2; exit 2; }
            args+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

python="${UGPNET_PYTHON:-}"
if [ -z "$python" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "[gpu_check] no .venv: make setup (the README's set-up)" >&2
        make setup
    fi
    python=.venv/bin/python
fi

# the whole check's limit; the Python side keeps to its own budget well inside it
if [ "$mode" = gpu ]; then limit=470; else limit=960; fi
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = --time-limit ]; then limit=$(( ${args[$((i + 1))]%.*} + 20 )); fi
done

echo "[gpu_check] mode $mode, $("$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())')" >&2
if [ "$mode" = gpu ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
fi
start=$SECONDS
rc=0
timeout -k 15 "$limit" "$python" bench/gpu_check.py --mode "$mode" ${args[@]+"${args[@]}"} || rc=$?
echo "[gpu_check] exit $rc after $((SECONDS - start)) s" >&2
exit "$rc"
