"""Run a small float .tflite graph as a PyTorch module, without TensorFlow.

The flatbuffer is parsed once with the `tflite` package; every operator becomes one entry
in a flat list of torch calls. Why it is laid out the way it is:

* fp16 weights behind DEQUANTIZE are folded into fp32 constants at load time;
* activations stay in PyTorch's channels_last layout (NHWC in memory, NCHW indices), the
  layout oneDNN's depthwise and pointwise kernels are fast at on CPU;
* a residual ADD and a RELU that follow a convolution are fused into it (one op, in-place
  add and activation); depthwise and 3x3 convolutions run through oneDNN with the
  activation as a post-op and weights reordered once at load time, 1x1 convolutions
  through F.conv2d. Where oneDNN is missing, every convolution takes the F.conv2d path.

Only the operators MediaPipe's face detection and face mesh models use are implemented;
anything else fails at load time with an error that names the operator.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MfsError

__all__ = ["TFLiteGraph", "TFLiteGraphError", "load_tflite_graph"]


class TFLiteGraphError(MfsError):
    """A .tflite file is unreadable or uses something this executor does not implement."""


# TFLite's TensorType enum -> numpy dtype (only the types these models can hold).
_NUMPY_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64}
_SAME, _VALID = 0, 1  # tflite.Padding


@dataclass(frozen=True)
class _Activation:
    """A TFLite fused activation: its oneDNN post-op name/scalars and the plain torch function."""

    onednn: str
    scalars: tuple[float, ...]
    torch_fn: Callable[[torch.Tensor], torch.Tensor] | None


_ACTIVATIONS = {  # tflite.ActivationFunctionType; the torch functions work in place (on fresh tensors)
    0: _Activation("none", (), None),
    1: _Activation("relu", (), torch.relu_),
    2: _Activation("hardtanh", (-1.0, 1.0), lambda x: x.clamp_(-1.0, 1.0)),  # RELU_N1_TO_1
    3: _Activation("hardtanh", (0.0, 6.0), lambda x: x.clamp_(0.0, 6.0)),  # RELU6
    4: _Activation("tanh", (), torch.tanh_),
}
_RELU = 1


def _activation(code: int) -> _Activation:
    if code not in _ACTIVATIONS:
        raise TFLiteGraphError(f"fused activation type {code} is not implemented")
    return _ACTIVATIONS[code]


def _onednn_conv():
    """oneDNN convolution with fused post-ops (what torch.compile uses on CPU), or None
    where this torch build lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding: total = needed overhang, the odd pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_padding(padding: int, shape_nhwc: Sequence[int], kernel: tuple[int, int],
                     stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom), the order F.pad wants for the last two NCHW axes."""
    if padding == _VALID:
        return 0, 0, 0, 0
    if padding != _SAME:
        raise TFLiteGraphError(f"unknown padding type {padding}")
    top, bottom = _same_padding(int(shape_nhwc[1]), kernel[0], stride[0], dilation[0])
    left, right = _same_padding(int(shape_nhwc[2]), kernel[1], stride[1], dilation[1])
    return left, right, top, bottom


class _Op(nn.Module):
    """One graph node: reads values by tensor index, writes one output tensor index."""

    inputs: tuple[int, ...]
    output: int


class _Conv(_Op):
    """CONV_2D / DEPTHWISE_CONV_2D, optionally followed by a fused residual ADD and activation.

    Computes act(conv(x) + bias [+ residual]). TFLite's asymmetric SAME padding (stride 2 on
    even sizes pads only bottom/right) is folded into depthwise kernels or done by F.pad;
    symmetric padding goes into the convolution itself.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride, dilation,
                 pads: tuple[int, int, int, int], groups: int, activation: int, input_shape_nchw):
        super().__init__()
        self.stride, self.dilation, self.groups = list(stride), list(dilation), groups
        left, right, top, bottom = pads
        if groups > 1 and dilation == (1, 1) and (left, top) != (right, bottom):
            # Depthwise: pad symmetrically by the larger amount and give the kernel leading
            # zero rows/columns instead, which is exact and cheaper than an F.pad copy.
            weight = F.pad(weight, (right - left, 0, bottom - top, 0))
            left, top = right, bottom
        symmetric = left == right and top == bottom
        self.padding = [top, left] if symmetric else [0, 0]
        self.pre_pad = None if symmetric else (left, right, top, bottom)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.activation = activation
        self.add_residual = False
        self.input_shape = list(input_shape_nchw)
        # 1x1 convolutions are plain GEMMs that F.conv2d runs with far less per-call overhead
        # than oneDNN's fused op (20-40 us against 75-100 us with a fused residual on 3x3 to
        # 12x12 maps, ~1 ms per face-mesh pass); depthwise/3x3 kernels are faster in oneDNN.
        pointwise = groups == 1 and tuple(weight.shape[2:]) == (1, 1)
        self._onednn = None if pointwise else _onednn_conv()
        self._packed = None

    def prepare(self) -> None:
        """After fusion: reorder the weight once into oneDNN's blocked layout and check the
        call runs; keep the plain path for 1x1 and residual convolutions and on any failure
        (an old or unusual torch build)."""
        if self._onednn is None or self.add_residual:
            self._onednn = None
            return
        n, c, h, w = self.input_shape
        if self.pre_pad is not None:
            left, right, top, bottom = self.pre_pad
            h, w = h + top + bottom, w + left + right
        try:
            self._packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, [n, c, h, w])
            self.forward(torch.zeros(self.input_shape).contiguous(memory_format=torch.channels_last))
        except (RuntimeError, AttributeError):
            self._onednn, self._packed = None, None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        act = _ACTIVATIONS[self.activation]
        if self._packed is not None:
            return self._onednn(x, self._packed, self.bias, self.padding, self.stride, self.dilation, self.groups,
                                act.onednn, list(act.scalars), "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y.add_(residual)
        return y if act.torch_fn is None else act.torch_fn(y)


class _Add(_Op):
    def __init__(self, activation: int):
        super().__init__()
        self.activation = activation

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fn = _ACTIVATIONS[self.activation].torch_fn
        return a + b if fn is None else fn(a + b)


class _Relu(_Op):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


class _PRelu(_Op):
    """y = x if x >= 0 else alpha * x, one alpha per channel."""

    def __init__(self, alpha: torch.Tensor):
        super().__init__()
        self.register_buffer("alpha", alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.alpha)


class _Pad(_Op):
    """Zero padding; TFLite lists (before, after) per NHWC axis, F.pad wants NCHW, last axis first."""

    def __init__(self, pads_nhwc: np.ndarray):
        super().__init__()
        (n0, n1), (h0, h1), (w0, w1), (c0, c1) = (tuple(int(v) for v in row) for row in pads_nhwc)
        self.pads = (w0, w1, h0, h1, c0, c1, n0, n1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class _MaxPool(_Op):
    def __init__(self, kernel, stride, pads, activation: int):
        super().__init__()
        self.kernel, self.stride, self.pads, self.activation = tuple(kernel), tuple(stride), pads, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=float("-inf"))  # padded cells never win the max
        y = F.max_pool2d(x, self.kernel, self.stride)
        fn = _ACTIVATIONS[self.activation].torch_fn
        return y if fn is None else fn(y)


class _ResizeBilinear(_Op):
    """TFLite half_pixel_centers == PyTorch align_corners=False (both clamp the source index at 0)."""

    def __init__(self, size: tuple[int, int], align_corners: bool):
        super().__init__()
        self.size, self.align_corners = size, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=self.align_corners)


