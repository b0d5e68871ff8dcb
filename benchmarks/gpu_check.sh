#!/usr/bin/env bash
# The GPU check, in one go, for the first machine with CUDA: the GPU smoke tests (bf16, sdpa and
# flash-attn against float32, DALI on the GPU against the torch transforms, a probe run on CUDA
# over every visible GPU with NCCL) and the throughput benchmark at full size. Needs the suite
# installed with its GPU extras: pip install -e '.[test-dali,flash]'.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # logs and throughput.json land in OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}  # `make gpu-check` passes the venv's
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -m pytest -m gpu -s -q -rs tests/test_gpu.py tests/test_gpu_heads.py 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
"$py" benchmarks/bench_throughput.py --rounds 5 --loader_workers 0 4 8 \
    --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log"
bench=${PIPESTATUS[0]}
echo "gpu tests exit $tests, throughput exit $bench"
exit $(( tests || bench ))
