#!/usr/bin/env bash
# The CUDA build, reproducible on a machine with no GPU and no system CUDA toolkit.
#
#   scripts/cuda/build.sh check      type-check every crate with CUDA on (fake nvcc; ~1 min)
#   scripts/cuda/build.sh release    build the `cadence` binary with CUDA for the H100 (sm_90a)
#   scripts/cuda/build.sh gpu-carry  build the attention self-test/benchmark and gather what
#                                    scripts/gpu/attention.sh needs in target/gpu-carry (carry
#                                    that path to the device machine); ~8 min cold
#
# All modes use the candle-core prepared by patched-candle.sh (the driver is loaded at run time) and
# restore Cargo.lock afterwards, since a command-line [patch] rewrites it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/scripts/cuda"
mode=${1:-check}; shift || true
cd "$root"
patch=(--config "patch.crates-io.candle-core.path=\"$("$here/patched-candle.sh")\"")
cp Cargo.lock target/cuda-patch/Cargo.lock.orig
trap 'cp target/cuda-patch/Cargo.lock.orig Cargo.lock' EXIT
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000
case "$mode" in
  check)
    PATH="$here/fake-nvcc:$PATH" CARGO_TARGET_DIR="$root/target/cuda-check" \
      cargo check --workspace --all-targets --features cadence-kernels/cuda "${patch[@]}" "$@"
    ;;
  release)
    eval "$("$here/toolkit.sh")"
    CARGO_TARGET_DIR="$root/target/cuda" cargo build --release -p cadence-cli --features cuda "${patch[@]}" "$@"
    ;;
  gpu-carry)
    eval "$("$here/toolkit.sh")"
    target=${CADENCE_CUDA_TARGET:-$root/target/cuda}
    CARGO_TARGET_DIR="$target" cargo build --release -p cadence-kernels --features cuda \
      --example attention_gpu "${patch[@]}" "$@"
    carry="$root/target/gpu-carry"
    rm -rf "$carry" && mkdir -p "$carry/fixtures"
    # Stripped and compressed: the device tool carries at most 64 MiB with the working tree.
    strip -o "$carry/attention_gpu" "$target/release/examples/attention_gpu"
    gzip -9 "$carry/attention_gpu"
    # Every dit_forward fixture case (found by kind, not by name) for the fixture checks.
    fixtures=${CADENCE_FIXTURES:-$root/../shared/fixtures}
    grep -l '"kind": *"dit_forward"' -r "$fixtures" --include=case.json | while read -r case; do
      cp -r "$(dirname "$case")" "$carry/fixtures/"
    done
    du -sh "$carry" "$carry"/* >&2
    ;;
  *) echo "usage: $0 check|release|gpu-carry [cargo args]" >&2; exit 2 ;;
esac
