"""Teachers for distillation: anything that maps (source, target) aligned crops to a swap.

- ``mfs``: a MobileFaceSwap weights folder (the official release's files, or weights of
  ours), run through the PyTorch reference models;
- ``onnx``: a face-swapper a user supplies as ONNX, with two inputs (source, target), each
  RGB N x 3 x S x S float in [0, 1], and one output of the same layout (S is read from the
  graph; crops are resized to it and back);
- ``mesh-warp``: a classical swap (the source's face mesh warped onto the target's, colour
  matched, blended; see :mod:`.warp_teacher`): needs no weights at all;
- none: the paper's "no distillation" setting.

Each kind is an entry of :data:`TEACHERS` (a :class:`~mfs_fast.registry.Registry`): the config's
``teacher.kind`` picks it, ``mfs-fast doctor`` lists them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import MfsError
from ..identity.irse import l2_normalize
from ..models import FaceSwapModels
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..registry import Registry


class Teacher(Protocol):
    name: str
    needs_points: bool  # called with the mesh points of source and targets as well

    def __call__(self, source: Tensor, targets: Tensor, source_points: Tensor | None = None,
                 target_points: Tensor | None = None) -> Tensor:
        """One source (3 x S x S) onto M targets (M x 3 x S x S) -> M x 3 x S x S, RGB [0, 1];
        the mesh points (468 x 2, M x 468 x 2) are there for teachers that need them."""
        ...


def identity_features(models: FaceSwapModels, source: Tensor) -> tuple[Tensor, Tensor]:
    """(z_id, F_id) of one aligned RGB source crop (3 x S x S in [0, 1]) for either identity net."""
    batch = source[None]
    if hasattr(models.identity, "prepare"):
        return models.identity(batch)
    small = F.interpolate(batch, size=(112, 112), mode="bilinear", align_corners=False, antialias=True)
    mean, std = (torch.from_numpy(a.copy()).to(source) for a in (IMAGENET_MEAN, IMAGENET_STD))
    return models.identity((small - mean) / std)


class ModelTeacher:
    """A MobileFaceSwap model (official weights or ours) as teacher."""

    needs_points = False

    def __init__(self, models: FaceSwapModels, name: str = "mfs") -> None:
        self.models, self.name = models.eval(), name

    @torch.no_grad()
    def __call__(self, source: Tensor, targets: Tensor, source_points=None, target_points=None) -> Tensor:
        self.models.identity.to(source.device), self.models.iin.to(source.device), self.models.idn.to(source.device)
        embedding, feature_map = identity_features(self.models, source)
        weights = self.models.iin(l2_normalize(embedding), feature_map)
        return self.models.idn(targets, weights)[0]


class OnnxTeacher:
    """A user-supplied ONNX face swapper with inputs (source, target) and one output."""

    needs_points = False

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MfsError(f"teacher ONNX file not found: {path}")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 2:
            raise MfsError(f"{path}: a teacher takes two inputs (source, target); this graph has {len(inputs)}")
        self.names = [i.name for i in inputs]
        size = inputs[1].shape[-1]
        self.size = size if isinstance(size, int) else None
        self.name = f"onnx:{path.name}"

    @torch.no_grad()
    def __call__(self, source: Tensor, targets: Tensor, source_points=None, target_points=None) -> Tensor:
        size = targets.shape[-1]

        def resized(x: Tensor) -> Tensor:
            if self.size is None or self.size == size:
                return x
            return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)

        sources = resized(source[None].expand(len(targets), -1, -1, -1))
        out = self.session.run(None, {self.names[0]: sources.cpu().numpy(), self.names[1]: resized(targets).cpu().numpy()})[0]
        result = torch.from_numpy(out).to(targets)
        if result.shape[-1] != size:
            result = F.interpolate(result, size=(size, size), mode="bilinear", align_corners=False)
        return result.clamp(0, 1)


# teacher.kind -> factory(spec, mean_points)
TEACHERS: Registry[Teacher] = Registry("teacher kind")


@TEACHERS.register("mfs", note='a MobileFaceSwap weights folder: teacher = {kind = "mfs", weights = DIR}')
def _model_teacher(spec: dict, mean_points: np.ndarray | None = None) -> ModelTeacher:
    from ..checkpoints import load_weights

    return ModelTeacher(load_weights(spec["weights"]), name=f"mfs:{Path(spec['weights']).name}")


def _onnxruntime_missing() -> str | None:
    return None if importlib.util.find_spec("onnxruntime") else "needs onnxruntime: pip install onnxruntime"


@TEACHERS.register("onnx", probe=_onnxruntime_missing,
                   note='your ONNX face swapper (source, target -> swap): teacher = {kind = "onnx", path = FILE}')
def _onnx_teacher(spec: dict, mean_points: np.ndarray | None = None) -> OnnxTeacher:
    return OnnxTeacher(spec["path"])


@TEACHERS.register("mesh-warp", note='the classical mesh-warp swap, no weights: teacher = {kind = "mesh-warp"}')
def _mesh_warp_teacher(spec: dict, mean_points: np.ndarray | None = None) -> Teacher:
    from ..face.mesh_warp import triangulate
    from .warp_teacher import MeshWarpTeacher

    if mean_points is None:
        raise MfsError("the mesh-warp teacher needs the cache's average mesh to triangulate")
    return MeshWarpTeacher(triangulate(mean_points))


def create_teacher(spec: dict, mean_points: np.ndarray | None = None) -> Teacher | None:
    """``{}`` -> None (no distillation); ``{kind="mfs", weights=DIR}``; ``{kind="onnx", path=FILE}``;
    ``{kind="mesh-warp"}`` (``mean_points``: the data's average mesh, triangulated once)."""
    if not spec:
        return None
    TEACHERS.require(spec.get("kind"))
    return TEACHERS.create(spec["kind"], spec, mean_points)
