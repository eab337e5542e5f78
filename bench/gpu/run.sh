#!/usr/bin/env bash
# One-command GPU check: tiny recipes in bf16, a real-width Klear slice, align.dpo vs stock TRL.
#   bash bench/gpu/run.sh OUT_DIR               # on a GPU machine (under 9 minutes on one H200)
#   bash bench/gpu/run.sh --cpu-smoke OUT_DIR   # the same script at toy sizes on CPU (CI runs it)
# Writes OUT_DIR/results.json with the keys bf16_recipes, klear_slice, dpo_vs_trl, vllm_serving, rl_vllm, iterate_round
# (and environment);
# each section records its own error instead of stopping the others.
# On a GPU image without trl/deepspeed/datasets, build the wheels here first (bash bench/gpu/prepare.sh)
# and carry .whl-gpu: they are installed offline, --no-deps, into /tmp/klear-site (see docs/benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/../.."

smoke=""
if [ "${1:-}" = "--cpu-smoke" ]; then smoke="--cpu-smoke"; shift; fi
if [ $# -ne 1 ]; then
  echo "usage: bash bench/gpu/run.sh [--cpu-smoke] OUT_DIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ -n "$smoke" ]; then
  python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
  export CUDA_VISIBLE_DEVICES="" DS_ACCELERATOR=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
  exec timeout 600 "$python" bench/gpu/check.py --out "$out" --cpu-smoke
fi

python=${PYTHON:-python3}
if [ -d .whl-gpu ]; then
  site=/tmp/klear-site
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl-gpu/*.whl \
    || { echo "installing the carried wheels failed" >&2; exit 1; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no .whl-gpu/ here: using the packages already installed (bash bench/gpu/prepare.sh builds the wheels)" >&2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
# under 9 minutes in all: each section writes results.json as it ends, so a timeout keeps the finished ones
timeout 530 "$python" bench/gpu/check.py --out "$out" 2>&1 | tee "$out/check.log"
status=${PIPESTATUS[0]}
[ $status -eq 124 ] && echo "bench/gpu/check.py stopped at its 530 s limit; see $out/results.json" >&2
exit $status
