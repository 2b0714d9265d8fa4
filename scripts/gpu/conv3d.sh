#!/usr/bin/env bash
# The conv3d kernel on the H100, in one call of the device tool. Here, first:
#
#   scripts/cuda/build.sh gpu-carry        # builds target/gpu-carry-conv3d (~8 min cold)
#
# then run(command="bash scripts/gpu/conv3d.sh", carry=["target/gpu-carry-conv3d"], timeout_s=600).
#
# Steps (each logged under $OUT): the GPU's state; correctness on random bf16 problems around
# every real Turbo-VAED layer against the f32 reference (outputs poisoned with NaN first, every
# run twice); the video-codec fixtures on the GPU with the kernel and with the reference convs;
# timings of every conv of a 1080p Turbo-VAED window; the torch/cuDNN baseline on the same
# shapes; Nsight Compute on the two largest layers (kernel time and tensor-pipe use). A short
# table comes last.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
carry=target/gpu-carry-conv3d
out=${OUT:-/tmp/conv3d-gpu}
mkdir -p "$out"

bin=/tmp/conv3d_gpu
. "$root/scripts/gpu/common.sh"
unpack "$carry" conv3d_gpu "$bin" || exit 1
export CADENCE_FIXTURES="$root/$carry/fixtures"

gpu_state "$bin"

step check "$bin" check
step fixtures-kernel "$bin" fixtures
step fixtures-reference env CADENCE_CONV3D_KERNEL=reference "$bin" fixtures
"$bin" shapes --out "$out/shapes.jsonl"
step bench "$bin" bench --reps 5 --out "$out/bench.jsonl"
step baseline env PYTHONUNBUFFERED=1 python3 scripts/gpu/conv3d_baseline.py --shapes "$out/shapes.jsonl" --reps 5 --out "$out/baseline.jsonl"
if command -v ncu >/dev/null; then
  # Kernel-only times and tensor-pipe use of the two layers that dominate the decode.
  for layer in "up2 res 128 conv1" "up1 res 256 conv1"; do
    echo "=== ncu: $layer"
    timeout 240 ncu --kernel-name regex:cadence_conv3d --launch-count 4 \
      --section SpeedOfLight --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum \
      "$bin" bench --reps 1 --layer "$layer" 2>&1 | tee -a "$out/ncu.log" | grep -E "cadence_conv3d|Duration|Throughput|hmma|gpu__time" || true
  done
fi

python3 - "$out" "${status[@]}" <<'EOF'
import sys
sys.path.insert(0, "scripts/gpu")
from steps import load_rows, print_steps
out, steps = sys.argv[1], sys.argv[2:]
print_steps(out, steps, 20)
rows, cases, impls = load_rows(out)
print("\nms per call (TFLOP/s) at the 1080p middle-window shape")
print(f"{'layer':<32}" + "".join(f"{i[:20]:>22}" for i in impls))
clip = {i: 0.0 for i in impls}
for c in cases:
    cells = []
    for i in impls:
        r = [x for x in rows if x["impl"] == i and x["case"] == c]
        if r:
            r = r[0]
            clip[i] += r["median_ms"] * 1e-3 * r["calls"] * r["windows"]
            cells.append(f"{r['median_ms']:8.2f} ({r['tflops']:5.0f})")
        else:
            cells.append("-")
    print(f"{c[:32]:<32}" + "".join(f"{x:>22}" for x in cells))
print(f"{'5 s 1080p decode, convs (s)':<32}" + "".join(f"{clip[i]:>22.2f}" for i in impls))
EOF
