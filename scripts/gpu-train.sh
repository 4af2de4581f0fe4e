#!/usr/bin/env bash
# Train the starter weights on a lent GPU for at most 9 minutes (issue #24, item 5):
# configs/starter-gpu.toml (the stage-5 recipe, batch 16 sources x 4 targets, CUDA).
#
# HOW TO USE (a session whose task is lent a GPU; `status` says can_start_another: true):
#
#   1. Here, right before the call (CPU, ~2 minutes; rerun it after the tree grows):
#        scripts/gpu-train.sh prepare
#      It fills the git-ignored folder .gpu/ with what the device needs and cannot fetch: the
#      dlib model packed to 11 MB, faceres (7 MB), and the crop cache packed into whatever the
#      64 MiB a call leaves after the working tree (~35 MB) and those two (12.2 MB today).
#   2. The call, pasted as is (one call; ~10 minutes of command, ~12 of the 15 minutes of
#      device time with the machine's start):
#        run(command="bash scripts/gpu-train.sh", carry=[".gpu"], timeout_s=600)
#   3. What comes back (files_at): weights/ (manifest.json, identity.safetensors and
#      swap-0000N-of-0000M.safetensors, each < 16 MiB), log.jsonl, train.log and samples.png.
#      The weights load as they are (`--weights <files_at>/weights`, or
#      `mfs-fast weights import <files_at>/weights NAME`); evaluate them with
#      scripts/eval-starter.sh before anything is bundled, and record steps, wall time and
#      device (train.log's last lines) in mfs_fast/weights/README.md.
#   If the command fails within its first minute (an import error, say), the machine stays warm
#   for 30 s only: fix, then call again at once, or call give_back. A failed training run that
#   left a checkpoint is exported from it; a second call on the same warm machine resumes from
#   runs/starter-gpu/checkpoint.pt there.
#
# On the device: this repository's working tree plus .gpu/, nothing else (no internet, no
# ../shared). The venv is not carried: it is Python 3.11 with a CPU torch (and GBs); the
# device's python3 (3.12) already holds torch with CUDA, numpy, opencv-python-headless,
# safetensors and tqdm, which is all training imports, so the repository runs in place with
# PYTHONPATH (the C++ extensions are optional and training does not use them).
#
# Proven on CPU with a dry run of the same device path (3 steps, 1 source x 2 targets):
#   scripts/gpu-train.sh prepare && DRY_RUN=1 scripts/gpu-train.sh      (OUT=DIR to keep the files)
#
# Knobs (environment): COMMAND_LIMIT_S (600, the call's timeout_s), RESERVE_S (120: model
# loading before the first step plus checkpoint, export and copy after the last), MAX_MINUTES
# (9, the cap; as in the config), PYTHON, and for prepare SOURCE_CACHE (starter-v5's cache), MARGIN_BYTES
# (1 MiB of room for the tree to grow between prepare and the call).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CARRY=.gpu
CONFIG=configs/starter-gpu.toml
CALL_LIMIT_BYTES=$((64 << 20))
SHARD_BYTES=$((15 << 20))
STARTED=$SECONDS

say() { printf '[gpu-train %4ss] %s\n' "$((SECONDS - STARTED))" "$*"; }
die() { say "error: $*" >&2; exit 1; }

prepare() {
    local py=${PYTHON:-$ROOT/.venv/bin/python}
    mkdir -p "$CARRY/human-models"
    say "packing the dlib model (conv/fc weights as float16)"
    local dlib
    dlib=$("$py" -c 'from mfs_fast.identity.model_files import dlib_model_path; print(dlib_model_path())')
    "$py" -m mfs_fast.train.dlib_pack pack "$dlib" "$CARRY/dlib.pack"
    say "copying faceres (the second identity net in the loss; checked by sha256 there)"
    local human
    human=$("$py" -c 'from mfs_fast.identity.model_files import human_model_path; print(human_model_path("faceres").parent)')
    cp "$human/faceres.json" "$human/faceres.bin" "$CARRY/human-models/"
    if [ -f "$human/LICENSE" ]; then cp "$human/LICENSE" "$CARRY/human-models/"; fi
    rm -f "$CARRY/cache.pack"
    # what travels besides .gpu/: tracked and untracked-not-ignored files, as they are now
    local tree others budget source upscale
    tree=$({ git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null || true; } \
           | awk '{s += $1} END {print s + 0}')  # files deleted in the tree do not travel
    others=$(du -sb "$CARRY" | cut -f1)
    budget=$((CALL_LIMIT_BYTES - tree - others - ${MARGIN_BYTES:-$((1 << 20))}))
    source=${SOURCE_CACHE:-$("$py" -c 'from mfs_fast.train import load_config; print(load_config("configs/starter-v5.toml").cache)')}
    upscale=$("$py" -c "from mfs_fast.train import load_config; print(load_config('$CONFIG', {'prebuilt_cache': False}).max_pixel_upscale)")
    say "working tree $tree bytes, dlib + faceres $others: the cache gets $budget bytes"
    [ "$budget" -gt 5000000 ] || die "under 5 MB left for the cache: the working tree has grown too much"
    nice -n 15 "$py" -m mfs_fast train --pack-cache "$source" "$CARRY/cache.pack" \
        --pack-max-mb "$(awk "BEGIN {print $budget / 1e6}")" --pack-pixel-upscale "$upscale"
    local total=$((tree + $(du -sb "$CARRY" | cut -f1)))
    say "ready: $total of $CALL_LIMIT_BYTES bytes travel; now call:"
    say '  run(command="bash scripts/gpu-train.sh", carry=[".gpu"], timeout_s=600)'
}

