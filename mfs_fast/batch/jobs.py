"""What a batch is made of: the items of a folder or a CSV manifest, and the results log.

* **Items.** A folder gives every image and video under it (kind by content, as everywhere in
  mfs_fast; files with a media extension are items even when damaged, so a corrupt input fails
  with its error in the results instead of vanishing; other files are kept only when their bytes
  are an image or video). A manifest is a CSV with a header: ``input``, ``output`` (may be empty:
  the input's name), optional ``source`` and ``reference`` per row; inputs, sources and references
  are relative to the manifest's folder, outputs to OUT_DIR. Outputs mirror the input tree; an
  image keeps its format where it can be written (else .png), a video its container where H.264
  fits it (else .mp4).
* **Results.** OUT_DIR/results.jsonl gets one JSON line per item as it finishes (input, output,
  status, faces, frames, seconds, error, attempts), flushed and synced, so a crash loses nothing
  already done and ``--resume`` can trust it: an item is skipped when its last line says done and
  its output exists.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import MediaError, MfsError
from ..media.image import OUTPUT_EXTENSIONS

RESULTS_NAME = "results.jsonl"
WORK_NAME = ".mfs-batch-work"  # split video segments and their swaps, under OUT_DIR (removed when done)
MANIFEST_COLUMNS = ("input", "output", "source", "reference")
IMAGE_SUFFIXES = frozenset({*OUTPUT_EXTENSIONS, ".gif", ".heic", ".jfif", ".pgm", ".ppm"})
VIDEO_CONTAINERS = frozenset({".mp4", ".m4v", ".mov", ".mkv"})  # what the video writer can produce
VIDEO_SUFFIXES = frozenset({*VIDEO_CONTAINERS, ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"})


@dataclass(frozen=True)
class Item:
    """One input to swap into one output; ``source`` / ``reference``: this row's own (None: the batch's)."""

    input: Path
    output: Path
    key: str  # the output relative to OUT_DIR: names the item in results.jsonl
    source: Path | None = None
    reference: Path | None = None


@dataclass
class Result:
    """One finished item, as a results.jsonl line."""

    input: str
    output: str
    status: str  # "done" or "failed"
    faces: int = 0
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    attempts: int = 1

    def line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


def collect_items(job: Path, out_dir: Path) -> tuple[list[Item], list[Path]]:
    """The items of ``job`` (a folder or a CSV manifest) and the files of a folder left out as not
    media; a manifest that cannot be used is an :class:`MfsError` naming the row and what to do."""
    job = Path(job)
    if not job.exists():
        raise MfsError(f"batch job not found: {job} (give a folder of images and videos or a CSV manifest)")
    if job.is_dir():
        return _folder_items(job, Path(out_dir))
    return _manifest_items(job, Path(out_dir)), []


def _folder_items(folder: Path, out_dir: Path) -> tuple[list[Item], list[Path]]:
    from ..media import media_kind

    items, skipped = [], []
    out_resolved = out_dir.resolve()
    for path in sorted(_files_under(folder, out_resolved)):
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            try:
                media_kind(path)
            except MediaError:
                skipped.append(path)
                continue
        relative = path.relative_to(folder)
        output = out_dir / relative.with_suffix(output_suffix(path))
        items.append(Item(path, output, output.relative_to(out_dir).as_posix()))
    if not items:
        raise MfsError(f"no images or videos found in {folder}")
    return items, skipped


def _files_under(folder: Path, skip: Path) -> Iterator[Path]:
    """Regular, non-hidden files under ``folder``, not descending into ``skip`` (OUT_DIR inside it)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
        yield from (Path(root) / name for name in files if not name.startswith(".") and (Path(root) / name).is_file())


def output_suffix(path: Path) -> str:
    """The output's extension for an input: its own when mfs_fast can write that format, else .png
    (images) or .mp4 (videos). Unknown extensions are judged by content."""
    suffix = path.suffix.lower()
    if suffix in OUTPUT_EXTENSIONS or suffix in VIDEO_CONTAINERS:
        return path.suffix
    if suffix in IMAGE_SUFFIXES:
        return ".png"
    if suffix in VIDEO_SUFFIXES:
        return ".mp4"
    from ..media import media_kind

    try:
        return ".png" if media_kind(path) == "image" else ".mp4"
    except MediaError:
        return ".png"  # fails as an item, with its error, whatever its name


def _manifest_items(manifest: Path, out_dir: Path) -> list[Item]:
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = [{(key or "").strip(): value for key, value in row.items()} for row in reader]
            header = [name.strip() for name in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as error:
        raise MfsError(f"cannot read the manifest {manifest} as CSV ({error}); give a CSV file with the header "
                       f"{','.join(MANIFEST_COLUMNS)} (source, reference optional)") from None
    if not rows:
        raise MfsError(f"the manifest {manifest} has no rows; it needs a header line "
                       f"{','.join(MANIFEST_COLUMNS)} and one line per input")
    unknown = [name for name in header if name not in MANIFEST_COLUMNS]
    if "input" not in header or unknown:
        raise MfsError(f"the manifest {manifest} has the columns {', '.join(header) or '(none)'}; it needs input and "
                       f"output (output may be left empty), and may have source and reference")
    items, seen = [], {}
    for number, row in enumerate(rows, start=2):
        value = {name: (row.get(name) or "").strip() for name in MANIFEST_COLUMNS}
        where = f"{manifest}, line {number}"
        if not value["input"]:
            raise MfsError(f"{where}: the input is empty")
        path = base / value["input"]
        output = value["output"] or Path(value["input"]).with_suffix(output_suffix(path)).name
        key = _inside(out_dir, output, where)
        if key in seen:
            raise MfsError(f"{where}: the output {output} is also the output of line {seen[key]}; give each row its own")
        seen[key] = number
        items.append(Item(path, out_dir / key, key, *(base / value[name] if value[name] else None
                                                      for name in ("source", "reference"))))
    return items


def _inside(out_dir: Path, output: str, where: str) -> str:
    """``output`` as a path relative to OUT_DIR, refusing one that leaves it."""
    relative = Path(output)
    if relative.is_absolute() or ".." in relative.parts:
        raise MfsError(f"{where}: the output {output} must be a path inside the output folder (relative, no '..')")
    return relative.as_posix()


class ResultsLog:
    """OUT_DIR/results.jsonl: appended one line per finished item, each line synced to disk."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / RESULTS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, result: Result) -> None:
        self._handle.write(result.line() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def finished_keys(out_dir: Path) -> set[str]:
    """Outputs (results.jsonl keys) whose last result line says done and whose file exists: what
    ``--resume`` skips. A torn last line (a crash mid-write) is ignored."""
    path = Path(out_dir) / RESULTS_NAME
    if not path.exists():
        return set()
    last: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            last[entry["output"]] = entry["status"]
        except (ValueError, KeyError, TypeError):
            continue
    return {key for key, status in last.items() if status == "done" and (Path(out_dir) / key).is_file()}


def read_results(out_dir: Path) -> list[dict]:
    """Every parsed line of OUT_DIR/results.jsonl, in order (for reports and tests)."""
    path = Path(out_dir) / RESULTS_NAME
    lines: Iterable[str] = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]
