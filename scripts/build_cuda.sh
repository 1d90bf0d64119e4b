#!/usr/bin/env bash
# Compiles the CUDA kernels (csrc/cuda/*.cu) on a machine without a GPU, to check that they build.
#
#   bash scripts/build_cuda.sh [VENV]          (or CUDA_VENV=... bash scripts/build_cuda.sh)
#
# VENV is a Python venv with a CUDA build of torch; default .cuda-venv in the repository root.
# When it does not exist it is created with `pip install torch==2.14.1 numpy setuptools wheel
# ninja` (a CUDA 13 build of torch from PyPI, ~3 GB). Needs nvcc (CUDA_HOME, default
# /usr/local/cuda). Builds with FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 into a temporary folder
# (default /tmp/aigc-cuda-build, kept for incremental rebuilds; nothing lands in the
# source tree) and exits non-zero when the build fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${CUDA_VENV:-$ROOT/.cuda-venv}}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
  echo "build_cuda.sh: creating $VENV with torch==2.14.1" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.14.1 numpy setuptools wheel ninja
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)"; then
  echo "build_cuda.sh: $VENV has a torch without CUDA ($("$PY" -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "build_cuda.sh: no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)" >&2
  exit 2
fi
PYVER="$("$PY" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
NV_INC="$VENV/lib/$PYVER/site-packages/nvidia/cu13/include"
export CPATH="$NV_INC${CPATH:+:$CPATH}"
export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"

# a fixed folder outside the tree, so that a second run only recompiles what changed
TMP="${AIGC_CUDA_BUILD_DIR:-${TMPDIR:-/tmp}/aigc-cuda-build}"
mkdir -p "$TMP"
cd "$ROOT"
start=$(date +%s)
"$PY" setup.py -q build_ext --build-temp "$TMP/temp" --build-lib "$TMP/lib"
so="$(find "$TMP/lib" -name '_C*.so' | head -n 1)"
if [ -z "$so" ]; then
  echo "build_cuda.sh: no extension was produced" >&2
  exit 1
fi
# the CUDA kernels must be in it: a fat binary holding device code of both ops
kernels=0
for k in gaussian_tile_kernel side_kernel finish_kernel; do
  if [ "$(strings "$so" | grep -c "$k")" -gt 0 ]; then kernels=$((kernels + 1)); fi
done
if [ "$(readelf -S "$so" | grep -c nv_fatbin)" -eq 0 ] || [ "$kernels" -lt 3 ]; then
  echo "build_cuda.sh: $so lacks the CUDA kernels (found $kernels of 3 kernel names)" >&2
  exit 1
fi
echo "build_cuda.sh: OK, CUDA kernels (${kernels} of 3 kernels) compiled for sm_${TORCH_CUDA_ARCH_LIST/./} in $(( $(date +%s) - start )) s ($so)"
