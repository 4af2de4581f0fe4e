"""The watermark's robustness, false alarms, visibility and cost, on the shared photos and clips.

    nice PYTHONPATH=$PWD .venv/bin/python bench/watermark.py [--quick] [--json OUT]

What it does (the table in bench/RESULTS.md, "2026-12-06 watermark", is its output):

* **Marked outputs**: every shared photo with a face, and sampled frames of every shared clip,
  swapped by ``Swapper`` (the bundled starter weights, default options, so watermark on).
* **Detection rate** after each change a file meets on its way: none, JPEG quality 75, resize to
  50 %, crop to the (largest) swapped face's detector box, brightness/contrast (x1.2 - 20 and
  x0.8 + 20), and for the clips H.264 at CRF 23 and 28 (the whole swapped clip written by
  ``VideoWriter`` at that CRF and decoded again; frames where a face was swapped count).
* **False alarms**: :func:`mfs_fast.watermark.detect` on every unswapped shared photo
  (assets/images, datasets/faces_v1/images) and 8 frames of every unswapped shared clip
  (assets/videos, datasets/faces_v1/videos); also the highest z-score any of them reached.
* **PSNR** of the watermarked against the unwatermarked swap (same frame, ``watermark=False``):
  over the whole frame and over the marked boxes only.
* **Cost**: ``Watermark.mark`` with the real face boxes on a 1280 x 720 frame holding one large
  face and on the crowd clip's 1080p frame (median of 200, after the first call that builds the
  frame-sized planes; the first call timed apart); and the Swapper's own "mark" time amortised
  over every frame swapped here, beside its IDN + paste time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import closing
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mfs_fast import Swapper  # noqa: E402
from mfs_fast.face.align import alignment_matrix, invert_affine  # noqa: E402
from mfs_fast.face.paste import footprint_box  # noqa: E402
from mfs_fast.media import VideoWriter, probe_video, read_frames  # noqa: E402
from mfs_fast.watermark import Watermark, detect  # noqa: E402
from mfs_fast.watermark.embed import disjoint  # noqa: E402

SHARED = ROOT.parent / "shared"
ASSETS, FACES_V1 = SHARED / "assets", SHARED / "datasets" / "faces_v1"
SOURCE = ASSETS / "images" / "biden_1.jpg"
VIDEO_FRAMES = 36  # frames swapped per clip (the first ones)
VIDEO_SAMPLE = 6  # every 6th of them goes through the image attacks


def material(name: str, video: bool) -> str:
    """Rows of the table: small faces (group photos, the crowd clip) apart from single portraits."""
    if video:
        return "crowd clip frames (1080p, 6-9 small faces)" if "crowd" in name else "talking-head clip frames"
    return "group photos (small faces)" if "group" in name else "portrait photos"


def jpeg(image: np.ndarray, quality: int = 75) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def image_attacks(image: np.ndarray, face_box: np.ndarray) -> dict[str, np.ndarray]:
    x0, y0, x1, y1 = (int(round(v)) for v in face_box)
    x0, y0 = max(x0, 0), max(y0, 0)
    return {
        "none": image,
        "JPEG q75": jpeg(image),
        "resize 50 %": cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "crop to face box": image[y0:y1, x0:x1],
        "contrast x1.2, brightness -20": cv2.convertScaleAbs(image, alpha=1.2, beta=-20),
        "contrast x0.8, brightness +20": cv2.convertScaleAbs(image, alpha=0.8, beta=20),
    }


def marked_boxes(swapper: Swapper, shape) -> list[tuple[int, int, int, int]]:
    boxes = (footprint_box(invert_affine(alignment_matrix(f.landmarks, swapper.size)), swapper.size, shape)
             for f in swapper.last_faces)
    return disjoint(b for b in boxes if b)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def region_psnr(a, b, boxes) -> float:
    pixels = [(a[y0:y1, x0:x1].astype(np.float64) - b[y0:y1, x0:x1]).ravel() for x0, y0, x1, y1 in boxes]
    mse = float(np.mean(np.concatenate(pixels) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


class Tally:
    """Found / tried per (attack, material), and the z-scores."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[float]] = {}
        self.found: dict[tuple[str, str], int] = {}

    def add(self, attack: str, material: str, image: np.ndarray) -> None:
        result = detect(image)
        key = (attack, material)
        self.rows.setdefault(key, []).append(result.z)
        self.found[key] = self.found.get(key, 0) + result.found


