"""The project's own weights format: safetensors files plus a JSON manifest.

``DIR/manifest.json`` records, per file, its sha256, size and tensor shapes, so a truncated or
altered download is caught before anything runs. Tensor names are our PyTorch module names.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..models import FaceSwapModels

MANIFEST = "manifest.json"
FORMAT_NAME = "mfs_fast.weights"
FORMAT_VERSION = 1
# file name -> the FaceSwapModels fields stored in it (tensor names are "<field>.<key>").
FILES = {"swap.safetensors": ("iin", "idn"), "identity.safetensors": ("identity",)}
IRSE_KIND = "ir-se"
STORAGE = ("fp32", "fp16", "int8")
INT8_SCALE_SUFFIX = ".int8_scale"
INT8_MIN_ELEMENTS = 4096
# batch-norm and input statistics stay fp32 in every storage: they are tiny, and can exceed
# fp16's range (or need more than its 3 digits)
FP32_ALWAYS = ("running_mean", "running_var", "input_mean", "input_std")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(models: FaceSwapModels, folder: str | Path, provenance: dict | None = None,
                 storage: str = "fp32") -> Path:
    """Write ``models`` to ``folder`` (created; files are replaced atomically).

    ``storage``: ``fp32``; ``fp16`` (floats halved); or ``int8`` (the large matrices of the
    IIN and the identity adapter as int8 with one fp32 scale per output row, everything else
    fp16): how the starter weights fit in the repository. Loading always gives fp32 models.
    """
    if storage not in STORAGE:
        raise CheckpointError(f"storage must be one of {', '.join(STORAGE)}, got {storage!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "provenance": provenance or {}, "files": {},
                      "identity": getattr(models.identity, "kind", IRSE_KIND), "storage": storage}
    for name, fields in FILES.items():
        tensors = {}
        for field in fields:
            for key, value in getattr(models, field).state_dict().items():
                tensors.update(encode_tensor(f"{field}.{key}", value.detach().cpu().contiguous(), storage, field))
        path = folder / name
        _atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
        manifest["files"][name] = {
            "sha256": sha256_of(path),
            "bytes": path.stat().st_size,
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
            "dtypes": sorted({str(v.dtype).replace("torch.", "") for v in tensors.values()}),
        }
    text = json.dumps(manifest, indent=1, sort_keys=True)
    _atomic_write(folder / MANIFEST, lambda tmp: tmp.write_text(text))
    return folder


def load_weights_dir(folder: str | Path) -> FaceSwapModels:
    """Load a folder written by :func:`save_weights`, checking hashes and shapes first."""
    folder = Path(folder)
    manifest = read_manifest(folder / MANIFEST)
    models = _empty_models(manifest.get("identity", IRSE_KIND), folder / MANIFEST)
    for name, fields in FILES.items():
        entry = manifest["files"].get(name)
        path = folder / name
        if entry is None:
            raise CheckpointError(f"{folder / MANIFEST} does not list {name}")
        if not path.is_file():
            raise CheckpointError(f"weights file missing: {path}")
        actual = sha256_of(path)
        if actual != entry["sha256"]:
            raise CheckpointError(f"{path} is corrupt: sha256 {actual[:12]}... differs from the manifest's {entry['sha256'][:12]}...")
        tensors = decode_tensors(read_safetensors(path))
        for field in fields:
            module = getattr(models, field)
            prefix = f"{field}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            _check_fits(state, module.state_dict(), f"{path} ({field})")
            module.load_state_dict(state, strict=True)
    return models.eval()


def _empty_models(identity_kind: str, source: Path) -> FaceSwapModels:
    from ..models import IDN, IIN
    from ..models.dlib_identity import IDENTITY_KIND as DLIB_KIND, DlibAdaptedIdentity
    from ..models.irse import IRSEResNet

    kinds = {IRSE_KIND: IRSEResNet, DLIB_KIND: DlibAdaptedIdentity}
    if identity_kind not in kinds:
        raise CheckpointError(f"{source}: unknown identity net {identity_kind!r} (this build knows {', '.join(kinds)})")
    return FaceSwapModels(kinds[identity_kind](), IIN(), IDN())


def storage_roundtrip(models: FaceSwapModels, storage: str) -> FaceSwapModels:
    """What :func:`load_weights_dir` would return for ``models`` saved with ``storage``,
    without writing files (to measure a lossy storage's error before saving)."""
    copy = _empty_models(getattr(models.identity, "kind", IRSE_KIND), Path("<memory>"))
    for fields in FILES.values():
        for field in fields:
            encoded = {}
            for key, value in getattr(models, field).state_dict().items():
                encoded.update(encode_tensor(key, value.detach().cpu().contiguous(), storage, field))
            getattr(copy, field).load_state_dict(decode_tensors(encoded), strict=True)
    return copy.eval()


def encode_tensor(name: str, value: torch.Tensor, storage: str, field: str) -> dict[str, torch.Tensor]:
    """One state tensor as stored: as is, fp16, or int8 rows plus a per-row fp32 scale."""
    if storage == "fp32" or not value.is_floating_point() or name.endswith(FP32_ALWAYS):
        return {name: value}
    if storage == "int8" and field in ("iin", "identity") and value.dim() >= 2 and value.numel() >= INT8_MIN_ELEMENTS:
        rows = value.reshape(value.shape[0], -1).float()
        scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        quantized = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8).reshape(value.shape)
        return {name: quantized, name + INT8_SCALE_SUFFIX: scale}
    return {name: value.half()}


def decode_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_tensor` over a whole file: fp32 tensors by state name."""
    out = {}
    for name, value in tensors.items():
        if name.endswith(INT8_SCALE_SUFFIX):
            continue
        if value.dtype == torch.int8:
            scale = tensors.get(name + INT8_SCALE_SUFFIX)
            if scale is None:
                raise CheckpointError(f"int8 tensor {name!r} has no {INT8_SCALE_SUFFIX} entry")
            value = value.float() * scale.reshape(-1, *([1] * (value.dim() - 1)))
        elif value.is_floating_point():
            value = value.float()
        out[name] = value
    return out


def _check_fits(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str) -> None:
    problems = [f"missing key {k!r} (expected shape {list(v.shape)})" for k, v in own.items() if k not in state]
    problems += [f"unexpected key {k!r} with shape {list(v.shape)}" for k, v in state.items() if k not in own]
    problems += [
        f"key {k!r} has shape {list(v.shape)} in the file, model expects {list(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if problems:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems[:20]))


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a malformed one (bad header, data past the end) is a
    CheckpointError (the manifest's sha256 catches accidents, not a manifest rewritten to match)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


def read_manifest(path: Path) -> dict:
    """A weights folder's manifest, checked to be ours, of this format version and well formed."""
    if not path.is_file():
        raise CheckpointError(f"no {MANIFEST} in {path.parent}")
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path} holds a JSON {type(manifest).__name__}, not a weights manifest")
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is format {manifest.get('format')!r} v{manifest.get('version')!r}; "
            f"this build reads {FORMAT_NAME!r} v{FORMAT_VERSION}"
        )
    files, identity = manifest.get("files"), manifest.get("identity", IRSE_KIND)
    if not isinstance(files, dict) or not isinstance(identity, str) or not all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str) for entry in files.values()):
        raise CheckpointError(f"{path} is damaged: it needs 'files' (each with a 'sha256') and an 'identity' name; "
                              f"write the folder again with `mfs-fast convert` or `mfs-fast train --export-only`")
    return manifest


def _atomic_write(path: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
