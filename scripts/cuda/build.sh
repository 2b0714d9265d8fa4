#!/usr/bin/env bash
# The CUDA build, reproducible on a machine with no GPU and no system CUDA toolkit.
#
#   scripts/cuda/build.sh check      type-check every crate with CUDA on (fake nvcc; ~1 min)
#   scripts/cuda/build.sh release    build the `cadence` binary with CUDA for the H100 (sm_90a)
#   scripts/cuda/build.sh gpu-carry  build the GPU self-tests/benchmarks and gather what
#                                    scripts/gpu/attention.sh needs in target/gpu-carry and
#                                    what scripts/gpu/conv3d.sh needs in target/gpu-carry-conv3d
#                                    (carry one of them to the device machine; each stays well
#                                    under the tool's 64 MiB); ~8 min cold
#   scripts/cuda/build.sh gpu-all    build the CUDA `cadence` binary (with selftest) and the attention
#                                    self-test, and gather in target/gpu-all what
#                                    scripts/gpu/run-all.sh needs (both binaries stripped and
#                                    gzipped, every fixture case in one .tar.xz); refuses if it
#                                    would not fit the device tool's 64 MiB carry limit
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
      cargo check --workspace --all-targets \
      --features cadence-kernels/cuda,cadence-cli/cuda,cadence-cli/selftest,cadence-bench/cuda \
      --features cadence-parity/cuda "${patch[@]}" "$@"
    ;;
  release)
    eval "$("$here/toolkit.sh")"
    CARGO_TARGET_DIR="$root/target/cuda" cargo build --release -p cadence-cli --features cuda "${patch[@]}" "$@"
    ;;
  gpu-carry)
    eval "$("$here/toolkit.sh")"
    target=${CADENCE_CUDA_TARGET:-$root/target/cuda}
    CARGO_TARGET_DIR="$target" cargo build --release -p cadence-parity --features cuda \
      --example attention_gpu --example conv3d_gpu "${patch[@]}" "$@"
    fixtures=${CADENCE_FIXTURES:-$root/../shared/fixtures}
    # gather DIR BINARY KIND...: the stripped, compressed binary (the device tool carries at
    # most 64 MiB with the working tree) and every fixture case of the kinds (found by kind,
    # not by name).
    gather() {
      local carry=$1 bin=$2 kind
      shift 2
      rm -rf "$carry" && mkdir -p "$carry/fixtures"
      strip -o "$carry/$bin" "$target/release/examples/$bin"
      gzip -9 "$carry/$bin"
      for kind in "$@"; do
        grep -l "\"kind\": *\"$kind\"" -r "$fixtures" --include=case.json | while read -r case; do
          cp -r "$(dirname "$case")" "$carry/fixtures/"
        done
      done
    }
    gather "$root/target/gpu-carry" attention_gpu dit_forward
    gather "$root/target/gpu-carry-conv3d" conv3d_gpu turbo_vaed_decode wan22_vae_decode wan22_vae_encode
    # The real layer shapes for conv3d_gpu check: the manifest that lists turbo_vaed's weights.
    grep -l '"turbo_vaed"' -r "$fixtures" --include=manifest_full.json | head -n1 \
      | xargs -I{} cp {} "$root/target/gpu-carry-conv3d/fixtures/"
    du -sh "$root/target/gpu-carry" "$root/target/gpu-carry-conv3d" "$root/target/gpu-carry"/* "$root/target/gpu-carry-conv3d"/* >&2
    ;;
  gpu-all)
    eval "$("$here/toolkit.sh")"
    target=${CADENCE_CUDA_TARGET:-$root/target/cuda}
    CARGO_TARGET_DIR="$target" cargo build --release -p cadence-cli --features cuda,selftest \
      "${patch[@]}" "$@"
    CARGO_TARGET_DIR="$target" cargo build --release -p cadence-parity --features cuda \
      --example attention_gpu "${patch[@]}" "$@"
    carry="$root/target/gpu-all"
    rm -rf "$carry" && mkdir -p "$carry"
    for bin in "$target/release/cadence" "$target/release/examples/attention_gpu"; do
      strip -o "$carry/$(basename "$bin")" "$bin"
      gzip -9 "$carry/$(basename "$bin")"
    done
    # Every fixture case (a folder with a case.json; found by content, never by name). xz,
    # not gzip: cases that share weights carry identical copies, which xz's window folds.
    fixtures=${CADENCE_FIXTURES:-$root/../shared/fixtures}
    (cd "$fixtures" && find . -name case.json -printf '%h\n' | sort | tar -cf - -T - | xz -9 -T0) \
      >"$carry/fixtures.tar.xz"
    du -sh "$carry"/* >&2
    # The device tool carries at most 64 MiB together with the working tree.
    limit=$((64 * 1024 * 1024))
    # (Outside a git checkout the tree is not counted.)
    tree=$({ git -C "$root" ls-files -z -co --exclude-standard 2>/dev/null || true; } \
      | (cd "$root" && xargs -0 -r cat 2>/dev/null || true) | wc -c)
    used=$(( $(du -sb "$carry" | cut -f1) + tree ))
    echo "carry $(du -sb "$carry" | cut -f1) bytes + working tree $tree bytes = $used of $limit" >&2
    if [ "$used" -gt "$limit" ]; then
      echo "target/gpu-all plus the working tree exceed the 64 MiB the device tool carries" >&2
      exit 1
    fi
    ;;
  *) echo "usage: $0 check|release|gpu-carry|gpu-all [cargo args]" >&2; exit 2 ;;
esac
