"""Bounded fuzzing of every reader of untrusted bytes: images, videos, checkpoints.

A seeded mutator (the session seed of conftest.py; ``MFS_TEST_SEED`` repeats a run) makes
zero-byte files, truncations at many offsets, bit flips, overwritten header bytes, wrong magic,
spliced data and headers claiming huge sizes from a small valid file of each format. Every case
must end in a valid result or the project's own error (an :class:`MfsError` subclass): any other
exception, a case over its time limit, or a jump in peak memory counts as a crash. Each test prints
a summary line (``-s`` shows it; it is always in the report of a failure); docs/robustness.md
records the counts. ``MFS_FUZZ_SCALE=10`` runs ten times as many cases.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import struct
import subprocess
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
from sample_media import exif_bytes, huge_headers

from mfs_fast.errors import MfsError
from mfs_fast.media import decode_image, write_image
from mfs_fast.media.image_formats import ImageMetadata

SCALE = float(os.environ.get("MFS_FUZZ_SCALE", "1"))
CASE_SECONDS = 20.0  # a case slower than this is a hang
MAX_RSS_GROWTH_MB = 512  # growth of peak memory over a whole reader's cases


class _Hang(Exception):
    """Raised by the alarm when a case runs past CASE_SECONDS (Python-level loops only)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise _Hang(f"over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Tally:
    """Cases tried on one reader and how each ended."""

    reader: str
    tried: int = 0
    rejected: int = 0  # our own error, as intended
    accepted: int = 0  # a valid result
    crashes: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def run(self, label: str, case: Callable[[], object]) -> None:
        self.tried += 1
        start = time.perf_counter()
        try:
            with _time_limit(CASE_SECONDS), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # damaged media may warn; only the outcome counts
                case()
            self.accepted += 1
        except MfsError:
            self.rejected += 1
        except Exception as exc:  # anything else is a crash to fix
            self.crashes.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
        self.slowest = max(self.slowest, time.perf_counter() - start)

    def summary(self) -> str:
        return (f"fuzz {self.reader}: {self.tried} cases, {self.rejected} rejected with MfsError, "
                f"{self.accepted} valid, {len(self.crashes)} crashes, slowest {self.slowest:.2f} s")


@contextmanager
def tally(reader: str, capsys) -> Iterator[Tally]:
    """Run the cases of one reader; fail on any crash or a large jump in peak memory."""
    result = Tally(reader)
    before = _peak_rss_mb()
    yield result
    growth = _peak_rss_mb() - before
    with capsys.disabled():
        print(f"\n{result.summary()}, peak memory +{growth:.0f} MB")
    assert not result.crashes, "\n".join(result.crashes[:20])
    assert growth < MAX_RSS_GROWTH_MB, f"peak memory grew by {growth:.0f} MB"


def mutants(data: bytes, rng: np.random.Generator, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` damaged versions of ``data`` (about), header-heavy: most parsers die in the header."""
    count = max(8, int(count * SCALE))
    yield "zero bytes", b""
    cuts = {1, 2, 3, 4, 7, 8, 12, 16, 24, 32, len(data) - 1, len(data) - 2}
    cuts |= {int(x) for x in np.linspace(1, len(data) - 1, count // 4)}
    cuts |= {int(x) for x in rng.integers(1, len(data), count // 8)}
    for cut in sorted(c for c in cuts if 0 < c < len(data)):
        yield f"truncated at {cut}", data[:cut]
    head = min(len(data), 512)
    for _ in range(count // 3):
        out = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, head)) if rng.random() < 0.6 else int(rng.integers(0, len(data)))
            out[at] ^= 1 << int(rng.integers(0, 8))
        yield "bit flips", bytes(out)
    for _ in range(count // 6):
        out = bytearray(data)
        at, width = int(rng.integers(0, head)), int(rng.integers(1, 5))
        out[at:at + width] = bytes([int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))]) * width
        yield f"bytes {at}..{at + width} overwritten", bytes(out)
    yield "wrong magic", rng.integers(0, 256, 4, dtype=np.uint8).tobytes() + data[4:]
    for _ in range(count // 8):
        a, b = sorted(int(x) for x in rng.integers(0, len(data), 2))
        yield f"bytes {a}..{b} removed", data[:a] + data[b:]
        yield f"bytes {a}..{b} repeated", data[:b] + data[a:b] + data[b:]


# ---------------------------------------------------------------------------------------------- images


def image_samples() -> dict[str, bytes]:
    """One small valid file per format the reader takes, with metadata where the format has it."""
    rng = np.random.default_rng(0)
    bgr = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (48, 32))
    meta = ImageMetadata(icc=bytes(range(256)) * 4, exif=exif_bytes(6, thumbnail=b"thumb"))
    samples = {}
    for suffix, image, params in ((".png", np.dstack([bgr, bgr[..., 0]]), []), (".jpg", bgr, []),
                                  (".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".bmp", bgr, []),
                                  (".tif", bgr.astype(np.uint16) * 257, []), (".webp", bgr, []), (".gif", bgr, [])):
        data = cv2.imencode(suffix, image, params)[1].tobytes()
        samples[f"{suffix[1:]}{'-progressive' if params else ''}"] = data
    for name in ("png", "jpg"):  # with ICC + EXIF, through our writer
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"mfs-fuzz-{os.getpid()}.{name}"
        write_image(path, cv2.imdecode(np.frombuffer(samples[name], np.uint8), cv2.IMREAD_UNCHANGED), metadata=meta)
        samples[name] = path.read_bytes()
        path.unlink()
    return samples


def _decode_and_restore(data: bytes) -> None:
    image = decode_image(data, "fuzz")
    assert image.restore(image.bgr).shape == image.pixels.shape


def test_fuzz_image_reader(seed, capsys):
    rng = np.random.default_rng(seed)
    with tally("image reader (PNG, JPEG, BMP, TIFF, WebP, GIF)", capsys) as t:
        for fmt, data in image_samples().items():
            t.run(f"{fmt} as written", lambda d=data: _decode_and_restore(d))
            for label, mutant in mutants(data, rng, 150):
                t.run(f"{fmt} {label}", lambda d=mutant: _decode_and_restore(d))
        for fmt, data in huge_headers().items():
            t.run(f"{fmt} huge dimensions", lambda d=data: _decode_and_restore(d))
    assert t.accepted >= 8  # the valid samples, at least


# ---------------------------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> bytes:
    from mfs_fast.media import ffmpeg_exe

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=frequency=440", "-frames:v", "6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(path)], check=True, timeout=60, capture_output=True)
    return path.read_bytes()


def _huge_mp4_dimensions(data: bytes) -> bytes:
    """The track header (tkhd) claims 30000 x 30000 (the decoder's SPS still says 64 x 48)."""
    out = bytearray(data)
    at = out.index(b"tkhd")
    version = out[at + 4]
    size_at = at + 4 + (92 if version == 1 else 80)
    struct.pack_into(">II", out, size_at, 30000 << 16, 30000 << 16)
    return bytes(out)


def test_fuzz_video_probe_and_reader(seed, small_clip, tmp_path, capsys):
    from mfs_fast.media import probe_video, read_frames

    def probe_and_read(data: bytes) -> None:
        path = tmp_path / "fuzz.mp4"
        path.write_bytes(data)
        info = probe_video(path)
        frames = 0
        for frame in read_frames(path, prefetch=0):
            assert frame.shape == (info.height, info.width, 3)
            frames += 1
        assert frames <= 1000

    rng = np.random.default_rng(seed)
    with tally("video probe_video + read_frames (mp4)", capsys) as t:
        t.run("as written", lambda: probe_and_read(small_clip))
        for label, mutant in mutants(small_clip, rng, 80):
            t.run(label, lambda d=mutant: probe_and_read(d))
        t.run("huge dimensions in tkhd", lambda: probe_and_read(_huge_mp4_dimensions(small_clip)))


# ----------------------------------------------------------------------------------------- checkpoints


def _pickled_array_with_shape(shape: tuple[int, ...]) -> object:
    """An object that pickles as a numpy array of ``shape`` holding only 16 bytes of data."""
    reconstruct, args, state = np.zeros(4, np.float32).__reduce__()

    class Lying:
        def __reduce__(self):
            return reconstruct, args, (state[0], shape, *state[2:])

    return Lying()


def test_fuzz_pdparams_reader(seed, tmp_path, capsys):
    from mfs_fast.checkpoints import read_pdparams, write_pdparams

    rng = np.random.default_rng(seed)
    state = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "bn1._mean": np.zeros(4, np.float32), "fc.weight": rng.standard_normal((8, 4)).astype(np.float32)}
    path = tmp_path / "fuzz.pdparams"

    def read(data: bytes) -> None:
        path.write_bytes(data)
        read_pdparams(path)

    with tally("checkpoint .pdparams (restricted unpickler)", capsys) as t:
        for protocol in (2, 4):
            write_pdparams(state, path, protocol=protocol)
            data = path.read_bytes()
            t.run(f"protocol {protocol} as written", lambda d=data: read(d))
            for label, mutant in mutants(data, rng, 150):
                t.run(f"protocol {protocol} {label}", lambda d=mutant: read(d))
        for shape in ((100000, 100000), (2**62,), (-1, 4)):
            t.run(f"array claiming shape {shape}",
                  lambda s=shape: read(pickle.dumps({"w": _pickled_array_with_shape(s)}, protocol=4)))
        t.run("bytes claiming 2**40 length", lambda: read(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"x"))


def test_fuzz_safetensors_and_manifest_readers(seed, tmp_path, capsys):
    import json

    import torch
    from safetensors.torch import save_file

    from mfs_fast.checkpoints.native_format import read_manifest, read_safetensors

    rng = np.random.default_rng(seed)
    tensors = {"idn.conv.weight": torch.randn(4, 3, 3, 3), "iin.fc.weight": torch.randint(-127, 127, (8, 4),
                                                                                         dtype=torch.int8)}
    path = tmp_path / "swap.safetensors"
    save_file(tensors, str(path))
    data = path.read_bytes()
    manifest_path = tmp_path / "manifest.json"
    manifest = json.dumps({"format": "mfs_fast.weights", "version": 1, "identity": "ir-se", "storage": "int8",
                           "files": {"swap.safetensors": {"sha256": "00" * 32, "bytes": len(data),
                                                          "tensors": {"idn.conv.weight": [4, 3, 3, 3]}}}},
                          indent=1).encode()

    def read_tensors(blob: bytes) -> None:
        path.write_bytes(blob)
        read_safetensors(path)

    def read_json(blob: bytes) -> None:
        manifest_path.write_bytes(blob)
        read_manifest(manifest_path)

    header_length = struct.unpack_from("<Q", data)[0]
    huge = data[:8] + data[8:8 + header_length].replace(b"[4,3,3,3]", b"[100000,100000,3,3]") + data[8 + header_length:]
    with tally("checkpoint safetensors + manifest.json", capsys) as t:
        t.run("safetensors as written", lambda: read_tensors(data))
        for label, mutant in mutants(data, rng, 150):
            t.run(f"safetensors {label}", lambda d=mutant: read_tensors(d))
        t.run("safetensors huge shape", lambda: read_tensors(huge))
        t.run("safetensors header length 2**60", lambda: read_tensors(struct.pack("<Q", 2**60) + data[8:]))
        t.run("manifest as written", lambda: read_json(manifest))
        for label, mutant in mutants(manifest, rng, 150):
            t.run(f"manifest {label}", lambda d=mutant: read_json(d))
        for text in ("[]", "null", '{"format": "mfs_fast.weights", "version": 1, "files": []}',
                     '{"format": "mfs_fast.weights", "version": 1, "files": {"a": 1}, "identity": []}',
                     "[" * 100000):
            t.run(f"manifest {text[:30]}", lambda d=text.encode(): read_json(d))


def test_fuzz_dlib_reader(seed, capsys):
    from mfs_fast.identity.dlib_format import parse_dlib_net
    from mfs_fast.identity.model_files import dlib_model_path

    data = dlib_model_path().read_bytes()
    rng = np.random.default_rng(seed)
    first_tensor = data.index(b"\x01\x02", data.index(b"con_4"))  # version 2, then n, k, nr, nc
    huge = bytearray(data)
    huge[first_tensor + 2:first_tensor + 4] = b"\x08\xff"  # n: an 8-byte integer 0xff... (runs on)
    with tally("checkpoint dlib .dat", capsys) as t:
        t.run("as shipped", lambda: parse_dlib_net(data))
        for label, mutant in mutants(data, rng, 120):
            t.run(label, lambda d=mutant: parse_dlib_net(d))
        t.run("huge tensor dimensions", lambda: parse_dlib_net(bytes(huge)))
