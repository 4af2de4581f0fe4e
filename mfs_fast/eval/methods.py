"""The methods under test, behind one small interface.

A :class:`Method` turns a source face into a frame function: ``method.for_source(source)``
gives ``swap(frame_bgr) -> result_bgr`` for independent images, and ``method.for_clip(source,
fps)`` one for consecutive frames of one video (it may keep state, e.g. a face tracker).

- ``model``: our :class:`~mfs_fast.pipeline.Swapper` (default backend and pipeline core) on a
  weights folder or on seeded random weights;
- ``target``: the target returned unchanged (the floor for identity, zero pose error);
- ``paste-source``: the source's aligned face pasted over each target face with the same
  paste-back as the model, an ellipse in the aligned crop standing in for the fusion mask
  (the ceiling for identity, the floor for pose and expression);
- ``mesh-warp``: the classical swap of :mod:`mfs_fast.face.mesh_warp` (the source's face mesh
  warped onto each target face's, colour-matched): the starter weights' training teacher.

Each is an entry of :data:`EVAL_METHODS` (a :class:`~mfs_fast.registry.Registry`): ``--methods``
offers its names, ``mfs-fast doctor`` lists them.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..face import Face, FaceDetector, align_face, paste_back
from ..face.align import template
from ..errors import MfsError
from ..models import FaceSwapModels
from ..preprocess import bgr_to_unit_rgb, unit_rgb_to_bgr255
from ..registry import Registry

FrameFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Source:
    """A source image and the face the methods take from it (its largest)."""

    name: str
    image: np.ndarray
    face: Face


class Method:
    """Base: ``name``; :meth:`for_source` (images), :meth:`for_clip` (video frames in order)."""

    name = "method"

    def for_source(self, source: Source) -> FrameFn:
        raise NotImplementedError

    def for_clip(self, source: Source, fps: float) -> FrameFn:
        """Default: frames are independent."""
        return self.for_source(source)


class TargetMethod(Method):
    """The target unchanged."""

    name = "target"

    def for_source(self, source: Source) -> FrameFn:
        return lambda frame: frame.copy()


def ellipse_mask(size: int = 224) -> np.ndarray:
    """Face-shaped ellipse in an aligned crop (float32 0/1): centred between the eye line and
    the mouth of the template, 1.1 eye distances wide and reaching from the brows to the chin."""
    points = template(size)
    eyes_y, mouth_y = points[:2, 1].mean(), points[3:, 1].mean()
    eye_distance = points[1, 0] - points[0, 0]
    centre = (int(round(points[:2, 0].mean())), int(round((eyes_y + mouth_y) / 2 + 0.1 * (mouth_y - eyes_y))))
    axes = (int(round(1.1 * eye_distance)), int(round(1.15 * (mouth_y - eyes_y))))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    return mask


class PasteSourceMethod(Method):
    """The source's aligned crop pasted over every target face (``paste_back``, ellipse mask)."""

    name = "paste-source"

    def __init__(self, detector: FaceDetector, size: int = 224) -> None:
        self.detector, self.size = detector, size
        self.mask = ellipse_mask(size)
        self._faces: dict[bytes, list[Face]] = {}  # detections by frame digest: every source sees the same frames

    def _detect(self, frame: np.ndarray) -> list[Face]:
        key = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest() + repr(frame.shape).encode()
        if key not in self._faces:
            if len(self._faces) >= 256:
                self._faces.clear()
            self._faces[key] = self.detector.detect(frame)
        return self._faces[key]

    def for_source(self, source: Source) -> FrameFn:
        crop = align_face(source.image, source.face.landmarks, self.size).crop

        def swap(frame: np.ndarray) -> np.ndarray:
            out = frame.copy()
            for face in self._detect(frame):
                paste_back(out, crop, self.mask, align_face(frame, face.landmarks, self.size).inverse, out=out)
            return out

        return swap


