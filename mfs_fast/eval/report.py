"""Write an evaluation's results: ``metrics.json``, ``metrics.md``, ``samples.png``.

Every file is written to a temporary name in the output folder and renamed into place, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from ..atomic import atomic_write
from ..errors import MfsError
from .runner import EvalResult, Sample

TILE = 192
# (key in the aggregate, column title, format)
COLUMNS = (
    ("faces", "faces", "{}"),
    ("id_retrieval_top1_pct", "ID retrieval top-1 %", "{:.1f}"),
    ("id_similarity", "ID cos to source", "{:.3f}"),
    ("id_gain", "ID gain", "{:+.3f}"),
    ("pose_error_deg", "pose err (deg)", "{:.2f}"),
    ("pose_error_keypoints_deg", "pose err, BlazeFace (deg)", "{:.2f}"),
    ("expression_error", "expr err (mesh)", "{:.4f}"),
    ("expression_error_5pt", "expr err (5pt)", "{:.4f}"),
    ("fd_dlib", "FD-dlib", "{:.4f}"),
    ("sharpness_ratio", "sharpness ratio", "{:.3f}"),
    ("eye_colour_shift", "eye colour shift (Lab)", "{:.2f}"),
    ("skin_colour_shift", "skin colour shift (Lab)", "{:.2f}"),
)
TEMPORAL = (
    ("id_similarity_std", "ID cos std", "{:.4f}"),
    ("landmark_jitter_result", "jitter result", "{:.4f}"),
    ("landmark_jitter_target", "jitter target", "{:.4f}"),
)


def _json_ready(value):
    """NaN/inf become null (JSON has neither); numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else fmt.format(value)


def markdown_table(metrics: dict) -> str:
    """Method x metrics, overall and temporal (video targets), as one Markdown table."""
    columns = COLUMNS + TEMPORAL
    lines = ["| method | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, result in metrics["methods"].items():
        overall, temporal = result["overall"], result["temporal"]
        cells = [_cell(overall.get(k), f) for k, _, f in COLUMNS] + [_cell(temporal.get(k), f) for k, _, f in TEMPORAL]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [f"Sources: {', '.join(metrics['sources'])}. Targets: {', '.join(metrics['targets'])}.",
             "FD-dlib is a Fréchet distance of dlib features, not FID. Temporal columns: video targets only."]
    notes += [f"Warning: {w}." for w in metrics.get("warnings", [])]
    return "# Evaluation\n\n" + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _tile(image: np.ndarray, label: str) -> np.ndarray:
    """The image letterboxed into a TILE x TILE square, with a label at the top."""
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    tile = np.zeros((TILE, TILE, 3), np.uint8)
    y, x = (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    tile[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    cv2.rectangle(tile, (0, 0), (TILE - 1, 16), (0, 0, 0), thickness=-1)
    cv2.putText(tile, label[:28], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def samples_grid(samples: list[Sample], methods: list[str]) -> np.ndarray:
    """One row per sample: source | target | result of each method."""
    if not samples:
        return _tile(np.zeros((TILE, TILE, 3), np.uint8), "no samples")
    rows = []
    for sample in samples:
        source_label, _, target_label = sample.label.partition(" -> ")
        tiles = [_tile(sample.source, f"source {source_label}"), _tile(sample.target, f"target {target_label}")]
        tiles += [_tile(sample.results[m], m) for m in methods if m in sample.results]
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])


def write_report(result: EvalResult, folder: str | Path) -> list[Path]:
    """Write the three files into ``folder`` (created if needed); returns their paths."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise MfsError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "metrics.json", out / "metrics.md", out / "samples.png"]
    atomic_write(paths[0], (json.dumps(_json_ready(result.metrics), indent=2) + "\n").encode())
    atomic_write(paths[1], markdown_table(result.metrics).encode())
    ok, png = cv2.imencode(".png", samples_grid(result.samples, list(result.metrics["methods"])))
    if not ok:
        raise MfsError("could not encode samples.png")
    atomic_write(paths[2], png.tobytes())
    return paths
