"""The project's own weights format: safetensors files plus a JSON manifest.

``DIR/manifest.json`` records, per file, its sha256, size and tensor shapes, so a truncated or
altered download is caught before anything runs. Tensor names are our PyTorch module names.

A file may be split into shards (``swap-00001-of-00002.safetensors`` ...) when it would exceed a
size limit (``save_weights(max_file_bytes=...)``, :func:`reshard_weights`): some transports cap
the size of one file (a lent GPU machine hands back files under 16 MiB). The manifest then lists
the shards, each with its sha256, under the file's name; loading reads either layout.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, atomic_write
from ..errors import CheckpointError
from ..identity.dlib_adapter import IDENTITY_KIND as DLIB_KIND, DlibAdaptedIdentity
from ..identity.irse import IRSEResNet
from ..models import IDN, IIN, FaceSwapModels
from ..face.paste import EYES
from ..models.bundle import MAX_PASTE_DETAIL

MANIFEST = "manifest.json"
FORMAT_NAME = "mfs_fast.weights"
FORMAT_VERSION = 1
# written only when a file is sharded, so that builds which predate shards refuse such a folder by
# its version instead of calling it damaged; unsharded folders stay version 1
SHARDED_FORMAT_VERSION = 2
READABLE_VERSIONS = (FORMAT_VERSION, SHARDED_FORMAT_VERSION)
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
                 storage: str = "fp32", max_file_bytes: int | None = None) -> Path:
    """Write ``models`` to ``folder`` (created; files are replaced atomically).

    ``storage``: ``fp32``; ``fp16`` (floats halved); or ``int8`` (the large matrices of the
    IIN and the identity adapter as int8 with one fp32 scale per output row, everything else
    fp16): how the starter weights fit in the repository. Loading always gives fp32 models.
    ``max_file_bytes``: split any file that would be larger into shards of at most this size.
    """
    if storage not in STORAGE:
        raise CheckpointError(f"storage must be one of {', '.join(STORAGE)}, got {storage!r}")
    stored = {}
    for name, fields in FILES.items():
        tensors = {}
        for field in fields:
            for key, value in getattr(models, field).state_dict().items():
                tensors.update(encode_tensor(f"{field}.{key}", value.detach().cpu().contiguous(), storage, field))
        stored[name] = tensors
    manifest: dict = {"format": FORMAT_NAME, "provenance": provenance or {},
                      "identity": getattr(models.identity, "kind", IRSE_KIND), "storage": storage}
    if models.paste_detail:
        manifest["paste_detail"] = float(models.paste_detail)
    for key in ("paste_chroma", "paste_brightness"):
        if getattr(models, key) != 1.0:
            manifest[key] = float(getattr(models, key))
    if models.paste_eyes != "swap":
        manifest["paste_eyes"] = models.paste_eyes
    return _write_folder(Path(folder), stored, manifest, max_file_bytes)


def reshard_weights(source: str | Path, destination: str | Path, max_file_bytes: int) -> Path:
    """Copy a weights folder with every file at most ``max_file_bytes`` (shards where needed).

    The stored tensors are copied as they are (int8 stays int8, nothing is re-quantized); every
    file of ``source`` is checked against its manifest first."""
    source = Path(source)
    manifest = read_manifest(source / MANIFEST)
    stored = {}
    for name in FILES:
        entry = manifest["files"].get(name)
        if entry is None:
            raise CheckpointError(f"{source / MANIFEST} does not list {name}")
        stored[name] = _read_stored(source, name, entry)
    kept = {k: v for k, v in manifest.items() if k not in ("files", "version")}
    return _write_folder(Path(destination), stored, kept, max_file_bytes)


def shard_name(name: str, index: int, count: int) -> str:
    """``swap.safetensors`` -> ``swap-00001-of-00002.safetensors`` (``index`` from 1)."""
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{index:05d}-of-{count:05d}{dot}{suffix}"


def stored_files(manifest: dict) -> dict[str, str]:
    """Every file a (checked) manifest lists -> its sha256: whole files and shards alike."""
    files = {}
    for name, entry in manifest["files"].items():
        if "shards" in entry:
            files.update({shard["file"]: shard["sha256"] for shard in entry["shards"]})
        else:
            files[name] = entry["sha256"]
    return files


def _write_folder(folder: Path, stored: dict[str, dict[str, torch.Tensor]], manifest: dict,
                  max_file_bytes: int | None) -> Path:
    """Write each file's tensors (sharded past ``max_file_bytes``), then the manifest, then remove
    files of an earlier layout (a whole file now sharded, or shards now whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: _write_file(folder, name, tensors, max_file_bytes) for name, tensors in stored.items()}
    sharded = any("shards" in entry for entry in files.values())
    manifest = {**manifest, "files": files, "version": SHARDED_FORMAT_VERSION if sharded else FORMAT_VERSION}
    text = json.dumps(manifest, indent=1, sort_keys=True)
    atomic_write(folder / MANIFEST, text)
    current = set(stored_files(manifest))
    for path in folder.iterdir():
        if path.name not in current and any(_is_layout_of(path.name, name) for name in stored):
            path.unlink()
    return folder


