#!/usr/bin/env bash
# A CUDA toolkit from PyPI wheels, for building `lt` with `--features cuda` on a machine with no CUDA
# installed, and the libraries a CUDA build opens at run time. Prints the environment to use:
#
#   eval "$(xtask/cuda/toolkit.sh)"            # build only: nvcc, headers, libcudart
#   eval "$(xtask/cuda/toolkit.sh --runtime)"  # also cuBLAS, cuRAND, NVRTC (to run on a GPU)
#   cargo build --release --features cuda
#
# The venv: $LT_CUDA_VENV if set, else target/cuda-venv in this repository (ignored by git).
# The kernels are compiled for $CUDA_COMPUTE_CAP (default 90, Hopper; 80 Ampere, 89 Ada); on a
# machine with a GPU and nvidia-smi, the GPU's own capability is used when the variable is unset.
# cudarc 0.19 does not know CUDA 13.5 by name; CUDARC_CUDA_VERSION=13040 selects its newest bindings
# (13.4), which 13.5 is compatible with. The build links one CUDA library, the runtime libcudart (from
# the wheel: LIBRARY_PATH, LD_LIBRARY_PATH); the driver, cuBLAS, cuRAND and NVRTC are opened when a GPU
# is first used (candle-core is patched for it: third_party/README.md), so it builds with no driver.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LT_CUDA_VENV:-$here/../../target/cuda-venv}"
build=(nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-cccl==13.3.5.0.6)
runtime=(nvidia-cublas==13.10.0.20 nvidia-curand==10.4.5.25 nvidia-cuda-nvrtc==13.5.37)
want=("${build[@]}")
if [ "${1:-}" = "--runtime" ]; then
  want+=("${runtime[@]}")
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--runtime]" >&2
  exit 2
fi
if [ ! -x "$venv/bin/pip" ]; then
  python3 -m venv "$venv" >&2
fi
# pip is quick when everything is already there; it says what it installs on stderr only.
"$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
root="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
[ -x "$root/bin/nvcc" ] || { echo "no nvcc under $root after installing ${build[*]}" >&2; exit 1; }
# The runtime wheel ships libcudart.so.13 only; the build and cudarc look for the unversioned name.
for lib in "$root"/lib/lib*.so.[0-9]*; do
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
cap="${CUDA_COMPUTE_CAP:-}"
if [ -z "$cap" ] && command -v nvidia-smi >/dev/null 2>&1; then
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d . || true)"
fi
cap="${cap:-90}"
echo "export CUDA_ROOT='$root'"
echo "export CUDA_PATH='$root'"
echo "export PATH='$root/bin':\"\$PATH\""
# The link (candle-kernels' MoE kernels use the CUDA runtime, libcudart) and the run find them here.
echo "export LIBRARY_PATH='$root/lib':\"\${LIBRARY_PATH:-}\""
echo "export LD_LIBRARY_PATH='$root/lib':\"\${LD_LIBRARY_PATH:-}\""
echo "export CUDARC_CUDA_VERSION=13040"
echo "export CUDA_COMPUTE_CAP=$cap"
