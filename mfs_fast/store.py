"""The local model store: named weights sets, so ``--weights official`` works from any folder.

Layout: ``$MFS_FAST_HOME/models/<name>/`` (default ``${XDG_CACHE_HOME:-~/.cache}/mfs_fast``), one
folder per set in the project's own format (safetensors + ``manifest.json`` with a sha256 per file);
the manifest's ``provenance`` records where the set came from (``source``) and its ``licence``.
``starter`` names the weights bundled with the package and is never stored or removed.

Every write goes through :func:`staging` (a hidden folder inside the store, removed whatever
happens) and :func:`commit` (one rename), so a failed or interrupted install leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError, MfsError

HOME_ENV = "MFS_FAST_HOME"
BUILTIN = "starter"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STARTER_SOURCE = "bundled with mfs_fast: the project's own student (mfs_fast/weights/README.md)"
STARTER_LICENCE = "research and demonstration only (licences of its training data)"


def home() -> Path:
    """The folder holding the store and its downloads (``$MFS_FAST_HOME`` overrides it)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mfs_fast"


def models_dir() -> Path:
    return home() / "models"


def check_name(name: str) -> str:
    """``name`` if it can name a stored set (letters, digits, ``._-``; no path), else MfsError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise MfsError(f"{name!r} cannot name a weights set: use 1-64 letters, digits, '.', '_' or '-', "
                       f"starting with a letter or digit")
    return name


def installed(name: str) -> Path | None:
    """The folder of the stored set ``name`` (``starter``: the bundled one), or None."""
    if name == BUILTIN:
        from .weights import STARTER_DIR

        return STARTER_DIR if (STARTER_DIR / "manifest.json").is_file() else None
    if not NAME_PATTERN.fullmatch(name):
        return None
    folder = models_dir() / name
    return folder if (folder / "manifest.json").is_file() else None


def resolve_weights(spec: str | os.PathLike) -> Path:
    """The folder meant by ``weights=`` / ``--weights``: an existing folder or anything spelled as a
    path wins; otherwise a bare name is looked up in the store (``starter`` is the bundled set)."""
    if not isinstance(spec, str):
        return Path(spec)
    path = Path(spec).expanduser()
    if path.exists() or "/" in spec or os.sep in spec or not NAME_PATTERN.fullmatch(spec):
        return path
    found = installed(spec)
    if found is not None:
        return found
    hint = "get them with `mfs-fast weights get official`" if spec == "official" else \
        "`mfs-fast weights list` shows what is installed"
    raise CheckpointError(f"no weights named {spec!r}: it is neither a folder here nor a set in the model store "
                          f"({models_dir()}); {hint}")


@dataclass(frozen=True)
class StoredWeights:
    """One row of ``mfs-fast weights list``."""

    name: str
    path: Path
    bytes: int
    source: str
    licence: str
    builtin: bool = False


def list_weights() -> list[StoredWeights]:
    """The bundled starter set (when present) and every stored set, by name; never raises on a
    damaged folder (its source says what is wrong)."""
    rows = []
    starter = installed(BUILTIN)
    if starter is not None:
        rows.append(StoredWeights(BUILTIN, starter, _folder_bytes(starter), STARTER_SOURCE, STARTER_LICENCE, True))
    root = models_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    for folder in folders:
        source, licence = _describe(folder)
        rows.append(StoredWeights(folder.name, folder, _folder_bytes(folder), source, licence))
    return rows


def _describe(folder: Path) -> tuple[str, str]:
    try:
        provenance = json.loads((folder / "manifest.json").read_text()).get("provenance") or {}
    except (OSError, ValueError, AttributeError) as e:
        return f"damaged ({type(e).__name__}): remove it with `mfs-fast weights remove {folder.name}`", "?"
    if not isinstance(provenance, dict):
        return "?", "?"
    return str(provenance.get("source", "not recorded")), str(provenance.get("licence", "not recorded"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def remove_weights(name: str) -> Path:
    """Delete the stored set ``name``; returns the folder it was in."""
    check_name(name)
    if name == BUILTIN:
        raise MfsError("'starter' is bundled with mfs_fast and cannot be removed")
    folder = models_dir() / name
    if not folder.is_dir():
        raise MfsError(f"no weights named {name!r} in the model store ({models_dir()}); "
                       f"`mfs-fast weights list` shows what is installed")
    doomed = folder.with_name(f".removing-{name}-{secrets.token_hex(4)}")
    os.rename(folder, doomed)  # gone from the store at once, even if deleting the files is slow
    shutil.rmtree(doomed, ignore_errors=True)
    return folder


@contextmanager
def staging() -> Iterator[Path]:
    """A fresh hidden folder inside the store (same file system, so :func:`commit` is one rename)
    for unpacking and writing; removed on exit, whatever happened."""
    root = models_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    except OSError as e:
        raise MfsError(f"cannot write to the model store {root} ({e.strerror or e}); "
                       f"set {HOME_ENV} to a writable folder") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def commit(folder: Path, name: str, replace: bool = False) -> Path:
    """Move a finished weights ``folder`` (inside :func:`staging`) into the store as ``name``."""
    check_name(name)
    if name == BUILTIN:
        raise MfsError("'starter' names the bundled weights: choose another name")
    target = models_dir() / name
    if target.exists():
        if not replace:
            raise MfsError(f"{name!r} is already in the model store ({target}): pass --force to replace it, "
                           f"or choose another --name")
        old = target.with_name(f".replaced-{name}-{secrets.token_hex(4)}")
        os.rename(target, old)
        os.rename(folder, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(folder, target)
    return target


def import_weights(folder: str | Path, name: str, licence: str | None = None, replace: bool = False) -> Path:
    """Validate a weights folder (``mfs-fast train`` output, ``mfs-fast convert`` output, or the two
    official files) and store it as ``name``; returns the stored folder.

    Our own format is copied file by file (its storage, e.g. int8, is kept) and the copies are
    checked against the manifest's sha256; official files are read through the restricted unpickler
    and converted. Either way the set is fully loaded once, so a broken one is refused up front.
    """
    from .checkpoints import load_weights, save_weights
    from .checkpoints.native_format import MANIFEST, read_manifest, sha256_of, stored_files

    check_name(name)
    if name == BUILTIN:
        raise MfsError("'starter' names the bundled weights: choose another --name")
    if installed(name) is not None and not replace:
        raise MfsError(f"{name!r} is already in the model store: pass --force to replace it, or choose another --name")
    source_dir = _weights_folder(Path(folder))
    models = load_weights(source_dir)  # every check the loaders make: hashes, shapes, unpickling
    with staging() as stage:
        out = stage / name
        origin = str(source_dir.resolve())
        if (source_dir / MANIFEST).is_file():
            manifest = read_manifest(source_dir / MANIFEST)
            out.mkdir()
            for file, sha256 in stored_files(manifest).items():  # whole files or shards
                shutil.copyfile(source_dir / file, out / file)
                if sha256_of(out / file) != sha256:
                    raise CheckpointError(f"{source_dir / file} changed while it was being copied; try again")
            provenance = dict(manifest.get("provenance") or {})
            provenance.update(source=f"imported from {origin}", licence=licence or provenance.get("licence")
                              or "not recorded (pass --licence)")
            manifest["provenance"] = provenance
            (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        else:
            from .checkpoints.official import find_official_files

            files = find_official_files(source_dir)
            save_weights(models, out, provenance={
                "source": f"imported from {origin} (official .pdparams files)",
                "licence": licence or "not recorded (pass --licence)",
                "converted_from": {p.name: sha256_of(p) for p in files}})
        return commit(out, name, replace=replace)


def _weights_folder(folder: Path) -> Path:
    """``folder``, or its ``weights/`` subfolder when it is a ``mfs-fast train`` output folder."""
    from .checkpoints.native_format import MANIFEST

    if not folder.is_dir():
        raise CheckpointError(f"{folder} is {'a file' if folder.exists() else 'missing'}: expected a weights folder")
    if not (folder / MANIFEST).is_file() and (folder / "weights" / MANIFEST).is_file():
        return folder / "weights"
    return folder
