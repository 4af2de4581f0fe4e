"""The fused kernels vs ONNX Runtime at its fastest: identity kernels baked in as constants.

    .venv/bin/python bench/ort_constants.py [--rounds 60] [--threads 1 2]

ONNX Runtime's NCHWc layout transform and weight prepacking only apply to constant weights,
so this graph (one session per identity: not usable for switching sources) is the fastest ORT
can run the IDN; the `onnxruntime` backend keeps the kernels as inputs instead. Both run
interleaved in one process, batch 1, 224, random weights; medians in ms, parity checked.
"""

import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from mfs_fast.backends.onnx_export import IMAGE_INPUT, cached_idn_onnx
from mfs_fast.backends.fused import FusedIDN
from mfs_fast.models import FaceSwapModels


def constant_kernel_graph(path, weights) -> bytes:
    """The kernels-as-inputs graph with this identity's kernels turned into initializers."""
    model = onnx.load(str(path))
    values = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in weights.tensors()}
    keep = [i for i in model.graph.input if i.name not in values]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items())
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    models = FaceSwapModels.random(seed=0)
    weights = models.identity_weights(torch.rand(1, 3, 112, 112))
    image = np.random.default_rng().random((1, 3, 224, 224), dtype=np.float32)
    graph = constant_kernel_graph(cached_idn_onnx(models.idn), weights)
    print(f"batch 1, 224, {args.rounds} interleaved rounds; median ms")
    for threads in args.threads:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        fused = FusedIDN(models, threads=threads)
        fused.set_identity(weights)
        ours = fused.run(image)
        theirs = session.run(None, {IMAGE_INPUT: image})
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))
        times = {"onnxruntime (constants)": [], "fused": []}
        runs = {"onnxruntime (constants)": lambda: session.run(None, {IMAGE_INPUT: image}),
                "fused": lambda: fused.run(image)}
        for i in range(args.rounds + 5):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if i >= 5:
                    times[name].append(time.perf_counter() - start)
        med = {name: 1e3 * statistics.median(v) for name, v in times.items()}
        ratio = med["onnxruntime (constants)"] / med["fused"]
        print(f"{threads} thread(s): " + ", ".join(f"{k} {v:.2f}" for k, v in med.items())
              + f"; fused {ratio:.2f}x faster; max|diff| {diff:.1e}; fused isa {fused.isa}")


if __name__ == "__main__":
    main()
