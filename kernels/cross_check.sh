#!/usr/bin/env bash
# Cross-check the NEON kernels without an ARM machine: cross-compile neon_check.cpp (with the
# kernel sources, no CMake, no Python) for AArch64 and run it under qemu user-mode emulation.
# It runs every block and the whole IDN with the NEON kernels and with the portable ones in
# the same binary, prints the max abs difference per case, and fails when one exceeds 1e-4.
#
#   kernels/cross_check.sh            AArch64 (needs aarch64-linux-gnu-g++ and qemu-aarch64-static:
#                                     apt-get install g++-aarch64-linux-gnu qemu-user-static)
#   kernels/cross_check.sh --native   the same check for this machine (AVX2 vs portable on x86-64)
#
# Environment: CXX_AARCH64, QEMU_AARCH64 (tool names), CXX (native compiler), OUT (binary path).
set -euo pipefail
cd "$(dirname "$0")"
SOURCES=(neon_check.cpp fused_idn.cpp dispatch.cpp isa_scalar.cpp isa_avx2.cpp isa_avx512.cpp isa_avx512bf16.cpp isa_neon.cpp)
FLAGS=(-O3 -std=c++17 -pthread -Wall -Wextra -I.)

if [ "${1:-}" = "--native" ]; then
    out="${OUT:-${TMPDIR:-/tmp}/mfs_fast_kernel_check}"
    "${CXX:-g++}" "${FLAGS[@]}" "${SOURCES[@]}" -o "$out"
    exec "$out"
fi

cxx="${CXX_AARCH64:-aarch64-linux-gnu-g++}"
qemu="${QEMU_AARCH64:-qemu-aarch64-static}"
missing=()
command -v "$cxx" >/dev/null 2>&1 || missing+=("$cxx (apt-get install g++-aarch64-linux-gnu)")
command -v "$qemu" >/dev/null 2>&1 || missing+=("$qemu (apt-get install qemu-user-static)")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'cannot cross-check NEON, missing: %s\n' "${missing[@]}" >&2
    exit 2
fi
out="${OUT:-${TMPDIR:-/tmp}/mfs_fast_neon_check}"
"$cxx" "${FLAGS[@]}" -static "${SOURCES[@]}" -o "$out"
"$qemu" "$out"
