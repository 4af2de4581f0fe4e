"""What ``mfs-fast eval`` does, callable from Python: check inputs, build, run, write."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import MediaError, MfsError
from .methods import METHODS, create_methods
from .report import write_report
from .runner import EvalResult, evaluate


def run_eval(sources: Sequence[str], targets: Sequence[str], output: str, *, methods: Sequence[str] = METHODS,
             weights: str | None = None, random_seed: int | None = None, frames: int = 16, stride: int = 1,
             use_mesh: bool = True, samples: int = 4, detector: str = "blazeface", identity_encoder: str = "dlib",
             detail: float | None = None, chroma: float | None = None, brightness: float | None = None,
             eyes: str | None = None, log: Callable[[str], None] = print) -> tuple[EvalResult, list[Path]]:
    """Evaluate and write metrics.json, metrics.md and samples.png into ``output``.

    ``identity_encoder`` (dlib, faceres, mobileface) scores identity: retrieval and similarity.
    FD-dlib stays on dlib's features whichever encoder is chosen. ``detail``, ``chroma``,
    ``brightness``, ``eyes``: the model method's paste (None: what its weights were trained for)."""
    for path in [*sources, *targets]:
        if not Path(path).is_file():
            raise MediaError(f"input not found: {path}")
    if not sources or not targets:
        raise MfsError("eval needs at least one source and one target")
    if len(sources) < 2:
        log("warning: only 1 source: identity retrieval is trivial and is reported as n/a (1 source)")
    methods = list(dict.fromkeys(methods))
    if "model" in methods and (weights is None) == (random_seed is None):
        raise MfsError("the model method needs exactly one of --weights DIR or --random-weights SEED "
                       "(or leave it out: --methods target paste-source)")
    from ..face import create_detector
    from ..identity import create_identity_encoder
    from ..identity.paired import PairedIdentityEncoder

    if identity_encoder == "arcface":
        raise MfsError("eval's identity encoder must be offline: dlib, faceres or mobileface")
    dlib = create_identity_encoder("dlib")
    encoder = dlib if identity_encoder == "dlib" else PairedIdentityEncoder(
        create_identity_encoder(identity_encoder), maps_from=dlib)
    face_detector = create_detector(detector)
    paste = {name: value for name, value in (("detail", detail), ("chroma", chroma), ("brightness", brightness),
                                                       ("eyes", eyes))
             if value is not None}
    built = create_methods(methods, face_detector, weights=weights, random_seed=random_seed, paste=paste)
    options = {"methods": methods, "weights": weights, "random_weights_seed": random_seed, "frames": frames,
               "stride": stride, "mesh": use_mesh, "detector": detector, "identity_encoder": identity_encoder,
               "detail": detail, "chroma": chroma, "brightness": brightness, "eyes": eyes}
    result = evaluate(sources, targets, built, detector=face_detector, encoder=encoder,
                      frames=frames, stride=stride, use_mesh=use_mesh, samples=samples, options=options, log=log)
    return result, write_report(result, output)
