"""``evaluate``: every method on every (source, target) pair, measured and aggregated.

Targets are images or videos (told apart by content). Of a video the first ``frames``
processed frames are used, taking every ``stride``-th frame; methods see them in order through
``Method.for_clip`` (the model then tracks faces as in ``swap_video``). Each target frame is
detected and measured once, shared by all methods and sources.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import MfsError, NoFaceError
from ..face import FaceDetector
from ..face.blazeface import BlazeFace
from ..identity import IdentityEncoder
from ..media import media_kind, probe_video, read_bgr, read_frames
from .appearance import appearance
from .expression import ExpressionMeter
from .measure import FaceMeasure, FaceMeasurer
from .methods import Method, Source
from .metrics import FaceScore, aggregate, score_face
from .temporal import clip_temporal


@dataclass
class Sample:
    """One picture for the samples grid: a pair's first frame and every method's result."""

    source: np.ndarray
    target: np.ndarray
    results: dict[str, np.ndarray] = field(default_factory=dict)
    label: str = ""


@dataclass
class EvalResult:
    """``metrics``: the JSON-ready report; ``samples``: pictures for the grid."""

    metrics: dict
    samples: list[Sample]


def load_sources(paths: Sequence[str | Path], detector: FaceDetector) -> list[Source]:
    """Read each source and take its largest face (NoFaceError names a source without one)."""
    sources = []
    for path in paths:
        image = read_bgr(path)
        faces = detector.detect(image)
        if not faces:
            raise NoFaceError(f"no face found in source {path}")
        sources.append(Source(Path(path).name, image, max(faces, key=lambda f: f.area)))
    return sources


def target_frames(path: str | Path, frames: int, stride: int) -> tuple[str, list[tuple[int, np.ndarray]], float]:
    """(kind, [(frame index, frame)], fps of the processed frames) of an image or video target."""
    if frames < 1 or stride < 1:
        raise MfsError(f"--frames and --stride must be at least 1 (got {frames} and {stride})")
    if media_kind(path) == "image":
        return "image", [(0, read_bgr(path))], 0.0
    fps = float(probe_video(path).fps) or 30.0
    taken: list[tuple[int, np.ndarray]] = []
    reader = read_frames(path)
    try:
        for index, frame in enumerate(reader):
            if index % stride == 0:
                taken.append((index, frame))
                if len(taken) == frames:
                    break
    finally:
        reader.close()
    if not taken:
        raise MfsError(f"no frames could be read from {path}")
    return "video", taken, fps / stride


def software_versions() -> dict[str, str]:
    """Versions of what the numbers depend on."""
    import cv2
    import scipy
    import torch

    from .._version import __version__

    return {"mfs_fast": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "opencv": cv2.__version__, "scipy": scipy.__version__}


def evaluate(sources: Sequence[str | Path], targets: Sequence[str | Path], methods: Sequence[Method], *,
             detector: FaceDetector, encoder: IdentityEncoder, frames: int = 16, stride: int = 1,
             use_mesh: bool = True, samples: int = 4, options: dict | None = None,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Run and measure every method on every (source, target) pair; see the module docstring."""
    log = log or (lambda message: None)
    started = time.perf_counter()
    measurer = FaceMeasurer(detector, encoder, ExpressionMeter(use_mesh), BlazeFace())
    loaded = load_sources(sources, detector)
    source_embeddings = np.stack([measurer.measure(s.image, [s.face])[0].embedding for s in loaded])
    scores: list[FaceScore] = []
    clips: dict[str, list[dict]] = {m.name: [] for m in methods}
    pictures: list[Sample] = []
    frames_without_face = 0
    for target_path in targets:
        kind, taken, fps = target_frames(target_path, frames, stride)
        name = Path(target_path).name
        reference: list[list[FaceMeasure]] = []
        for _, frame in taken:
            reference.append(measurer.measure(frame, measurer.detect(frame)))
        frames_without_face += sum(1 for faces in reference if not faces)
        log(f"{name}: {kind}, {len(taken)} frame(s), {sum(map(len, reference))} face(s)")
        for s_index, source in enumerate(loaded):
            sample = None
            if len(pictures) < samples:
                sample = Sample(source.image, taken[0][1], label=f"{source.name} -> {name}")
            for method in methods:
                swap = method.for_clip(source, fps) if kind == "video" else method.for_source(source)
                pair: list[FaceScore] = []
                for (index, frame), faces in zip(taken, reference):
                    result = swap(frame)
                    if sample is not None and index == taken[0][0]:
                        sample.results[method.name] = result
                    if not faces:
                        continue
                    # an unchanged frame measures exactly as the target did (the networks are
                    # deterministic): reuse those measurements instead of running them again
                    unchanged = result.shape == frame.shape and np.array_equal(result, frame)
                    measured = faces if unchanged else measurer.measure_result(result, [f.face for f in faces])
                    pair += [score_face(method.name, s_index, name, index, k, r, t, source_embeddings,
                                        appearance(result, frame, t.face.landmarks))
                             for k, (r, t) in enumerate(zip(measured, faces))]
                scores += pair
                if kind == "video":
                    track = [s for s in pair if s.face == 0]
                    clips[method.name].append({"source": source.name, "target": name, **clip_temporal(
                        [s.similarity for s in track], [s.result_landmarks for s in track],
                        [s.target_landmarks for s in track])})
            if sample is not None:
                pictures.append(sample)
        log(f"{name}: done ({time.perf_counter() - started:.1f} s)")
    metrics = _report(scores, clips, loaded, methods, targets, frames_without_face, options or {})
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    return EvalResult(metrics, pictures)


