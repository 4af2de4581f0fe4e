"""I420 on the ffmpeg pipes (mfs_fast.media.yuv, kernels/yuv.hpp): the C++ conversions are within
half a level (and the fixed point's thousandths) of the exact matrices (float64 here) on fresh random frames, every kernel set gives the
same bytes, the reader and writer use them only for the streams they cover (and agree with
ffmpeg's own conversions there), and everything else keeps ffmpeg's conversion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sample_media import ffmpeg

from mfs_fast import native
from mfs_fast.media import VideoWriter, probe_video, read_frames
from mfs_fast.media import mkv_stream, yuv

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="the C++ extension is not built")
ISAS = ["scalar"] + [isa for isa in ("avx2", "avx512") if native.AVAILABLE and isa in native.require_native().isas()]
FIXED_POINT = 0.01  # coefficients with 16 fractional bits: a few thousandths of a level
WEIGHTS = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def exact_bgr(planes: np.ndarray, height: int, width: int, matrix: str) -> np.ndarray:
    """Limited-range YCbCr -> BGR in float64, each 2 x 2 block's chroma used as is."""
    kr, kb = WEIGHTS[matrix]
    kg = 1 - kr - kb
    ch, cw = (height + 1) // 2, (width + 1) // 2
    y = planes[:height * width].reshape(height, width).astype(np.float64)
    u = planes[height * width:height * width + ch * cw].reshape(ch, cw).astype(np.float64)
    v = planes[height * width + ch * cw:].reshape(ch, cw).astype(np.float64)
    u = u.repeat(2, 0).repeat(2, 1)[:height, :width] - 128
    v = v.repeat(2, 0).repeat(2, 1)[:height, :width] - 128
    e = (y - 16) * 255 / 219
    r = e + 2 * (1 - kr) * v * 255 / 224
    b = e + 2 * (1 - kb) * u * 255 / 224
    g = (e - kr * r - kb * b) / kg
    return np.clip(np.stack([b, g, r], -1), 0, 255)


