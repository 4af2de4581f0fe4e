"""The paper's evaluation protocol with offline networks: ``mfs-fast eval``.

    from mfs_fast.eval import create_methods, evaluate, write_report
    result = evaluate(["a.jpg", "b.jpg"], ["clip.mp4"], create_methods(["model", "target"], detector,
                      random_seed=0), detector=detector, encoder=create_identity_encoder("dlib"))
    write_report(result, "eval_out/")   # metrics.json, metrics.md, samples.png

Methods (:mod:`.methods`), per-face measures (:mod:`.measure`: identity, :mod:`.pose`,
:mod:`.expression`), aggregates (:mod:`.metrics`, :mod:`.frechet`: FD-dlib, :mod:`.temporal`),
the runner (:mod:`.runner`) and the files (:mod:`.report`) each have a module of their own.
"""

from .frechet import frechet_distance
from .methods import EVAL_METHODS, METHODS, Method, ModelMethod, PasteSourceMethod, Source, TargetMethod, create_methods
from .pose import FACE_MODEL_3D, head_pose
from .report import write_report
from .runner import EvalResult, evaluate

__all__ = [
    "FACE_MODEL_3D",
    "EVAL_METHODS",
    "METHODS",
    "EvalResult",
    "Method",
    "ModelMethod",
    "PasteSourceMethod",
    "Source",
    "TargetMethod",
    "create_methods",
    "evaluate",
    "frechet_distance",
    "head_pose",
    "write_report",
]
