"""``tvm-fused``: decoder stages of the TVM graph as packed calls into the fused C++ blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfs_fast.backends import available_backends, create_backend

pytestmark = pytest.mark.skipif("tvm-fused" not in available_backends(),
                                reason="needs apache-tvm and the C++ extension")

SHAPE = (1, 3, 224, 224)


def random_identity(models):
    return models.identity_weights(torch.randn(1, 3, 112, 112))


@pytest.fixture(scope="module")
def fused_graph(official_models):
    from mfs_fast.backends.tvm_fused import TVMFusedBackend

    return TVMFusedBackend(official_models, threads=1).import_module(SHAPE)


def _calls(module, op_name: str) -> list:
    import tvm
    from tvm import relax

    op, found = tvm.ir.Op.get(op_name), []

    @relax.expr_functor.visitor
    class _Find(relax.PyExprVisitor):
        def visit_call_(self, call) -> None:
            if call.op == op:
                found.append(call)
            super().visit_call_(call)

    _Find().visit_expr(module["main"])
    return found


def test_rewrite_turns_each_decoder_stage_into_one_packed_call(fused_graph):
    from mfs_fast.backends.tvm_fused import DECODER_BLOCK

    packed = _calls(fused_graph, "relax.call_dps_packed")
    assert [str(c.args[0].global_symbol) for c in packed] == [DECODER_BLOCK] * 4
    names = [[getattr(a, "name", None) for a in c.args[1].fields] for c in packed]
    assert [n[1:3] for n in names] == [[f"decoder_{i}_depthwise", f"decoder_{i}_pointwise"] for i in range(4)]
    # stages 0-2 write the concat with their encoder skip; each next stage reads that buffer
    assert [len(n) for n in names] == [4, 4, 4, 3]
    assert [tuple(int(d) for d in c.ty.shape) for c in packed] == [
        (1, 512, 14, 14), (1, 256, 28, 28), (1, 128, 56, 56), (1, 32, 112, 112)]
    # no decoder conv, concat or concat-reading upsample is left; the mask head's are untouched
    convs = _calls(fused_graph, "relax.nn.conv2d")
    assert not any("decoder" in str(getattr(c.args[1], "name", "")) for c in convs)
    assert len(convs) == 5 * 2 + (5 * 2 + 1) + 3  # encoder, mask head (5 dw+pw blocks, out conv), output head
    assert not _calls(fused_graph, "relax.concat")
    upsamples = [g.name_hint for g in fused_graph.get_global_vars() if g.name_hint.startswith("mfs_upsample2x")]
    assert len(upsamples) == 6 and all(k.count("_") == 2 for k in upsamples)  # 5 mask head + output head


def test_rest_of_the_graph_keeps_its_tuning_records(fused_graph):
    """Encoder, mask head and output head kernels are structurally the plain graph's: every
    one has a workload in the committed log, so tuning still applies to them."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from mfs_fast.backends.tvm_backend import host_target
    from mfs_fast.backends.tvm_tuning import is_hand_scheduled, log_dir, log_hash, lower_for_tuning

    target = host_target()
    if log_hash(target) is None:
        pytest.skip(f"no tuning log committed for this machine ({log_dir(target).name})")
    database = ms.database.JSONDatabase(work_dir=str(log_dir(target)))
    tvm_target = tvm.target.Target(target)
    tasks = ms.relax_integration.extract_tasks(lower_for_tuning(fused_graph, tvm_target), tvm_target)
    tuned = [t for t in tasks if not is_hand_scheduled(t)]
    assert tuned and not [t.task_name for t in tuned if not database.has_workload(t.dispatched[0])]


def test_packed_function_works_in_place_on_the_vm_tensors(monkeypatch):
    """The native block gets the TVM tensors' own memory, and its result lands in ``out``."""
    import tvm

    from mfs_fast.backends import tvm_fused
    from mfs_fast.native import require_native

    rng = np.random.default_rng()
    arrays = [rng.random(s, dtype=np.float32) for s in ((2, 8, 5, 5), (8, 1, 3, 3), (6, 8, 1, 1), (2, 4, 10, 10))]
    tensors = [tvm.runtime.tensor(a) for a in arrays] + [tvm.runtime.empty((2, 10, 10, 10), "float32")]
    view = tvm_fused.as_array(tensors[0])
    assert view.ctypes.data == tensors[0].data_ptr()
    seen = {}
    real = require_native()

    class Spy:
        def upsample_block(self, x, depthwise, pointwise, skip=None, **options):
            seen["pointers"] = [a.ctypes.data for a in (x, depthwise, pointwise, skip)]
            return real.upsample_block(x, depthwise, pointwise, skip=skip, **options)

    monkeypatch.setattr(tvm_fused.native, "require_native", lambda: Spy())
    tvm_fused.register_packed_functions()
    tvm.get_global_func(tvm_fused.DECODER_BLOCK)(*tensors)
    assert seen["pointers"] == [t.data_ptr() for t in tensors[:4]]
    expected = real.upsample_block(*arrays[:3], skip=arrays[3])
    assert np.array_equal(tensors[-1].numpy(), expected)
    dw = F.conv2d(F.interpolate(torch.from_numpy(arrays[0]), scale_factor=2, mode="bilinear", align_corners=True),
                  torch.from_numpy(arrays[1]), padding=1, groups=8)
    block = F.leaky_relu(F.conv2d(dw, torch.from_numpy(arrays[2])), 0.1)
    assert np.abs(expected - torch.cat([block, torch.from_numpy(arrays[3])], 1).numpy()).max() <= 1e-5


