#!/usr/bin/env bash
# Every measurement a borrowed GPU machine is for, in one run (docs/gpu.md, "The procedure"): start it once the
# wheels are installed (PYTHONPATH pointing at them), keep what it writes, give the machine back.
#
#   bash benchmarks/gpu_session.sh [MODEL_DIR] [OUT]      # defaults: models/srgan results/gpu
#
# Each step has its own time limit and a failing step does not stop the next: a short lease should bring back
# as much as it can. Runs anywhere; without a GPU the ONNX Runtime steps measure the CPU provider.
set -u
model=${1:-models/srgan}
out=${2:-results/gpu}
python=${PYTHON:-python3}
mkdir -p "$out"

step() {  # step NAME SECONDS COMMAND...: run, log to OUT/NAME.log, say how it ended
    local name=$1 seconds=$2
    shift 2
    local started=$SECONDS
    timeout "$seconds" "$@" >"$out/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - started)) s (log $out/$name.log)"
}

step machine 60 bash -c "nvidia-smi || echo no nvidia-smi; $python -c 'import onnxruntime as o; o.preload_dlls() if hasattr(o, \"preload_dlls\") else None; print(o.__version__, o.get_available_providers())'"
step onnx_providers 300 "$python" benchmarks/onnx_providers.py --model-dir "$model" --out "$out/onnx_providers"
step server_backend 240 "$python" benchmarks/server_backend.py --model-dir "$model" --sizes 32,128 --clients 1,8 \
    --out "$out/server_backend"
step latency 180 "$python" benchmarks/latency.py --model-dir "$model" --backends onnx-cuda,onnx-cpu \
    --batches 1,8,32 --sizes 32,128 --out "$out/latency"
ls -R "$out"