def _is_layout_of(candidate: str, name: str) -> bool:
    """Whether ``candidate`` is ``name`` or one of its shards (of any count)."""
    stem, dot, suffix = name.partition(".")
    return candidate == name or re.fullmatch(re.escape(stem) + r"-\d{5}-of-\d{5}" + re.escape(dot + suffix),
                                             candidate) is not None


def _write_file(folder: Path, name: str, tensors: dict[str, torch.Tensor], max_file_bytes: int | None) -> dict:
    """One file of the format, whole or as shards; returns its manifest entry."""
    entry: dict = {"tensors": {k: list(v.shape) for k, v in tensors.items()},
                   "dtypes": sorted({str(v.dtype).replace("torch.", "") for v in tensors.values()})}
    groups = _shard_groups(tensors, max_file_bytes, name) if max_file_bytes else [list(tensors)]
    written = []
    for index, keys in enumerate(groups, start=1):
        path = folder / (name if len(groups) == 1 else shard_name(name, index, len(groups)))
        part = {k: tensors[k] for k in keys}
        with atomic_path(path) as tmp:
            save_file(part, str(tmp))
        size = path.stat().st_size
        if max_file_bytes and size > max_file_bytes:  # the header estimate below is generous: a bug if seen
            raise CheckpointError(f"{path} came out at {size} bytes, over the limit of {max_file_bytes}")
        written.append({"file": path.name, "sha256": sha256_of(path), "bytes": size})
    if len(written) == 1:
        return {**entry, "sha256": written[0]["sha256"], "bytes": written[0]["bytes"]}
    return {**entry, "shards": written, "bytes": sum(shard["bytes"] for shard in written)}


def _shard_groups(tensors: dict[str, torch.Tensor], max_file_bytes: int, name: str) -> list[list[str]]:
    """Tensor names per shard, in name order (the same shards whatever order the tensors came
    in), each shard's estimated file size within the limit (a tensor is never split: the limit
    must hold the largest one)."""
    def cost(key: str) -> int:  # data + a header entry ({"name":{"dtype":..,"shape":[..],"data_offsets":[..]}})
        value = tensors[key]
        return value.numel() * value.element_size() + len(key) + 64 + 24 * value.dim()

    budget = max_file_bytes - 4096  # 8-byte length, header braces and padding, with room to spare
    groups: list[list[str]] = [[]]
    used = 0
    for key in sorted(tensors):
        size = cost(key)
        if size > budget:
            raise CheckpointError(f"{name}: tensor {key!r} alone takes {size} bytes, more than a "
                                  f"{max_file_bytes}-byte file holds: store the weights as int8 or fp16")
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(key)
        used += size
    return groups


