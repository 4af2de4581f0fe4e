"""The classical mesh-warp swap (:mod:`mfs_fast.face.mesh_warp`) as a distillation teacher.

No learned face-swapping weights can be obtained offline; this teacher needs none. It gives what
a swap should do (the source's face in the target's pose, expression and gaze, the target's
open mouth and eye colours, colour-matched per region and blended without a seam) with a 2D
warp's remaining artefacts (lighting baked into the source's texture, hair or glasses of either
face inside the mesh), which the per-sample weight alpha = cos^2 x Q discounts. One 224 pair
costs ~9 ms of CPU (2-core dev VM; the first version ~19 ms).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import MfsError
from ..face.mesh_warp import mesh_warp_swap
from ..preprocess import chw_to_hwc, nhwc_to_nchw


class MeshWarpTeacher:
    """``kind = "mesh-warp"``: :func:`~mfs_fast.face.mesh_warp.mesh_warp_swap` per (source, target) pair."""

    name = "mesh-warp"
    needs_points = True

    def __init__(self, triangles: np.ndarray) -> None:
        self.triangles = triangles

    @torch.no_grad()
    def __call__(self, source: Tensor, targets: Tensor, source_points: Tensor | None = None,
                 target_points: Tensor | None = None) -> Tensor:
        if source_points is None or target_points is None:
            raise MfsError("the mesh-warp teacher needs the mesh points of source and targets (from the cache)")
        src = chw_to_hwc(source.float())
        src_pts = source_points.cpu().numpy().astype(np.float64)
        outs = []
        for target, points in zip(targets.detach().float().cpu(), target_points.cpu().numpy().astype(np.float64)):
            tgt = np.ascontiguousarray(chw_to_hwc(target))
            outs.append(mesh_warp_swap(src, tgt, src_pts, points, self.triangles))
        return nhwc_to_nchw(np.stack(outs).astype(np.float32)).to(targets.device)