def test_stage_after_a_non_stage_gets_an_explicit_concat():
    """A concat whose first half is not a fused stage's output is materialised, then fused."""
    import tvm
    from tvm import relax

    from mfs_fast.backends.tvm_backend import host_target
    from mfs_fast.backends.tvm_fused import fuse_decoder_blocks, register_packed_functions
    from mfs_fast.backends.tvm_kernels import upsample2x_kernel

    ta, tb, tw, tp = (relax.TensorType(s, "float32") for s in ((1, 3, 4, 4), (1, 5, 4, 4), (8, 1, 3, 3), (6, 8, 1, 1)))
    a, b, dw, pw = relax.Var("a", ta), relax.Var("b", tb), relax.Var("dw", tw), relax.Var("pw", tp)
    builder = relax.BlockBuilder()
    with builder.function("main", [a, b, dw, pw]):
        with builder.dataflow():
            name, kernel = upsample2x_kernel(1, (3, 5), 4, 4)
            up = builder.emit(relax.call_tir(builder.add_func(kernel, name), [a, b],
                                             out_ty=relax.TensorType((1, 8, 8, 8), "float32")))
            depth = builder.emit(relax.op.nn.conv2d(up, dw, padding=1, groups=8))
            point = builder.emit(relax.op.nn.conv2d(depth, pw))
            out = builder.emit_output(relax.op.nn.leakyrelu(point, 0.1))
        builder.emit_func_output(out)
    module = fuse_decoder_blocks(builder.get())
    assert len(_calls(module, "relax.concat")) == 1 and len(_calls(module, "relax.call_dps_packed")) == 1
    assert not _calls(module, "relax.nn.conv2d")
    register_packed_functions()
    vm = relax.VirtualMachine(tvm.compile(module, target=tvm.target.Target(host_target())), tvm.cpu())
    rng = np.random.default_rng()
    inputs = [rng.random([int(d) for d in v.ty.shape], dtype=np.float32) for v in (a, b, dw, pw)]
    got = vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()
    x = F.interpolate(torch.cat([torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1])], 1), scale_factor=2,
                      mode="bilinear", align_corners=True)
    y = F.conv2d(F.conv2d(x, torch.from_numpy(inputs[2]), padding=1, groups=8), torch.from_numpy(inputs[3]))
    assert np.abs(got - F.leaky_relu(y, 0.1).numpy()).max() <= 1e-5


@pytest.mark.parametrize("size,batch", [(224, 1), (224, 3), (256, 1), (256, 3)])
def test_parity_with_torch_across_identity_switches_without_rebuild(size, batch, official_models):
    from mfs_fast.backends.tvm_backend import TVMBackend

    backend = create_backend("tvm-fused", official_models, threads=1)
    first, second = random_identity(official_models), random_identity(official_models)
    rng = np.random.default_rng()
    builds = None
    for identity in (first, second, first):  # A -> B -> A
        backend.set_identity(identity)
        images = rng.random((batch, 3, size, size), dtype=np.float32)
        faces, masks = backend.run(images)
        builds = TVMBackend.builds if builds is None else builds  # the first run may build
        with torch.no_grad():
            expected = official_models.idn(torch.from_numpy(images), identity)
        assert np.abs(faces - expected[0].numpy()).max() <= 1e-4
        assert np.abs(masks - expected[1].numpy()).max() <= 1e-4
    assert TVMBackend.builds == builds


def test_library_is_cached_apart_from_the_plain_tvm_one(official_models):
    from mfs_fast.backends.tvm_backend import TVMBackend
    from mfs_fast.backends.tvm_fused import TVMFusedBackend

    fused = TVMFusedBackend(official_models, threads=1)._library_path(SHAPE)
    plain = TVMBackend(official_models, threads=1)._library_path(SHAPE)
    assert fused != plain and fused.parent == plain.parent