def _temporal_summary(clips: list[dict]) -> dict:
    """Means over clips of each temporal metric (None where no clip had enough frames)."""
    keys = ("id_similarity_std", "landmark_jitter_result", "landmark_jitter_target")
    out: dict = {"clips": len(clips)}
    for key in keys:
        values = [c[key] for c in clips if c[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _report(scores: list[FaceScore], clips: dict[str, list[dict]], sources: list[Source], methods: Sequence[Method],
            targets: Sequence[str | Path], frames_without_face: int, options: dict) -> dict:
    n = len(sources)
    per_method = {}
    for method in methods:
        mine = [s for s in scores if s.method == method.name]
        pairs = {}
        for s_index, source in enumerate(sources):
            for target in dict.fromkeys(Path(t).name for t in targets):
                subset = [s for s in mine if s.source == s_index and s.target == target]
                pairs[f"{source.name} -> {target}"] = aggregate(subset, n, fd=False)
        per_method[method.name] = {"overall": aggregate(mine, n), "temporal": _temporal_summary(clips[method.name]),
                                   "pairs": pairs, "clips": clips[method.name]}
    warnings = ["only 1 source: identity retrieval is trivial and reported as n/a"] if n < 2 else []
    return {
        "protocol": {
            "identity_encoder": "dlib (face-recognition ResNet port), embed_faces at landmarks detected on the result",
            "retrieval": "nearest source by cosine among all sources of the run, top-1",
            "pose": "yaw/pitch/roll from the 5 landmarks by PnP on a generic 3D face (mfs_fast.eval.pose); "
                    "error = L2 of the angle difference, degrees; pose_error_keypoints_deg: the same from "
                    "BlazeFace's eyes, nose tip and mouth centre (a network training does not use)",
            "expression": "mesh: mouth opening, mouth width, eye opening / eye distance; "
                          "5pt: mouth width / eye distance; mean absolute difference to the target",
            "appearance": "at the target's landmarks: sharpness ratio = Laplacian variance of the result's inner "
                          "face / the target's; eye and skin colour shift = Lab distance of mean colours "
                          "(mfs_fast.eval.appearance)",
            "fd_dlib": "Frechet distance of dlib pooled 256-d features (mean of the 256x2x2 map), result vs "
                       "target faces, covariances + 1e-6 I; not FID",
            "temporal": "largest face per clip: std of cos(result, source); landmark jitter = mean |2nd diff| / "
                        "eye distance",
        },
        "options": options,
        "software": software_versions(),
        "command": sys.argv,
        "sources": [s.name for s in sources],
        "targets": [Path(t).name for t in targets],
        "target_frames_without_face": frames_without_face,
        "warnings": warnings,
        "methods": per_method,
    }
