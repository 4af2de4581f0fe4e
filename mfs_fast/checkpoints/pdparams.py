"""Read official Paddle ``.pdparams`` files without Paddle, treating them as untrusted.

A ``.pdparams`` is a pickled ``dict`` of parameter name -> numpy array (plus the bookkeeping
entry ``StructuredToParameterName@@``). Unpickling can run arbitrary code, so only the globals
needed to rebuild plain numpy arrays are admitted; anything else is refused. Arrays are built by
:class:`_ArrayStub`, which checks the shape a file claims against the bytes it holds, so a damaged
or hostile header cannot make us allocate more than the file's size.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, UnsafeCheckpointError

PADDLE_NAME_TABLE_KEY = "StructuredToParameterName@@"

# (module, name) pairs a numpy-array pickle needs, across numpy 1.x and 2.x spellings.
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 pickles spell ``bytes`` as ``_codecs.encode(text, 'latin1')``; allow only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeCheckpointError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _ArrayStub:
    """Stands in for a pickled ndarray: numpy's own ``__setstate__`` allocates the claimed shape
    before it looks at the data; this checks shape x itemsize == the bytes present first."""

    dtype: np.dtype | None = None
    array: np.ndarray | None = None

    def __setstate__(self, state: tuple) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed array state")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) \
                or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"malformed array header (shape {shape!r}, dtype {dtype!r})")
        self.dtype = dtype
        if dtype.hasobject:
            return  # refused with its key name by _validate_state
        if not isinstance(raw, (bytes, bytearray)) or math.prod(shape) * dtype.itemsize != len(raw):
            raise pickle.UnpicklingError(f"an array claims shape {list(shape)} of {dtype} but holds "
                                         f"{len(raw) if isinstance(raw, (bytes, bytearray)) else 'no'} bytes")
        self.array = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C").copy()


def _reconstruct(cls: object, shape: object, typecode: object) -> _ArrayStub:
    if cls is not np.ndarray:
        raise UnsafeCheckpointError(f"refusing to rebuild {cls!r}: only plain numpy arrays are allowed")
    return _ArrayStub()


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"refusing to load {module}.{name}: a checkpoint may only contain dicts, lists, "
            "numpy arrays and plain scalars (the file is corrupt or was crafted to run code)"
        )

    def persistent_load(self, pid):
        raise UnsafeCheckpointError("refusing a pickle with persistent references (not a .pdparams file)")


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """Load a ``.pdparams`` state dict as ``{name: float32 array}``; refuse anything unsafe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()  # a length field past the end then fails as truncated, allocating nothing
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        _check_sizes(data)
        state = _PlainDataUnpickler(io.BytesIO(data)).load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{path}: {e}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, AttributeError, KeyError,
            OverflowError, UnicodeDecodeError, RecursionError, SystemError) as e:
        # what pickle and the few admitted constructors raise on damaged data (numpy's
        # dtype.__setstate__ raises SystemError on a malformed state tuple)
        raise CheckpointError(f"{path} is truncated or not a Paddle .pdparams file ({type(e).__name__}: {e})") from None
    return _validate_state(state, path)


def _check_sizes(data: bytes) -> None:
    """Walk the opcodes once in pure Python, which reads every length against the bytes present and
    checks memo indices: the C unpickler would first allocate whatever a damaged field claims (a
    memo slot 21 million entries up grows its memo table to 350 MB)."""
    for count, (opcode, arg, _) in enumerate(pickletools.genops(data)):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= int(arg) <= count:
            raise pickle.UnpicklingError(f"memo index {arg} out of range")


def _validate_state(state: object, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of parameters, found {type(state).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if key == PADDLE_NAME_TABLE_KEY:
            continue
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: parameter names must be strings, found {key!r}")
        if isinstance(value, _ArrayStub):
            value = value.array if value.array is not None else np.empty(0, value.dtype or object)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise CheckpointError(f"{path}: entry {key!r} is {kind}, not a numeric array")
        arrays[key] = np.ascontiguousarray(value, dtype=np.float32)
    return arrays


def write_pdparams(state: dict[str, np.ndarray], path: str | Path, protocol: int = 4) -> None:
    """Write a state dict the way ``paddle.save`` lays it out (protocol 4 as Paddle 2.x does;
    older releases wrote protocol 2). Used by tests and tools."""
    table = collections.OrderedDict((k, f"param_{i}") for i, k in enumerate(state))
    payload = dict(state)
    payload[PADDLE_NAME_TABLE_KEY] = table
    with Path(path).open("wb") as f:
        pickle.dump(payload, f, protocol=protocol)
