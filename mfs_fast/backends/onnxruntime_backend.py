"""ONNX Runtime backend: identity kernels are graph inputs bound to buffers we own.

``set_identity`` copies into those buffers (ORT reads them in place through IO binding), so a
new identity never re-exports the graph or recreates the session.
"""

from __future__ import annotations

import numpy as np

from ..models import FaceSwapModels, IdentityWeights, idn_layer_shapes
from ._registry import register_backend
from .base import checked_batch
from .onnx_export import IMAGE_INPUT, OUTPUTS, cached_idn_onnx


def _probe() -> str | None:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install onnxruntime onnx)"
    return None


@register_backend("onnxruntime", probe=_probe)
class OnnxRuntimeBackend:
    name = "onnxruntime"
    sessions_created = 0  # class-wide count, so tests can prove identity changes do not rebuild

    def __init__(self, models: FaceSwapModels, threads: int | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # no busy-waiting between runs: detection, paste-back and other backends share the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.model_path = cached_idn_onnx(models.idn)
        self.session = ort.InferenceSession(str(self.model_path), options, providers=list(providers))
        OnnxRuntimeBackend.sessions_created += 1
        self.binding = self.session.io_binding()
        # identity buffers: ORT reads these arrays in place on every run
        self._kernels = {name: np.zeros(shape, np.float32) for name, shape in idn_layer_shapes().items()}
        self._kernel_values = {name: ort.OrtValue.ortvalue_from_numpy(buf) for name, buf in self._kernels.items()}
        for name, value in self._kernel_values.items():
            self.binding.bind_ortvalue_input(name, value)
        self._outputs: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._has_identity = False

    def set_identity(self, weights: IdentityWeights) -> None:
        for name, tensor in weights.tensors():
            np.copyto(self._kernels[name], tensor.detach().cpu().numpy())
        self._has_identity = True

    def _output_buffers(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if shape not in self._outputs:
            n, _, h, w = shape
            buffers = (np.empty((n, 3, h, w), np.float32), np.empty((n, 1, h, w), np.float32))
            self._outputs = {shape: buffers}  # keep only the latest shape
        return self._outputs[shape]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces and masks; the returned arrays are reused by the next call with this shape."""
        batch = checked_batch(batch, self._has_identity)
        faces, masks = self._output_buffers(batch.shape)
        self.binding.bind_cpu_input(IMAGE_INPUT, batch)
        for name, buffer in zip(OUTPUTS, (faces, masks)):
            self.binding.bind_output(name, "cpu", 0, np.float32, buffer.shape, buffer.ctypes.data)
        self.session.run_with_iobinding(self.binding)
        return faces, masks
