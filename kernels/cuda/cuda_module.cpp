// pybind11 entry point of the CUDA blocks and engine (imported as mfs_fast._cuda; built against
// cuda_emu.hpp as _cuda_emu, see emulate.py): the bindings are in bind/, one file per concept
// (bind/bind.hpp lists them).
//
// Importing never needs a GPU or a driver: the CUDA runtime is linked statically and loads the
// driver only when first used; device_count() / device_name() / unavailable_reason() report
// what is missing instead of raising. Everything else raises RuntimeError naming the failed
// CUDA call when there is no usable GPU, ValueError for bad arguments.
#include <pybind11/pybind11.h>

#include "bind/bind.hpp"

namespace {

void define_module(pybind11::module_& m) {
    m.doc() = "mfs_fast CUDA kernels: the fused IDN blocks and engine (fp32, NCHW)";
#ifdef MFS_CUDA_EMULATE
    m.attr("emulated") = true;
#else
    m.attr("emulated") = false;
#endif
    mfs_cuda_py::bind_devices(m);
    mfs_cuda_py::bind_blocks(m);
    mfs_cuda_py::bind_fused_idn(m);
}

}  // namespace

#ifdef MFS_CUDA_EMULATE
PYBIND11_MODULE(_cuda_emu, m) { define_module(m); }
#else
PYBIND11_MODULE(_cuda, m) { define_module(m); }
#endif
