"""``mfs-fast weights get official``: the official MobileFaceSwap weights into the model store.

From Google Drive (the file the official README links to) or from a file or folder the user
downloaded by hand (Baidu mirror, another machine). The archive is unpacked by
:mod:`mfs_fast.archive` (only the two ``.pdparams``, with size limits), the files are read by
the restricted unpickler and converted to the project's format, and every sha256 is printed and
checked: against the hashes pinned below once someone publishes them, until then against the
ones recorded at this machine's first successful fetch (``$MFS_FAST_HOME/official-sha256.json``;
delete it to accept a changed release).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .archive import Limits, extract
from .atomic import PendingFile
from .checkpoints.native_format import sha256_of
from .checkpoints.official import ARCFACE_FILE, SWAP_FILE, find_official_files
from .download import Fetch, fetch
from .errors import CheckpointError, MfsError
from .store import commit, home, installed, staging

NAME = "official"
FILE_ID = "1ZIzGLDB15GRAZAbkfNR0hNWdgQpxeA_r"
VIEW_URL = f"https://drive.google.com/file/d/{FILE_ID}/view"
DEFAULT_URL = f"https://drive.google.com/uc?export=download&id={FILE_ID}"
URL_ENV = "MFS_FAST_OFFICIAL_URL"  # another URL for the same archive (a mirror; tests: a local server)
# Pin these once the real release's hashes are known (printed by every fetch); None / empty:
# trust on first use, then the recorded hashes must match.
PINNED_ARCHIVE_SHA256: str | None = None
PINNED_FILE_SHA256: dict[str, str] = {}
LICENCE = ("Apache-2.0, the licence of the official repository (Seanseattle/MobileFaceSwap), which states "
           "no separate terms for the weights")
MAX_ARCHIVE_BYTES = 1 << 30  # the release is a few hundred MB
LIMITS = Limits(max_members=1000, max_file_bytes=768 << 20, max_total_bytes=3 << 29)
MANUAL = (f"; or download it by hand ({VIEW_URL}, or the Baidu link in the official README) and run "
          f"`mfs-fast weights get official --from FILE_OR_FOLDER`")
WANTED = (SWAP_FILE, ARCFACE_FILE)


def record_path() -> Path:
    return home() / "official-sha256.json"


def get_official(source: str | Path | None = None, *, url: str | None = None, force: bool = False,
                 progress: bool = True, timeout: float = 30.0, log: Callable[[str], None] = print) -> Path:
    """Install the official weights as the store's ``official`` set; returns its folder.

    ``source``: a downloaded archive (zip or tar) or a folder holding the two ``.pdparams``;
    None downloads from ``url`` (default: ``$MFS_FAST_OFFICIAL_URL``, else Google Drive).
    ``force``: fetch and replace even when the set is already installed.
    """
    if source is not None and not Path(source).exists():
        raise MfsError(f"--from {source}: no such file or folder")
    existing = installed(NAME)
    if existing is not None and not force:
        log(f"the official weights are already installed in {existing} (--force fetches them again)")
        return existing
    downloaded = None
    if source is None:
        downloaded = _download(url or os.environ.get(URL_ENV) or DEFAULT_URL, progress, timeout)
    try:
        with staging() as stage:
            files, archive_sha = _gather(downloaded or Path(source), stage)
            file_sha = {name: sha256_of(path) for name, path in files.items()}
            if archive_sha:
                log(f"sha256 {archive_sha}  {(downloaded or Path(source)).name} (archive)")
            for name, digest in file_sha.items():
                log(f"sha256 {digest}  {name}")
            _check_hashes(archive_sha if downloaded else None, file_sha)
            target = _convert_and_store(files, stage, file_sha, archive_sha, downloaded, source)
            _record(archive_sha if downloaded else None, file_sha)
    except BaseException:
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)  # a bad download must not be reused; a user's file is never touched
        raise
    if downloaded is not None:
        downloaded.unlink(missing_ok=True)
    log(f"installed the official weights in {target}: use them with --weights official")
    return target


def _download(url: str, progress: bool, timeout: float) -> Path:
    dest = home() / "downloads" / f"official-{FILE_ID}.archive"
    how = Fetch(max_bytes=MAX_ARCHIVE_BYTES, timeout=timeout, progress=progress, label="official weights",
                manual_hint=MANUAL)
    return fetch(url, dest, how)


def _gather(source: Path, stage: Path) -> tuple[dict[str, Path], str | None]:
    """The two official files (unpacked into ``stage`` from an archive) and the archive's sha256."""
    if source.is_dir():
        for folder in (source, source / "checkpoints"):
            found = find_official_files(folder)
            if found is not None:
                return dict(zip(WANTED, found)), None
        hint = ("; it is in the project's own format: `mfs-fast weights import DIR --name NAME`"
                if (source / "manifest.json").is_file() else "")
        raise CheckpointError(f"{source} holds neither {SWAP_FILE} and {ARCFACE_FILE} nor a checkpoints/ folder "
                              f"with them{hint}")
    unpacked = stage / "unpacked"
    unpacked.mkdir()
    return extract(source, unpacked, WANTED, LIMITS), sha256_of(source)


