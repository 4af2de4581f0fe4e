// The pieces of mfs_fast._native, one file per concept; native_module.cpp calls each bind_* once.
// The argument checks they share with mfs_fast._cuda are in idn_args.hpp.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

namespace mfs {
class FusedIDNEngine;
}

namespace mfs_native {
namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style>;

void bind_modulation(py::module_& m);  // modulate_demodulate(_into)                            (modulation.cpp)
void bind_blocks(py::module_& m);      // isas, default_isa and the per-block functions           (blocks.cpp)
void bind_fused_idn(py::module_& m);   // FusedIDN: the whole IDN                                  (fused_idn.cpp)
void bind_pipeline(py::module_& m);    // the frame stages and PipelineCore (needs FusedIDN bound)  (pipeline.cpp)
void bind_yuv(py::module_& m);         // i420_to_bgr, bgr_to_i420: frames for the video pipes      (yuv.cpp)

// The engine of a mfs_fast._native.FusedIDN (ValueError naming the type of anything else).
mfs::FusedIDNEngine& fused_engine(const py::object& engine);

inline int check_threads(int threads) {
    if (threads < 1 || threads > 256) throw std::invalid_argument("threads must be in [1, 256], got " + std::to_string(threads));
    return threads;
}

}  // namespace mfs_native