def exact_i420(frame: np.ndarray) -> np.ndarray:
    """BGR -> limited-range BT.709 I420 in float64, chroma from each 2 x 2 block's mean."""
    kr, kb = WEIGHTS["bt709"]
    kg = 1 - kr - kb
    b, g, r = (frame[..., i].astype(np.float64) for i in range(3))
    luma = 16 + 219 / 255 * (kr * r + kg * g + kb * b)
    mean = lambda a: (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4
    mb, mg, mr = mean(b), mean(g), mean(r)
    e = kr * mr + kg * mg + kb * mb
    cb = 128 + 224 / 255 * (mb - e) / (2 * (1 - kb))
    cr = 128 + 224 / 255 * (mr - e) / (2 * (1 - kr))
    return np.clip(np.concatenate([luma.ravel(), cb.ravel(), cr.ravel()]), 0, 255)


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("height, width", [(720, 1280), (37, 53), (2, 17)])
def test_i420_to_bgr_is_within_half_a_level_and_the_same_on_every_kernel_set(matrix, height, width):
    planes = np.random.default_rng().integers(0, 256, yuv.i420_size(height, width), np.uint8)
    nat = native.require_native()
    results = [nat.i420_to_bgr(planes, height, width, matrix, isa=isa) for isa in ISAS]
    assert results[0].shape == (height, width, 3) and results[0].dtype == np.uint8
    assert np.abs(results[0] - exact_bgr(planes, height, width, matrix)).max() <= 0.5 + FIXED_POINT
    for isa, result in zip(ISAS[1:], results[1:]):
        assert np.array_equal(result, results[0]), isa


@pytest.mark.parametrize("height, width", [(720, 1280), (6, 34), (2, 2)])
def test_bgr_to_i420_is_within_half_a_level_and_the_same_on_every_kernel_set(height, width):
    frame = np.random.default_rng().integers(0, 256, (height, width, 3), np.uint8)
    nat = native.require_native()
    results = [nat.bgr_to_i420(frame, "bt709", isa=isa) for isa in ISAS]
    assert results[0].shape == (yuv.i420_size(height, width),)
    assert np.abs(results[0] - exact_i420(frame)).max() <= 0.5 + FIXED_POINT
    for isa, result in zip(ISAS[1:], results[1:]):
        assert np.array_equal(result, results[0]), isa


def test_conversions_write_into_out_and_refuse_bad_arguments():
    nat = native.require_native()
    frame = np.random.default_rng().integers(0, 256, (4, 6, 3), np.uint8)
    out = np.empty(yuv.i420_size(4, 6), np.uint8)
    assert nat.bgr_to_i420(frame, out=out) is out
    back = np.empty((4, 6, 3), np.uint8)
    assert nat.i420_to_bgr(out, 4, 6, out=back) is back
    with pytest.raises(ValueError, match="even width and height"):
        nat.bgr_to_i420(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="matrix"):
        nat.bgr_to_i420(frame, "bt2020")
    with pytest.raises(ValueError, match="planes must hold 36 bytes"):
        nat.i420_to_bgr(out[:-1], 4, 6)
    with pytest.raises(ValueError, match="out must have shape"):
        nat.i420_to_bgr(out, 4, 6, out=np.empty((4, 7, 3), np.uint8))


def test_which_streams_take_the_i420_path():
    assert yuv.i420_decoding("yuv420p", "bt709", "tv") == yuv.I420Decoding("bt709")
    assert yuv.i420_decoding("yuv420p", "unknown", "unknown") == yuv.I420Decoding("bt601")
    assert yuv.i420_decoding("yuv420p", "smpte170m", "tv") == yuv.I420Decoding("bt601")
    for other in [("yuvj420p", "bt709", "pc"), ("yuv420p", "bt709", "pc"), ("yuv444p", "bt709", "tv"),
                  ("yuv420p10le", "bt709", "tv"), ("yuv420p", "bt2020nc", "tv")]:
        assert yuv.i420_decoding(*other) is None, other
    assert yuv.i420_encoding(1280, 720) and not yuv.i420_encoding(1281, 720)


def make_clip(path: Path, colour: list[str], pix_fmt: str = "yuv420p", size: str = "320x240") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", 12, *colour,
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", pix_fmt, path)
    return path


def ffmpeg_bgr(path: Path, info) -> np.ndarray:
    """The frames as ffmpeg itself converts them to BGR."""
    import subprocess

    from mfs_fast.media import ffmpeg_exe
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-pix_fmt", "bgr24", "-f", "rawvideo", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)


@pytest.mark.parametrize("colour, matrix", [(["-colorspace", "bt709", "-color_range", "tv"], "bt709"), ([], "bt601")])
def test_reader_decodes_i420_streams_as_ffmpeg_does_within_its_rounding(tmp_path, colour, matrix):
    clip = make_clip(tmp_path / "clip.mp4", colour)
    info = probe_video(clip)
    assert yuv.i420_decoding(info.pixel_format, info.colour_space, info.colour_range) == yuv.I420Decoding(matrix)
    ours = np.stack(list(read_frames(clip))).astype(int)
    theirs = ffmpeg_bgr(clip, info)
    assert ours.shape == theirs.shape
    diff = np.abs(ours - theirs)
    # ffmpeg's fast path rounds coarser than the exact matrix (max 3 here; its SIMD differs by CPU),
    # the wrong matrix is more than 8 levels off (below)
    assert diff.max() <= 5 and diff.mean() < 1.0
    # the other matrix would be far off: the stream's own matrix is the one used
    other = "bt601" if matrix == "bt709" else "bt709"
    planes = tmp_path / "planes.yuv"
    ffmpeg("-i", clip, "-frames:v", 1, "-pix_fmt", "yuv420p", "-f", "rawvideo", planes)
    wrong = native.require_native().i420_to_bgr(np.fromfile(planes, np.uint8), info.height, info.width, other)
    assert np.abs(wrong.astype(int) - theirs[0]).max() > 8


def test_reader_keeps_ffmpegs_conversion_for_other_pixel_formats(tmp_path):
    clip = make_clip(tmp_path / "clip444.mp4", ["-colorspace", "bt709"], pix_fmt="yuv444p")
    info = probe_video(clip)
    assert info.pixel_format == "yuv444p"
    assert np.array_equal(np.stack(list(read_frames(clip))), ffmpeg_bgr(clip, info))


def test_writer_sends_i420_and_encodes_what_ffmpegs_conversion_encodes(tmp_path, monkeypatch):
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(3)]
    frames = [np.repeat(np.repeat(f[::4, ::4], 4, 0), 4, 1) for f in frames]  # blocks x264 keeps well at CRF 0

    def encode(dst: Path) -> tuple[np.ndarray, bytes]:
        sent = []
        original = mkv_stream.stream_header
        monkeypatch.setattr(mkv_stream, "stream_header", lambda *a, **k: sent.append(original(*a, **k)) or sent[-1])
        with VideoWriter(dst, 64, 48, 25, quality=0) as writer:
            for frame in frames:
                writer.write(frame)
        monkeypatch.setattr(mkv_stream, "stream_header", original)
        return np.stack(list(read_frames(dst))), sent[0]

    ours, header = encode(tmp_path / "i420.mp4")
    assert mkv_stream.I420 in header
    monkeypatch.setattr(yuv, "i420_encoding", lambda width, height: False)
    from mfs_fast.media import writer
    monkeypatch.setattr(writer, "i420_encoding", lambda width, height: False)
    theirs, header = encode(tmp_path / "bgr.mp4")
    assert mkv_stream.BGR24 in header
    diff = np.abs(ours.astype(int) - theirs)
    assert diff.max() <= 3 and diff.mean() < 0.1  # one chroma level is up to ~2.1 levels of blue or red
    assert probe_video(tmp_path / "i420.mp4").colour_space == "bt709"
