"""``Swapper``: detect, align, swap and paste back every requested face in frames or files.

Identity work (identity net + IIN) runs once per source in ``set_source``; each frame then
costs detection (or tracking), one batched IDN call for all its faces, and paste-back. With the
``fused`` backend and the C++ extension built, alignment, IDN and paste-back of a frame are one
call into the pipeline core (:mod:`mfs_fast.backends.pipeline_core`); ``core=False`` keeps the Python path.
"""

from __future__ import annotations

import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from . import native
from .backends import DEFAULT_BACKEND, Backend, NativeEngine, create_backend
from .checkpoints import load_weights
from .errors import ImageError, MfsError, NoFaceError
from .face import Face, FaceDetector, FaceTracker, align_face, paste_back
from .face.align import alignment_matrix, invert_affine
from .face.paste import EYES, footprint_box
from .face.select import FaceSelector, check_policy, check_similarity
from .face.tracking import check_every
from .identity.base import IdentityEncoder
from .media import VideoStats, check_bgr_image, read_bgr
from .media.stages import FramePool, Stage, Workers
from .memory import return_freed_memory
from .models import FaceSwapModels, IdentityWeights
from .models.bundle import MAX_PASTE_DETAIL
from .preprocess import batch_item_to_bgr255, crops_to_batch

if TYPE_CHECKING:
    from .backends.pipeline_core import PipelineCore

DEFAULT_SIZE = 224
SHARED_SWAP_WORKERS = 2  # frames swapped at once while pipeline stages share the cores


@dataclass(frozen=True)
class AlignedCrop:
    """Marks a source image as an already aligned face crop (no detection is run on it)."""

    image: np.ndarray


@dataclass
class SwapStats:
    """Running totals, so callers can report frames that passed through unswapped.

    ``frames_without_face``: no face was found at all. ``frames_without_match``: faces were
    found but none matched the reference person (only with ``reference=``); these are kept
    apart because they are the intended outcome of reference matching, not a detection miss.
    """

    frames: int = 0
    frames_without_face: int = 0
    frames_without_match: int = 0
    faces_swapped: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"detect": 0.0, "idn": 0.0, "paste": 0.0, "mark": 0.0})


