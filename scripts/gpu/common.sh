# Sourced by the scripts in scripts/gpu on the device machine (which has no Rust toolchain and
# no CUDA toolkit: the binaries are built here and carried). Expects $out, the log folder.

# The CUDA binaries load the driver at run time but link libcudart.so.13: take the runtime
# that torch's wheels ship.
cudart=$(python3 -c 'import nvidia, glob, os; print(next(iter(glob.glob(os.path.join(list(nvidia.__path__)[0], "cu13", "lib", "libcudart.so.13*"))), ""))' 2>/dev/null)
if [ -n "$cudart" ]; then export LD_LIBRARY_PATH="$(dirname "$cudart")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi

# unpack CARRY NAME DEST: the carried NAME.gz into the executable DEST, or a message naming
# the build step that makes it.
unpack() {
  gunzip -c "$1/$2.gz" >"$3" && chmod +x "$3" && return 0
  echo "no $1/$2.gz: build it with scripts/cuda/build.sh (gpu-carry or gpu-all) and carry $1"
  return 1
}

# gpu_state BIN: the GPU's name, clocks, temperature and power, and the CUDA runtime BIN links,
# to the screen and $out/gpu.txt (clocks and heat explain odd timings afterwards).
gpu_state() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv | tee "$out/gpu.txt"
  ldd "$1" | grep -E "cudart|not found" | tee -a "$out/gpu.txt"
}

# step NAME COMMAND...: runs COMMAND, logs it to $out/NAME.log and records NAME=exit-status in
# the array `status` (for scripts/gpu/steps.py).
status=()
step() {
  local name=$1
  shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out/$name.log"
  status+=("$name=${PIPESTATUS[0]}")
}
