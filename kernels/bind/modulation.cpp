// mfs_fast._native: modulate_demodulate(_into), the StyleGAN2 weight modulation (modulation.hpp).
#include <string>

#include "../modulation.hpp"
#include "bind.hpp"

namespace mfs_native {
namespace {

// Inputs must already be C-contiguous float32 (no silent copies on the update path).
void require(const py::array& a, int ndim, const char* name) {
    if (!py::isinstance<FloatArray>(a) || !(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + " must be a C-contiguous float32 array");
    if (a.ndim() != ndim)
        throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
                                    std::to_string(a.ndim()));
}

// Fill caller-provided buffers in place: the zero-allocation form used by backends.
void modulate_demodulate_into(const py::array& base, const py::array& style, py::array& fused, py::array& scale,
                              py::array& demod, float eps) {
    require(base, 2, "base");
    require(style, 1, "style");
    require(fused, 2, "fused");
    require(scale, 1, "scale");
    require(demod, 1, "demod");
    const auto c_out = static_cast<std::size_t>(base.shape(0));
    const auto c_in = static_cast<std::size_t>(base.shape(1));
    if (static_cast<std::size_t>(style.shape(0)) != c_in || static_cast<std::size_t>(scale.shape(0)) != c_in)
        throw std::invalid_argument("style and scale must have c_in = " + std::to_string(c_in) + " entries");
    if (fused.shape(0) != base.shape(0) || fused.shape(1) != base.shape(1))
        throw std::invalid_argument("fused must have the shape of base");
    if (static_cast<std::size_t>(demod.shape(0)) != c_out)
        throw std::invalid_argument("demod must have c_out = " + std::to_string(c_out) + " entries");
    const float* b = static_cast<const float*>(base.data());
    const float* s = static_cast<const float*>(style.data());
    float* f = static_cast<float*>(fused.mutable_data());
    float* sc = static_cast<float*>(scale.mutable_data());
    float* d = static_cast<float*>(demod.mutable_data());
    py::gil_scoped_release release;
    mfs::modulate_demodulate(b, s, c_out, c_in, eps, f, sc, d);
}

py::tuple modulate_demodulate(const py::array& base, const py::array& style, float eps) {
    require(base, 2, "base");
    FloatArray fused({base.shape(0), base.shape(1)});
    FloatArray scale({base.shape(1)});
    FloatArray demod({base.shape(0)});
    py::array f = fused, sc = scale, d = demod;
    modulate_demodulate_into(base, style, f, sc, d, eps);
    return py::make_tuple(fused, scale, demod);
}

}  // namespace

void bind_modulation(py::module_& m) {
    m.def("modulate_demodulate", &modulate_demodulate, py::arg("base"), py::arg("style"), py::arg("eps") = 1e-16f,
          "(W [c_out, c_in], style [c_in]) -> (fused W~, scale 1+style, demod d)");
    m.def("modulate_demodulate_into", &modulate_demodulate_into, py::arg("base"), py::arg("style"), py::arg("fused"),
          py::arg("scale"), py::arg("demod"), py::arg("eps") = 1e-16f,
          "In-place form writing into caller-owned float32 buffers");
}

}  // namespace mfs_native
