// The pieces of mfs_fast._cuda, one file per concept; cuda_module.cpp calls each bind_* once.
// The argument checks they share with mfs_fast._native are in ../../bind/idn_args.hpp.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace mfs_cuda_py {
namespace py = pybind11;

void bind_devices(py::module_& m);    // CudaError, device_count, device_name, unavailable_reason, versions  (devices.cpp)
void bind_blocks(py::module_& m);     // the per-block functions                                            (blocks.cpp)
void bind_fused_idn(py::module_& m);  // CudaFusedIDN: the whole IDN                                        (fused_idn.cpp)

// '' when a CUDA GPU is usable, else why not (never raises).
std::string unavailable_reason();
// RuntimeError with unavailable_reason() when there is no usable GPU.
void require_device();

}  // namespace mfs_cuda_py
