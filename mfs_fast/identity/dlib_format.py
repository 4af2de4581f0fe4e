"""Reader for dlib's serialized DNN files (``dlib_face_recognition_resnet_model_v1.dat``).

We read the file ourselves so that no dlib is needed at run time. dlib's format, as it is
laid out in this file:

- an integer is a control byte (bit 7 = negative, low 4 bits = byte count) followed by that
  many little-endian bytes; a float is two integers, mantissa and base-2 exponent;
- a string is an integer length and the bytes; a ``bool`` is the character ``'0'``/``'1'``;
- a tensor is version 2, then n, k, nr, nc, then n*k*nr*nc raw little-endian float32;
- the network nests outermost first: a header of version integers (one per layer, the loss
  layer first), then the input layer's fields, then every computational layer *input to
  output*: its tag string and fields, then three bools and three (empty) work tensors.

Only the layer kinds this network uses are understood; anything else is a clear error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

# the 3 bools and 3 empty work tensors that close every computational layer's record
_LAYER_TRAILER = re.compile(rb"[01]{3}(?:\x01\x02\x01\x00\x01\x00\x01\x00\x01\x00){3}")


@dataclass
class DlibLayer:
    """One computational layer: its tag (``con_4``, ``affine_``, ...), integers and arrays."""

    tag: str
    ints: list[int] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)


@dataclass
class DlibNetFile:
    """A parsed network: input normalisation, size and the layers from input to output."""

    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    loss_tag: str
    layers: list[DlibLayer]

    def count(self, tag: str) -> int:
        return sum(layer.tag == tag for layer in self.layers)

    @property
    def num_parameters(self) -> int:
        return sum(a.size for layer in self.layers for a in layer.arrays)


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.name}: {what} at byte {self.pos}: not a dlib DNN file of the expected kind")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int(self) -> int:
        control = self.byte()
        count = control & 0x0F
        if count > 8:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        raw = self.data[self.pos:self.pos + count]
        if len(raw) != count:
            raise self.fail("unexpected end of file")
        self.pos += count
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if not -1100 <= exponent <= 1100:
            raise self.fail(f"float exponent {exponent} out of range")
        return math.ldexp(float(mantissa), exponent) if abs(mantissa) < 2**64 else math.inf

    def string(self) -> str:
        length = self.int()
        if not 0 <= length <= 64:
            raise self.fail(f"bad string length {length}")
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        return raw.decode("ascii", errors="replace")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"tensor version {version} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        size = math.prod(shape)
        end = self.pos + 4 * size
        if min(shape) < 0 or end > len(self.data):
            raise self.fail(f"tensor of shape {shape} runs past the end of the file")
        values = np.frombuffer(self.data, dtype="<f4", count=size, offset=self.pos).astype(np.float32)
        self.pos = end
        return values.reshape(shape)

    def skip_layer_trailer(self) -> None:
        """Skip to just after this layer's bools and work tensors (fields we do not use)."""
        match = _LAYER_TRAILER.search(self.data, self.pos)
        if match is None:
            raise self.fail("no layer trailer found")
        self.pos = match.end()


def _read_layer(reader: _Reader) -> DlibLayer:
    tag = reader.string()
    layer = DlibLayer(tag)
    if tag == "con_4":
        # params (filters then biases), num_filters, nr, nc, stride y/x, padding y/x
        layer.arrays.append(reader.tensor().reshape(-1))
        layer.ints = [reader.int() for _ in range(7)]
    elif tag == "affine_":
        layer.arrays.append(reader.tensor().reshape(-1))  # gamma then beta
    elif tag in ("max_pool_2", "avg_pool_2"):
        layer.ints = [reader.int() for _ in range(6)]  # nr, nc, stride y/x, padding y/x
    elif tag == "fc_2":
        layer.ints = [reader.int() for _ in range(2)]  # num_outputs, num_inputs
        layer.arrays.append(reader.tensor())
    elif tag not in ("relu_", "add_prev_"):
        raise reader.fail(f"unsupported layer {tag!r}")
    reader.skip_layer_trailer()
    return layer


def read_dlib_net(path: str | Path) -> DlibNetFile:
    """Parse a dlib ``loss_metric`` network file (the face-recognition ResNet) into arrays."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read dlib model file {path}: {exc.strerror or exc}") from exc
    return parse_dlib_net(data, str(path))


def parse_dlib_net(data: bytes, name: str = "<bytes>") -> DlibNetFile:
    """:func:`read_dlib_net` of a file's contents (``name`` only names it in messages)."""
    reader = _Reader(data, name)
    if reader.int() != 1:
        raise reader.fail("loss layer version")
    loss_tag = reader.string()
    if not loss_tag.startswith("loss_metric"):
        raise reader.fail(f"loss layer {loss_tag!r} (expected loss_metric)")
    start = data.find(b"\x15input_rgb_image_sized", reader.pos)
    if start < 0:
        raise reader.fail("no input_rgb_image_sized layer")
    reader.pos = start - 1
    reader.string()
    mean = (reader.float(), reader.float(), reader.float())
    size = (reader.int(), reader.int())
    layers = [_read_layer(reader)]
    # the layer right above the input also records the input's sample expansion factor (1)
    if reader.int() != 1:
        raise reader.fail("sample expansion factor")
    while layers[-1].tag != "fc_2":
        layers.append(_read_layer(reader))
    return DlibNetFile(mean, size, loss_tag, layers)