class MeshWarpMethod(PasteSourceMethod):
    """The source's face mesh warped onto every target face's (in aligned crops), pasted back."""

    name = "mesh-warp"

    def __init__(self, detector: FaceDetector, size: int = 224) -> None:
        from ..face.face_mesh import FaceMesh

        super().__init__(detector, size)
        self.mesh = FaceMesh()

    def for_source(self, source: Source) -> FrameFn:
        from ..face.mesh_warp import crop_mesh_points, hull_mask, mesh_warp_swap, triangulate

        aligned = align_face(source.image, source.face.landmarks, self.size)
        source_points = crop_mesh_points(source.image, source.face, aligned.matrix, self.mesh).astype(np.float64)
        triangles = triangulate(source_points)
        source_rgb = bgr_to_unit_rgb(aligned.crop)

        def swap(frame: np.ndarray) -> np.ndarray:
            out = frame.copy()
            for face in self._detect(frame):
                target = align_face(frame, face.landmarks, self.size)
                points = crop_mesh_points(frame, face, target.matrix, self.mesh).astype(np.float64)
                target_rgb = bgr_to_unit_rgb(target.crop)
                swapped = mesh_warp_swap(source_rgb, target_rgb, source_points, points, triangles)
                mask = (hull_mask(points, self.size) > 127).astype(np.float32)
                paste_back(out, unit_rgb_to_bgr255(swapped), mask, target.inverse, out=out)
            return out

        return swap


class ModelMethod(Method):
    """Our Swapper: one instance, re-sourced with ``set_source`` (no rebuild per source)."""

    name = "model"

    def __init__(self, models: FaceSwapModels, detector: FaceDetector, every: int = 5, **swapper_options) -> None:
        self.models, self.detector, self.every = models, detector, every
        self.options = swapper_options
        self.swapper = None

    def _swapper_for(self, source: Source):
        from ..pipeline import AlignedCrop, Swapper

        crop = align_face(source.image, source.face.landmarks).crop
        if self.swapper is None:
            # unmarked: the metrics score the swap, and the mark's faint texture would read as detail
            # (the opt-out warning is for users sharing outputs; eval writes only its own report)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="watermark off")
                self.swapper = Swapper(AlignedCrop(crop), self.models, detector=self.detector, watermark=False,
                                       **self.options)
        else:
            self.swapper.set_source(AlignedCrop(crop))
        return self.swapper

    def for_source(self, source: Source) -> FrameFn:
        return self._swapper_for(source).swap

    def for_clip(self, source: Source, fps: float) -> FrameFn:
        swapper = self._swapper_for(source)
        tracker = swapper.tracker(every=self.every, fps=fps)
        return lambda frame: swapper.swap_tracked(frame, tracker)


# name -> factory(detector, weights=, random_seed=, every=, paste=)
EVAL_METHODS: Registry[Method] = Registry("eval method")


@EVAL_METHODS.register("model", note="our Swapper: --weights DIR or --random-weights SEED")
def _model_method(detector: FaceDetector, *, weights: str | None = None, random_seed: int | None = None,
                  every: int = 5, paste: dict[str, float | str] | None = None) -> ModelMethod:
    if (weights is None) == (random_seed is None):
        raise MfsError("the model method needs exactly one of --weights DIR or --random-weights SEED")
    if weights is not None:
        from ..checkpoints import load_weights

        models = load_weights(weights)
    else:
        models = FaceSwapModels.random(random_seed)
    return ModelMethod(models, detector, every=every, **(paste or {}))


@EVAL_METHODS.register("target", note="the target unchanged (identity floor, zero pose error)")
def _target_method(detector: FaceDetector, **options) -> TargetMethod:
    return TargetMethod()


@EVAL_METHODS.register("paste-source", note="the source's aligned face pasted over each target face")
def _paste_source_method(detector: FaceDetector, **options) -> PasteSourceMethod:
    return PasteSourceMethod(detector)


@EVAL_METHODS.register("mesh-warp", note="the classical mesh-warp swap (the starter weights' teacher)")
def _mesh_warp_method(detector: FaceDetector, **options) -> MeshWarpMethod:
    return MeshWarpMethod(detector)


METHODS = tuple(EVAL_METHODS.names())


def create_methods(names: list[str], detector: FaceDetector, *, weights: str | None = None,
                   random_seed: int | None = None, every: int = 5, paste: dict[str, float | str] | None = None) -> list[Method]:
    """Methods by name; ``model`` needs ``weights`` (a folder) or ``random_seed``; ``paste``: its
    Swapper's paste options (detail, chroma, brightness, eyes; unset: the weights' own).
    Every name is checked before any method is built."""
    for name in names:
        EVAL_METHODS.require(name)
    return [EVAL_METHODS.create(name, detector, weights=weights, random_seed=random_seed, every=every, paste=paste)
            for name in names]