def photos(marking: Swapper, plain: Swapper, tally: Tally, quality: list[dict], quick: bool) -> None:
    names = sorted(p for p in (ASSETS / "images").glob("*.jpg") if "no_faces" not in p.name)
    for path in names[:4] if quick else names:
        image = cv2.imread(str(path))
        marked = marking.swap(image)
        if not marking.last_faces:
            continue
        boxes = marked_boxes(marking, image.shape)
        unmarked = plain.swap(image)
        quality.append({"file": path.name, "frame_psnr": psnr(marked, unmarked),
                        "region_psnr": region_psnr(marked, unmarked, boxes)})
        face = max(marking.last_faces, key=lambda f: f.area).box
        for attack, attacked in image_attacks(marked, face).items():
            tally.add(attack, material(path.name, False), attacked)


def clips(marking: Swapper, plain: Swapper, tally: Tally, quality: list[dict], quick: bool) -> None:
    for path in sorted((ASSETS / "videos").glob("*.mp4"))[:2 if quick else None]:
        info = probe_video(path)
        tracker, plain_tracker = (s.tracker(fps=float(info.fps)) for s in (marking, plain))
        swapped, with_face = [], []
        with closing(read_frames(path)) as frames:
            for index, frame in enumerate(frames):
                if index >= VIDEO_FRAMES:
                    break
                marked = marking.swap_tracked(frame, tracker)
                unmarked = plain.swap_tracked(frame, plain_tracker)
                swapped.append(marked)
                with_face.append(bool(marking.last_faces))
                if marking.last_faces and index % VIDEO_SAMPLE == 0:
                    boxes = marked_boxes(marking, frame.shape)
                    quality.append({"file": f"{path.name}#{index}", "frame_psnr": psnr(marked, unmarked),
                                    "region_psnr": region_psnr(marked, unmarked, boxes)})
                    face = max(marking.last_faces, key=lambda f: f.area).box
                    for attack, attacked in image_attacks(marked, face).items():
                        tally.add(attack, material(path.name, True), attacked)
        for crf in (23, 28):
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "crf.mp4"
                with VideoWriter(out, info.width, info.height, info.fps, quality=crf) as writer:
                    for frame in swapped:
                        writer.write(frame)
                with closing(read_frames(out)) as decoded:
                    for frame, face in zip(decoded, with_face):
                        if face:
                            tally.add(f"H.264 CRF {crf}", material(path.name, True), frame)


def false_alarms(quick: bool, shard: tuple[int, int] = (0, 1)) -> dict:
    files = sorted((ASSETS / "images").glob("*.jpg")) + sorted((FACES_V1 / "images").glob("*"))
    videos = sorted((ASSETS / "videos").glob("*.mp4")) + sorted((FACES_V1 / "videos").glob("*.mp4"))
    if quick:
        files, videos = files[:60], videos[:2]
    index, count = shard
    files, videos = files[index::count], videos[index::count]
    photos_tried = photos_found = frames_tried = frames_found = 0
    highest = (0.0, "")
    scores: list[float] = []
    for path in files:
        image = cv2.imread(str(path))
        if image is None:
            continue
        result = detect(image)
        photos_tried += 1
        photos_found += result.found
        scores.append(result.z)
        highest = max(highest, (result.z, path.name))
    for path in videos:
        total = probe_video(path).frame_count or 8
        wanted = {round(i * (total - 1) / 7) for i in range(8)}
        with closing(read_frames(path)) as frames:
            for index, frame in enumerate(frames):
                if index in wanted:
                    result = detect(frame)
                    frames_tried += 1
                    frames_found += result.found
                    scores.append(result.z)
                    highest = max(highest, (result.z, f"{path.name}#{index}"))
                if index >= max(wanted):
                    break
    return {"photos": [photos_found, photos_tried], "clip frames": [frames_found, frames_tried],
            "clips": len(videos), "highest_z": highest[0], "highest_z_file": highest[1],
            "top_z": sorted(scores)[-20:], "above_6": sum(z >= 6.0 for z in scores)}


