"""The ``mfs-fast`` command line.

One error path: every failure prints one line ``mfs-fast: error: ...`` on stderr naming the file or
option and what to do, and exits with

* 2: bad input or options (a :class:`MfsError`, an unreadable/unwritable file, a usage error);
* 130: interrupted with Ctrl-C (SIGINT); 143: stopped with SIGTERM. Both raise KeyboardInterrupt
  in the main thread, so the video writer removes its temporaries and no partial output is left;
* 1: an internal error (a bug): still one line; ``MFS_FAST_DEBUG=1`` shows the traceback. Also
  ``mfs-fast verify``'s answer "not marked" (0: marked), as the issue that added it asked.

Warnings are printed as one ``mfs-fast: warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from .errors import MfsError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_NOT_MARKED = 1  # mfs-fast verify: the file carries neither mark
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
DEBUG_ENV = "MFS_FAST_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (naming the option) instead of the whole usage."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _library_check(check: Callable, convert: type, text: str):
    """An option value through the library's own check (one home for each rule), as argparse wants it."""
    try:
        return check(convert(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    except MfsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _every(text: str) -> int:
    from .face.tracking import check_every

    return _library_check(check_every, int, text)


def _similarity(text: str) -> float:
    from .face.select import check_similarity

    return _library_check(check_similarity, float, text)


def _detail(text: str) -> float:
    from .pipeline import check_detail

    return _library_check(check_detail, float, text)


def _share(name: str) -> Callable[[str], float]:
    """An argparse type for a share option (chroma, brightness) checked by the library."""
    def convert(text: str) -> float:
        from .pipeline import check_share

        return _library_check(lambda value: check_share(name, value), float, text)

    convert.__name__ = name  # argparse names the type in its messages
    return convert


def _add_paste_options(p: argparse.ArgumentParser, prefix: str) -> None:
    from .face.paste import EYES

    p.add_argument("--chroma", type=_share("chroma"), metavar="SHARE",
                   help=f"{prefix}share of the swap's colour change pasted, 0 (the target's skin tone and eye colour) "
                   "to 1 (all, as the official code); default: what the weights were trained for (0 for the starter "
                   "weights, 1 for the official ones)")
    p.add_argument("--brightness", type=_share("brightness"), metavar="SHARE",
                   help=f"{prefix}share of the swap's mean brightness change pasted, 0 (the target's exposure) to 1; "
                   "default: the weights' own (0 starter, 1 official)")
    p.add_argument("--eyes", choices=EYES, help=f"{prefix}whose eyes the paste shows: target (the target's own: "
                   "sharp, its colour and gaze) or swap (as the official code); default: the weights' own (target "
                   "for the starter weights, swap for the official ones)")


def _cmd_convert(args: argparse.Namespace) -> None:
    from .checkpoints import load_official, save_weights
    from .checkpoints.native_format import sha256_of

    models = load_official(args.swap, args.arcface)
    provenance = {
        "converted_from": {
            Path(p).name: sha256_of(Path(p)) for p in (args.swap, args.arcface)
        }
    }
    out = save_weights(models, args.output, provenance=provenance)
    print(f"wrote {out} (swap.safetensors, identity.safetensors, manifest.json)")


def _cmd_swap(args: argparse.Namespace) -> None:
    if args.aligned:
        _swap_aligned(args)
        return
    from .face.detectors import create_detector
    from .media import check_image_file, media_kind, output_format, refuse_inputs
    from .media.writer import _container_for

    # everything a user can get wrong is checked before the (slow) models load
    inputs = tuple(p for p in (args.source, args.target, args.reference) if p is not None)
    refuse_inputs(args.output, inputs)
    for path in (args.source, args.reference):
        if path is not None:
            check_image_file(path)
    kind = media_kind(args.target)
    if kind == "image":
        output_format(args.output)
    else:
        _container_for(Path(args.output))
    _check_writable(args.output)
    swapper = _make_swapper(args, create_detector(args.detector, **_detector_options(args)))
    if kind == "image":
        swapper.swap_image(args.target, args.output, inputs=inputs)
        _print_summary(swapper, args.output)
        return
    from .video_bench import limiting_stage, stage_table, swap_video_timed

    run = swap_video_timed(swapper, args.target, args.output, "sequential" if args.sequential else "pipelined",
                           every=args.every, progress=not args.quiet, smooth=not args.no_smooth,
                           quality=args.quality, preset=args.preset)
    _print_summary(swapper, args.output)
    if args.stats:
        print("\n".join([*stage_table([run]), limiting_stage(run)]))


def _cmd_batch(args: argparse.Namespace) -> None:
    from .batch import RESULTS_NAME, run_batch

    summary, left_out = run_batch(
        args.job, args.output, args.source, weights=args.weights, reference=args.reference,
        swapper_options=_swapper_options(args), every=args.every, quality=args.quality, preset=args.preset,
        engine=args.engine, address=args.address, workers=args.workers, threads=args.threads,
        gpus=args.gpus_per_actor, resume=args.resume, retries=args.retries, segment_seconds=args.segment_seconds,
        progress=not args.quiet)
    results = Path(args.output) / RESULTS_NAME
    if left_out:
        names = ", ".join(str(p) for p in left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        warnings.warn(f"left out {len(left_out)} file(s) that are neither images nor videos: {names}")
    rate = f" ({summary.frames / summary.seconds:.1f} frames/s)" if summary.seconds and summary.frames else ""
    skipped = f", {summary.skipped} already done (skipped)" if summary.skipped else ""
    print(f"batch: {summary.done} done, {summary.failed} failed{skipped}; {summary.frames} frame(s) in "
          f"{summary.seconds:.1f} s{rate}; results in {results}")
    if summary.failed:
        raise MfsError(f"{summary.failed} item(s) failed, each with its error in {results}; fix them and rerun "
                       f"with --resume (done items are skipped)")


def _check_writable(output: str | Path) -> None:
    """MfsError unless a file can be created where ``output`` goes (its folder, or the nearest
    existing folder above it), so a read-only folder fails before any work is done."""
    folder = Path(output).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise MfsError(f"cannot write {output}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise MfsError(f"cannot write to the folder {folder} ({error.strerror or error}): "
                       f"choose a writable output path with -o") from None


def _make_swapper(args: argparse.Namespace, detector=None):
    from .pipeline import Swapper

    options = _swapper_options(args)
    if detector is not None:  # made from the same options already
        options["detector"] = detector
        options.pop("detector_options")
    return Swapper(args.source, args.weights, reference=args.reference, **options)


def _detector_options(args: argparse.Namespace) -> dict:
    """--min-eye-distance, for the detector that has it (blazeface)."""
    if args.min_eye_distance is None:
        return {}
    if args.detector != "blazeface":
        raise MfsError(f"--min-eye-distance applies to the blazeface detector, not to {args.detector!r}")
    return {"min_eye_distance": args.min_eye_distance}


def _swapper_options(args: argparse.Namespace) -> dict:
    """The Swapper keywords the swapper options (:func:`_add_swapper_options`) give, source, weights and
    reference aside: plain values, so a batch can hand them to worker processes."""
    from .backends import DEFAULT_BACKEND

    return dict(backend=args.backend or DEFAULT_BACKEND, strict=args.strict, detector=args.detector,
                detector_options=_detector_options(args), faces=args.faces,
                similarity=args.similarity, identity_encoder=args.identity_encoder, detail=args.detail,
                chroma=args.chroma, brightness=args.brightness, eyes=args.eyes, watermark=not args.no_watermark,
                watermark_id=args.watermark_id, precision=args.precision)


def _print_summary(swapper, output) -> None:
    s = swapper.stats
    per_frame = ", ".join(f"{k} {1e3 * v / max(s.frames, 1):.1f} ms" for k, v in s.seconds.items())
    unmatched = (f", {s.frames_without_match} frame(s) where no face matched the reference"
                 if swapper.selector.reference is not None else "")
    print(f"wrote {output}: {s.frames} frame(s), {s.faces_swapped} face(s) swapped, "
          f"{s.frames_without_face} frame(s) without a face{unmatched} passed through unchanged "
          f"({per_frame} per frame)")


def _swap_aligned(args: argparse.Namespace) -> None:
    from .aligned import swap_aligned
    from .checkpoints import load_weights
    from .media import output_format, read_bgr, refuse_inputs, write_image
    from .weights import load_starter_weights

    inputs = (args.source, args.target)
    for path in (args.output, args.mask_out):
        if path is not None:
            refuse_inputs(path, inputs)
            output_format(path)
            _check_writable(path)
    source, target = read_bgr(args.source), read_bgr(args.target)
    models = load_weights(args.weights) if args.weights else load_starter_weights()
    result = swap_aligned(models, source, target)
    image, metadata = _marked_crop(result.image, args)
    write_image(args.output, image, inputs=inputs, metadata=metadata)
    print(f"wrote {args.output}")
    if args.mask_out:
        write_image(args.mask_out, result.mask, inputs=inputs)
        print(f"wrote {args.mask_out}")


def _marked_crop(crop, args: argparse.Namespace):
    """An aligned swap (the whole crop is the swapped face) and its metadata, marked unless opted out."""
    from .watermark import OPT_OUT_WARNING, Watermark
    from .watermark.metadata import with_note

    if args.no_watermark:
        warnings.warn(OPT_OUT_WARNING)
        return crop, None
    return Watermark(args.watermark_id).mark(crop.copy(), [(0, 0, crop.shape[1], crop.shape[0])]), with_note(None)


def _cmd_webcam(args: argparse.Namespace) -> None:
    from .webcam import run_live

    stats = run_live(_make_swapper(args), camera=args.camera, window=not args.no_window,
                     virtual_camera=not args.no_virtual_camera, every=args.every, max_frames=args.max_frames,
                     realtime=args.realtime)
    print(f"{stats.frames} frame(s), {stats.fps:.1f} FPS, latency from capture to output {stats.latency_ms(50):.0f} ms "
          f"median, {stats.latency_ms(95):.0f} ms p95" + (f", {stats.dropped} late camera frame(s) skipped"
                                                           if stats.dropped else ""))


def _cmd_info(args: argparse.Namespace) -> None:
    from .models import FaceSwapModels
    from .models.complexity import component_costs

    costs = component_costs(FaceSwapModels.random(), args.size)
    header = f"{'component':<44}{'params':>12}{'deployed':>12}{f'GMACs@{args.size}':>12}  runs"
    print(header)
    print("-" * len(header))
    for c in costs:
        print(f"{c.name:<44}{c.params:>12,}{c.deployed_params:>12,}{c.macs / 1e9:>12.3f}  {c.when}")
    frame = costs[:2]
    print("-" * len(header))
    print(
        f"{'per frame (IDN + fusion mask)':<44}{sum(c.params for c in frame):>12,}"
        f"{sum(c.deployed_params for c in frame):>12,}{sum(c.macs for c in frame) / 1e9:>12.3f}"
    )
    print("\n'deployed' folds each BatchNorm into the conv before it. Paper: 0.50M params, 0.33 G(MAC)s at 224.")


def _cmd_bench(args: argparse.Namespace) -> None:
    import json

    if args.pipeline:
        _bench_pipeline(args)
        return
    from .backends import available_backends
    from .backends.benchmark import benchmark_backends

    names = args.backend or available_backends()
    timings = benchmark_backends(names, size=args.size, batch=args.batch, threads=tuple(args.threads),
                                 rounds=args.rounds)
    if args.json:
        print(json.dumps([t.as_dict() for t in timings], indent=1))
        return
    print(f"IDN forward, batch {args.batch}, {args.size}x{args.size}, fp32, {args.rounds} interleaved rounds (ms)")
    print(f"{'backend':<14}{'threads':>8}{'median':>9}{'p10':>8}{'p90':>8}{'FPS':>8}{'vs torch':>10}"
          f"{'set_identity':>14}  max|diff|")
    torch_ms = {t.threads: t.median_ms for t in timings if t.backend == "torch"}
    for t in timings:
        fps = 1e3 * args.batch / t.median_ms
        ratio = f"{torch_ms[t.threads] / t.median_ms:.2f}x" if t.threads in torch_ms else "-"
        print(f"{t.backend:<14}{t.threads:>8}{t.median_ms:>9.2f}{t.p10_ms:>8.2f}{t.p90_ms:>8.2f}{fps:>8.1f}"
              f"{ratio:>10}{t.set_identity_ms:>12.2f}ms  {t.max_abs_diff:.1e}")


def _bench_pipeline(args: argparse.Namespace) -> None:
    """``bench --pipeline VIDEO``: the sequential and the pipelined video path side by side."""
    import json

    from .backends import DEFAULT_BACKEND
    from .demo import SOURCE_PHOTO
    from .media import media_kind, probe_video
    from .pipeline import Swapper
    from .video_bench import bench_live, bench_video, limiting_stage, live_line, stage_table

    if media_kind(args.pipeline) != "video":
        raise MfsError(f"{args.pipeline} is not a video: bench --pipeline times a whole video through swap")
    info = probe_video(args.pipeline)
    swapper = Swapper(args.source or SOURCE_PHOTO, args.weights, backend=args.backend or DEFAULT_BACKEND,
                      detector=args.detector, detector_options=_detector_options(args), precision=args.precision)
    runs = bench_video(swapper, args.pipeline, rounds=args.video_rounds, every=args.every, quality=args.quality,
                       preset=args.preset)
    live = bench_live(swapper, args.pipeline, every=args.every)
    if args.json:
        print(json.dumps([run.as_dict() for run in runs] + [
            {"mode": "live", "frames": live.frames, "fps": live.fps, "clip_fps": float(info.fps), "dropped": live.dropped,
             "latency_ms_median": live.latency_ms(50), "latency_ms_p95": live.latency_ms(95)}], indent=1))
        return
    from .media.writer import DEFAULT_CRF, DEFAULT_PRESET

    print(f"{args.pipeline}: {info.width}x{info.height}, {runs[0].stats.frames_out} frames, backend "
          f"{swapper.backend.name} ({args.precision}), detect every {args.every}, x264 {args.preset or DEFAULT_PRESET} "
          f"CRF {DEFAULT_CRF if args.quality is None else args.quality}; FPS end to end (decode + faces + swap + "
          f"encode + audio mux), each stage's own work in ms per frame, mean frames queued in front of it")
    print("\n".join([*stage_table(runs), live_line(live, float(info.fps)), "pipelined " + limiting_stage(runs[-1])]))


def _cmd_tune(args: argparse.Namespace) -> None:
    import os

    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from .backends.tvm_backend import TVMBackend, host_target
    from .backends.tvm_tuning import parse_rpc, tune
    from .deploy import candidate_linker
    from .models import FaceSwapModels
    from .targets import resolve_target

    named = resolve_target(args.target)
    if not named.cpu:
        raise MfsError(f"tuning is for CPU targets; {named.name} is scheduled by dlight's default rules")
    target = host_target(prefer_tuned=False) if named.name == "host" else named.tuning_target
    if args.rpc:
        parse_rpc(args.rpc)  # a bad HOST:PORT:KEY fails before the slow task extraction
    elif named.name not in ("host", "custom"):
        raise MfsError(f"{named.name} code does not run here: measure it on the device with --rpc HOST:PORT:KEY")
    linker = candidate_linker(named) if args.rpc else None
    backend = TVMBackend(FaceSwapModels.random(), threads=args.threads, target=target)
    folder = tune(backend.import_module((1, 3, args.size, args.size)), target, args.trials, args.per_task,
                  retune=args.retune, rpc=args.rpc, cross_compiler=linker)
    print(f"tuning database written to {folder}; TVM builds for this target now use it")


def _cmd_compile(args: argparse.Namespace) -> None:
    """Build the IDN with TVM for a named target and write the deployable artefact + manifest."""
    import shlex

    from .checkpoints import load_weights
    from .deploy import compile_artefact
    from .models import FaceSwapModels
    from .targets import resolve_target

    named = resolve_target(args.target or ("cuda-sm90" if args.backend == "tvm-cuda" else "host"))
    models = load_weights(args.weights) if args.weights else FaceSwapModels.random()
    artefact = compile_artefact(named, models, Path(args.output), (args.batch, 3, args.size, args.size),
                                weights=str(args.weights) if args.weights else "random")
    for path in (artefact.library, artefact.archive, artefact.opencl_source):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"wrote {artefact.manifest} (target {named.name}; inputs: image, then the 18 identity kernels)")
    if artefact.link_shell and not artefact.linked:
        print(f"link it where the Android NDK is (or set ANDROID_NDK_HOME and rerun), in {Path(args.output).parent}:"
              f"\n  {artefact.link_shell}")
    elif artefact.link_command:
        print(f"linked with the NDK: {shlex.join(artefact.link_command)}")
    if not args.weights:
        print("note: built with random fixed-head weights (no --weights): for benchmarking only")


def _cmd_rpc(args: argparse.Namespace) -> None:
    """Upload the IDN to a TVM RPC device, check it against PyTorch, and time it there."""
    from .checkpoints import load_weights
    from .deploy import device_library
    from .models import FaceSwapModels
    from .rpc import PARITY_TOLERANCE, parse_rpc_address, run_remote
    from .targets import resolve_target

    named = resolve_target(args.target)
    address = parse_rpc_address(args.rpc)
    models = load_weights(args.weights) if args.weights else FaceSwapModels.random()
    shape = (args.batch, 3, args.size, args.size)
    library = Path(args.lib) if args.lib else device_library(named, models, shape)
    repeat = args.repeat if args.action == "bench" else 0
    report = run_remote(library, models, address, shape, repeat=repeat, gpu=named.target.get("kind") == "opencl")
    verdict = "ok" if report.parity_ok else "FAILED"
    print(f"{named.name} on {report.device} via {address}: uploaded {library.name} "
          f"({library.stat().st_size / 1e6:.1f} MB) in {report.upload_s:.2f} s")
    print(f"parity vs PyTorch: faces max|diff| {report.faces_max_abs:.2e}, masks {report.masks_max_abs:.2e} "
          f"(tolerance {PARITY_TOLERANCE:g}): {verdict}")
    if report.times_ms:
        times = ", ".join(f"{t:.1f}" for t in report.times_ms)
        print(f"median latency {report.median_ms:.1f} ms over {len(report.times_ms)} runs ({times} ms)")
    if not report.parity_ok:
        raise MfsError("the remote output does not match the PyTorch reference")


def _cmd_eval(args: argparse.Namespace) -> None:
    from .eval.command import run_eval
    from .eval.report import markdown_table

    result, paths = run_eval(args.sources, args.targets, args.output, methods=args.methods, weights=args.weights,
                             random_seed=args.random_weights, frames=args.frames, stride=args.stride,
                             use_mesh=not args.no_mesh, samples=args.samples, detector=args.detector,
                             identity_encoder=args.identity_encoder, detail=args.detail, chroma=args.chroma,
                             brightness=args.brightness, eyes=args.eyes,
                             log=lambda message: print(f"mfs-fast: {message}", file=sys.stderr))
    print(markdown_table(result.metrics))
    print(f"wrote {', '.join(str(p) for p in paths)}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output, target=args.target, weights=args.weights, source=args.source)


def _cmd_weights(args: argparse.Namespace) -> None:
    from . import store

    if args.action == "list":
        rows = store.list_weights()
        print(f"model store: {store.models_dir()} (set {store.HOME_ENV} to move it)")
        for row in rows:
            print(f"{row.name:<12}{row.bytes / 1e6:>9.1f} MB  {row.source}{'  [bundled]' if row.builtin else ''}")
            print(f"{'':<24}licence: {row.licence}")
        if not any(row.name == "official" for row in rows):
            print("the official weights (real quality): mfs-fast weights get official")
    elif args.action == "get":
        from .official_release import get_official

        get_official(args.source, force=args.force, progress=not args.quiet)
    elif args.action == "import":
        folder = store.import_weights(args.folder, args.name, licence=args.licence, replace=args.force)
        print(f"stored {args.folder} as {args.name!r} in {folder}: use it with --weights {args.name}")
    else:
        print(f"removed {args.name!r} ({store.remove_weights(args.name)})")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _cmd_train(args: argparse.Namespace) -> None:
    from .train import StudentTrainer, load_config, train

    if args.pack_cache:
        from .train.cache_pack import pack_cache

        source, destination = args.pack_cache
        report = pack_cache(source, destination, int(args.pack_max_mb * 1e6), args.pack_pixel_upscale)
        print(f"packed {report.faces} faces ({report.soft_faces} identity-only at half size, without meshes) into "
              f"{report.path}: {report.bytes / 1e6:.2f} MB, {report.codec} quality {report.quality}, "
              f"{report.hull_masks} masks as hulls, mesh points within {report.max_point_error:.4f} px")
        return
    if not args.config:
        raise MfsError("mfs-fast train needs --config FILE (or --pack-cache SRC DST)")
    # --output is a path typed on the command line: relative to here, not to the config file
    output = str(Path(args.output).resolve()) if args.output else None
    config = load_config(args.config, {"steps": args.steps, "output": output, "device": args.device,
                                       "max_minutes": args.max_minutes})
    if args.export_only:
        if config.kind != "student":
            raise MfsError("--export-only applies to kind = \"student\" configs")
        trainer = StudentTrainer(config)
        if trainer.step == 0:
            raise MfsError(f"no checkpoint to export in {config.output}")
        print(f"exported step {trainer.step} to {trainer.export()}")
        return
    print(f"trained: {train(config)}")


def _print_report(title: str, report: list[tuple[str, bool, str]]) -> None:
    """One registry, as doctor prints every one: name, usable or not, the reason or what it needs."""
    print(title)
    for name, usable, reason in report:
        print(f"  {name:<12} {'usable' if usable else 'unusable':<9} {reason}")


def _cmd_doctor(args: argparse.Namespace) -> None:
    from . import native
    from .backends import DEFAULT_BACKEND, DEFAULT_PREFERENCE, backend_report
    from .eval.methods import EVAL_METHODS
    from .face.detectors import detector_report
    from .identity import IDENTITY_ENCODERS
    from .train.teacher import TEACHERS

    report = backend_report(DEFAULT_PREFERENCE)
    _print_report("IDN backends (preference order):", report)
    first = next((name for name, usable, _ in report if usable), None)
    print(f"Swapper default: first usable of {', '.join(DEFAULT_BACKEND)} (fastest measured on the reference CPU; compare with "
          f"`mfs-fast bench`); the first usable in the list above: {first}")
    print(f"C++ core: {'built' if native.AVAILABLE else native.IMPORT_ERROR}")
    _print_report("face detectors (--detector):", detector_report())
    _print_report("identity encoders (--identity-encoder):", IDENTITY_ENCODERS.report())
    _print_report("training teachers (teacher.kind in a train config):", TEACHERS.report())
    _print_report("evaluation methods (mfs-fast eval --methods):", EVAL_METHODS.report())


def _add_swapper_options(p: argparse.ArgumentParser) -> None:
    from .identity import ENCODERS

    p.add_argument("--weights", help="a name from `mfs-fast weights list` (official, starter, ...) or a folder from "
                   "`mfs-fast convert` / `mfs-fast train` or holding the official files (default: the bundled starter "
                   "weights, see mfs_fast/weights/README.md)")
    p.add_argument("--faces", choices=("all", "largest"), default="all", help="which faces to swap")
    p.add_argument("--reference", help="swap only faces that look like the person in this image")
    p.add_argument("--similarity", type=_similarity, help="cosine identity similarity needed with --reference "
                   "(default: the identity encoder's own threshold, 0.91 for dlib)")
    p.add_argument("--identity-encoder", default="dlib", choices=ENCODERS,
                   help="identity net for --reference: dlib (offline), arcface (the weights' identity net), faceres or "
                   "mobileface (./run.sh setup); `mfs-fast doctor` says which work here")
    p.add_argument("--detail", type=_detail, metavar="PIXELS", help="keep the target's own detail finer than PIXELS "
                   "aligned-crop pixels (0: paste the whole face, as the official code; default: what the weights "
                   "were trained for, 1.5 for the starter weights, 0 for the official ones)")
    _add_paste_options(p, "")
    p.add_argument("--every", type=_every, default=5, help="video: run the detector every N frames, track between")
    p.add_argument("--backend", nargs="+", metavar="NAME", help="IDN backend, or an ordered preference list "
                   "(default: the fastest usable here; see `mfs-fast doctor` and `mfs-fast bench`)")
    p.add_argument("--strict", action="store_true", help="fail instead of falling back to the next backend")
    p.add_argument("--detector", default="blazeface", help="blazeface, or the path of an SCRFD .onnx file "
                   "(scrfd alone: the file named by $MFS_FAST_SCRFD_MODEL)")
    _add_min_eye_distance(p)
    _add_precision(p)
    p.add_argument("--no-watermark", action="store_true", help="do not mark outputs as synthetic (no invisible "
                   "watermark, no provenance metadata); prints a warning. See README, Responsible use")
    p.add_argument("--watermark-id", type=_watermark_id, default=0, metavar="N",
                   help="a user id (1..65535) carried in the watermark's payload (default 0: none)")


def _min_eye_distance(text: str) -> float:
    from .face.detectors import check_min_eye_distance

    return _library_check(check_min_eye_distance, float, text)


def _add_min_eye_distance(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-eye-distance", type=_min_eye_distance, metavar="PIXELS",
                   help="blazeface: the smallest faces to look for, in pixels between the eyes (default 24, and 7/8 of "
                   "it where the faces seen are small; 20 finds more of a 1080p crowd's smallest faces everywhere, at "
                   "more detection time, bench/RESULTS.md)")


def _precision(text: str) -> str:
    from .backends.fused import PRECISIONS

    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PRECISIONS)}, got {text!r}")
    return text


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", type=_precision, default="float32", metavar="NAME",
                   help="float32 (default) or bfloat16: the fused IDN's pointwise layers in bf16 on CPUs with "
                   "AVX512-BF16, ~1.3x faster per face, pixels within a few levels of float32")