def load_weights_dir(folder: str | Path) -> FaceSwapModels:
    """Load a folder written by :func:`save_weights`, checking hashes and shapes first."""
    folder = Path(folder)
    manifest = read_manifest(folder / MANIFEST)
    models = _empty_models(manifest.get("identity", IRSE_KIND), folder / MANIFEST)
    for name, fields in FILES.items():
        entry = manifest["files"].get(name)
        if entry is None:
            raise CheckpointError(f"{folder / MANIFEST} does not list {name}")
        tensors = decode_tensors(_read_stored(folder, name, entry))
        path = folder / name
        for field in fields:
            module = getattr(models, field)
            prefix = f"{field}."
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            _check_fits(state, module.state_dict(), f"{path} ({field})")
            module.load_state_dict(state, strict=True)
    models.paste_detail = _paste_detail(manifest, folder / MANIFEST)
    models.paste_chroma, models.paste_brightness = (_paste_share(manifest, key, folder / MANIFEST)
                                                    for key in ("paste_chroma", "paste_brightness"))
    models.paste_eyes = _paste_eyes(manifest, folder / MANIFEST)
    return models.eval()


def _paste_eyes(manifest: dict, path: Path) -> str:
    value = manifest.get("paste_eyes", "swap")
    if value not in EYES:
        raise CheckpointError(f"{path} is damaged: paste_eyes must be one of {', '.join(EYES)}, got {value!r}; "
                              "write the folder again")
    return value


def _paste_detail(manifest: dict, path: Path) -> float:
    value = manifest.get("paste_detail", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= MAX_PASTE_DETAIL:
        raise CheckpointError(f"{path} is damaged: paste_detail must be a number of crop pixels from 0 to "
                              f"{MAX_PASTE_DETAIL:g}, got {value!r}; write the folder again")
    return float(value)


def _paste_share(manifest: dict, key: str, path: Path) -> float:
    value = manifest.get(key, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise CheckpointError(f"{path} is damaged: {key} must be a share from 0 to 1, got {value!r}; "
                              "write the folder again")
    return float(value)


def _read_stored(folder: Path, name: str, entry: dict) -> dict[str, torch.Tensor]:
    """The stored tensors of one file of the format, whole or sharded, each file checked
    against the manifest's sha256 before it is parsed."""
    parts = entry["shards"] if "shards" in entry else [{"file": name, "sha256": entry["sha256"]}]
    tensors: dict[str, torch.Tensor] = {}
    for number, part in enumerate(parts, start=1):
        path = folder / part["file"]
        what = f" (shard {number} of {len(parts)} of {name})" if "shards" in entry else ""
        if not path.is_file():
            raise CheckpointError(f"weights file missing: {path}{what}")
        actual = sha256_of(path)
        if actual != part["sha256"]:
            raise CheckpointError(f"{path}{what} is corrupt: sha256 {actual[:12]}... differs from the manifest's "
                                  f"{part['sha256'][:12]}...")
        tensors.update(read_safetensors(path))
    return tensors


def _empty_models(identity_kind: str, source: Path) -> FaceSwapModels:
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
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} is format {manifest.get('format')!r} v{manifest.get('version')!r}; "
            f"this build reads {FORMAT_NAME!r} v{' and v'.join(map(str, READABLE_VERSIONS))}"
        )
    files, identity = manifest.get("files"), manifest.get("identity", IRSE_KIND)
    if not isinstance(files, dict) or not isinstance(identity, str) or not all(
            isinstance(entry, dict) and (_is_shard_list(entry.get("shards")) if "shards" in entry
                                         else isinstance(entry.get("sha256"), str)) for entry in files.values()):
        raise CheckpointError(f"{path} is damaged: it needs 'files' (each with a 'sha256', or 'shards' each with a "
                              f"plain 'file' name and a 'sha256') and an 'identity' name; write the folder again "
                              f"with `mfs-fast convert` or `mfs-fast train --export-only`")
    return manifest


def _is_shard_list(shards) -> bool:
    """A manifest's shard list: non-empty, each a plain file name in the folder and a sha256."""
    return isinstance(shards, list) and bool(shards) and all(
        isinstance(shard, dict) and isinstance(shard.get("sha256"), str) and isinstance(shard.get("file"), str)
        and shard["file"] == Path(shard["file"]).name and shard["file"] not in ("", ".", "..", MANIFEST)
        for shard in shards)
