#!/usr/bin/env bash
# Held-out evaluation of weights trained on configs/starter.toml (default: the bundled starter
# weights), side by side with the two trivial baselines (target unchanged; aligned source
# pasted with an ellipse mask) and the classical mesh-warp swap (the training teacher).
# Sources and targets are exactly the files the config holds out.
#
#   scripts/eval-starter.sh [WEIGHTS_DIR] [OUT_DIR]      (needs ../shared/datasets/faces_v1)
#   METHODS="target paste-source" scripts/eval-starter.sh   (the baselines only: no weights used)
#   IDENTITY=faceres scripts/eval-starter.sh ...    (retrieval scored by faceres or mobileface, not dlib)
#   DETAIL=0 scripts/eval-starter.sh ...    (paste the whole face: the model alone, without the target's detail)
#   CHROMA=1 BRIGHTNESS=1 scripts/eval-starter.sh ...    (paste the swap's own colour and brightness too)
#   EYES=target scripts/eval-starter.sh ...               (keep the target's own eyes: Swapper(eyes="target"))
set -euo pipefail
cd "$(dirname "$0")/.."
weights="${1:-mfs_fast/weights/starter}"
out="${2:-runs/starter-eval}"
data="../shared/datasets/faces_v1"
[ -d "$data" ] || { echo "faces_v1 not found at $data" >&2; exit 2; }
img="$data/images"
sources=(
    "$img/duenf33_frdl__dataset_mel_gibson_00000000.jpg"
    "$img/bhachauk_5celeb__test_mindy_kaling_mk.jpg"
    "$img/bhachauk_5celeb__test_jerry_seinfeld_js.jpg"
    "$img/bhachauk_5celeb__test_madonna_mad.jpg"
    "$img/bhachauk_5celeb__test_elton_john_ej.jpg"
)
targets=()
while IFS= read -r name; do targets+=("$img/$name"); done < <(
    .venv/bin/python -c "import tomllib; print('\n'.join(h for h in tomllib.load(open('configs/starter.toml','rb'))['holdout'] if h.endswith('.jpg')))")
targets+=("$data/videos/liveportrait__assets_examples_driving_d3.mp4" "$data/videos/liveportrait__assets_examples_driving_d19.mp4")
exec .venv/bin/mfs-fast eval --sources "${sources[@]}" --targets "${targets[@]}" --weights "$weights" \
    --methods ${METHODS:-model target paste-source mesh-warp} --identity-encoder "${IDENTITY:-dlib}" \
    --frames 6 --stride 10 ${DETAIL:+--detail "$DETAIL"} ${CHROMA:+--chroma "$CHROMA"} \
    ${BRIGHTNESS:+--brightness "$BRIGHTNESS"} ${EYES:+--eyes "$EYES"} -o "$out"
