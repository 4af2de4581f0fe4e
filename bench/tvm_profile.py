"""Per-kernel time of a TVM backend's IDN (``vm.set_instrument``; TVM 0.27 has no ``vm.profile``).

    TVM_NUM_THREADS=1 .venv/bin/python bench/tvm_profile.py [--backend tvm-fused] [--threads 1]

Random weights (speed does not depend on them), batch 1. Prints the median time of each
kernel over the rounds, times its calls per forward, largest first; the packed decoder
blocks of ``tvm-fused`` are listed per output shape. Instrumentation adds a few microseconds
per kernel call, so the total is a little above the uninstrumented latency.
"""

import argparse
import collections
import os
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="tvm-fused", choices=("tvm", "tvm-fused"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))

    from mfs_fast.backends import create_backend
    from mfs_fast.backends.tvm_fused import configure
    from mfs_fast.models import FaceSwapModels

    models = FaceSwapModels.random(0)
    backend = create_backend(args.backend, models, threads=args.threads)
    backend.set_identity(models.identity_weights(torch.rand(1, 3, 112, 112)))
    image = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    backend.run(image)  # builds (or loads) the library
    vm, kernels = backend._machine(image.shape)
    if args.backend == "tvm-fused":
        configure(backend.threads, backend.isa)  # what backend.run sets before each call

    times: dict[str, list[float]] = collections.defaultdict(list)
    started: dict[str, float] = {}

    def instrument(func, symbol, before, result, *call_args):
        key = f"{symbol} -> {tuple(call_args[-1].shape)}" if symbol.startswith("mfs.") else symbol
        if before:
            started[key] = time.perf_counter()
        else:
            times[key].append(time.perf_counter() - started[key])
        return 0  # VMInstrumentReturnKind.NO_OP

    tensor = backend.tvm.runtime.tensor(image, backend.device)
    for _ in range(3):
        vm["main"](tensor, *kernels)
    vm.set_instrument(instrument)
    for _ in range(args.rounds):
        vm["main"](tensor, *kernels)
    rows = sorted(((1e3 * float(np.median(v)) * len(v) / args.rounds, k, len(v) // args.rounds)
                   for k, v in times.items()), reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{args.backend}, {args.threads} thread(s), batch 1, {args.size}: {total:.2f} ms instrumented")
    for ms, key, calls in rows:
        print(f"{ms:8.3f} ms {100 * ms / total:5.1f}%  {key}" + (f"  (x{calls})" if calls > 1 else ""))


if __name__ == "__main__":
    main()