class Swapper:
    """Swap the identity of ``source`` onto faces in frames, images and videos.

    ``source``: an image path, a BGR uint8 image (the largest face is used), or an
    :class:`AlignedCrop`. ``weights``: a weights folder (converted or official files), a
    loaded :class:`FaceSwapModels`, or ``None`` for the project's bundled starter weights
    (trained here, far below the official ones: see ``mfs_fast/weights/README.md``). ``backend``: a name, an ordered preference list (the first
    usable one is taken; skipped ones are logged, or are an error with ``strict=True``) or a
    backend object; ``swapper.backend.name`` says which runs. ``faces``: ``"all"`` or ``"largest"``; pass
    ``reference=<image>`` to swap only faces whose identity matches it: cosine similarity of
    ``identity_encoder`` embeddings (default ``"dlib"``, offline; ``"arcface"`` uses the loaded
    weights' identity net; or an :class:`~mfs_fast.identity.IdentityEncoder`) >= ``similarity``
    (default: the encoder's own threshold). ``core``: run align -> IDN -> paste of each frame
    in the C++ pipeline core (:mod:`mfs_fast.backends.pipeline_core`): ``None`` (default) when it can (``fused``
    backend, extension built), ``True`` to require it, ``False`` for the Python path;
    ``swapper.core`` is the core in use (set it to ``None`` to switch to the Python path).

    ``detail``: paste only the low band of the change, keeping the target's detail finer than
    this many crop pixels (:func:`mfs_fast.face.paste_back`; 0: the official blend); default
    the value the weights were trained for (``models.paste_detail``: 0 for the official weights).
    ``chroma``, ``brightness``: shares (0 to 1) of the swap's colour change and mean brightness
    change pasted (:func:`mfs_fast.face.paste.limit_colour`; 0 keeps the target's skin tone, eye
    colour and exposure); default what the weights were trained for (``models.paste_chroma``,
    ``models.paste_brightness``: 1 for the official weights). ``eyes``: ``"target"`` keeps the
    target's own eyes, ``"swap"`` pastes the swap's (:func:`mfs_fast.face.paste.target_eyes`);
    default the weights' (``models.paste_eyes``: ``"swap"`` for the official weights).

    ``watermark``: add the invisible mfs_fast watermark to every swapped face region (default;
    :mod:`mfs_fast.watermark`, ``mfs-fast verify`` finds it), carrying ``watermark_id`` (0..65535,
    0: none) in its payload; ``False`` leaves outputs unmarked and warns.

    ``detector``: a name (``"blazeface"``), the path of an SCRFD ``.onnx`` file, or a detector object;
    ``detector_options``: keywords for a named one (blazeface: ``min_eye_distance``, the smallest
    faces looked for, 24 px between the eyes by default).

    ``threads``: the named backend's worker threads (default: its own, usually every CPU this process
    may use); a process pool running several swappers side by side gives each its share.

    ``precision``: ``"float32"`` (default), or ``"bfloat16"``: the fused backend's pointwise layers
    multiply in bf16 (float32 sums) on CPUs with AVX512-BF16, ~1.3x faster per face; swapped pixels
    differ from float32 by a few hundredths of a level on average, at most a few levels
    (bench/RESULTS.md). An MfsError where it cannot run.

    ``faces``, ``similarity``, ``detail``, ``chroma``, ``brightness``, ``eyes`` and ``watermark_id`` are
    checked before anything is loaded: a bad value is an :class:`MfsError` naming it.
    """

    def __init__(
        self,
        source: str | Path | np.ndarray | AlignedCrop,
        weights: str | Path | FaceSwapModels | None = None,
        *,
        backend: str | Sequence[str] | Backend = DEFAULT_BACKEND,
        strict: bool = False,
        detector: str | FaceDetector = "blazeface",
        detector_options: dict | None = None,
        faces: str = "all",
        reference: str | Path | np.ndarray | AlignedCrop | None = None,
        similarity: float | None = None,
        identity_encoder: "str | IdentityEncoder" = "dlib",
        size: int = DEFAULT_SIZE,
        core: bool | None = None,
        detail: float | None = None,
        chroma: float | None = None,
        brightness: float | None = None,
        eyes: str | None = None,
        watermark: bool = True,
        watermark_id: int = 0,
        threads: int | None = None,
        precision: str = "float32",
    ) -> None:
        from .watermark import OPT_OUT_WARNING, Watermark

        check_policy(faces)
        self.watermark = Watermark(watermark_id) if watermark else None
        if not watermark:
            warnings.warn(OPT_OUT_WARNING, stacklevel=2)
        check_similarity(similarity)
        if detail is not None:
            check_detail(detail)
        for name, share in (("chroma", chroma), ("brightness", brightness)):
            if share is not None:
                check_share(name, share)
        if eyes is not None:
            check_eyes(eyes)
        if similarity is not None and reference is None:
            warnings.warn("similarity has no effect without a reference image", stacklevel=2)
        if weights is None:
            from .weights import load_starter_weights

            self.models = load_starter_weights()
        else:
            self.models = weights if isinstance(weights, FaceSwapModels) else load_weights(weights)
        # models this swapper read itself may free their source nets while a video streams
        self._owns_models = not isinstance(weights, FaceSwapModels)
        self.size = size
        self.detail = check_detail(self.models.paste_detail if detail is None else detail)
        self.chroma = check_share("chroma", self.models.paste_chroma if chroma is None else chroma)
        self.brightness = check_share("brightness", self.models.paste_brightness if brightness is None else brightness)
        self.eyes = check_eyes(self.models.paste_eyes if eyes is None else eyes)
        named = isinstance(backend, (str, list, tuple))
        self.threads_chosen = bool(threads)
        options = {"threads": threads} if threads else {}
        if _precision_backend(precision, backend):
            backend, options["precision"] = "fused", precision
        self.backend: Backend = create_backend(backend, self.models, strict=strict, **options) if named else backend
        if isinstance(detector, str):
            from .face.detectors import create_detector

            detector = create_detector(detector, **(detector_options or {}))
        elif detector_options:
            raise MfsError("detector_options apply to a detector given by name, not to a detector object")
        self.detector: FaceDetector = detector
        self.selector = FaceSelector(faces, threshold=similarity)
        self._encoder_choice = identity_encoder
        if reference is not None:
            self.set_reference(reference)
        self.stats = SwapStats()
        self._stats_lock = threading.Lock()  # swap workers in two threads add to the same totals
        self.last_faces: list[Face] = []
        self.identity: IdentityWeights | None = None
        self.core = self._pipeline_core(core)
        self.set_source(source)

    def _pipeline_core(self, wanted: bool | None):
        """The C++ pipeline core on this swapper's backend, when it has a native engine and can run here."""
        if wanted is False:
            return None
        if not native.AVAILABLE:
            reason = native.IMPORT_ERROR
        elif not isinstance(self.backend, NativeEngine):
            reason = f"it runs on the 'fused' backend, not {getattr(self.backend, 'name', type(self.backend).__name__)!r}"
        else:
            from .backends.pipeline_core import PipelineCore

            return PipelineCore(self.backend, self.size, detail=self.detail, chroma=self.chroma,
                                brightness=self.brightness, eyes=self.eyes)
        if wanted:
            raise MfsError(f"the pipeline core cannot be used: {reason}")
        return None

    # ------------------------------------------------------------------ identity
    def set_source(self, source: str | Path | np.ndarray | AlignedCrop) -> float:
        """Switch identity: runs only the identity net and the IIN. Returns the seconds it took."""
        start = time.perf_counter()
        crop = self._source_crop(source, "source")
        self.identity = self.models.identity_weights(self.models.identity_input(crop))
        self.backend.set_identity(self.identity)
        return time.perf_counter() - start

    def release_source_nets(self) -> None:
        """Free what only a new source needs (the identity net and the IIN's weights predictor,
        ~110 MB resident for the starter weights) when this swapper read its weights itself; the next
        :meth:`set_source` reads them back (~0.3 s). Done by :meth:`swap_video`: a 1080p video
        then stays under 600 MB. Models passed in as an object are left as they are."""
        if self._owns_models and self.models.release_source_nets():
            return_freed_memory()

    def set_reference(self, reference: str | Path | np.ndarray | AlignedCrop | None) -> None:
        """Swap only faces that look like ``reference`` from now on (``None``: every face again), so one
        swapper can serve items with different references (``mfs-fast batch``); the identity encoder
        is made on first use."""
        if reference is None:
            self.selector.reference = None
            return
        if self.selector.encoder is None:
            self.selector.encoder = self._identity_encoder(self._encoder_choice)
        if isinstance(reference, AlignedCrop):
            check_bgr_image(reference.image)
            self.selector.set_reference_crop(reference.image)
        else:
            self.selector.set_reference(*self._largest_face(reference, "reference"))

    def _source_crop(self, source, role: str) -> np.ndarray:
        if isinstance(source, AlignedCrop):
            check_bgr_image(source.image)
            return source.image
        image, face = self._largest_face(source, role)
        return align_face(image, face.landmarks, self.size).crop

    def _largest_face(self, source, role: str) -> tuple[np.ndarray, Face]:
        """The image and its largest detected face (NoFaceError when there is none)."""
        if isinstance(source, AlignedCrop):
            raise MfsError(f"the {role} must be an image with a face to detect, not an AlignedCrop")
        name = str(source) if isinstance(source, (str, Path)) else f"the {role} image"
        image = read_bgr(source) if isinstance(source, (str, Path)) else source
        check_bgr_image(image)
        faces = self.detector.detect(image)
        if not faces:
            raise NoFaceError(f"no face found in {name}")
        if len(faces) > 1:
            warnings.warn(f"{len(faces)} faces in {name}; using the largest", stacklevel=4)
        return image, max(faces, key=lambda f: f.area)

    def _identity_encoder(self, encoder: "str | IdentityEncoder") -> "IdentityEncoder":
        from .identity import create_identity_encoder

        return create_identity_encoder(encoder, models=self.models) if isinstance(encoder, str) else encoder

    # ------------------------------------------------------------------ frames
    def swap(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Swap every selected face in one BGR frame; returns a new array (or ``out``).

        A frame with no face to swap passes through unchanged and is counted in
        :attr:`stats`; that includes frames too small to hold a detectable face (e.g. 7x7
        pixels): an unusual size is not an error, since in a video it is just a frame without
        a face. Only non-images (wrong dtype or channels) raise :class:`ImageError`.
        """
        check_bgr_image(frame)
        start = time.perf_counter()
        faces = self.detector.detect(frame)
        self.stats.seconds["detect"] += time.perf_counter() - start
        return self._swap_faces([frame], [faces], [out])[0]

    def swap_many(self, frames: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Swap independent frames, running all their faces through the IDN in one batch."""
        frames = list(frames)
        for frame in frames:
            check_bgr_image(frame)
        start = time.perf_counter()
        detections = [self.detector.detect(frame) for frame in frames]
        self.stats.seconds["detect"] += time.perf_counter() - start
        return self._swap_faces(frames, detections, [None] * len(frames))

    def tracker(self, every: int = 5, fps: float = 30.0, smooth: bool = True, background: bool = False) -> FaceTracker:
        """A tracker for consecutive frames of one video (see :meth:`swap_tracked`); detects every
        ``every`` frames (an :class:`MfsError` unless a whole number >= 1); ``background``: new
        faces are searched for in a thread of their own, so no frame waits for the search (live)."""
        return FaceTracker(self.detector, every=every, fps=fps, smooth=smooth, background=background)

    def swap_tracked(self, frame: np.ndarray, tracker: FaceTracker, out: np.ndarray | None = None) -> np.ndarray:
        """Swap one video frame using (and advancing) ``tracker``: steadier than ``swap``."""
        return self._swap_faces([frame], [self._track(frame, tracker)], [out])[0]

    def _track(self, frame: np.ndarray, tracker: FaceTracker) -> list[Face]:
        check_bgr_image(frame)
        start = time.perf_counter()
        faces = tracker.update(frame)
        self.stats.seconds["detect"] += time.perf_counter() - start
        return faces

    def swap_video(self, src: str | Path, dst: str | Path, every: int = 5, progress: bool = True,
                   smooth: bool = True, *, pipelined: bool = True, quality: int | None = None,
                   preset: str | None = None) -> VideoStats:
        """Swap a whole video: same fps and size, audio copied, written atomically; marked, the
        container says so too (the provenance note's tags).

        ``pipelined`` (default): decoding, face finding (detect/track), swapping and encoding
        overlap in threads with small bounded queues; swapped frames are written into a few
        reused buffers (:class:`~mfs_fast.media.stages.FramePool`), the decoded ones are never
        copied. ``pipelined=False`` runs them in turn (decoding ahead), as before. ``quality``
        (x264 CRF) and ``preset`` trade speed for file size; default the writer's. Returns the
        :class:`~mfs_fast.media.VideoStats` with each stage's time and queue depth.
        """
        from .media import probe_video, transcode
        from .media.writer import DEFAULT_CRF, DEFAULT_PRESET
        from .watermark.metadata import VIDEO_TAGS

        check_every(every)  # before the video is opened
        info = probe_video(src)
        self.release_source_nets()
        tracker = self.tracker(every=every, fps=float(info.fps) or 30.0, smooth=smooth)
        pool = FramePool()
        with self.sharing_cores(pipelined) as workers:
            return transcode(src, dst, self.frame_stages(tracker, pool, workers), progress=progress, info=info,
                             pipelined=pipelined, quality=DEFAULT_CRF if quality is None else quality,
                             preset=preset or DEFAULT_PRESET, on_written=pool.give,
                             tags=VIDEO_TAGS if self.watermark is not None else None)

    @contextmanager
    def sharing_cores(self, shared: bool = True) -> Iterator[int]:
        """While decoding, face finding, swapping and encoding overlap, the native IDN runs on
        half its threads (at least one), unless ``threads`` was chosen: every core is then busy
        with some stage, and a second IDN thread mostly waits for one (720p, one face, 2 cores:
        53 vs 48 FPS end to end, bench/RESULTS.md). Yields how many swap workers to run
        (:meth:`frame_stages`): 2 while sharing, so two frames are swapped at once on those
        halves (the swap stage, the busiest, no longer paces the rest: 720p 53 -> 64 FPS), else
        1. Restored afterwards."""
        engines = [engine for engine in (self.backend, self.core) if engine is not None]
        if not shared or self.threads_chosen or not isinstance(self.backend, NativeEngine):
            yield 1
            return
        saved = [engine.threads for engine in engines]
        for engine in engines:
            engine.threads = max(1, engine.threads // 2)
        try:
            yield SHARED_SWAP_WORKERS
        finally:
            for engine, threads in zip(engines, saved):
                engine.threads = threads

    def swap_image(self, src: str | Path, dst: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
        """Swap one image file into ``dst`` (written atomically, never over ``src`` or ``inputs``): its
        metadata kept, and the provenance note added when marked. Returns ``dst``."""
        from .media import read_image, write_image
        from .watermark.metadata import with_note

        image = read_image(src)
        metadata = with_note(image.metadata) if self.watermark is not None else image.metadata
        write_image(dst, image.restore(self.swap(image.bgr)), inputs=(src, *inputs), metadata=metadata)
        return Path(dst)

    def frame_stages(self, tracker: FaceTracker, pool: FramePool, workers: int = 1) -> list[Stage]:
        """Consecutive frames' work as stages that can overlap (:mod:`mfs_fast.media.stages`):
        ``detect`` (detect or track with ``tracker``, then pick the faces to swap), ``swap`` into
        a buffer from ``pool``, so the incoming frame is only read, and, when marking, ``mark``
        (the watermark in a stage of its own: off the swap, the busiest stage); give each result
        back to ``pool`` once it is written. ``workers`` > 1 (with the pipeline core): that many
        threads swap consecutive frames at once, each on a core of its own
        (:meth:`~mfs_fast.backends.pipeline_core.PipelineCore.replica`)."""
        detect: Stage = ("detect", lambda frame: (frame, self._select([frame], [self._track(frame, tracker)])[0]))

        def swapping(core: "PipelineCore | None"):
            def swap(found: tuple[np.ndarray, list[Face]]) -> tuple[np.ndarray, list[np.ndarray]]:
                frame, faces = found
                footprints: list[list[np.ndarray]] = []
                return self._swap_selected([frame], [faces], [pool.take(frame.shape)], footprints, core)[0], footprints[0]

            if self.watermark is None:
                return lambda found: swap(found)[0]
            return swap

        cores = [self.core, *(self.core.replica(index) for index in range(1, workers))] if self.core else [None]
        work = Workers(tuple(swapping(core) for core in cores)) if len(cores) > 1 else swapping(cores[0])
        if self.watermark is None:
            return [detect, ("swap", work)]

        def mark(swapped: tuple[np.ndarray, list[np.ndarray]]) -> np.ndarray:
            self._mark(*swapped)
            return swapped[0]

        return [detect, ("swap", work), ("mark", mark)]

    def _swap_faces(self, frames: list[np.ndarray], detections: list[list[Face]],
                    outs: list[np.ndarray | None], unmarked: list | None = None) -> list[np.ndarray]:
        """The frames with the chosen ones of their faces swapped (see :meth:`_swap_selected`)."""
        return self._swap_selected(frames, self._select(frames, detections), outs, unmarked)

    def _select(self, frames: list[np.ndarray], detections: list[list[Face]]) -> list[list[Face]]:
        """Each frame's faces to swap (the ``faces`` policy, the reference person), counted in the stats."""
        selected = [self.selector.select(frame, faces) for frame, faces in zip(frames, detections)]
        self.last_faces = selected[-1] if selected else []
        with self._stats_lock:
            self.stats.frames += len(frames)
            self.stats.frames_without_face += sum(1 for faces in detections if not faces)
            self.stats.frames_without_match += sum(1 for found, kept in zip(detections, selected) if found and not kept)
        return selected

    def _swap_selected(self, frames: list[np.ndarray], selected: list[list[Face]], outs: list[np.ndarray | None],
                       unmarked: list | None = None, core: "PipelineCore | None" = None) -> list[np.ndarray]:
        """The frames with ``selected`` faces swapped; marked, unless ``unmarked`` is a list: each
        frame's face inverses (what :meth:`_mark` needs) are appended to it instead, for a later
        stage. ``core``: which pipeline core (default this swapper's; a replica in another thread)."""
        core = core or self.core
        if core is not None:
            return [self._swap_with_core(core, frame, faces, out, unmarked)
                    for frame, faces, out in zip(frames, selected, outs)]
        aligned = [[align_face(frame, f.landmarks, self.size) for f in faces] for frame, faces in zip(frames, selected)]
        flat = [a for per_frame in aligned for a in per_frame]
        results = [frame.copy() if out is None else _into(out, frame) for frame, out in zip(frames, outs)]
        if not flat:
            if unmarked is not None:
                unmarked.extend([] for _ in results)
            return results
        start = time.perf_counter()
        swapped, masks = self.backend.run(crops_to_batch([a.crop for a in flat]))
        idn_seconds = time.perf_counter() - start
        start = time.perf_counter()
        index = 0
        for result, per_frame in zip(results, aligned):
            for face in per_frame:
                paste_back(result, batch_item_to_bgr255(swapped[index]), masks[index, 0], face.inverse, out=result,
                           crop=face.crop, detail=self.detail, chroma=self.chroma, brightness=self.brightness,
                           eyes=self.eyes)
                index += 1
        self._count(len(flat), idn_seconds, time.perf_counter() - start)
        for result, per_frame in zip(results, aligned):
            self._mark_or_keep(result, [face.inverse for face in per_frame], unmarked)
        return results

    def _mark_or_keep(self, frame: np.ndarray, inverses: list[np.ndarray], unmarked: list | None) -> None:
        if unmarked is None:
            self._mark(frame, inverses)
        else:
            unmarked.append(inverses)

    def _mark(self, frame: np.ndarray, inverses: list[np.ndarray]) -> None:
        """The watermark over each swapped face's footprint (the aligned crop warped back: the face
        and its surroundings), after the paste: the swap itself is what parity tests compare."""
        if self.watermark is None or not inverses:
            return
        start = time.perf_counter()
        boxes = (footprint_box(inverse, self.size, frame.shape) for inverse in inverses)
        self.watermark.mark(frame, [box for box in boxes if box is not None])
        self.stats.seconds["mark"] += time.perf_counter() - start

    def _count(self, faces: int, idn_seconds: float, paste_seconds: float) -> None:
        with self._stats_lock:
            self.stats.faces_swapped += faces
            self.stats.seconds["idn"] += idn_seconds
            self.stats.seconds["paste"] += paste_seconds

    def _swap_with_core(self, core: "PipelineCore", frame: np.ndarray, faces: list[Face], out: np.ndarray | None,
                        unmarked: list | None = None) -> np.ndarray:
        """One frame through a pipeline core: warp, IDN, mask and paste in one native call."""
        if out is not None:
            _check_out(out, frame)
        source = np.ascontiguousarray(frame)
        direct = out is not None and out.flags.c_contiguous and out.flags.writeable
        result = out if direct else np.empty_like(source)
        matrices = np.array([alignment_matrix(f.landmarks, self.size) for f in faces], np.float32).reshape(-1, 2, 3)
        core.swap(source, matrices=matrices, out=result)
        self._mark_or_keep(result, [invert_affine(matrix) for matrix in matrices], unmarked)
        seconds = core.seconds()
        self._count(len(faces), seconds["warp"] + seconds["idn"],
                    seconds["copy"] + seconds["mask"] + seconds["detail"] + seconds["paste"])
        if out is not None and result is not out:
            np.copyto(out, result)
            return out
        return result


def _precision_backend(precision: str, backend: object) -> bool:
    """True when ``precision`` asks for the fused backend's bf16 kernels (then the one backend to
    use); an MfsError where that cannot be: another backend named, or a CPU without AVX512-BF16."""
    from .backends.fused import PRECISIONS, bfloat16_available

    if precision not in PRECISIONS:
        raise MfsError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "float32":
        return False
    names = [backend] if isinstance(backend, str) else list(backend) if isinstance(backend, (list, tuple)) else None
    if names is None or (names[0] != "fused" and names != ["auto"]):
        named = ", ".join(names) if names else type(backend).__name__
        raise MfsError(f"precision {precision!r} runs on the 'fused' backend only, not {named}")
    if not bfloat16_available():
        raise MfsError(f"precision {precision!r} needs a CPU with AVX512-BF16 and mfs_fast's C++ core; "
                       "this machine has not both: use precision float32 (the default)")
    return True


def check_detail(detail: float) -> float:
    """``detail`` must be a finite number of crop pixels, 0 (off) up to 8."""
    try:
        value = float(detail)
    except (TypeError, ValueError):
        raise MfsError(f"detail must be a number of crop pixels (0 = off, e.g. 1.5), got {detail!r}") from None
    if not 0.0 <= value <= MAX_PASTE_DETAIL:
        raise MfsError(f"detail must be between 0 (off) and {MAX_PASTE_DETAIL:g} crop pixels, got {detail!r}")
    return value


def check_share(name: str, share: float) -> float:
    """A share of the swap's change the paste keeps (``chroma``, ``brightness``): 0 to 1."""
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise MfsError(f"{name} must be a share from 0 (the target's) to 1 (the swap's), got {share!r}") from None
    if not 0.0 <= value <= 1.0:
        raise MfsError(f"{name} must be a share from 0 (the target's) to 1 (the swap's), got {share!r}")
    return value


def check_eyes(eyes: str) -> str:
    """``eyes``: whose eyes the paste shows, "swap" or "target" (:data:`mfs_fast.face.paste.EYES`)."""
    if eyes not in EYES:
        raise MfsError(f"eyes must be one of {', '.join(EYES)} (target: keep the target's own eyes), got {eyes!r}")
    return eyes


def _check_out(out: np.ndarray, frame: np.ndarray) -> None:
    if not isinstance(out, np.ndarray) or out.shape != frame.shape or out.dtype != frame.dtype:
        got = f"{out.shape} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ImageError(f"out must match the frame: {frame.shape} {frame.dtype}, got {got}")


def _into(out: np.ndarray, frame: np.ndarray) -> np.ndarray:
    _check_out(out, frame)
    if out is not frame:
        np.copyto(out, frame)
    return out
