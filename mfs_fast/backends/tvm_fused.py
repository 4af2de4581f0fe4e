"""``tvm-fused``: the TVM IDN graph with its decoder stages on mfs_fast's fused C++ blocks.

The decoder is ~60% of the IDN's MACs and the part MetaSchedule schedules worst (separate
upsample, depthwise and pointwise kernels, each a round trip through memory). Here each
decoder stage, ``upsample (+ concat) -> depthwise 3x3 -> pointwise 1x1 -> LeakyReLU``,
becomes one ``R.call_dps_packed("mfs.decoder_block", ...)`` that runs the fused block of
``mfs_fast._native`` (upsample folded into the depthwise conv, straight into the GEMM) on
zero-copy DLPack views of the VM's tensors. A stage whose output is concatenated with an
encoder skip by the next stage writes that concat itself, as the fused engine does. The
rest of the graph (encoder, mask head, output head) stays TVM-compiled and keeps its
records in the tuning log: its fused TIR functions, keyed by structural hash, are unchanged.

The packed functions live in this process's global registry, so a library built here is
only runnable where this module has registered them (``register_packed_functions``).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import native
from ..models import FaceSwapModels
from ._registry import register_backend
from .fused import default_threads
from .tvm_backend import TVMBackend, is_cpu_target
from .tvm_backend import _probe as _tvm_probe

DECODER_BLOCK = "mfs.decoder_block"
UPSAMPLE_PREFIX = "mfs_upsample2x_"  # tvm_kernels.upsample2x_kernel names its PrimFuncs so
LEAKY_SLOPE = 0.1  # the slope the native blocks apply

# Native settings the packed functions read (process-global, like the registry itself); the
# backend sets them before every run, so backends with other thread counts can coexist.
_settings = {"threads": 1, "isa": "auto"}


def configure(threads: int, isa: str = "auto") -> None:
    """Threads and kernel set the registered packed functions run with."""
    _settings["threads"], _settings["isa"] = int(threads), isa


def as_array(tensor) -> np.ndarray:
    """Zero-copy NumPy view of a CPU TVM tensor (DLPack); writes go to the tensor's memory."""
    return np.from_dlpack(tensor)


def decoder_block(*args) -> None:
    """``mfs.decoder_block(x, depthwise, pointwise[, skip], out)``, destination-passing style.

    ``out`` is ``[block(x), skip]`` along channels (just ``block(x)`` without a skip), where
    block = bilinear 2x (align_corners) -> depthwise 3x3 -> pointwise -> LeakyReLU(0.1).
    """
    x, depthwise, pointwise, *skip, out = (as_array(a) for a in args)
    native.require_native().upsample_block(
        x, depthwise, pointwise, skip=skip[0] if skip else None,
        threads=_settings["threads"], isa=_settings["isa"], out=out)  # straight into the VM's tensor


def register_packed_functions() -> None:
    """Put the fused blocks in TVM's global registry (idempotent); needed before a VM runs."""
    import tvm_ffi

    tvm_ffi.register_global_func(DECODER_BLOCK, decoder_block, override=True)


# ------------------------------------------------------------------------------------------
# The graph rewrite


@dataclass
class _Stage:
    """One matched decoder stage: ``out = leaky(conv1x1(conv_dw3x3(upsample(*parts))))``."""

    out: object  # the LeakyReLU's var (the stage output)
    parts: list  # the upsample kernel's inputs: [x] or [x, skip] (a fused concat)
    depthwise: object
    pointwise: object
    shape: tuple[int, ...]  # of ``out``
    dropped: list = field(default_factory=list)  # chain vars whose bindings go away
    skip: object = None  # the next stage concatenates ``out`` with this: write it here too
    widened_input: bool = False  # parts[0] is a stage whose output already holds the concat


def _shape(expr) -> tuple[int, ...] | None:
    from .tvm_kernels import _static_shape

    return _static_shape(expr)


