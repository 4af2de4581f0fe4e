// mfs_fast._native: colour conversion of whole frames between BGR and I420 (yuv.hpp), for the
// video pipes (mfs_fast.media.yuv). The GIL is released while a frame converts.
#include <cstdint>
#include <string>

#include "../pipeline.hpp"
#include "bind.hpp"
#include "idn_args.hpp"

namespace mfs_native {
namespace {
using namespace mfs_py;
using Bytes = py::array_t<std::uint8_t, py::array::c_style>;

// (kr, kb) of a matrix name.
std::pair<double, double> matrix_weights(const std::string& matrix) {
    if (matrix == "bt601") return {0.299, 0.114};
    if (matrix == "bt709") return {0.2126, 0.0722};
    throw std::invalid_argument("matrix must be 'bt601' or 'bt709', got '" + matrix + "'");
}

mfs::YuvJob job(int height, int width, const std::string& matrix, bool full_range, const std::string& isa,
                const mfs::PipelineKernels** kernels) {
    if (height < 1 || width < 1) throw std::invalid_argument("height and width must be positive");
    *kernels = mfs::pipeline_kernels_for(mfs::select_kernels(isa)->name);
    const auto [kr, kb] = matrix_weights(matrix);
    mfs::YuvJob J;
    J.width = width;
    J.height = height;
    J.c = mfs::yuv_coefficients(kr, kb, full_range);
    return J;
}

std::size_t i420_size(int height, int width) {
    return std::size_t(height) * width + 2 * std::size_t((height + 1) / 2) * ((width + 1) / 2);
}

// A writable uint8 array of exactly `shape`, C-contiguous: `out`, or a new one.
Bytes output(const py::object& out_obj, std::vector<py::ssize_t> shape, const char* what) {
    if (out_obj.is_none()) return Bytes(shape);
    if (!py::isinstance<Bytes>(out_obj)) throw std::invalid_argument(std::string("out must be a uint8 numpy array: ") + what);
    auto out = py::reinterpret_borrow<py::array>(out_obj);
    if (!(out.flags() & py::array::c_style) || !out.writeable())
        throw std::invalid_argument("out must be C-contiguous and writable");
    if (std::vector<py::ssize_t>(out.shape(), out.shape() + out.ndim()) != shape)
        throw std::invalid_argument(std::string("out must have shape ") + what + ", got " + shape_str(out));
    return py::reinterpret_borrow<Bytes>(out);
}

py::array i420_to_bgr(const py::object& planes_obj, int height, int width, const std::string& matrix, bool full_range,
                      const py::object& out_obj, const std::string& isa) {
    const mfs::PipelineKernels* k = nullptr;
    mfs::YuvJob J = job(height, width, matrix, full_range, isa, &k);
    if (!py::isinstance<Bytes>(planes_obj)) throw std::invalid_argument("planes must be a uint8 numpy array");
    auto planes = py::reinterpret_borrow<py::array>(planes_obj);
    if (!(planes.flags() & py::array::c_style)) throw std::invalid_argument("planes must be C-contiguous");
    if (std::size_t(planes.nbytes()) != i420_size(height, width))
        throw std::invalid_argument("planes must hold " + std::to_string(i420_size(height, width)) + " bytes for " +
                                    std::to_string(width) + "x" + std::to_string(height) + " I420, got " +
                                    std::to_string(planes.nbytes()));
    Bytes out = output(out_obj, {height, width, 3}, "(height, width, 3)");
    auto* y = static_cast<std::uint8_t*>(const_cast<void*>(planes.data()));
    J.y = y;
    J.u = y + std::size_t(height) * width;
    J.v = J.u + std::size_t((height + 1) / 2) * ((width + 1) / 2);
    J.bgr = out.mutable_data();
    {
        py::gil_scoped_release release;
        k->i420_to_bgr_rows(J, 0, height);
    }
    return std::move(out);
}

py::array bgr_to_i420(const py::object& frame_obj, const std::string& matrix, bool full_range, const py::object& out_obj,
                      const std::string& isa) {
    if (!py::isinstance<Bytes>(frame_obj)) throw std::invalid_argument("frame must be a uint8 numpy array (H x W x 3, BGR)");
    auto frame = py::reinterpret_borrow<py::array>(frame_obj);
    if (frame.ndim() != 3 || frame.shape(2) != 3 || !(frame.flags() & py::array::c_style))
        throw std::invalid_argument("frame must be a C-contiguous H x W x 3 array, got " + shape_str(frame));
    const int height = int(frame.shape(0)), width = int(frame.shape(1));
    if (height % 2 || width % 2)
        throw std::invalid_argument("I420 needs an even width and height, got " + std::to_string(width) + "x" +
                                    std::to_string(height));
    const mfs::PipelineKernels* k = nullptr;
    mfs::YuvJob J = job(height, width, matrix, full_range, isa, &k);
    Bytes out = output(out_obj, {py::ssize_t(i420_size(height, width))}, "(height * width * 3 / 2,)");
    J.bgr = static_cast<std::uint8_t*>(const_cast<void*>(frame.data()));
    J.y = out.mutable_data();
    J.u = J.y + std::size_t(height) * width;
    J.v = J.u + std::size_t(height / 2) * (width / 2);
    {
        py::gil_scoped_release release;
        k->bgr_to_i420_rows(J, 0, height / 2);
    }
    return std::move(out);
}

}  // namespace

void bind_yuv(py::module_& m) {
    m.def("i420_to_bgr", &i420_to_bgr, py::arg("planes"), py::arg("height"), py::arg("width"),
          py::arg("matrix") = "bt709", py::arg("full_range") = false, py::arg("out") = py::none(),
          py::arg("isa") = "auto",
          "I420 planes (Y, then Cb and Cr at half size, rounded up) -> H x W x 3 BGR uint8, into out if given.");
    m.def("bgr_to_i420", &bgr_to_i420, py::arg("frame"), py::arg("matrix") = "bt709", py::arg("full_range") = false,
          py::arg("out") = py::none(), py::arg("isa") = "auto",
          "H x W x 3 BGR uint8 (even sizes) -> I420 planes (1-D uint8), chroma from each 2 x 2 block's mean.");
}

}  // namespace mfs_native
