"""mfs_fast must import and run its reference path when the C++ extension is missing (video I/O too)."""

import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["mfs_fast._native"] = None  # what Python sees when the extension was never built
import mfs_fast, torch
assert not mfs_fast.native.AVAILABLE
try:
    mfs_fast.native.require_native()
except mfs_fast.NativeUnavailableError as e:
    assert "pip install -e ." in str(e), str(e)
else:
    raise SystemExit("require_native() did not raise")
models = mfs_fast.FaceSwapModels.random()
weights = models.identity_weights(torch.rand(1, 3, 112, 112))
out, mask = models.swap(torch.rand(1, 3, 224, 224), weights)
assert out.shape == (1, 3, 224, 224)
# video frames go through ffmpeg's own colour conversion, both ways
import numpy as np
from mfs_fast.media import VideoWriter, read_frames
frame = np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8)
with VideoWriter(sys.argv[1], 48, 32, 25) as writer:
    writer.write(frame)
back = list(read_frames(sys.argv[1]))
assert len(back) == 1 and back[0].shape == frame.shape
print("ok")
"""


def test_import_without_extension(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "clip.mp4")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
