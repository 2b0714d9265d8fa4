#!/usr/bin/env bash
# Prepares candle-core for the CUDA build and prints the cargo `--config` flag that uses it.
#
# Stock candle-core links libcuda at build time (cudarc `dynamic-linking`), which needs a CUDA
# driver library on the build machine. We want a binary that is built here (no GPU) and loads
# the driver at run time. This script copies candle-core 0.11.1 from cargo's registry cache (it
# is never committed) into target/cuda-patch and changes one feature list: cudarc's
# `cuda-version-from-build-system, dynamic-linking` become `cuda-13000, dynamic-loading`.
# Nothing else changes. Prints the prepared folder; build.sh passes it to cargo as
# --config 'patch.crates-io.candle-core.path="<folder>"'.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=0.11.1
dest="$root/target/cuda-patch/candle-core-$version"
if [ ! -f "$dest/Cargo.toml" ]; then
  (cd "$root" && cargo fetch -q)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-core-$version | head -n1)
  [ -d "$src" ] || { echo "candle-core $version not in cargo's registry cache" >&2; exit 1; }
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.tmp" && cp -r "$src" "$dest.tmp"
  grep -q '"dynamic-linking"' "$dest.tmp/Cargo.toml" || { echo "unexpected candle-core manifest" >&2; exit 1; }
  sed -i -e 's/"cuda-version-from-build-system"/"cuda-13000"/' -e 's/"dynamic-linking"/"dynamic-loading"/' "$dest.tmp/Cargo.toml"
  mv "$dest.tmp" "$dest"
fi
echo "$dest"
