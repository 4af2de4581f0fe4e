"""The dlib face-recognition model (22.5 MB) in half the bytes, for a lent GPU machine.

Why: that machine takes 64 MiB a call, the repository (~35 MB) included, and has no
``face-recognition-models`` package. The pack keeps the file's bytes except the convolution and
fully connected weights, which it stores as float16; unpacking writes an ordinary ``.dat`` (the
same size, readable by :func:`mfs_fast.identity.dlib_format.read_dlib_net`) whose weights are
those values rounded to float16. Training on CUDA runs dlib under fp16 autocast, which rounds
these weights the same way before every convolution, so the loss sees the network it always saw
there; the affine layers (not cast by autocast) are kept exactly. Point ``MFS_FAST_DLIB_MODEL``
at the unpacked file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import PendingFile
from ..errors import MfsError
from ..identity.dlib_format import read_dlib_net

ROUNDED_LAYERS = ("con_4", "fc_2")  # their weights run in fp16 under autocast
PACK_FORMAT = "mfs_fast.dlib_pack"


def _array_spans(data: bytes, path: Path) -> list[tuple[int, int]]:
    """(byte offset, float count) of every conv / fc weight array in the file, in file order."""
    spans, at = [], 0
    for layer in read_dlib_net(path).layers:
        if layer.tag not in ROUNDED_LAYERS:
            continue
        for array in layer.arrays:
            raw = np.ascontiguousarray(array, "<f4").tobytes()
            start = data.find(raw[:256], at)
            if start < 0 or data[start:start + len(raw)] != raw:
                raise MfsError(f"{path}: a {layer.tag} array was not found where the reader read it")
            spans.append((start, array.size))
            at = start + len(raw)
    return spans


def pack_dlib_model(source: str | Path, destination: str | Path) -> Path:
    """Write ``destination`` (a zip: the file without its conv/fc arrays, and those as float16)."""
    source, destination = Path(source), Path(destination)
    data = source.read_bytes()
    spans = _array_spans(data, source)
    skeleton, values, at = [], [], 0
    for start, count in spans:
        skeleton.append(data[at:start])
        values.append(np.frombuffer(data, "<f4", count, start).astype("<f2"))
        at = start + 4 * count
    skeleton.append(data[at:])
    with PendingFile(destination) as pending:
        with zipfile.ZipFile(pending.path, "w", zipfile.ZIP_DEFLATED) as pack:
            pack.writestr("format", f"{PACK_FORMAT} 1 {source.name} {len(data)}")
            pack.writestr("skeleton.bin", b"".join(skeleton))
            pack.writestr("spans.npy", _npy(np.array(spans, np.int64).reshape(-1, 2)))
            pack.writestr("values.f16", np.concatenate(values).tobytes(), zipfile.ZIP_STORED)
        return pending.commit()


def unpack_dlib_model(pack_path: str | Path, destination: str | Path) -> Path:
    """Write the ``.dat`` a pack holds (weights rounded to float16) to ``destination``."""
    pack_path, destination = Path(pack_path), Path(destination)
    try:
        with zipfile.ZipFile(pack_path) as pack:
            kind, version, _, size = pack.read("format").decode().split()
            if kind != PACK_FORMAT or version != "1":
                raise MfsError(f"{pack_path} is not a {PACK_FORMAT} v1 file")
            skeleton = pack.read("skeleton.bin")
            spans = np.load(io.BytesIO(pack.read("spans.npy")), allow_pickle=False)
            values = np.frombuffer(pack.read("values.f16"), "<f2")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise MfsError(f"cannot read the dlib pack {pack_path} ({e})") from None
    out, at, used = bytearray(), 0, 0
    for start, count in spans.tolist():
        gap = start - len(out)  # the skeleton's bytes up to this array
        out += skeleton[at:at + gap]
        at += gap
        out += values[used:used + count].astype("<f4").tobytes()
        used += count
    out += skeleton[at:]
    if len(out) != int(size) or used != len(values):
        raise MfsError(f"{pack_path} is damaged: it rebuilds {len(out)} bytes, the file had {size}")
    with PendingFile(destination) as pending:
        pending.path.write_bytes(bytes(out))
        return pending.commit()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """``python -m mfs_fast.train.dlib_pack pack|unpack SRC DST`` (scripts/gpu-train.sh)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mfs_fast.train.dlib_pack")
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source")
    parser.add_argument("destination")
    args = parser.parse_args(argv)
    try:
        run = pack_dlib_model if args.action == "pack" else unpack_dlib_model
        print(f"wrote {run(args.source, args.destination)}")
    except MfsError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
