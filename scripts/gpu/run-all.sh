#!/usr/bin/env bash
# Everything that needs the GPU, in one call of the device tool. Here, first:
#
#   scripts/cuda/build.sh gpu-all         # builds target/gpu-all (CUDA cadence + attention test)
#
# then run(command="bash scripts/gpu/run-all.sh", carry=["target/gpu-all"], timeout_s=600).
#
# Steps, most important first, each with what is left of the time budget (CADENCE_GPU_BUDGET_S,
# default 570 s, under the tool's 600 s limit); each logs to $OUT/<step>.log:
#   1. selftest      `cadence selftest --device cuda`: every parity fixture case on the GPU
#   2. bench-256p    `cadence bench` at the real sizes (random weights unless real ones are
#                    installed), 256p distilled: 1 cold + 2 warm runs -> $OUT/bench-256p/
#   3. attention     scripts/gpu/attention.sh (kernel checks, DiT fixtures per kernel, timings,
#                    torch baseline) -> $OUT/attention/
#   4. bench-540p    540p distilled, when at least 240 s are left   -> $OUT/bench-540p/
#   5. bench-1080p   1080p distilled, when at least 300 s are left  -> $OUT/bench-1080p/
# A summary (exit status per step, the selftest totals, the benchmark tables) comes last. The
# script's exit status is 1 when a step that ran failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
carry=${CADENCE_GPU_CARRY:-target/gpu-all}
out=${OUT:-/tmp/cadence-gpu}
budget=${CADENCE_GPU_BUDGET_S:-570}
deadline=$((SECONDS + budget))
mkdir -p "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in cadence.gz attention_gpu.gz fixtures.tar.xz; do
  [ -f "$carry/$f" ] || { echo "no $carry/$f: run scripts/cuda/build.sh gpu-all here and carry $carry"; exit 1; }
done
. "$root/scripts/gpu/common.sh"
unpack "$carry" cadence "$work/cadence" || exit 1
mkdir -p "$work/fixtures"
# tar's -J needs the xz program; Python's tarfile reads .xz on its own.
if command -v xz >/dev/null; then
  tar -C "$work/fixtures" -xJf "$carry/fixtures.tar.xz"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$carry/fixtures.tar.xz" "$work/fixtures"
fi
export CADENCE_FIXTURES="$work/fixtures"

gpu_state "$work/cadence"

# timed_step NAME MIN_SECONDS COMMAND...: runs COMMAND under what is left of the budget when
# at least MIN_SECONDS are left; logs to $OUT/NAME.log.
timed_step() {
  local name=$1 need=$2
  shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt "$need" ]; then
    echo "=== $name: skipped ($left s left, needs $need)"
    status+=("$name=skipped")
    return
  fi
  echo "=== $name ($left s left): $*"
  timeout --kill-after=10 "$left" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && echo "=== $name: stopped at the time budget"
  status+=("$name=$rc")
}

bench=("$work/cadence" bench --device cuda --model distilled --runs 2)

timed_step selftest 60 "$work/cadence" selftest --device cuda
timed_step bench-256p 120 "${bench[@]}" --resolution 256p --out "$out/bench-256p"
timed_step attention 120 env CADENCE_GPU_CARRY="$carry" OUT="$out/attention" bash scripts/gpu/attention.sh
timed_step bench-540p 240 "${bench[@]}" --resolution 540p --out "$out/bench-540p"
timed_step bench-1080p 300 "${bench[@]}" --resolution 1080p --out "$out/bench-1080p"

echo
echo "=== summary"
failed=0
for s in "${status[@]}"; do
  name=${s%%=*} rc=${s#*=}
  # attention.sh exits 0 even when one of its steps failed; its own summary says which.
  if [ "$name" = attention ] && [ "$rc" = 0 ] && grep -qE 'exit +[0-9]+ +FAIL' "$out/attention.log"; then
    rc="failed step (see $out/attention.log)"
  fi
  case "$rc" in
    0) verdict=PASS ;;
    skipped) verdict=SKIPPED ;;
    124) verdict="FAIL (stopped at the time budget)"; failed=1 ;;
    [0-9]*) verdict="FAIL (exit $rc)"; failed=1 ;;
    *) verdict="FAIL ($rc)"; failed=1 ;;
  esac
  printf '%-12s %s\n' "$name" "$verdict"
done
if [ -f "$out/selftest.log" ]; then
  grep -E '^(FAIL|[0-9]+ passed)' "$out/selftest.log"
fi
for md in "$out"/bench-*/bench.md; do
  [ -f "$md" ] && { echo; cat "$md"; }
done
exit "$failed"
