# Sourced by the scripts in scripts/gpu on the device machine. The CUDA binaries load the
# driver at run time but link libcudart.so.13; there is no CUDA toolkit there, so take the
# runtime that torch's wheels ship.
cudart=$(python3 -c 'import nvidia, glob, os; print(next(iter(glob.glob(os.path.join(list(nvidia.__path__)[0], "cu13", "lib", "libcudart.so.13*"))), ""))' 2>/dev/null)
if [ -n "$cudart" ]; then export LD_LIBRARY_PATH="$(dirname "$cudart")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
