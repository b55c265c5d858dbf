#!/usr/bin/env bash
# One short run on a GPU machine: the CUDA figures of every benchmark and the CUDA-only tests.
# Usage (repository root): OUT=/some/dir [STEPS="train_fp32 features"] bash benchmarks/gpu_check.sh
# Packages missing there can travel as wheels in .whl/ (installed into /tmp/site first).
set -u
OUT=${OUT:-/tmp/mistudio-gpu}
STEPS=${STEPS:-all}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MISTUDIO_HOME=/tmp/mistudio-home
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/summary.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >>"$OUT/summary.txt" 2>&1

step() {  # step NAME SECONDS COMMAND…: run with a time limit, keep the log, collect the BENCH lines
    local name=$1 limit=$2
    shift 2
    [[ $STEPS == all || " $STEPS " == *" $name "* ]] || return 0
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/step.log" 2>&1
    echo "== $name rc=$? $((SECONDS - t0))s" >>"$OUT/summary.txt"
    grep -E '^BENCH|passed|failed' "$OUT/step.log" >>"$OUT/summary.txt"
    { echo "===== $name"; cat "$OUT/step.log"; } >>"$OUT/all.log"
    rm -f "$OUT/step.log"
}

step profile_train 90 python3 benchmarks/gpu_profile.py --device cuda --what train --dtype bf16 --architectures topk,batchtopk
step profile_features 60 python3 benchmarks/gpu_profile.py --device cuda --what features
step cuda_tests 150 python3 -m pytest -q -p no:cacheprovider -k "cuda or gpu or bf16" tests/unit
step train_fp32 60 python3 benchmarks/train.py --device cuda
step train_bf16 60 python3 benchmarks/train.py --device cuda --dtype bf16
step extract 60 python3 benchmarks/extract.py --device cuda
step features 60 python3 benchmarks/features.py --device cuda
step multi_hook 60 python3 benchmarks/multi_hook.py --device cuda --quick
step monitor 30 python3 benchmarks/monitor.py --quick
step nvml 20 python3 -c "from mistudio_tui.monitor.nvml import GpuMonitor; m = GpuMonitor(); print(m.reason, m.sample())"
cat "$OUT/summary.txt"
