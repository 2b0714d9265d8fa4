#!/usr/bin/env bash
# Installs the CUDA 13.0 compiler and runtime headers from NVIDIA's PyPI wheels (no system
# toolkit needed) and prints the environment to build with. Usage: eval "$(scripts/cuda/toolkit.sh)"
#
# Pinned to 13.0.2: the H100 machines run driver 580 (CUDA 13.0); PTX from a newer nvcc would
# not load there, and cudarc rejects nvcc versions it does not know.
set -euo pipefail
venv=${CADENCE_CUDA_VENV:-$HOME/.cache/cadence/cuda-13.0.2}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q "cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2" >&2
fi
cu13=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
echo "export CU13='$cu13'"
echo "export PATH='$cu13/bin':\"\$PATH\""
echo "export CUDA_COMPUTE_CAP=90"
echo "export CUDARC_CUDA_VERSION=13000"