def cost() -> dict:
    """Watermark.mark per 1280 x 720 frame: the crowd clip (many small faces) and a talking head
    scaled to 720 px (one large face), with the boxes the swapper marks."""
    detector_swapper = Swapper(SOURCE)
    frames = {}
    crowd = next(iter(read_frames(ASSETS / "videos" / "crowd_1080p_105f.mp4")))
    frames["crowd, 1920x1080 (native)"] = crowd
    head = next(iter(read_frames(ASSETS / "videos" / "talking_d3.mp4")))
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[:, 280:1000] = cv2.resize(head, (720, 720), interpolation=cv2.INTER_CUBIC)
    frames["one 720 px talking head, 1280x720"] = canvas
    results = {}
    for name, frame in frames.items():
        detector_swapper.swap(frame)
        boxes = marked_boxes(detector_swapper, frame.shape)
        watermark = Watermark()
        work = frame.copy()
        start = time.perf_counter()
        watermark.mark(work, boxes)
        first = time.perf_counter() - start
        times = []
        for _ in range(200):
            start = time.perf_counter()
            watermark.mark(work, boxes)
            times.append(time.perf_counter() - start)
        area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes) / (frame.shape[0] * frame.shape[1])
        results[name] = {"faces": len(detector_swapper.last_faces), "marked_area": area,
                         "median_ms": 1e3 * statistics.median(times), "first_call_ms": 1e3 * first}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few files only (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--false-alarms-only", metavar="I/N", help="only the false-alarm count, on every N-th file "
                        "from the I-th (0-based): run N shards side by side on a busy machine, add the counts up")
    parser.add_argument("--no-false-alarms", action="store_true", help="skip them (run --false-alarms-only shards)")
    args = parser.parse_args()
    if not ASSETS.is_dir():
        sys.exit(f"the shared assets are not at {ASSETS}")
    if args.false_alarms_only:
        index, count = (int(part) for part in args.false_alarms_only.split("/"))
        fa = false_alarms(args.quick, (index, count))
        print(json.dumps(fa))
        if args.json:
            args.json.write_text(json.dumps({"false_alarms": fa}, indent=1))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marking, plain = Swapper(SOURCE), Swapper(SOURCE, watermark=False)
    tally, quality = Tally(), []
    photos(marking, plain, tally, quality, args.quick)
    clips(marking, plain, tally, quality, args.quick)
    report = {"detection": {f"{a} | {m}": [tally.found[(a, m)], len(z), min(z), statistics.median(z)]
                            for (a, m), z in tally.rows.items()},
              "z": {f"{a} | {m}": z for (a, m), z in tally.rows.items()},
              "psnr": quality, "false_alarms": false_alarms(args.quick) if not args.no_false_alarms else None,
              "cost": cost(),
              "swapper_mark_ms_per_frame": 1e3 * marking.stats.seconds["mark"] / max(marking.stats.frames, 1),
              "swapper_swap_ms_per_frame": 1e3 * (marking.stats.seconds["idn"] + marking.stats.seconds["paste"])
              / max(marking.stats.frames, 1)}
    print("| change | material | detected | lowest z | median z |\n|---|---|---|---|---|")
    for (attack, material), zs in tally.rows.items():
        found = tally.found[(attack, material)]
        print(f"| {attack} | {material} | {found}/{len(zs)} ({100 * found / len(zs):.0f} %) | {min(zs):.1f} | "
              f"{statistics.median(zs):.1f} |")
    fa = report["false_alarms"] or {"photos": [0, 0], "clip frames": [0, 0], "clips": 0, "highest_z": 0.0,
                                     "highest_z_file": "(not run)"}
    print(f"\nfalse alarms: photos {fa['photos'][0]}/{fa['photos'][1]}, frames {fa['clip frames'][0]}/"
          f"{fa['clip frames'][1]} of {fa['clips']} clips; highest z {fa['highest_z']:.2f} ({fa['highest_z_file']})")
    frame_psnr = [q["frame_psnr"] for q in quality]
    region = [q["region_psnr"] for q in quality]
    print(f"PSNR marked vs unmarked over {len(quality)} frames: whole frame min {min(frame_psnr):.1f} / median "
          f"{statistics.median(frame_psnr):.1f} dB; marked boxes min {min(region):.1f} / median "
          f"{statistics.median(region):.1f} dB")
    for name, c in report["cost"].items():
        print(f"mark, {name}: {c['faces']} face(s), {100 * c['marked_area']:.0f} % of the frame marked, median "
              f"{c['median_ms']:.3f} ms, first call {c['first_call_ms']:.1f} ms")
    print(f"Swapper over all {marking.stats.frames} frames swapped above (first calls included): mark "
          f"{report['swapper_mark_ms_per_frame']:.2f} ms per frame, beside idn + paste "
          f"{report['swapper_swap_ms_per_frame']:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
