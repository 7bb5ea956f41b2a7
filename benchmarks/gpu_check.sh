#!/usr/bin/env bash
# The one command to run whenever a GPU is lent (under 8 minutes on one GPU), from the repository root:
#
#     bash benchmarks/gpu_check.sh [--cpu] [OUT_DIR]
#
# 1. the GPU tests (tests/test_gpu.py: training on the device, no host sync in the step loop, fused
#    optimisers, torch.compile, a search through the CLI);
# 2. throughput: engine-built models against hand-written PyTorch, samples/s (benchmarks/throughput.py);
# 3. the latency predictor against latency measured on this GPU (benchmarks/latency_predictor.py);
# 4. trials per minute with 1 and 4 trials sharing the GPU, the same queued vision trials
#    (benchmarks/fill_machine.py --arms gpu:1 gpu:4);
# 5. the throughput anchor: achieved training FLOP/s of the best of those trials against the GPU's bf16
#    peak (benchmarks/flops_anchor.py).
#
# Everything lands in OUT_DIR (default gpu-check-<date>/): one file per step and results.md, the lot
# in one file. With --cpu, the same steps run on the CPU at smoke-test size (the tests then skip):
# what CI runs (tests/benchmarks/test_gpu_check.py), so that the script cannot rot without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=gpu
if [ "${1:-}" = "--cpu" ]; then mode=cpu; shift; fi
out=${1:-gpu-check-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python}
results="$out/results.md"

if [ "$mode" = gpu ]; then
    "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible: use --cpu")'
    device=cuda
    throughput=(--device cuda)
    latency=(--device cuda --per-space 12)
    fill=(--spaces vision --trials 8 --repeats 1 --arms gpu:1 gpu:4)
    anchor=(--device cuda --epochs 3)
    gpu_name=$("$python" -c 'import torch; print(torch.cuda.get_device_name(0))')
else
    device=cpu
    throughput=(--device cpu --quick)
    latency=(--device cpu --quick)
    fill=(--spaces vision --trials 2 --repeats 1 --arms 1x2 --epochs 2)
    anchor=(--device cpu --epochs 1)
    gpu_name="none (--cpu smoke run)"
fi

step() {  # step NAME COMMAND...: run it, keep its output in $out/NAME.txt and in results.md
    local name=$1; shift
    echo "== $name: $*" >&2
    local start=$SECONDS status=0
    "$@" >"$out/$name.txt" 2>&1 || status=$?
    {
        echo "## $name ($((SECONDS - start)) s, exit $status)"
        echo
        echo "\`$*\`"
        echo
        echo '```'
        tail -n 60 "$out/$name.txt"
        echo '```'
        echo
    } >>"$results"
    return $status
}

{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- device: $gpu_name; mode: $mode"
    echo "- machine: $(uname -m), $(nproc) cores; $("$python" -c 'import torch, optuna, platform; print(f"Python {platform.python_version()}, torch {torch.__version__}, Optuna {optuna.__version__}")')"
    echo "- code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- iasf_search plugins 2>/dev/null || echo ' + uncommitted changes')"
    if command -v nvidia-smi >/dev/null && [ "$mode" = gpu ]; then
        echo "- nvidia-smi: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | head -n 1)"
    fi
    echo
} >"$results"

failed=0
step gpu_tests "$python" -m pytest -q -p no:cacheprovider tests/test_gpu.py || failed=1
step throughput "$python" benchmarks/throughput.py "${throughput[@]}" --json "$out/throughput.json" || failed=1
step latency_predictor "$python" benchmarks/latency_predictor.py "${latency[@]}" --out "$out/latency_predictor.json" || failed=1
step trials_per_gpu "$python" benchmarks/fill_machine.py "${fill[@]}" --keep "$out/fill" --json "$out/trials_per_gpu.json" || failed=1
first=$(find "$out/fill/vision" -name study.db | sort | head -n 1)
if [ -n "$first" ]; then
    step flops_anchor "$python" benchmarks/flops_anchor.py --space "$out/fill/vision/vision.yaml" --storage "sqlite:///$first" \
        "${anchor[@]}" --json "$out/flops_anchor.json" || failed=1
else
    echo "## flops_anchor: skipped (no study from trials_per_gpu)" >>"$results"
    failed=1
fi
echo "wrote $results (device $device; $([ $failed = 0 ] && echo 'every step passed' || echo 'a step FAILED'))" >&2
exit $failed
