"""GPU check of the CUDA kernels (mfs_fast._cuda): parity with PyTorch, then timings. Builds nothing.

Meant for a lent GPU machine (the device tool) that has this working tree and an mfs_fast._cuda
built for its own Python (kernels/cuda/build_here.sh does that there; the copy built here is for
this machine's Python). On the GPU machine, from the repository root:

    kernels/cuda/build_here.sh && PYTHONUNBUFFERED=1 python3 bench/gpu_check.py

1. parity on fresh random inputs (seed printed; MFS_GPU_CHECK_SEED repeats it) against PyTorch
   on the CPU: every block in each tile configuration at the IDN's own shapes (encoder stages,
   decoder stages writing into concat buffers, the last decoder stage chained to final's 1x1
   conv, the five fusion-mask blocks, the output head + blend), then the whole IDN at every
   size and batch timed below and an identity switch A -> B -> A, on the scaled random models
   of tests/backends/test_fused_kernels.py. Device buffers are poisoned with NaN before each whole-IDN
   run; max abs error <= 1e-4 passes, and relative L2 error is shown against a float64 reference;
2. timings of the whole IDN (224 and 256, batch 1 and 8) with CUDA events after a warm-up
   (20 runs, then 200 timed; median, p10, p90): end to end (copy in, 15 kernels, copy out,
   rotating among 4 input batches), kernel-only with and without CUDA graphs, per stage;
3. a Markdown table last, and everything as JSON and Markdown under $OUT when it is set.

Exit status 1 if any parity check fails (a failed launch counts as a failed case; the check
goes on). Memory and race checks of the kernels on a GPU (Firecracker machines run them):

    compute-sanitizer --tool memcheck python3 bench/gpu_check.py --skip-timings --sizes 64 --batches 2
    compute-sanitizer --tool racecheck python3 bench/gpu_check.py --skip-timings --sizes 64 --batches 1

``--emulate`` runs the same script on the CPU-emulated build of the same sources
(kernels/cuda/emulate.py, compiled here) at small sizes: a dry run of the script, not of a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
CONFIGS = ("auto", "big", "mid", "thin")


def import_package():
    """mfs_fast's models and CUDA wrapper without mfs_fast/__init__.py (whose pipeline imports
    need packages a bare GPU machine may not have)."""
    if "mfs_fast" not in sys.modules:
        pkg = types.ModuleType("mfs_fast")
        pkg.__path__ = [str(ROOT / "mfs_fast")]
        sys.modules["mfs_fast"] = pkg
    sys.path.insert(0, str(ROOT / "tests"))


def cuda_module(emulate: bool):
    if emulate:
        sys.path.insert(0, str(ROOT / "kernels" / "cuda"))
        sys.dont_write_bytecode = True  # no __pycache__ under kernels/ (run.sh hashes that folder)
        import emulate as emu

        return emu.load(emu.build())
    from mfs_fast.backends import fused_cuda as cuda_fused

    if not cuda_fused.BUILT:
        raise SystemExit(f"gpu_check: {cuda_fused.IMPORT_ERROR}\n(run kernels/cuda/build_here.sh first)")
    reason = cuda_fused.unavailable_reason()
    if reason:
        raise SystemExit(f"gpu_check: {reason}")
    return cuda_fused._module


class Parity:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def check(self, what: str, ours: np.ndarray, ref32: np.ndarray, ref64: np.ndarray | None = None) -> None:
        finite = bool(np.isfinite(ours).all())
        err = float(np.abs(ours - ref32).max()) if finite and ours.shape == ref32.shape else float("inf")
        ref = ref64 if ref64 is not None else ref32.astype(np.float64)
        rel = float(np.linalg.norm(ours.astype(np.float64) - ref) / max(np.linalg.norm(ref), 1e-30)) if finite else float("inf")
        ok = finite and err <= TOLERANCE
        self.rows.append({"case": what, "max_abs": err, "rel_l2_vs_fp64": rel, "ok": ok})
        print(f"  {'ok  ' if ok else 'FAIL'} {what:58s} max abs {err:.2e}  rel L2 {rel:.1e}", flush=True)

    def run(self, what: str, fn, ref32: np.ndarray, ref64: np.ndarray | None = None) -> None:
        """check(what, fn(), ...), recording an exception (a failed launch, say) as a failure."""
        try:
            ours = fn()
        except Exception as error:  # noqa: BLE001 (reported, and the check goes on)
            self.fail(what, error)
            return
        self.check(what, ours, ref32, ref64)

    def fail(self, what: str, error: BaseException) -> None:
        self.rows.append({"case": what, "max_abs": float("inf"), "rel_l2_vs_fp64": float("inf"), "ok": False,
                          "error": f"{type(error).__name__}: {error}"})
        print(f"  FAIL {what:58s} {type(error).__name__}: {error}", flush=True)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if not r["ok"]]


def block_parity(cuda, parity: Parity, rng, size: int, batch: int, configs) -> None:
    import torch
    import torch.nn.functional as F

    from mfs_fast.models import modulate_demodulate

    def randn(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def t(a, dtype=torch.float32):
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    def up2(x):
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)

    def modulated(c_in, c_out):
        base = randn(c_out, c_in, scale=c_in ** -0.5)
        fused, scale, demod = (x.numpy() for x in modulate_demodulate(t(base), t(randn(c_in, scale=0.5))))
        return base, scale, demod, fused

    def both(fn):  # the reference in float32 and float64
        return fn(torch.float32).numpy(), fn(torch.float64).numpy()

    enc_ch = (3, 32, 64, 128, 256, 512)
    for stage in range(5):
        c, m, s = enc_ch[stage], enc_ch[stage + 1], size >> stage
        x = rng.random((batch, c, s, s), dtype=np.float32)
        dw = randn(c, 1, 4, 4, scale=0.35)
        base, scale, demod, fused = modulated(c, m)

        def ref(dt, x=x, dw=dw, fused=fused, c=c, stage=stage):
            xr = (t(x, dt) - 0.5) / 0.5 if stage == 0 else t(x, dt)
            y = F.conv2d(F.conv2d(xr, t(dw, dt), stride=2, padding=1, groups=c), t(fused, dt)[:, :, None, None])
            return F.leaky_relu(y, 0.1)

        r32, r64 = both(ref)
        for config in configs:
            parity.run(f"encoder.{stage} {c}->{m} @{s} x{batch} [{config}]",
                       lambda: cuda.encoder_block(x, dw, base, scale=scale, demod=demod, normalize=stage == 0,
                                                  config=config), r32, r64)
    dec_in, dec_out = (512, 512, 256, 128), (256, 128, 64, 32)
    for stage in range(4):
        c, m, h = dec_in[stage], dec_out[stage], size >> (5 - stage)
        x = randn(batch, c, h, h, scale=0.5)
        dw = randn(c, 1, 3, 3, scale=0.45)
        base, scale, demod, fused = modulated(c, m)
        last = stage == 3
        skip = None if last else randn(batch, m, 2 * h, 2 * h)
        w2, b2 = randn(8, m, scale=0.3), randn(8, scale=0.1)

        def ref(dt, x=x, dw=dw, fused=fused, c=c, skip=skip, last=last, w2=w2, b2=b2):
            y = F.leaky_relu(F.conv2d(F.conv2d(up2(t(x, dt)), t(dw, dt), padding=1, groups=c),
                                      t(fused, dt)[:, :, None, None]), 0.1)
            if last:
                return F.conv2d(y, t(w2, dt)[:, :, None, None], t(b2, dt))
            return torch.cat((y, t(skip, dt)), dim=1)

        r32, r64 = both(ref)
        for config in (("auto",) if last else configs):
            extra = dict(second_pointwise=w2, second_bias=b2) if last else dict(skip=skip)
            what = f"decoder.{stage} {c}->{m}{' + final.0' if last else ' + skip'} @{2 * h} x{batch} [{config}]"
            parity.run(what, lambda: cuda.upsample_block(x, dw, base, scale=scale, demod=demod, config=config, **extra),
                       r32, r64)
    mask_ch = (512, 128, 64, 32, 8, 2)
    for stage in range(5):
        c, m, h = mask_ch[stage], mask_ch[stage + 1], size >> (5 - stage)
        x = randn(batch, c, h, h, scale=0.5)
        dw, dwb = randn(c, 1, 3, 3, scale=0.45), randn(c, scale=0.1)
        pw, pwb = randn(m, c, scale=c ** -0.5), randn(m, scale=0.1)

        def ref(dt, x=x, dw=dw, dwb=dwb, pw=pw, pwb=pwb, c=c):
            y = F.conv2d(up2(t(x, dt)), t(dw, dt), t(dwb, dt), padding=1, groups=c)
            return F.leaky_relu(F.conv2d(y, t(pw, dt)[:, :, None, None], t(pwb, dt)), 0.1)

        r32, r64 = both(ref)
        for config in configs:
            parity.run(f"mask.{stage} {c}->{m} @{2 * h} x{batch} [{config}]",
                       lambda: cuda.upsample_block(x, dw, pw, depthwise_bias=dwb, pointwise_bias=pwb, config=config),
                       r32, r64)
    h = size // 2
    x, m5 = randn(batch, 32, h, h), randn(batch, 2, size, size)
    image = rng.random((batch, 3, size, size), dtype=np.float32)
    heads = {
        "final.0.weight": randn(8, 32, scale=0.3), "final.0.bias": randn(8, scale=0.1),
        "final.1.weight": randn(3, 8, 3, 3, scale=0.2), "final.1.bias": randn(3, scale=0.1),
        "final.2.weight": randn(3, 3, 3, 3, scale=0.3), "final.2.bias": randn(3, scale=0.1),
        "mask.out.weight": randn(1, 2, 3, 3, scale=0.5), "mask.out.bias": randn(1, scale=0.1),
    }

    def head(dt):
        g = {k: t(v, dt) for k, v in heads.items()}
        y = F.leaky_relu(F.conv2d(up2(t(x, dt)), g["final.0.weight"][:, :, None, None], g["final.0.bias"]), 0.1)
        y = F.leaky_relu(F.conv2d(y, g["final.1.weight"], g["final.1.bias"], padding=1), 0.1)
        face = (1 + torch.tanh(F.conv2d(y, g["final.2.weight"], g["final.2.bias"], padding=1))) / 2
        mask = torch.sigmoid(F.conv2d(t(m5, dt), g["mask.out.weight"], g["mask.out.bias"], padding=1))
        return face * mask + (1 - mask) * t(image, dt), mask

    (f32, k32), (f64, k64) = (tuple(v.numpy() for v in head(dt)) for dt in (torch.float32, torch.float64))
    try:
        faces, masks = cuda.output_head(x, m5, image, heads)
    except Exception as error:  # noqa: BLE001
        parity.fail(f"head @{size} x{batch}", error)
        return
    parity.check(f"head: final + mask out + blend @{size} x{batch}", faces, f32, f64)
    parity.check(f"head: mask @{size} x{batch}", masks, k32, k64)


def calibrated_models(seed: int, torch_gen):
    """The CPU fused tests' scaled random models and identities, with the mask logits calibrated
    to mean 0, std 1 on typical inputs (as their idn_setup fixture does): O(1) activations and an
    open, varied mask, so errors cannot hide in collapsed values."""
    import torch
    from test_fused_kernels import conditioned_models, scaled_identity

    models = conditioned_models(seed)
    identities = [scaled_identity(models, torch_gen), scaled_identity(models, torch_gen)]
    x = torch.rand(4, 3, 224, 224, generator=torch_gen)
    with torch.no_grad():
        logits = models.idn.mask[:6](models.idn.encode(x, identities[0])[-1])
        mean, std = logits.mean(), logits.std()
        models.idn.mask[5].weight.div_(std)
        models.idn.mask[5].bias.sub_(mean).div_(std)
    return models, identities


def idn_parity(cuda, parity: Parity, rng, models, identities, sizes, batches) -> dict:
    import torch

    from mfs_fast.backends.fused_cuda import CudaFusedIDN

    idn = CudaFusedIDN(models, module=cuda)
    a, b = identities
    for size in sizes:
        for batch in batches:
            images = rng.random((batch, 3, size, size), dtype=np.float32)
            with torch.no_grad():
                result, mask = models.idn(torch.from_numpy(images), a)
                result64, mask64 = models.idn.double()(torch.from_numpy(images).double(), a.to(torch.float64))
                models.idn.float()
            try:
                idn.set_identity(a)
                idn.engine(size, size).poison()
                faces, masks = idn.run(images)
            except Exception as error:  # noqa: BLE001
                parity.fail(f"whole IDN @{size} x{batch}", error)
                continue
            parity.check(f"whole IDN faces @{size} x{batch}", faces, result.numpy(), result64.numpy())
            parity.check(f"whole IDN masks @{size} x{batch}", masks, mask.numpy(), mask64.numpy())
    size, batch = sizes[0], batches[-1]
    images = rng.random((batch, 3, size, size), dtype=np.float32)
    try:
        idn.set_identity(a)
        first = idn.run(images)
        idn.set_identity(b)
        other = idn.run(images)
        idn.set_identity(a)
        again = idn.run(images)
    except Exception as error:  # noqa: BLE001
        parity.fail(f"identity switch A -> B -> A @{size} x{batch}", error)
        return {}
    with torch.no_grad():
        result_b = models.idn(torch.from_numpy(images), b)[0].numpy()
        result_a = models.idn(torch.from_numpy(images), a)[0].numpy()
    parity.check(f"identity B after A @{size} x{batch}", other[0], result_b)
    parity.check(f"identity A again @{size} x{batch}", again[0], result_a)
    same = bool(np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1]))
    parity.rows.append({"case": "A -> B -> A bit-identical", "max_abs": 0.0 if same else float("inf"),
                        "rel_l2_vs_fp64": 0.0, "ok": same})
    print(f"  {'ok  ' if same else 'FAIL'} A -> B -> A gives bit-identical outputs", flush=True)
    return {"engine_configs": {f"{s}": idn.engine(s, s).stage_configs(max(batches)) for s in sizes}}


def stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90)),
            "min": float(v.min()), "n": int(v.size)}


def timings(cuda, models, identity, rng, sizes, batches, warmup, repeats, stage_repeats) -> list[dict]:
    from mfs_fast.backends.fused_cuda import CudaFusedIDN

    idn = CudaFusedIDN(models, module=cuda)
    idn.set_identity(identity)
    rows = []
    for size in sizes:
        for batch in batches:
            engine = idn.engine(size, size)
            inputs = [rng.random((batch, 3, size, size), dtype=np.float32) for _ in range(4)]
            faces = np.empty((batch, 3, size, size), np.float32)
            masks = np.empty((batch, 1, size, size), np.float32)
            for i in range(warmup):
                engine.run(inputs[i % 4], faces, masks)
            event_ms, wall_ms = [], []
            for i in range(repeats):
                start = time.perf_counter()
                engine.run(inputs[i % 4], faces, masks)
                wall_ms.append((time.perf_counter() - start) * 1e3)
                event_ms.append(engine.last_run_ms())
            row = {
                "size": size, "batch": batch,
                "end_to_end_events": stats([e["total"] for e in event_ms]),
                "h2d": stats([e["h2d"] for e in event_ms]),
                "d2h": stats([e["d2h"] for e in event_ms]),
                "end_to_end_host": stats(wall_ms),
                "kernels_graph": stats(engine.time_kernels(batch, warmup, repeats, True)),
                "kernels_plain": stats(engine.time_kernels(batch, warmup, repeats, False)),
                "stages_ms": engine.stage_ms(batch, stage_repeats),
                "configs": engine.stage_configs(batch),
                "graphs": engine.graphs, "graph_error": engine.graph_error,
            }
            gmacs = 0.333 * (size / 224) ** 2 * batch  # measured by mfs-fast info (README)
            row["kernel_tflops"] = 2 * gmacs / row["kernels_graph"]["median"]  # GFLOP per ms = TFLOP/s
            row["fps_end_to_end"] = 1e3 * batch / row["end_to_end_events"]["median"]
            rows.append(row)
            print(f"  {size} x{batch}: end to end {row['end_to_end_events']['median']:.3f} ms, kernels "
                  f"{row['kernels_graph']['median']:.3f} ms (graph) / {row['kernels_plain']['median']:.3f} ms (plain)",
                  flush=True)
    return rows


def markdown(info: dict, parity: Parity, rows: list[dict]) -> str:
    lines = [f"## GPU check · {info['device']} · {info['date']}", "",
             f"mfs_fast._cuda{' (EMULATED on the CPU: not GPU numbers)' if info['emulated'] else ''}, "
             f"CUDA runtime {info['runtime']}, driver {info['driver']}, {info['sms']} SMs, torch {info['torch']}, "
             f"seed {info['seed']}; warm-up {info['warmup']}, {info['repeats']} timed runs; medians [p10, p90] in ms.",
             "",
             "| size | batch | end to end (events) | copy in | kernels, graph | kernels, plain | host wall | FPS | kernel TFLOP/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(s):
        return f"{s['median']:.3f} [{s['p10']:.3f}, {s['p90']:.3f}]"

    for r in rows:
        lines.append(f"| {r['size']} | {r['batch']} | {cell(r['end_to_end_events'])} | {r['h2d']['median']:.3f} | "
                     f"{cell(r['kernels_graph'])} | {cell(r['kernels_plain'])} | {r['end_to_end_host']['median']:.3f} | "
                     f"{r['fps_end_to_end']:.0f} | {r['kernel_tflops']:.2f} |")
    if rows:
        lines += ["", "Per stage (median ms, plain launches, events between stages):", "",
                  "| stage | " + " | ".join(f"{r['size']} x{r['batch']}" for r in rows) + " | tiles |",
                  "|---|" + "---:|" * len(rows) + "---|"]
        for stage in rows[0]["stages_ms"]:
            lines.append(f"| {stage} | " + " | ".join(f"{r['stages_ms'][stage]:.4f}" for r in rows) +
                         f" | {rows[-1]['configs'][stage]} |")
    worst = max(parity.rows, key=lambda r: r["max_abs"])
    lines += ["", f"Parity: {len(parity.rows) - len(parity.failed)}/{len(parity.rows)} cases within {TOLERANCE:g} "
                  f"(worst: {worst['case']}, {worst['max_abs']:.2e})."]
    for r in parity.failed:
        lines.append(f"- FAILED: {r['case']}: {r.get('error') or 'max abs %.3e' % r['max_abs']}")
    for r in rows:
        if r["graph_error"]:
            lines.append(f"- CUDA graphs off at {r['size']} x{r['batch']}: {r['graph_error']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emulate", action="store_true", help="the CPU-emulated build (dry run, small sizes)")
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--skip-blocks", action="store_true", help="whole-IDN parity and timings only")
    parser.add_argument("--skip-timings", action="store_true",
                        help="parity only (e.g. under compute-sanitizer: --sizes 64 --batches 2)")
    args = parser.parse_args()
    sizes = args.sizes or ([64] if args.emulate else [224, 256])
    batches = args.batches or ([1, 2] if args.emulate else [1, 8])
    warmup = args.warmup if args.warmup is not None else (1 if args.emulate else 20)
    repeats = args.repeats or (3 if args.emulate else 200)
    stage_repeats = 1 if args.emulate else 50

    import_package()
    started = time.perf_counter()
    cuda = cuda_module(args.emulate)
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    seed = int(os.environ.get("MFS_GPU_CHECK_SEED", int.from_bytes(os.urandom(4), "little")))
    rng = np.random.default_rng(seed)
    info = {"device": cuda.device_name(), "emulated": bool(cuda.emulated), "runtime": cuda.runtime_version(),
            "driver": cuda.driver_version(), "torch": torch.__version__, "python": platform.python_version(),
            "seed": seed, "date": time.strftime("%Y-%m-%d %H:%M"), "warmup": warmup, "repeats": repeats}
    print(f"gpu_check: {info['device']} (runtime {info['runtime']}, driver {info['driver']}), seed {seed}", flush=True)

    parity = Parity()
    if not args.skip_blocks:
        print("parity, blocks (IDN shapes, every tile configuration):", flush=True)
        block_parity(cuda, parity, rng, sizes[0], 2, CONFIGS)
    print("parity, whole IDN:", flush=True)
    gen = torch.Generator().manual_seed(seed % 2**31 + 1)
    models, identities = calibrated_models(seed % 2**31, gen)
    extra = idn_parity(cuda, parity, rng, models, identities, sizes, batches)
    info.update(extra)
    from mfs_fast.backends.fused_cuda import CudaFusedIDN

    try:
        info["sms"] = CudaFusedIDN(models, module=cuda).engine(sizes[0], sizes[0]).multiprocessors
    except Exception as error:  # noqa: BLE001 (a dead CUDA context after a failure: reported above)
        info["sms"] = f"? ({error})"
    rows = []
    if parity.failed:
        print("timings: skipped (parity failed)", flush=True)
    elif not args.skip_timings:
        print("timings:", flush=True)
        rows = timings(cuda, models, identities[0], rng, sizes, batches, warmup, repeats, stage_repeats)
    info["seconds"] = round(time.perf_counter() - started, 1)
    report = markdown(info, parity, rows)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "gpu_check.md").write_text(report)
        Path(out, "gpu_check.json").write_text(json.dumps({"info": info, "parity": parity.rows, "timings": rows},
                                                          indent=1))
    print()
    print(report)
    print(f"gpu_check: {'FAILED' if parity.failed else 'passed'} in {info['seconds']} s")
    return 1 if parity.failed else 0


if __name__ == "__main__":
    sys.exit(main())