def _conv(call, op, *, groups: int | None, kernel: int, padding: int) -> bool:
    """A plain NCHW/OIHW conv2d with stride 1, no dilation, the given kernel/padding/groups."""
    from tvm import relax

    if not (isinstance(call, relax.Call) and call.op == op):
        return False
    a = call.attrs
    w = _shape(call.args[1])
    return (str(a.data_layout) == "NCHW" and str(a.kernel_layout) == "OIHW" and str(a.out_layout) == "NCHW"
            and [int(s) for s in a.strides] == [1, 1] and [int(d) for d in a.dilation] == [1, 1]
            and [int(p) for p in a.padding] == [padding] * 4 and w is not None and w[2:] == (kernel, kernel)
            and (groups is None or int(a.groups) == groups) and str(call.ty.dtype) == "float32")


def find_decoder_stages(module) -> list[_Stage]:
    """The decoder stages of ``module["main"]``, in order, with how they chain.

    Matches by dataflow, not names: ``leaky_relu(0.1)`` of a 1x1 conv (groups 1, its only
    user) of a depthwise 3x3 conv (groups = channels, its only user) of a ``call_tir`` of an
    upsample kernel of tvm_kernels. That upsample may feed others too (the decoder and the
    mask head share the one of e5): it then stays, and the fused block upsamples again. The
    mask-head blocks (bias adds between the convs) do not match.
    """
    import tvm
    from tvm import relax

    conv_op, leaky_op = tvm.ir.Op.get("relax.nn.conv2d"), tvm.ir.Op.get("relax.nn.leakyrelu")
    call_tir_op = tvm.ir.Op.get("relax.call_tir")
    main = module["main"]
    users: Counter = Counter()
    value: dict = {}
    order: dict = {}

    @relax.expr_functor.visitor
    class _Survey(relax.PyExprVisitor):
        def visit_var_(self, var) -> None:
            users[var] += 1

        def visit_dataflow_var_(self, var) -> None:
            users[var] += 1

        def visit_var_binding_(self, binding) -> None:
            value[binding.var], order[binding.var] = binding.value, len(order)
            super().visit_var_binding_(binding)

    _Survey().visit_expr(main)

    def bound(expr, single_use: bool = True):
        """The value bound to var ``expr`` (None if not a var, or used elsewhere too)."""
        if not isinstance(expr, relax.Var) or expr not in value:
            return None
        return value[expr] if (users[expr] == 1 or not single_use) else None

    stages = []
    for var, leaky in value.items():
        if not (isinstance(leaky, relax.Call) and leaky.op == leaky_op
                and abs(float(leaky.attrs.alpha) - LEAKY_SLOPE) < 1e-6):
            continue
        pw_var = leaky.args[0]
        pw = bound(pw_var)
        if not _conv(pw, conv_op, groups=1, kernel=1, padding=0):
            continue
        dw_var = pw.args[0]
        dw = bound(dw_var)
        channels = (_shape(dw_var) or (0, 0))[1]
        if not _conv(dw, conv_op, groups=channels, kernel=3, padding=1) or _shape(dw.args[1])[:2] != (channels, 1):
            continue
        up_var = dw.args[0]
        up = bound(up_var, single_use=False)
        if not (isinstance(up, relax.Call) and up.op == call_tir_op
                and up.args[0].name_hint.startswith(UPSAMPLE_PREFIX)):
            continue
        parts = list(up.args[1].fields)
        src, dst = [_shape(p) for p in parts], _shape(up_var)
        if (dst is None or any(s is None or len(s) != 4 or s[0] != dst[0] or 2 * s[2] != dst[2] or 2 * s[3] != dst[3]
                               for s in src) or sum(s[1] for s in src) != channels):
            continue
        dropped = [dw_var, pw_var] + ([up_var] if users[up_var] == 1 else [])
        stages.append(_Stage(var, parts, dw.args[1], pw.args[1], _shape(var), dropped))

    # a stage whose only user is the next stage's fused concat+upsample writes that concat
    by_out = {s.out: s for s in stages}
    for stage in stages:
        if len(stage.parts) != 2:
            continue
        first, skip = stage.parts
        prev = by_out.get(first)
        upsample_dropped = len(stage.dropped) == 3
        skip_ready = not isinstance(skip, relax.Var) or skip not in order or order[skip] < order[first]
        if prev is not None and users[first] == 1 and upsample_dropped and skip_ready and prev.skip is None:
            prev.skip, stage.widened_input = skip, True
    return stages