def _watermark_id(text: str) -> int:
    from .watermark.payload import check_user_id

    return _library_check(check_user_id, int, text)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .watermark.verify import verify_file

    verdict = verify_file(args.file, frames=args.frames)
    print("\n".join(verdict.lines()))
    return 0 if verdict.marked else EXIT_NOT_MARKED


def _add_encoder_options(p: argparse.ArgumentParser) -> None:
    from .media.writer import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS

    p.add_argument("--quality", type=_crf, metavar="CRF", help=f"video: x264 CRF, 0 (lossless) to 51; lower is "
                   f"better and larger (default {DEFAULT_CRF}, visually lossless)")
    p.add_argument("--preset", choices=X264_PRESETS, help=f"video: x264 preset; slower ones make smaller files at "
                   f"the same quality but take CPU from swapping (default {DEFAULT_PRESET})")


def _crf(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number (x264 CRF), got {text!r}") from None
    if not 0 <= value <= 51:
        raise argparse.ArgumentTypeError(f"x264 CRF is between 0 and 51, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .eval.methods import METHODS
    from .identity import OFFLINE_ENCODERS

    parser = _Parser(prog="mfs-fast", description="Fast MobileFaceSwap")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert the official .pdparams files to the project's format")
    p.add_argument("--swap", required=True, help="MobileFaceSwap_224.pdparams")
    p.add_argument("--arcface", required=True, help="arcface.pdparams")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(run=_cmd_convert)

    p = sub.add_parser("swap", help="swap the source identity onto every face of an image or video")
    p.add_argument("--source", required=True, help="image with the face to put in")
    p.add_argument("--target", required=True, help="image or video (recognised by content)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--aligned", action="store_true", help="source and target are aligned 224x224 crops")
    p.add_argument("--mask-out", help="with --aligned: also write the fusion mask here")
    _add_swapper_options(p)
    p.add_argument("--no-smooth", action="store_true", help="video: no landmark smoothing")
    _add_encoder_options(p)
    p.add_argument("--sequential", action="store_true", help="video: decode, swap and encode in turn instead of "
                   "overlapping in threads (slower; for comparison)")
    p.add_argument("--stats", action="store_true", help="video: print FPS, ms per stage, queue depths, peak memory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_swap)

    p = sub.add_parser("batch", help="swap every image and video of a folder or CSV manifest, on local processes "
                       "or a Ray cluster; resumable (docs/batch.md)")
    p.add_argument("job", help="a folder (every image and video under it) or a CSV manifest with the columns input, "
                   "output and optionally source, reference")
    p.add_argument("--source", required=True, help="image with the face to put in (a manifest row's source wins)")
    p.add_argument("-o", "--output", required=True, help="output folder: outputs mirror the inputs' tree, "
                   "results.jsonl records each item")
    p.add_argument("--resume", action="store_true", help="skip items already done (output there, result line done)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local: a process pool here "
                   "(default); ray: actors on a Ray cluster (pip install 'mfs_fast[ray]')")
    p.add_argument("--address", metavar="HOST:PORT", help="--engine ray: the cluster to join (default: "
                   "$RAY_ADDRESS, else a local one)")
    p.add_argument("--workers", type=_positive_int, help="worker processes / Ray actors (default: one per CPU, "
                   "or per GPU with --gpus-per-actor)")
    p.add_argument("--threads", type=_positive_int, help="threads per worker (default: CPUs / workers; Ray: 1)")
    p.add_argument("--gpus-per-actor", type=_non_negative_float, default=0.0, metavar="G",
                   help="--engine ray: GPUs each actor reserves (use with --backend fused-cuda)")
    p.add_argument("--retries", type=int, default=2, choices=range(0, 11), metavar="N",
                   help="runs more of a task whose worker died (0..10, default 2)")
    p.add_argument("--segment-seconds", type=_non_negative_float, default=60.0, metavar="S",
                   help="cut videos over 2 S long at keyframes into parts of about S seconds swapped in parallel "
                   "and joined without re-encoding (0: never; default 60)")
    _add_swapper_options(p)
    _add_encoder_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_batch)

    p = sub.add_parser("webcam", help="live swapping from a camera")
    p.add_argument("--source", required=True)
    p.add_argument("--camera", default="0", help="camera index, or a video file/URL")
    _add_swapper_options(p)
    p.add_argument("--no-window", action="store_true")
    p.add_argument("--no-virtual-camera", action="store_true", help="do not use pyvirtualcam even if installed")
    p.add_argument("--max-frames", type=_positive_int)
    p.add_argument("--realtime", action="store_true",
                   help="--camera FILE: deliver its frames at the file's frame rate, as a camera would (late frames "
                        "skipped), to measure live latency without a camera")
    p.set_defaults(run=_cmd_webcam)

    p = sub.add_parser("info", help="parameters and multiply-accumulates per component")
    p.add_argument("--size", type=int, choices=(224, 256), default=224)
    p.set_defaults(run=_cmd_info)

    p = sub.add_parser("bench", help="IDN latency per backend, side by side in one run")
    p.add_argument("--backend", nargs="+", metavar="NAME", help="backends to time (default: every usable one)")
    p.add_argument("--size", type=int, choices=(224, 256), default=224)
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--threads", type=_positive_int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=_positive_int, default=30)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pipeline", metavar="VIDEO", help="instead: swap this whole video, the sequential and the "
                   "pipelined path side by side: FPS end to end, ms per stage, queue depths, peak memory; then "
                   "webcam mode's latency, the video delivered at its frame rate as by a camera")
    p.add_argument("--source", help="--pipeline: the face to put in (default: the bundled demo photo)")
    p.add_argument("--weights", help="--pipeline: weights name or folder (default: the bundled starter weights)")
    p.add_argument("--detector", default="blazeface", help="--pipeline: face detector (as for swap)")
    _add_min_eye_distance(p)
    _add_precision(p)
    p.add_argument("--every", type=_every, default=5, help="--pipeline: run the detector every N frames")
    p.add_argument("--video-rounds", type=_positive_int, default=1, help="--pipeline: passes per path, alternating")
    _add_encoder_options(p)
    p.set_defaults(run=_cmd_bench)

    p = sub.add_parser("tune", help="autotune the TVM build of the IDN (MetaSchedule) for a target")
    p.add_argument("--target", default="host", help="a named target (host, aarch64-linux, android-arm64) or a "
                   "TVM target as JSON; android-arm64 writes the aarch64-linux log it shares")
    p.add_argument("--trials", type=_positive_int, default=640, help="total measured candidates")
    p.add_argument("--per-task", type=_positive_int, default=16, help="most candidates per kernel in this run")
    p.add_argument("--retune", type=int, default=0, metavar="N",
                   help="also search further on the N kernels that cost most per forward")
    p.add_argument("--rpc", metavar="HOST:PORT:KEY",
                   help="measure on devices registered with this TVM RPC tracker (e.g. a phone or board)")
    p.add_argument("--threads", type=_positive_int, help="cores to tune for (default: all)")
    p.add_argument("--size", type=int, choices=(224, 256), default=224)
    p.set_defaults(run=_cmd_tune)

    p = sub.add_parser("compile", help="build the IDN with TVM for a named target and write a deployable artefact")
    p.add_argument("--target", help="host, aarch64-linux, android-arm64, android-mali, cuda-sm90, or a TVM target as "
                   "JSON (default: host; cuda-sm90 with --backend tvm-cuda)")
    p.add_argument("--backend", choices=("tvm", "tvm-cuda"), default="tvm", help="kept for old scripts: "
                   "--backend tvm-cuda without --target means --target cuda-sm90")
    p.add_argument("--weights", help="folder from `mfs-fast convert` (the fixed heads are baked in)")
    p.add_argument("--size", type=int, choices=(224, 256), default=224)
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("-o", "--output", required=True, help="library to write (.so); Android: also OUT.tar, "
                   "the objects to link with the NDK; always OUT.manifest.json")
    p.set_defaults(run=_cmd_compile)

    p = sub.add_parser("rpc", help="run (parity check) or bench the IDN on a device over TVM RPC")
    p.add_argument("action", choices=("run", "bench"), help="run: one parity check; bench: also time it there")
    p.add_argument("--target", required=True, help="named target of the device (e.g. aarch64-linux) or TVM JSON")
    p.add_argument("--rpc", required=True, metavar="HOST:PORT[:KEY]",
                   help="an RPC server, or a tracker and the device key (e.g. 127.0.0.1:9190:aarch64-qemu)")
    p.add_argument("--lib", help="upload this library (from `mfs-fast compile`) instead of building one")
    p.add_argument("--weights", help="folder from `mfs-fast convert` (default: random weights)")
    p.add_argument("--repeat", type=_positive_int, default=10, help="bench: timed runs on the device")
    p.add_argument("--size", type=int, choices=(224, 256), default=224)
    p.add_argument("--batch", type=_positive_int, default=1)
    p.set_defaults(run=_cmd_rpc)

    p = sub.add_parser("eval", help="the paper's evaluation protocol: ID retrieval, pose, expression, FD-dlib")
    p.add_argument("--sources", nargs="+", required=True, help="images of the identities to swap in (2+ for retrieval)")
    p.add_argument("--targets", nargs="+", required=True, help="images and/or videos to swap them onto")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--weights", help="weights folder for the model method")
    weights.add_argument("--random-weights", type=int, metavar="SEED", help="seeded random weights (smoke runs)")
    p.add_argument("--methods", nargs="+", default=["model", "target", "paste-source"],
                   choices=METHODS,
                   help="methods to compare (default: model target paste-source; mesh-warp: the classical swap)")
    p.add_argument("--frames", type=_positive_int, default=16, help="video targets: how many frames to process")
    p.add_argument("--stride", type=_positive_int, default=1, help="video targets: take every k-th frame")
    p.add_argument("--samples", type=_positive_int, default=4, help="(source, target) pairs shown in samples.png")
    p.add_argument("--no-mesh", action="store_true", help="expression from the 5 points only")
    p.add_argument("--detector", default="blazeface", help="blazeface, or the path of an SCRFD .onnx file "
                   "(scrfd alone: the file named by $MFS_FAST_SCRFD_MODEL)")
    p.add_argument("--identity-encoder", default="dlib", choices=OFFLINE_ENCODERS,
                   help="network that scores identity retrieval (FD-dlib always uses dlib); faceres and "
                   "mobileface need ./run.sh setup (npm); see docs/identity_encoders.md")
    p.add_argument("--detail", type=_detail, metavar="PIXELS",
                   help="model method: keep the target's detail finer than PIXELS crop pixels (0: off; default: "
                   "the weights' own)")
    _add_paste_options(p, "model method: ")
    p.add_argument("-o", "--output", required=True, help="folder for metrics.json, metrics.md, samples.png")
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("demo", help="a two-person swap from photos shipped with the package, no files needed")
    p.add_argument("--source", help="source photo (default: Grace Hopper's official portrait)")
    p.add_argument("--target", help="target photo (default: Eileen Collins' NASA portrait, skimage's astronaut)")
    p.add_argument("--weights", help="a store name or weights folder (default: official when installed, else the "
                   "bundled starter weights)")
    p.add_argument("-o", "--output", default="demo_out", help="folder for source/target/swapped/side_by_side.png")
    p.set_defaults(run=_cmd_demo)

    p = sub.add_parser("weights", help="the local model store: list, get official, import, remove weights sets")
    actions = p.add_subparsers(dest="action", required=True, metavar="{list,get,import,remove}")
    a = actions.add_parser("list", help="installed weights sets: size, source, licence")
    a = actions.add_parser("get", help="download the official weights (Google Drive), or take them from --from")
    a.add_argument("name", choices=("official",), help="which release (only the official one can be fetched)")
    a.add_argument("--from", dest="source", metavar="FILE_OR_DIR",
                   help="a downloaded archive (zip/tar) or a folder with the two .pdparams: no internet needed")
    a.add_argument("--force", action="store_true", help="fetch again and replace an installed set")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a = actions.add_parser("import", help="store a weights folder (mfs-fast train/convert output) under a name")
    a.add_argument("folder", help="weights folder (or a mfs-fast train output folder holding weights/)")
    a.add_argument("--name", required=True, help="store name, then usable as --weights NAME")
    a.add_argument("--licence", help="licence to record (e.g. that of the training data)")
    a.add_argument("--force", action="store_true", help="replace a set of the same name")
    a = actions.add_parser("remove", help="delete a stored weights set")
    a.add_argument("name")
    for a in actions.choices.values():
        a.set_defaults(run=_cmd_weights)

    p = sub.add_parser("train", help="train the student (or the quality regressor Q) from a TOML config")
    p.add_argument("--config", help="TOML file (see configs/ and mfs_fast/train/config.py)")
    p.add_argument("--steps", type=_positive_int, help="override the config's steps (a run resumes from its checkpoint)")
    p.add_argument("--output", help="override the config's output folder (relative to the current directory)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the config's device")
    p.add_argument("--export-only", action="store_true", help="write weights from the last checkpoint and stop")
    p.add_argument("--max-minutes", type=_non_negative_float,
                   help="override the config's max_minutes: stop after this many minutes of steps, then export")
    p.add_argument("--pack-cache", nargs=2, metavar=("SRC", "DST"),
                   help="pack the cache folder SRC into the file DST to carry to a GPU machine, and stop "
                        "(mfs_fast/train/cache_pack.py; unpack there with python -m mfs_fast.train.cache_pack)")
    p.add_argument("--pack-max-mb", type=_non_negative_float, default=35.0,
                   help="--pack-cache: the largest pack in MB; the crops' quality is fitted to it (default 35)")
    p.add_argument("--pack-pixel-upscale", type=_non_negative_float, default=0.0,
                   help="--pack-cache: crops upscaled more than this (never pixel targets) at half size and "
                        "without mesh points; the config's max_pixel_upscale (default 0: keep all)")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("verify", help="is an image or video marked as made by mfs_fast (invisible watermark, "
                       "metadata)? exit 0: marked, 1: not marked")
    p.add_argument("file", help="image or video (recognised by content)")
    p.add_argument("--frames", type=_positive_int, default=12, help="video: how many evenly spaced frames to check")
    p.set_defaults(run=_cmd_verify)

    p = sub.add_parser("doctor", help="which backends, detectors, identity encoders, teachers, eval methods "
                       "and native parts work on this machine")
    p.set_defaults(run=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    from .signals import Terminated, terminate_raises_interrupt

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed as one line
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = _print_warning
        try:
            with terminate_raises_interrupt():
                status = args.run(args)
        except Terminated:
            return _fail("stopped by SIGTERM; unfinished outputs were removed", EXIT_TERMINATED)
        except KeyboardInterrupt:
            return _fail("interrupted (Ctrl-C); unfinished outputs were removed", EXIT_INTERRUPTED)
        except MfsError as error:
            return _fail(str(error), EXIT_BAD_INPUT)
        except OSError as error:  # a file the checks above could not foresee (disk full, permissions)
            where = f" {error.filename}" if error.filename else ""
            return _fail(f"{error.strerror or error}:{where}; check the path and free space", EXIT_BAD_INPUT)
        except Exception as error:
            if os.environ.get(DEBUG_ENV):
                raise
            return _fail(f"internal error ({type(error).__name__}: {error}); this is a bug: please report it "
                         f"with the traceback that {DEBUG_ENV}=1 prints", EXIT_INTERNAL)
    return status or 0


def _fail(message: str, status: int) -> int:
    """Print ``message`` as the one ``error:`` line (multi-line messages joined) and return ``status``."""
    one_line = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"mfs-fast: error: {one_line}", file=sys.stderr, flush=True)
    return status


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"mfs-fast: warning: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