train() {
    local py output cache work dry=${DRY_RUN:-0}
    if [ "$dry" = 1 ]; then
        py=${PYTHON:-$ROOT/.venv/bin/python}
        work=$(mktemp -d /tmp/gpu-train-dry.XXXXXX)
        OUT=${OUT:-$work/OUT}
        output=$work/out
        cache=$work/cache
    else
        py=${PYTHON:-python3}
        [ -n "${OUT:-}" ] || die "OUT is not set: this runs on the device machine (or with DRY_RUN=1 here)"
        work=/tmp/mfs-gpu
        output=$ROOT/runs/starter-gpu
        cache=$ROOT/runs/cache-gpu
    fi
    mkdir -p "$work" "$OUT"
    for f in dlib.pack cache.pack human-models/faceres.json human-models/faceres.bin; do
        [ -f "$CARRY/$f" ] || die "$CARRY/$f is missing: run scripts/gpu-train.sh prepare, and carry [\"$CARRY\"]"
    done
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30 \
        MFS_FAST_DLIB_MODEL=$work/dlib.dat MFS_FAST_HUMAN_MODELS_DIR=$ROOT/$CARRY/human-models \
        MFS_FAST_CACHE=$work/mfs-cache
    say "python: $("$py" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__,
        "cuda:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")')"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    "$py" -c 'import mfs_fast.train.trainer, mfs_fast.cli' || die "mfs_fast does not import with this python"
    say "unpacking dlib and the cache"
    "$py" -m mfs_fast.train.dlib_pack unpack "$CARRY/dlib.pack" "$work/dlib.dat"
    "$py" -m mfs_fast.train.cache_pack unpack "$CARRY/cache.pack" "$cache"

    local config=$CONFIG
    if [ "$dry" = 1 ]; then  # the same config on CPU: 3 steps of 1 source x 2 targets
        config=$work/train.toml
        cat > "$config" <<EOF
base = "$ROOT/$CONFIG"
device = "cpu"
steps = 3
sources_per_step = 1
targets_per_source = 2
threads = 2
output = "$output"
cache = "$cache"
EOF
    fi
    # the minutes left in this command, less loading before the first step and export after the last
    local minutes
    minutes=$(awk -v limit="${COMMAND_LIMIT_S:-600}" -v spent="$((SECONDS - STARTED))" \
                  -v reserve="${RESERVE_S:-120}" -v cap="${MAX_MINUTES:-9}" \
                  'BEGIN {m = (limit - spent - reserve) / 60; if (m > cap) m = cap; if (m < 0.5) m = 0.5; printf "%.2f", m}')
    say "training ($config) for at most $minutes minutes"
    local status=0
    "$py" -m mfs_fast train --config "$config" --max-minutes "$minutes" 2>&1 | tee "$OUT/train.log" || status=$?
    if [ "$status" != 0 ] && [ -f "$output/checkpoint.pt" ] \
            && [ $((${COMMAND_LIMIT_S:-600} - (SECONDS - STARTED))) -gt 90 ]; then
        say "training failed (exit $status): exporting its last checkpoint instead"
        "$py" -m mfs_fast train --config "$config" --export-only 2>&1 | tee -a "$OUT/train.log" || true
    fi

    say "collecting what comes back into $OUT"
    if [ ! -f "$output/weights/manifest.json" ]; then
        say "no exported weights in $output/weights"
        if [ "$status" = 0 ]; then status=1; fi
    elif ! "$py" - "$output/weights" "$OUT/weights" "$SHARD_BYTES" <<'EOF'
import sys
from pathlib import Path

from mfs_fast.checkpoints import load_weights
from mfs_fast.checkpoints.native_format import reshard_weights

folder = reshard_weights(sys.argv[1], sys.argv[2], int(sys.argv[3]))
load_weights(folder)  # every shard checked against the manifest, the models built
for path in sorted(Path(folder).iterdir()):
    print(f"  {path.name}: {path.stat().st_size} bytes")
EOF
    then
        say "the exported weights could not be resharded into $OUT/weights"
        status=1
    fi
    if [ -f "$output/log.jsonl" ]; then cp "$output/log.jsonl" "$OUT/"; fi
    local sample
    sample=$(ls "$output"/samples/step_*.png 2>/dev/null | tail -1 || true)
    if [ -n "$sample" ]; then cp "$sample" "$OUT/samples.png"; fi
    "$py" - "$output" <<'EOF' | tee -a "$OUT/train.log" || true
import json, sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()] if (out / "log.jsonl").is_file() else []
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
if log:
    print(f"summary: {log[-1]['step']} steps in {log[-1]['seconds']:.0f} s of training on {device}")
EOF
    ls -l "$OUT" "$OUT/weights" 2>/dev/null || true
    say "done (exit $status)"
    return "$status"
}

case "${1:-train}" in
    prepare) prepare ;;
    train) train ;;
    *) die "usage: scripts/gpu-train.sh [prepare|train]   (DRY_RUN=1 for the CPU dry run)" ;;
esac