def fuse_decoder_blocks(module):
    """``module`` with every decoder stage replaced by one ``mfs.decoder_block`` packed call."""
    from tvm import relax

    stages = find_decoder_stages(module)
    by_out = {s.out: s for s in stages}
    dropped = {v for s in stages for v in s.dropped}

    @relax.expr_functor.mutator
    class _Fuse(relax.PyExprMutator):
        def visit_var_binding_(self, binding) -> None:
            if binding.var in dropped:
                return  # part of a fused stage
            stage = by_out.get(binding.var)
            if stage is None:
                return super().visit_var_binding_(binding)
            parts = [self.visit_expr(p) for p in stage.parts]
            if stage.widened_input:
                x = parts[0]  # the previous stage wrote [output, skip]
            elif len(parts) == 2:
                x = self.builder_.emit(relax.op.concat(parts, axis=1), "decoder_concat")
            else:
                x = parts[0]
            args = [x, self.visit_expr(stage.depthwise), self.visit_expr(stage.pointwise)]
            n, m, h, w = stage.shape
            if stage.skip is not None:
                args.append(self.visit_expr(stage.skip))
                m += _shape(stage.skip)[1]
            call = relax.call_dps_packed(DECODER_BLOCK, relax.Tuple(args),
                                         out_ty=relax.TensorType([n, m, h, w], "float32"))
            call = self.builder_.normalize(call)
            # keep the var's kind: a block output (Var) stays visible outside the dataflow block
            kind = relax.DataflowVar if isinstance(binding.var, relax.DataflowVar) else relax.Var
            new_var = kind("decoder", call.ty)
            self.builder_.emit_normalized(relax.VarBinding(new_var, call))
            self.set_var_remap(binding.var, new_var)

    main = module["main"]
    fuser = _Fuse(module)
    new_main = fuser.visit_expr(main)
    module = fuser.builder_.get()
    module["main"] = new_main
    module = relax.transform.DeadCodeElimination(["main"])(module)
    # upsample kernels only the fused stages called: DCE keeps them (they have a global symbol)
    called = {gv.name_hint for gv in relax.analysis.all_global_vars(module["main"])}
    for gv in list(module.get_global_vars()):
        if gv.name_hint.startswith(UPSAMPLE_PREFIX) and gv.name_hint not in called:
            del module[gv]
    relax.analysis.well_formed(module)  # raises on the first violation
    return module


# ------------------------------------------------------------------------------------------
# The backend


def _probe() -> str | None:
    return _tvm_probe() or (None if native.AVAILABLE else native.IMPORT_ERROR)


@register_backend("tvm-fused", probe=_probe)
class TVMFusedBackend(TVMBackend):
    """The TVM IDN (CPU) whose decoder stages run on the fused C++ blocks; the rest is tuned TVM."""

    name = "tvm-fused"

    def __init__(self, models: FaceSwapModels, threads: int | None = None, target: dict | None = None,
                 isa: str = "auto") -> None:
        super().__init__(models, threads=threads, target=target)
        if not is_cpu_target(self.target):
            raise ValueError("tvm-fused runs on CPU targets only (the fused blocks are CPU code)")
        self.threads = int(threads or os.environ.get("TVM_NUM_THREADS") or default_threads())
        available = native.require_native().isas()
        self.isa = native.require_native().default_isa() if isa == "auto" else isa
        if self.isa not in available:
            raise ValueError(f"isa {isa!r} cannot run here (available: {', '.join(available)})")
        register_packed_functions()

    def import_module(self, shape: tuple[int, ...]):
        return fuse_decoder_blocks(super().import_module(shape))

    def _library_path(self, shape: tuple[int, ...]) -> Path:
        """The TVM key plus this graph's code: never the plain ``tvm`` library."""
        plain = super()._library_path(shape)
        digest = hashlib.sha256(plain.name.encode() + Path(__file__).read_bytes()).hexdigest()[:16]
        return plain.with_name(f"idn-fused-{digest}.so")

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        configure(self.threads, self.isa)
        return super().run(batch)
