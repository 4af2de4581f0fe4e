"""The pipeline core: align -> IDN -> blend of a whole frame in one native call (issue #5).

:class:`PipelineCore` takes a BGR uint8 frame (used in place through the buffer protocol,
never copied) and the 5 landmarks (or the alignment matrices) of its faces, and in C++, with the
GIL released: warps every face into a preallocated crop (the bilinear affine warp of
``cv2.warpAffine``, bit for bit on CPUs with FMA), runs the IDN on all of them as one batch on
the fused kernels, turns each fusion mask into the official paste mask (binarise, dilate, erode
twice, blur, border fade) and blends the faces back in place, inside each face's footprint box
only (with ``detail > 0``, only each face's low-band change: :func:`mfs_fast.face.paste_back`). It matches :func:`mfs_fast.face.align_face` + IDN + :func:`mfs_fast.face.paste_back` to
within one level per pixel (kernels/pipeline.hpp says why not always exactly).

It runs on a backend with the :class:`~mfs_fast.backends.base.NativeEngine` capability (the
``fused`` backend, :class:`~mfs_fast.backends.fused.FusedIDN`) and shares its native engine:
identities set through that backend (``swapper.set_source`` does) apply here with nothing rebuilt.
``Swapper`` uses it automatically when its backend has that capability and the extension is built.
"""

from __future__ import annotations

import numpy as np

from ..face.paste import paste_weights
from ..models import FaceSwapModels, IdentityWeights
from ..native import require_native
from .base import NativeEngine
from .fused import FusedIDN


class PipelineCore:
    """``swap(frame, landmarks=None, matrices=None, out=None)`` on whole BGR frames.

    ``idn``: the backend to run on (shared; a :class:`NativeEngine`, e.g. :class:`FusedIDN`), or
    :class:`FaceSwapModels` to make a :class:`FusedIDN`. ``size``: the aligned crop side (a multiple
    of 32). ``threads``: default the backend's. ``isa``: the warp/blend kernels, "auto" (the
    backend's kernel set), "avx2" or "scalar". ``detail``, ``chroma``, ``brightness``, ``eyes``: as
    :func:`mfs_fast.face.paste_back`'s. ``replica``: which of the backend's engines of this size
    to run on (one core runs one call at a time; :meth:`replica` makes another for a second thread).
    Raises :class:`mfs_fast.NativeUnavailableError` when the C++ extension is not built.
    """

    def __init__(self, idn: NativeEngine | FaceSwapModels, size: int = 224, threads: int | None = None,
                 isa: str = "auto", detail: float = 0.0, chroma: float = 1.0, brightness: float = 1.0,
                 eyes: str = "swap", replica: int = 0) -> None:
        native = require_native()
        if isinstance(idn, FaceSwapModels):
            idn = FusedIDN(idn, threads=threads, isa=isa)
        if not isinstance(idn, NativeEngine):
            raise TypeError(f"idn must be a FusedIDN or FaceSwapModels, got {type(idn).__name__}")
        self.idn = idn
        self.size = int(size)
        self.threads = int(threads) if threads else idn.threads
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._isa_choice = isa
        self._core = native.PipelineCore(idn.native_engine(self.size, replica=replica), isa)
        self.detail = detail
        self._core.set_colour(float(chroma), float(brightness))
        self.eyes = eyes

    def replica(self, index: int) -> "PipelineCore":
        """A core with this one's settings on the backend's engine ``index`` (> 0): the same
        identity and paste, buffers of its own, so two threads can swap two frames at once."""
        if index < 1:
            raise ValueError(f"a replica's index must be >= 1 (0 is the first core's engine), got {index}")
        chroma, brightness = self.colour
        return PipelineCore(self.idn, self.size, self.threads, self._isa_choice, self.detail, chroma, brightness,
                            self.eyes, replica=index)

    @property
    def eyes(self) -> str:
        """Whose eyes the paste shows: "swap" (the official paste) or "target" (see
        :func:`mfs_fast.face.paste.target_eyes`)."""
        return self._eyes

    @eyes.setter
    def eyes(self, choice: str) -> None:
        self._core.set_paste_weights(paste_weights(self.size, choice))
        self._eyes = choice

    @property
    def detail(self) -> float:
        """Crop pixels of the frame's own detail the paste keeps (0: the official blend)."""
        return self._core.detail

    @detail.setter
    def detail(self, sigma: float) -> None:
        self._core.detail = float(sigma)

    @property
    def colour(self) -> tuple[float, float]:
        """(chroma, brightness): shares of the change's colour and mean brightness pasted."""
        return tuple(self._core.colour())

    def set_colour(self, chroma: float, brightness: float) -> None:
        """Paste only these shares (0 to 1) of the change's colour and mean brightness."""
        self._core.set_colour(float(chroma), float(brightness))

    @property
    def isa(self) -> str:
        """The warp/blend kernel set in use ("avx2" or "portable")."""
        return self._core.isa

    def set_identity(self, weights: IdentityWeights) -> None:
        """New source identity (the shared backend's ``set_identity``: O(C) data per layer)."""
        self.idn.set_identity(weights)

    def swap(self, frame: np.ndarray, landmarks: np.ndarray | None = None, matrices: np.ndarray | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
        """Swap the faces of ``frame`` (H x W x 3 BGR uint8, C-contiguous).

        ``landmarks``: F x 5 x 2 (ArcFace order), or ``matrices``: F x 2 x 3 frame -> crop
        (:func:`mfs_fast.face.align.alignment_matrix`; given, they are used as they are).
        ``out=None`` writes into ``frame`` (it must be writable); otherwise ``out`` (same shape,
        uint8, C-contiguous, not overlapping the frame) receives the frame with the faces
        swapped and ``frame`` is only read. Returns the array written. Bad arrays raise
        ``ValueError`` naming the argument.
        """
        return self._core.swap(frame, landmarks, matrices, out, self.threads)

    def seconds(self) -> dict[str, float]:
        """Seconds per stage of the last swap: copy, warp, idn, mask, detail, paste."""
        return self._core.seconds()
