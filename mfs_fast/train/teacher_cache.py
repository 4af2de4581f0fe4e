"""The teacher's swaps, computed once per (source, target) pair of cached crops and reused.

Why: the mesh-warp teacher costs ~15-20 ms of CPU per pair, ~0.15 s per training step, which a
2-core CPU pays in the step itself (a prefetch thread would only take the same cycles from the
step's forward and backward, :mod:`.prefetch`). With a fixed pool of distilled pairs
(``teacher_partners``: each sharp source has its own fixed sharp partners,
:class:`~mfs_fast.train.data.PairSampler`), each pair's swap is made once, on the un-augmented
crops, and the target's augmentation (affine, flip, colour jitter:
:class:`~mfs_fast.train.data.Augmentation`) is replayed on it, which is what the teacher gives
on the augmented pair up to one bilinear resampling (the teacher matches colours to the target,
so the target's jitter carries over; the source's jitter is what colour matching removes).

Swaps are kept as JPEG (quality 95) in memory and appended to ``swaps.bin`` in a folder next to
the crop cache, with ``index.json`` naming only bytes already written, so a later run or stage
with the same cache and teacher starts warm, and an interrupted write loses nothing but the
entries after the last index. :meth:`CachedTeacher.fill` swaps a whole pool up front (the
trainer does so before its first step), so steps only ever read the cache. Delete the folder
when the teacher's code changes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..atomic import atomic_write
from ..preprocess import bgr_to_chw, unit_chw_to_bgr
from .data import FaceCache, PairGroup
from .teacher import Teacher

JPEG_QUALITY = 95
INDEX = "index.json"
SWAPS = "swaps.bin"


class CachedTeacher:
    """``swaps(group, rows)``: the teacher's swaps of a group's source onto its targets ``rows``,
    from the cache where the pair was swapped before."""

    def __init__(self, teacher: Teacher, cache: FaceCache, folder: str | Path | None = None) -> None:
        self.teacher, self.cache = teacher, cache
        self.folder = Path(folder) if folder is not None else None
        self.stored: dict[tuple[int, int], bytes] = {}
        self.unsaved: list[tuple[int, int]] = []
        self.lock = threading.Lock()
        self.hits = self.misses = 0
        if self.folder is not None:
            self._load()

    def swaps(self, group: PairGroup, rows: Tensor) -> Tensor:
        source = group.indices[0]
        out = []
        for row in rows.tolist():
            target = group.indices[1 + row]
            swap = self._swap(source, target)
            augmentation = group.target_augmentations[row] if group.target_augmentations else None
            if augmentation is None:
                out.append(bgr_to_chw(swap))
            else:
                out.append(augmentation.jitter(bgr_to_chw(np.ascontiguousarray(augmentation.warp(swap)))))
        return torch.stack(out)

    def _swap(self, source: int, target: int) -> np.ndarray:
        """BGR uint8 swap of the un-augmented crops ``source`` onto ``target``."""
        key = (source, target)
        with self.lock:
            encoded = self.stored.get(key)
        if encoded is not None:
            self.hits += 1
            return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        self.misses += 1
        # the decoded JPEG, so a hit and a miss give the same pixels
        return cv2.imdecode(np.frombuffer(self._make(source, target), np.uint8), cv2.IMREAD_COLOR)

    def _make(self, source: int, target: int) -> bytes:
        """Run the teacher on the un-augmented pair; store (and return) its swap as JPEG."""
        src, tgt = self.cache.sample(source, augment=False), self.cache.sample(target, augment=False)
        swap = unit_chw_to_bgr(self.teacher(src.image, tgt.image[None], src.points, tgt.points[None])[0])
        encoded = cv2.imencode(".jpg", swap, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
        with self.lock:
            self.stored[(source, target)] = encoded
            self.unsaved.append((source, target))
        return encoded

    def fill(self, pairs: Iterable[tuple[int, int]], progress: bool = True, save_every: int = 500) -> int:
        """Swap every pair of ``pairs`` not swapped yet, saving as it goes (an interrupted fill
        resumes where it stopped); returns how many swaps were made. Why: a pair first met in a
        step costs that step the teacher's ~15-20 ms, so a fresh pool makes steps slow and
        uneven for thousands of steps; filled up front, every step reads the cache."""
        with self.lock:
            missing = [pair for pair in dict.fromkeys(pairs) if pair not in self.stored]
        for done, (source, target) in enumerate(tqdm(missing, desc="teacher swaps (once per cache)", unit="pair",
                                                     disable=not progress or not missing), start=1):
            self._make(source, target)
            if done % save_every == 0:
                self.save()
        self.save()
        return len(missing)

    def save(self) -> None:
        """Append the swaps made since the last save; then rewrite the index (atomically)."""
        if self.folder is None:
            return
        with self.lock:
            keys, self.unsaved = self.unsaved, []
            blobs = [self.stored[key] for key in keys]
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        index = self._read_index()
        with (self.folder / SWAPS).open("ab") as file:
            offset = file.tell()
            for key, blob in zip(keys, blobs):
                file.write(blob)
                index[f"{key[0]},{key[1]}"] = [offset, len(blob)]
                offset += len(blob)
        atomic_write(self.folder / INDEX, json.dumps({"teacher": self.teacher.name, "swaps": index}))

    def _read_index(self) -> dict[str, list[int]]:
        path = self.folder / INDEX
        if not path.is_file():
            return {}
        return json.loads(path.read_text())["swaps"]

    def _load(self) -> None:
        index = self._read_index()
        if not index:
            return
        data = (self.folder / SWAPS).read_bytes()
        for key, (offset, length) in index.items():
            if offset + length <= len(data):  # bytes after an interrupted save are not indexed
                source, target = (int(v) for v in key.split(","))
                self.stored[(source, target)] = data[offset:offset + length]
