#!/usr/bin/env bash
# Build mfs_fast._cuda for this machine's Python (kernels/cuda standalone, into mfs_fast/), e.g.
# on a GPU machine whose python3 is not the one this checkout was installed with (a module built
# for Python 3.11 does not import in 3.12). Needs nvcc, CMake and pybind11 there; builds nothing else.
#   kernels/cuda/build_here.sh [python]     CUDAARCHS=90 by default (H100/H200); e.g. CUDAARCHS=native
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="$(command -v "${1:-python3}")" || { echo "build_here.sh: ${1:-python3} not found" >&2; exit 2; }
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac
if ! command -v nvcc >/dev/null 2>&1; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
        if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
    done
fi
command -v nvcc >/dev/null || { echo "build_here.sh: nvcc not found" >&2; exit 2; }
export CUDAARCHS="${CUDAARCHS:-90}"
soabi="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))')"
build="build/cuda-$soabi"
start=$(date +%s)
cmake -S kernels/cuda -B "$build" -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$PY" \
      -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/mfs_fast" \
      >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" --parallel "$(nproc 2>/dev/null || echo 2)"
echo "build_here.sh: mfs_fast/_cuda.$soabi.so for CUDA architectures $CUDAARCHS in $(( $(date +%s) - start )) s"