class _Reshape(_Op):
    """RESHAPE has NHWC semantics: 4-D values are viewed as NHWC before and after."""

    def __init__(self, shape: Sequence[int], input_rank: int):
        super().__init__()
        self.shape, self.input_rank = tuple(int(s) for s in shape), input_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_rank == 4:
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(self.shape)
        return y.permute(0, 3, 1, 2) if len(self.shape) == 4 else y


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constant value as stored (NHWC / OHWI), None for activations


class TFLiteGraph(nn.Module):
    """The first subgraph of a .tflite model as a torch module.

    forward(x) takes the input as an NCHW float32 tensor (any memory format) and returns
    the outputs in the model's output order with TFLite's own shapes (4-D outputs NHWC),
    so results compare 1:1 with the TFLite interpreter.
    """

    def __init__(self, ops: list[_Op], input_index: int, input_shape: tuple[int, ...],
                 outputs: list[tuple[int, str, int]]):
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self._plan = [(op, op.inputs, op.output) for op in ops]
        self.input_index = input_index
        self.input_shape_nhwc = input_shape
        self._outputs = outputs  # (tensor index, name, rank)
        self.output_names = [name for _, name, _ in outputs]
        self._n_values = 1 + max([input_index] + [op.output for op in ops] + [i for op in ops for i in op.inputs])

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model expects."""
        return int(self.input_shape_nhwc[1]), int(self.input_shape_nhwc[2])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: list[torch.Tensor | None] = [None] * self._n_values
        values[self.input_index] = x.contiguous(memory_format=torch.channels_last)
        for op, inputs, output in self._plan:
            values[output] = op(*[values[i] for i in inputs])
        return tuple(values[index].permute(0, 2, 3, 1) if rank == 4 else values[index]
                     for index, _, rank in self._outputs)


def _read_tensors(model, graph) -> list[_Tensor]:
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        data = None
        buffer = model.Buffers(t.Buffer())
        if buffer is not None and buffer.DataLength() > 0:
            if t.Type() not in _NUMPY_TYPES:
                raise TFLiteGraphError(f"tensor {t.Name().decode()!r} has unsupported type {t.Type()}")
            data = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=_NUMPY_TYPES[t.Type()]).reshape(shape)
        tensors.append(_Tensor(t.Name().decode(), shape, data))
    return tensors


def _options(tflite, op, option_class_names: dict[int, str]):
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = getattr(tflite, option_class_names[op.BuiltinOptionsType()])()
    options.Init(table.Bytes, table.Pos)
    return options


def _const(tensors: list[_Tensor], index: int, what: str) -> np.ndarray:
    data = tensors[index].data
    if data is None:
        raise TFLiteGraphError(f"{what}: expected a constant, got activation {tensors[index].name!r}")
    return data


def _build_op(name: str, options, ins: list[int], tensors: list[_Tensor]) -> _Op:
    """One _Op for a TFLite builtin, with weights converted to OIHW float32."""
    def f32(index: int) -> torch.Tensor:
        return torch.from_numpy(_const(tensors, index, name).astype(np.float32))

    in_shape = tensors[ins[0]].shape
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        weight = f32(ins[1])  # CONV: (O, H, W, I); DEPTHWISE: (1, H, W, C * multiplier)
        bias = f32(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        stride = (options.StrideH(), options.StrideW())
        dilation = (options.DilationHFactor(), options.DilationWFactor())
        kernel = (int(weight.shape[1]), int(weight.shape[2]))
        pads = _spatial_padding(options.Padding(), in_shape, kernel, stride, dilation)
        if name == "CONV_2D":
            if in_shape[3] != weight.shape[3]:
                raise TFLiteGraphError(f"grouped CONV_2D ({in_shape[3]} input channels, kernel {weight.shape[3]})")
            weight, groups = weight.permute(0, 3, 1, 2).contiguous(), 1
        else:  # output channel o reads input channel o // multiplier, as in a grouped conv
            weight, groups = weight.permute(3, 0, 1, 2).contiguous(), int(in_shape[3])
        _activation(options.FusedActivationFunction())
        n, h, w, c = in_shape
        return _Conv(weight, bias, stride, dilation, pads, groups, options.FusedActivationFunction(), (n, c, h, w))
    if name == "ADD":
        if any(tensors[i].data is not None for i in ins) or tensors[ins[0]].shape != tensors[ins[1]].shape:
            raise TFLiteGraphError("ADD with a constant or broadcast operand is not implemented")
        _activation(options.FusedActivationFunction())
        return _Add(options.FusedActivationFunction())
    if name == "RELU":
        return _Relu()
    if name == "PRELU":
        alpha = f32(ins[1]).reshape(-1, in_shape[-1])
        if not torch.equal(alpha, alpha[:1].expand_as(alpha)):
            raise TFLiteGraphError("PRELU with a spatially varying alpha is not implemented")
        return _PRelu(alpha[0].contiguous())
    if name == "PAD":
        pads = _const(tensors, ins[1], name)
        if pads.shape != (4, 2):
            raise TFLiteGraphError(f"PAD of a rank-{pads.shape[0]} tensor is not implemented")
        return _Pad(pads)
    if name == "MAX_POOL_2D":
        kernel = (options.FilterHeight(), options.FilterWidth())
        stride = (options.StrideH(), options.StrideW())
        _activation(options.FusedActivationFunction())
        pads = _spatial_padding(options.Padding(), in_shape, kernel, stride, (1, 1))
        return _MaxPool(kernel, stride, pads, options.FusedActivationFunction())
    if name == "RESIZE_BILINEAR":
        size = tuple(int(s) for s in _const(tensors, ins[1], name))
        align, half = bool(options.AlignCorners()), bool(options.HalfPixelCenters())
        if align == half:  # legacy mode (neither flag) has no PyTorch equivalent; both is invalid
            raise TFLiteGraphError(
                f"RESIZE_BILINEAR with align_corners={align}, half_pixel_centers={half} is not implemented")
        return _ResizeBilinear(size, align_corners=align)
    if name == "RESHAPE":
        shape = _const(tensors, ins[1], name) if len(ins) > 1 else options.NewShapeAsNumpy()
        return _Reshape([int(s) for s in shape], len(in_shape))
    raise TFLiteGraphError(f"TFLite operator {name} is not implemented")


def _fuse(ops: list[_Op], graph_outputs: set[int]) -> list[_Op]:
    """Fold ADD into the conv feeding it, then RELU into the conv/add feeding it.

    Only where nothing else reads the intermediate value and the producer has no
    activation of its own, so the arithmetic is unchanged: act(conv + bias + residual).
    """
    def single_use(index: int, readers: Counter) -> bool:
        return readers[index] == 1 and index not in graph_outputs

    readers = Counter(i for op in ops for i in op.inputs)
    producer = {op.output: op for op in ops}
    fused: list[_Op] = []
    for op in ops:
        if isinstance(op, _Add) and op.activation == 0:
            for mine, other in ((0, 1), (1, 0)):
                conv = producer.get(op.inputs[mine])
                if (isinstance(conv, _Conv) and not conv.add_residual and conv.activation == 0
                        and single_use(op.inputs[mine], readers)):
                    conv.add_residual, conv.inputs, conv.output = True, (conv.inputs[0], op.inputs[other]), op.output
                    producer[op.output] = conv
                    fused.remove(conv)  # run it where the ADD ran: the residual may be computed later
                    fused.append(conv)
                    break
            else:
                fused.append(op)
            continue
        fused.append(op)

    readers = Counter(i for op in fused for i in op.inputs)
    result: list[_Op] = []
    for op in fused:
        source = producer.get(op.inputs[0]) if isinstance(op, _Relu) else None
        if isinstance(source, (_Conv, _Add)) and source.activation == 0 and single_use(op.inputs[0], readers):
            source.activation, source.output = _RELU, op.output
            producer[op.output] = source
            continue
        result.append(op)
    return result


def load_tflite_graph(path: str | Path, prepacked: bool = True) -> TFLiteGraph:
    """Parse `path` and build its graph (eval mode, no gradients to its weights). ``prepacked``:
    3x3 and depthwise weights reordered for oneDNN's fused inference op (fastest); False keeps
    every convolution on F.conv2d, whose gradient reaches the input (a loss through the model)."""
    try:
        import tflite  # flatbuffer bindings only; TensorFlow is never imported
    except ImportError as exc:  # pragma: no cover - a hard requirement of this module
        raise TFLiteGraphError("the 'tflite' package (TFLite flatbuffer parser) is not installed") from exc
    path = Path(path)
    try:
        data = path.read_bytes()
        if not tflite.Model.ModelBufferHasIdentifier(data, 0):
            raise TFLiteGraphError(f"{path} is not a TFLite model (no 'TFL3' identifier)")
        model = tflite.Model.GetRootAsModel(data, 0)
        graph = model.Subgraphs(0)
        tensors = _read_tensors(model, graph)
    except (OSError, ValueError, IndexError, TypeError, struct.error) as exc:
        raise TFLiteGraphError(f"cannot read TFLite model {path}: {exc}") from exc
    if graph.InputsLength() != 1:
        raise TFLiteGraphError(f"{path.name}: only single-input graphs are supported")
    op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    option_names = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}

    ops: list[_Op] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        if name == "CUSTOM" and code.CustomCode():
            name = f"CUSTOM ({code.CustomCode().decode()})"
        ins, outs = [int(j) for j in op.InputsAsNumpy()], [int(j) for j in op.OutputsAsNumpy()]
        if name == "DEQUANTIZE":  # fp16 constant -> fp32 constant, resolved now
            source = tensors[ins[0]]
            if source.data is None or source.data.dtype != np.float16:
                raise TFLiteGraphError(f"{path.name}: DEQUANTIZE of a non-constant or non-fp16 tensor {source.name!r}")
            tensors[outs[0]].data = source.data.astype(np.float32)
            continue
        if len(outs) != 1:
            raise TFLiteGraphError(f"{path.name}: operator {name} with {len(outs)} outputs is not implemented")
        try:
            node = _build_op(name, _options(tflite, op, option_names), ins, tensors)
        except TFLiteGraphError as exc:
            raise TFLiteGraphError(f"{path.name}, operator #{i}: {exc}") from None
        node.inputs = tuple(ins[:2] if name == "ADD" else ins[:1])
        node.output = outs[0]
        ops.append(node)

    input_index = int(graph.Inputs(0))
    outputs = [(int(graph.Outputs(k)), tensors[graph.Outputs(k)].name, len(tensors[graph.Outputs(k)].shape))
               for k in range(graph.OutputsLength())]
    ops = _fuse(ops, {index for index, _, _ in outputs})
    module = TFLiteGraph(ops, input_index, tensors[input_index].shape, outputs).eval().requires_grad_(False)
    if not prepacked:
        return module
    with torch.inference_mode():
        for op in ops:
            if isinstance(op, _Conv):
                op.prepare()
    return module
