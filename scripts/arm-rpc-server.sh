#!/usr/bin/env bash
# An emulated aarch64 "device" for TVM RPC on this machine: the aarch64 TVM runtime in an
# aarch64 Python, run by qemu user-mode emulation, registered with a TVM RPC tracker. Both
# listen on 127.0.0.1 only. Nothing here is a phone: timings under qemu are emulated.
#
#   scripts/arm-rpc-server.sh setup    make the aarch64 root (idempotent; cached outside git)
#   scripts/arm-rpc-server.sh start    setup, then start tracker + server (no-op when running)
#   scripts/arm-rpc-server.sh stop     stop the server and tracker started by `start`
#   scripts/arm-rpc-server.sh status   say what runs, and the tracker's queue
#   scripts/arm-rpc-server.sh neon     the fused C++ kernels' NEON path under qemu (kernels/cross_check.sh)
#   scripts/arm-rpc-server.sh python ARGS...   the emulated aarch64 Python (e.g. -c "import tvm")
#
# The root is a Debian arm64 Python (mmdebstrap --variant=extract: packages unpacked, no
# maintainer scripts, so no binfmt or chroot is needed) plus the aarch64 wheels of apache-tvm
# and apache-tvm-ffi unpacked beside it, without TVM's 250 MB compiler library
# (TVM_USE_RUNTIME_LIB=1: the RPC server only needs the runtime; libtvm_runtime_extra.so is
# loaded for MetaSchedule's random_fill_for_measure).
#
# Environment: MFS_ARM_ROOT (default ~/.cache/mfs_fast/arm-root), MFS_ARM_WHEELS (wheel cache),
# MFS_RPC_TRACKER_PORT (9190), MFS_RPC_PORT (9090), MFS_RPC_KEY (aarch64-qemu), PYTHON (host
# Python with tvm, default .venv/bin/python), DEBIAN_MIRROR.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mfs_fast"
ROOT="${MFS_ARM_ROOT:-$CACHE/arm-root}"
WHEELS="${MFS_ARM_WHEELS:-$CACHE/arm-wheels}"
RUN_DIR="${MFS_ARM_RUN:-$CACHE/arm-rpc-run}"
TRACKER_PORT="${MFS_RPC_TRACKER_PORT:-9190}"
SERVER_PORT="${MFS_RPC_PORT:-9090}"
KEY="${MFS_RPC_KEY:-aarch64-qemu}"
HOST_PY="${PYTHON:-$REPO/.venv/bin/python}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
QEMU="${QEMU_AARCH64:-qemu-aarch64-static}"
TVM_WHEELS=(apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1)
PY_WHEELS=(numpy ml_dtypes typing_extensions psutil cloudpickle)
STAMP_TEXT="v1 ${TVM_WHEELS[*]} ${PY_WHEELS[*]} bookworm python3.11"

log() { echo "arm-rpc-server: $*" >&2; }

ensure_tools() {  # the Debian packages this needs (run.sh installs the first and last already)
    local tool package missing=()
    for pair in "$QEMU:qemu-user-static" mmdebstrap:mmdebstrap aarch64-linux-gnu-g++:g++-aarch64-linux-gnu; do
        tool="${pair%%:*}" package="${pair#*:}"
        command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

fetch_wheels() {
    mkdir -p "$WHEELS"
    local platforms=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
                     --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)
    "$HOST_PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
        "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        -d "$WHEELS" "${TVM_WHEELS[@]}" "${PY_WHEELS[@]}" 2> >(grep -v "^WARNING: Location" >&2)
}

