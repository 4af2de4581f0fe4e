"""Which engine runs the MediaPipe .tflite graphs: LiteRT's XNNPACK kernels where the
``ai-edge-litert`` package is installed, else the project's own PyTorch executor.

Why two: on the 2-core dev VM LiteRT runs the face mesh in ~1.9 ms (0.8 ms a face in a batch
of 4) and full-range BlazeFace in ~2.6 ms, against ~4.6 ms and ~9.7 ms for the PyTorch port
(bench/RESULTS.md, "2026-12-06 detection"); LiteRT has no wheel for every platform (no
Windows build), so the PyTorch executor stays as the fallback, and the two are checked
against each other in tests/face/test_face_detection.py.

Both engines take NHWC float32 numpy batches and return the model's outputs in TFLite's own
shapes as numpy arrays, so callers do not care which one runs; nothing between them goes
through small multi-threaded torch ops, which cost a scheduler time slice each when the CPU is
busy (a 1x3x192x192 torch.zeros took 36 ms under load 12 on 2 cores). A LiteRT interpreter is
not safe to call from two threads at once: one model object per thread.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import MfsError
from ..preprocess import nhwc_to_nchw
from .tflite_graph import TFLiteGraph, load_tflite_graph

ENGINES = ("auto", "litert", "torch")
LITERT_PACKAGE = "ai_edge_litert"


def check_engine(engine: object) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else an MfsError listing them."""
    if engine not in ENGINES:
        raise MfsError(f"the face-model engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return str(engine)


def litert_available() -> bool:
    """Whether LiteRT (the ``ai-edge-litert`` package) can be imported here."""
    try:
        return importlib.util.find_spec(LITERT_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


_STDERR_LOCK = threading.Lock()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for the block. LiteRT's C++ core prints "INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU." there when an interpreter is made, which would
    break the CLI's promise of one clear line on stderr; its errors still arrive as exceptions."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LiteRTGraph:
    """A .tflite model run by LiteRT: one interpreter, its input resized to each call's batch.

    Why one: an interpreter per batch size kept an arena each (~3-4 MB an image: the mesh at
    batches 1-7 and the detector's tile passes held ~170 MB on the crowd clip). Resized, the
    arena grows to the largest batch seen and is reused: going back to a smaller batch costs
    ~0.1-0.3 ms, the first time up to a larger one ~8-13 ms (bench/RESULTS.md).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.threads = str(path), int(threads or torch.get_num_threads())
        with _native_stderr_silenced():
            self._interpreter = Interpreter(model_path=self.path, num_threads=self.threads)
            self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        self._input_index = details["index"]
        self.input_shape_nhwc = tuple(int(s) for s in details["shape"])
        self.batch = self.largest_batch = self.input_shape_nhwc[0]  # sized for now; the most so far
        self.output_names = [d["name"] for d in self._interpreter.get_output_details()]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model expects."""
        return self.input_shape_nhwc[1], self.input_shape_nhwc[2]

    def _sized_for(self, batch: int):
        if batch != self.batch:
            self._interpreter.resize_tensor_input(self._input_index, [batch, *self.input_shape_nhwc[1:]])
            self._interpreter.allocate_tensors()
            self.batch, self.largest_batch = batch, max(batch, self.largest_batch)
        return self._interpreter

    def __call__(self, x_nhwc: np.ndarray) -> tuple[np.ndarray, ...]:
        interpreter = self._sized_for(len(x_nhwc))
        interpreter.set_tensor(self._input_index, np.ascontiguousarray(x_nhwc, np.float32))
        interpreter.invoke()  # releases the GIL
        return tuple(interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details())


class TorchGraph:
    """A .tflite model run by the project's PyTorch executor, with LiteRTGraph's interface."""

    def __init__(self, path: str | Path):
        self.graph: TFLiteGraph = load_tflite_graph(path)
        self.output_names = self.graph.output_names
        self.input_size = self.graph.input_size

    def __call__(self, x_nhwc: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():  # an NHWC array is a channels_last NCHW view: no copy
            return tuple(out.numpy() for out in self.graph(nhwc_to_nchw(np.asarray(x_nhwc, np.float32))))


def load_tflite_model(path: str | Path, engine: str = "auto") -> LiteRTGraph | TorchGraph:
    """The model at ``path`` run by ``engine``: "litert", "torch", or "auto" (LiteRT when
    installed, else PyTorch). An MfsError if "litert" is asked for and not installed."""
    engine = check_engine(engine)
    if engine == "litert" or (engine == "auto" and litert_available()):
        if not litert_available():
            raise MfsError("the litert engine needs the ai-edge-litert package: pip install ai-edge-litert "
                           "(or use the torch engine)")
        return LiteRTGraph(path)
    return TorchGraph(path)