def _check_hashes(archive_sha: str | None, file_sha: dict[str, str]) -> None:
    recorded = _read_record()
    expected_archive = PINNED_ARCHIVE_SHA256 or recorded.get("archive")
    if archive_sha and expected_archive and archive_sha != expected_archive:
        raise CheckpointError(f"the downloaded archive's sha256 {archive_sha} differs from the expected "
                              f"{expected_archive} ({_origin(PINNED_ARCHIVE_SHA256)}): a corrupt or changed download, "
                              f"refused")
    expected_files = PINNED_FILE_SHA256 or recorded.get("files") or {}
    for name, digest in file_sha.items():
        if expected_files.get(name) and digest != expected_files[name]:
            raise CheckpointError(f"{name}'s sha256 {digest} differs from the expected {expected_files[name]} "
                                  f"({_origin(PINNED_FILE_SHA256)}): not the official release, refused")


def _origin(pinned: object) -> str:
    return "pinned in mfs_fast/official_release.py" if pinned else \
        f"recorded at the first fetch in {record_path()}; delete that file to accept a new release"


def _convert_and_store(files: dict[str, Path], stage: Path, file_sha: dict[str, str], archive_sha: str | None,
                       downloaded: Path | None, source: str | Path | None) -> Path:
    from .checkpoints import load_official, save_weights

    models = load_official(files[SWAP_FILE], files[ARCFACE_FILE])  # restricted unpickler, shape checks
    provenance = {
        "source": f"official MobileFaceSwap release, Google Drive file {FILE_ID}" if downloaded is not None
        else f"official MobileFaceSwap release, from {Path(source).resolve()}",
        "licence": LICENCE,
        "converted_from": file_sha,
        "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if archive_sha:
        provenance["archive_sha256"] = archive_sha
    out = save_weights(models, stage / NAME, provenance=provenance)
    return commit(out, NAME, replace=True)


def _read_record() -> dict:
    try:
        data = json.loads(record_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise MfsError(f"{record_path()} is unreadable ({e}): delete it to record the hashes again") from None
    return data if isinstance(data, dict) else {}


def _record(archive_sha: str | None, file_sha: dict[str, str]) -> None:
    """Remember the first hashes seen (trust on first use); pinned hashes need no record."""
    recorded = _read_record()
    updated = dict(recorded)
    if archive_sha and not PINNED_ARCHIVE_SHA256:
        updated.setdefault("archive", archive_sha)
    if not PINNED_FILE_SHA256:
        updated.setdefault("files", file_sha)
    if updated != recorded:
        with PendingFile(record_path()) as pending:
            pending.path.write_text(json.dumps(updated, indent=1, sort_keys=True))
            pending.commit()
