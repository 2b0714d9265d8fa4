#!/usr/bin/env bash
# The attention kernels on the H100, in one call of the device tool. Here, first:
#
#   scripts/cuda/build.sh gpu-carry        # builds target/gpu-carry (~8 min cold)
#
# then run(command="bash scripts/gpu/attention.sh", carry=["target/gpu-carry"], timeout_s=600).
# scripts/gpu/run-all.sh runs it from its own carry (CADENCE_GPU_CARRY, CADENCE_FIXTURES).
#
# Steps (each logged under $OUT): the GPU's state; correctness on random inputs against the
# reference (several lengths, GQA 5:1 and other ratios, narrow heads, frame-window masks;
# outputs poisoned with NaN first; every run twice); the dit_forward fixtures at the attention
# op; the whole DiT against the fixtures with each attention kernel; timings of every kernel;
# the torch baseline. A short table comes last.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
carry=${CADENCE_GPU_CARRY:-target/gpu-carry}
out=${OUT:-/tmp/attention-gpu}
mkdir -p "$out"

bin=/tmp/attention_gpu
. "$root/scripts/gpu/common.sh"
unpack "$carry" attention_gpu "$bin" || exit 1
export CADENCE_FIXTURES="${CADENCE_FIXTURES:-$root/$carry/fixtures}"

gpu_state "$bin"

step check "$bin" check
step fixtures "$bin" fixtures
for kernel in reference mma wgmma wgmma-pipelined; do
  step "model-$kernel" env CADENCE_ATTENTION_KERNEL=$kernel "$bin" model
done
step bench "$bin" bench --reps 10 --out "$out/bench.jsonl"
step baseline env PYTHONUNBUFFERED=1 python3 scripts/gpu/attention_baseline.py --reps 10 --out "$out/baseline.jsonl"

python3 - "$out" "${status[@]}" <<'EOF'
import sys
sys.path.insert(0, "scripts/gpu")
from steps import load_rows, print_steps
out, steps = sys.argv[1], sys.argv[2:]
print_steps(out, steps, 24)
rows, cases, impls = load_rows(out)
print("\nTFLOP/s (unmasked work only; median ms in brackets)")
print(f"{'impl':<24}" + "".join(f"{c[:22]:>24}" for c in cases))
for i in impls:
    cells = []
    for c in cases:
        r = [x for x in rows if x["impl"] == i and x["case"] == c]
        cells.append(f"{r[0]['tflops']:8.1f} ({r[0]['median_ms']:8.2f})" if r else "-")
    print(f"{i:<24}" + "".join(f"{x:>24}" for x in cells))
EOF
