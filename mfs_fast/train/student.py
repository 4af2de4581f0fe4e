"""The student being trained: identity adapter + IIN + IDN, run on groups of (source, targets)."""

from __future__ import annotations

from torch import Tensor, nn

from ..identity.dlib_adapter import DLIB_MAP, DlibAdaptedIdentity
from ..identity.irse import l2_normalize
from ..models import IDN, IIN, FaceSwapModels
from ..models.identity_weights import IdentityWeights


def new_student(encoder) -> FaceSwapModels:
    """A fresh student on the offline identity encoder (dlib + adapter)."""
    return FaceSwapModels(DlibAdaptedIdentity(encoder), IIN(), IDN())


def trainable_modules(models: FaceSwapModels) -> list[nn.Module]:
    return [models.identity, models.iin, models.idn]


def set_train_mode(models: FaceSwapModels) -> None:
    """Train mode, except the IIN's batch norms: the IIN injects one source at a time, so its
    BN statistics stay at their initial values (they act as learned affines), exactly as
    they are at inference."""
    for module in trainable_modules(models):
        module.train().requires_grad_(True)
    for module in models.iin.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def inject(models: FaceSwapModels, source: Tensor) -> IdentityWeights:
    """The IDN's kernels for one source crop (3 x S x S), with gradients."""
    embedding, feature_map = models.identity(source[None])
    return models.iin(l2_normalize(embedding), feature_map)


def inject_features(models: FaceSwapModels, features) -> list[IdentityWeights]:
    """The IDN's kernels of each source from their dlib features (N sources, computed once per
    step by the trainer, which also needs the embeddings for the identity loss: dlib runs once,
    not twice), adapter and IIN run as one batch."""
    embedding, feature_map = models.identity.adapt(features.embedding, features.maps[DLIB_MAP])
    return models.iin.inject_many(l2_normalize(embedding), feature_map)


def swap_group(models: FaceSwapModels, source: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """One source (3 x S x S) onto its targets (M x 3 x S x S) -> (results, masks), with gradients."""
    return models.idn(targets, inject(models, source))
