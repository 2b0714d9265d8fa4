#!/usr/bin/env bash
# Compiles every kernels/*.cu with the real nvcc (the pinned 13.0 toolkit of toolkit.sh) for
# sm_90a, the way crates/kernels/build.rs does, and checks what can be checked without a GPU:
#   - nvcc succeeds and ptxas prints no warning (a warning here has meant an ignored
#     setmaxnreg or serialised wgmma instructions);
#   - the resource report (registers, spills, shared memory) is printed per kernel;
#   - with --sass: every entry point of a file whose name ends in _sm90 contains HGMMA
#     instructions (cuobjdump 13.2 from PyPI, installed on first use), and its consumers use
#     no local memory; every entry point of a file ending in _sm80 contains HMMA (the
#     mma.sync tensor-core path), and those of conv3d_*.cu use no local memory.
# Usage: scripts/cuda/compile-kernels.sh [--sass] [OUT_DIR]      (CI: no GPU needed)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
sass=0
if [ "${1:-}" = "--sass" ]; then sass=1; shift; fi
out=${1:-$root/target/kernels-cubin}
mkdir -p "$out"
eval "$("$root/scripts/cuda/toolkit.sh")"
if [ "$sass" = 1 ]; then
  inspect=${CADENCE_CUDA_INSPECT:-$HOME/.cache/cadence/cuda-inspect}
  if [ ! -x "$inspect/nvidia/cu13/bin/cuobjdump" ]; then
    python3 -m pip install -q --target "$inspect" "nvidia-cuda-cuobjdump==13.2.51" "nvidia-cuda-nvdisasm==13.2.51" >&2
  fi
  export PATH="$inspect/nvidia/cu13/bin:$PATH"
fi

status=0
for src in "$root"/kernels/*.cu; do
  name=$(basename "$src" .cu)
  log="$out/$name.ptxas.txt"
  if ! nvcc --cubin -gencode=arch=compute_90a,code=sm_90a -O3 -std=c++17 -lineinfo \
      -I "$root/kernels" -Xptxas -v -o "$out/$name.cubin" "$src" >"$log" 2>&1; then
    cat "$log"; echo "FAILED: nvcc $name.cu"; status=1; continue
  fi
  grep -E "Compiling entry|registers|stack frame" "$log" | sed "s|^|$name: |"
  if grep -qiE "warning" "$log"; then
    grep -iE "warning" "$log"; echo "FAILED: ptxas warned on $name.cu"; status=1
  fi
  if [ "$sass" = 1 ]; then
    cuobjdump -sass "$out/$name.cubin" >"$out/$name.sass"
    awk -v name="$name" '
      /Function :/ { if (fn != "") report(); fn = $3; hgmma = 0; hmma = 0; local = 0 }
      /HGMMA/ { hgmma++ }
      /HMMA/ && !/HGMMA/ { hmma++ }
      /LDL|STL/ { local++ }
      function report() {
        printf "%s: %s: %d HGMMA, %d HMMA, %d local-memory instructions\n", name, fn, hgmma, hmma, local
        if (name ~ /_sm90$/ && (hgmma == 0 || local > 0)) bad = 1
        if (name ~ /_sm80$/ && hmma == 0) bad = 1
        if (name ~ /^conv3d_/ && local > 0) bad = 1
      }
      END { if (fn != "") report(); exit bad }' "$out/$name.sass" || { echo "FAILED: SASS check of $name"; status=1; }
  fi
done
exit $status