setup() {
    if [ -f "$ROOT/.mfs-stamp" ] && [ "$(cat "$ROOT/.mfs-stamp")" = "$STAMP_TEXT" ]; then
        return
    fi
    ensure_tools
    fetch_wheels
    local tmp="$ROOT.tmp.$$"
    rm -rf "$tmp"
    log "building the aarch64 root in $ROOT"
    mmdebstrap --quiet --variant=extract --architectures=arm64 --skip=check/empty \
        --include=python3.11-minimal,libpython3.11-stdlib,libstdc++6,libgcc-s1 bookworm "$tmp" "$MIRROR"
    mkdir -p "$tmp/opt/tvm-site"
    local wheel
    for wheel in "$WHEELS"/*.whl; do
        "$HOST_PY" -m zipfile -e "$wheel" "$tmp/opt/tvm-site"
    done
    # the compiler (LLVM inside) and the CUDA runtime are never used on the device
    rm -f "$tmp/opt/tvm-site/tvm/lib/libtvm_compiler.so" "$tmp/opt/tvm-site/tvm/lib/libtvm_runtime_cuda.so"
    echo "$STAMP_TEXT" > "$tmp/.mfs-stamp"
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    write_python_wrapper
}

# A host-side launcher for the emulated Python. TVM's RPC server starts its worker with
# sys.executable; pointing that at this script lets the kernel run it without binfmt_misc.
write_python_wrapper() {
    mkdir -p "$RUN_DIR"
    cat > "$RUN_DIR/python-aarch64" <<EOF
#!/bin/sh
export PYTHONPATH="$ROOT/opt/tvm-site" TVM_USE_RUNTIME_LIB=1 PYTHONDONTWRITEBYTECODE=1
exec "$(command -v "$QEMU")" -L "$ROOT" "$ROOT/usr/bin/python3.11" "\$@"
EOF
    chmod +x "$RUN_DIR/python-aarch64"
}

arm_python() {
    setup
    [ -x "$RUN_DIR/python-aarch64" ] || write_python_wrapper
    exec "$RUN_DIR/python-aarch64" "$@"
}

running() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

wait_port() {  # wait until something listens on 127.0.0.1:$1 (or fail after $2 s)
    local port="$1" limit="$2" i
    for ((i = 0; i < limit * 2; i++)); do
        if "$HOST_PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $port)))"; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

server_registered() {
    "$HOST_PY" - "$TRACKER_PORT" "$KEY" <<'EOF'
import sys
from tvm import rpc
summary = rpc.connect_tracker("127.0.0.1", int(sys.argv[1])).summary()
sys.exit(0 if any(s["key"].startswith("server:" + sys.argv[2]) for s in summary["server_info"]) else 1)
EOF
}

start() {
    setup
    [ -x "$RUN_DIR/python-aarch64" ] || write_python_wrapper
    mkdir -p "$RUN_DIR"
    if ! running tracker; then
        log "starting the tracker on 127.0.0.1:$TRACKER_PORT"
        setsid "$HOST_PY" -m tvm.exec.rpc_tracker --host 127.0.0.1 --port "$TRACKER_PORT" --port-end "$((TRACKER_PORT + 1))" \
            >"$RUN_DIR/tracker.log" 2>&1 &
        echo $! > "$RUN_DIR/tracker.pid"
        wait_port "$TRACKER_PORT" 60 || { log "tracker did not start; see $RUN_DIR/tracker.log"; exit 1; }
    fi
    if ! running server; then
        log "starting the emulated aarch64 RPC server on 127.0.0.1:$SERVER_PORT (key $KEY)"
        setsid "$RUN_DIR/python-aarch64" -c '
import runpy, sys
sys.executable = sys.argv.pop(1)  # workers start through the host-side launcher
runpy.run_module("tvm.exec.rpc_server", run_name="__main__")
' "$RUN_DIR/python-aarch64" --host 127.0.0.1 --port "$SERVER_PORT" --port-end "$((SERVER_PORT + 1))" \
            --tracker "127.0.0.1:$TRACKER_PORT" --key "$KEY" \
            --load-library "$ROOT/opt/tvm-site/tvm/lib/libtvm_runtime_extra.so" >"$RUN_DIR/server.log" 2>&1 &
        echo $! > "$RUN_DIR/server.pid"
    fi
    local i
    for ((i = 0; i < 180; i++)); do
        if server_registered 2>/dev/null; then
            log "ready: tracker 127.0.0.1:$TRACKER_PORT, key $KEY (use --rpc 127.0.0.1:$TRACKER_PORT:$KEY)"
            return 0
        fi
        running server || { log "server exited; see $RUN_DIR/server.log"; tail -20 "$RUN_DIR/server.log" >&2; exit 1; }
        sleep 1
    done
    log "server not registered with the tracker after 180 s; see $RUN_DIR/server.log"
    exit 1
}

stop_one() {
    if running "$1"; then
        local pid
        pid="$(cat "$RUN_DIR/$1.pid")"
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true  # its own session: setsid
        log "stopped $1 ($pid)"
    fi
    rm -f "$RUN_DIR/$1.pid"
}

status() {
    local name
    for name in tracker server; do
        if running "$name"; then echo "$name: running (pid $(cat "$RUN_DIR/$name.pid"))"; else echo "$name: stopped"; fi
    done
    if running tracker; then
        "$HOST_PY" -m tvm.exec.query_rpc_tracker --host 127.0.0.1 --port "$TRACKER_PORT"
    fi
}

case "${1:-}" in
    setup) setup; log "aarch64 root ready in $ROOT" ;;
    start) start ;;
    stop) stop_one server; stop_one tracker ;;
    status) status ;;
    python) shift; arm_python "$@" ;;
    neon) ensure_tools; exec bash "$REPO/kernels/cross_check.sh" ;;
    *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
