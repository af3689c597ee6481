#!/usr/bin/env bash
# One short GPU run, ready as-is on a GPU box; installs nothing from the network.
#
# usage: bench/gpu.sh OUT_DIR
#
#   PYTHON      interpreter with PyTorch (CUDA) and this project's dependencies
#               (default python3); the project itself is used from this tree
#   WHEELHOUSE  optional folder of wheels to install first, offline (--no-index)
#
# Writes to OUT_DIR: gpu.json (PyTorch CUDA eager FP32/FP16 latency at batch 1
# and 8, and TensorRT FP16/INT8 engine rows where tensorrt imports),
# gpu-tests.xml and gpu-tests.log (the `gpu` tests, where tensorrt imports),
# summary.txt. About 3 minutes on a recent GPU; every step has a time limit.
set -euo pipefail
out=${1:?usage: bench/gpu.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

if [[ -n ${WHEELHOUSE:-} ]]; then
    "$py" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" "$WHEELHOUSE"/*.whl
fi
{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
} | tee "$out/summary.txt"

status=0
if "$py" -c 'import tensorrt, pycuda.driver' 2>/dev/null; then
    "$py" -c 'import tensorrt; print("tensorrt", tensorrt.__version__)' | tee -a "$out/summary.txt"
    timeout 300 "$py" -m pytest -m gpu tests/deploy/test_tensorrt.py -p no:cacheprovider -q \
        --junitxml="$out/gpu-tests.xml" >"$out/gpu-tests.log" 2>&1 || status=$?
    echo "gpu tests: exit $status (log: gpu-tests.log)" | tee -a "$out/summary.txt"
else
    echo "tensorrt or pycuda is not importable here: no gpu tests, PyTorch rows only" | tee -a "$out/summary.txt"
fi
timeout 240 "$py" bench/bench_gpu.py --json "$out/gpu.json" 2>"$out/bench-gpu.log" | tee -a "$out/summary.txt"
exit "$status"
