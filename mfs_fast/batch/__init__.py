"""``mfs-fast batch``: every image and video of a folder or a CSV manifest, on a local process pool
or a Ray cluster, resumable and fault tolerant.

Which module does what:

* :mod:`.jobs`: the items (folder or manifest -> inputs and mirrored outputs) and results.jsonl.
* :mod:`.work`: what a worker does with its one Swapper (whatever process or actor holds it).
* :mod:`.driver`: tasks out, outcomes in; retries, joins of split videos, the results log, progress.
* :mod:`.segments`: long videos split at keyframes and joined without re-encoding, audio muxed once.
* :mod:`.local`: the default engine, a process pool; :mod:`.ray_engine`: Ray actors (optional extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MfsError
from .driver import Summary
from .jobs import RESULTS_NAME, collect_items, finished_keys, read_results
from .work import SwapSettings

__all__ = ["ENGINES", "RESULTS_NAME", "SwapSettings", "Summary", "read_results", "run_batch"]

ENGINES = ("local", "ray")
DEFAULT_SEGMENT_SECONDS = 60.0  # videos over twice this long are split into parts of about this length


def run_batch(job: str | Path, out_dir: str | Path, source: str | Path, *, weights: str | None = None,
              reference: str | Path | None = None, swapper_options: dict[str, Any] | None = None,
              every: int = 5, quality: int | None = None, preset: str | None = None, engine: str = "local",
              address: str | None = None, workers: int | None = None, threads: int | None = None,
              gpus: float = 0.0, resume: bool = False, retries: int = 2,
              segment_seconds: float = DEFAULT_SEGMENT_SECONDS, progress: bool = True) -> tuple[Summary, list[Path]]:
    """Swap ``source`` into every item of ``job`` (folder or CSV manifest), outputs under ``out_dir``
    mirroring the inputs, each result appended to ``out_dir``/results.jsonl as it finishes.

    ``resume``: skip items whose output exists and whose last result line says done (without it, an
    ``out_dir`` that already has results is refused, so a finished run is never redone by accident).
    ``retries``: how often a task whose worker died is run again. ``segment_seconds``: videos over
    twice this long are cut at keyframes into parts swapped in parallel (0: never). ``workers`` /
    ``threads``: local processes and threads each (default: one single-threaded worker per CPU);
    with ``engine="ray"``, actors and the CPUs each reserves; ``gpus``: GPUs per Ray actor.

    Returns the :class:`Summary` and the folder's files left out as neither image nor video.
    An interrupt (Ctrl-C, SIGTERM) stops the workers, removes unfinished outputs and re-raises;
    finished items stay recorded, so ``resume=True`` picks up from there.
    """
    from ..media import check_image_file
    from .driver import Driver

    if engine not in ENGINES:
        raise MfsError(f"unknown batch engine {engine!r}: choose one of {', '.join(ENGINES)}")
    out_dir = Path(out_dir).absolute()
    job = Path(job).absolute()
    if out_dir == job or out_dir.is_file():
        raise MfsError(f"the output folder {out_dir} must be a folder other than the input folder")
    if (out_dir / RESULTS_NAME).exists() and not resume:
        raise MfsError(f"{out_dir / RESULTS_NAME} holds an earlier run's results: add --resume to continue it, "
                       f"or choose another output folder")
    settings = SwapSettings(_absolute(source), _weights(weights), _absolute(reference), dict(swapper_options or {}),
                            every, quality, preset)
    for path in (settings.source, settings.reference):
        if path is not None:
            check_image_file(path)
    items, left_out = collect_items(job, out_dir)
    done = finished_keys(out_dir) if resume else set()
    todo = [item for item in items if item.key not in done]
    runner = _engine(engine, settings, address, workers, threads, gpus)
    driver = Driver(todo, out_dir, retries=retries, segment_seconds=segment_seconds, progress=progress,
                    skipped=len(items) - len(todo), marked=settings.swapper_options.get("watermark", True))
    try:
        if todo:
            runner.run(driver)
    finally:
        driver.close()
    return driver.summary, left_out


def _engine(name: str, settings: SwapSettings, address: str | None, workers: int | None, threads: int | None,
            gpus: float):
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(settings, address=address, actors=workers, threads=threads, gpus=gpus)
    if address or gpus:
        raise MfsError("--address and --gpus-per-actor are for --engine ray")
    from .local import LocalEngine

    return LocalEngine(settings, workers=workers, threads=threads)


def _absolute(path: str | Path | None) -> Path | None:
    """Paths as absolute ones: workers (Ray actors above all) need not share this process's folder."""
    return None if path is None else Path(path).absolute()


def _weights(weights: str | None) -> str | None:
    """A weights folder as an absolute path; a store name (official, starter, ...) as it is."""
    return str(Path(weights).absolute()) if weights and Path(weights).exists() else weights
