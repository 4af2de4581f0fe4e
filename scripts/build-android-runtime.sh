#!/usr/bin/env bash
# Build the TVM 0.27 runtime with OpenCL, and the C++ RPC server `tvm_rpc`, for an Android phone
# (arm64-v8a). The PyPI wheels carry no OpenCL runtime, and the runtime sources inside the
# wheel are only a subset (no src/runtime/opencl, no apps/cpp_rpc): this needs a TVM checkout.
#
#   git clone --recursive --branch v0.27.0 https://github.com/apache/tvm tvm-src
#   export ANDROID_NDK_HOME=/path/to/android-ndk-r26d
#   scripts/build-android-runtime.sh tvm-src [build-dir]        # default build-dir: build-android
#
# Output: <build-dir>/libtvm_runtime.so, libtvm_ffi.so (from the tvm-ffi submodule) and tvm_rpc,
# to `adb push` to /data/local/tmp (docs/android.md). NOT RUN on this project's machines: there
# is no NDK and no GitHub access here; `scripts/build-android-runtime.sh --check` says what the
# wheel's own sources lack.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
API="${ANDROID_API:-28}"

if [ "${1:-}" = "--check" ]; then
    site="$("$REPO/.venv/bin/python" -c 'import importlib.util as u; print(u.find_spec("tvm").submodule_search_locations[0])')"
    for need in src/runtime/opencl src/runtime/rpc apps/cpp_rpc CMakeLists.txt; do
        if [ -e "$site/$need" ]; then echo "wheel has    $need"; else echo "wheel lacks  $need"; fi
    done
    exit 0
fi

src="${1:?usage: scripts/build-android-runtime.sh TVM_SOURCE_DIR [BUILD_DIR] (or --check)}"
build="${2:-build-android}"
: "${ANDROID_NDK_HOME:?set ANDROID_NDK_HOME to the Android NDK (r23 or newer)}"
toolchain="$ANDROID_NDK_HOME/build/cmake/android.toolchain.cmake"
[ -f "$toolchain" ] || { echo "no $toolchain: is ANDROID_NDK_HOME an NDK?" >&2; exit 2; }
[ -f "$src/CMakeLists.txt" ] && [ -d "$src/src/runtime/opencl" ] \
    || { echo "$src is not a TVM source checkout (needs src/runtime/opencl)" >&2; exit 2; }
[ -f "$src/3rdparty/tvm-ffi/CMakeLists.txt" ] || { echo "clone with --recursive (3rdparty/tvm-ffi is missing)" >&2; exit 2; }

# OpenCL on Android: TVM links its dlopen-based OpenCL wrapper (3rdparty/OpenCL-Headers), so
# no libOpenCL.so is needed at build time; the phone's vendor library is found at run time.
cmake -S "$src" -B "$build" -G "Unix Makefiles" \
    -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DANDROID_ABI=arm64-v8a -DANDROID_PLATFORM="android-$API" \
    -DCMAKE_BUILD_TYPE=Release -DUSE_LLVM=OFF -DUSE_OPENCL=ON -DUSE_RPC=ON -DUSE_CPP_RPC=ON \
    -DUSE_RANDOM=ON -DUSE_LIBBACKTRACE=OFF -DUSE_CUDA=OFF -DUSE_VULKAN=OFF
cmake --build "$build" --target tvm_runtime tvm_rpc -j "${JOBS:-2}"
ls -l "$build"/libtvm_runtime.so "$build"/tvm_rpc
