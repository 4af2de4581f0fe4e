// NumPy array checks shared by the pybind11 modules (_native, _cuda): every message names the
// argument and what was expected; arrays are checked, never converted or copied.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mfs_py {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

inline std::string dims_str(const std::vector<py::ssize_t>& dims) {
    std::ostringstream s;
    s << "(";
    for (std::size_t i = 0; i < dims.size(); ++i) s << (i ? ", " : "") << dims[i];
    s << (dims.size() == 1 ? ",)" : ")");
    return s.str();
}

// A float32, C-contiguous NumPy array (never converted or copied).
inline py::array float_array(const py::handle& obj, const std::string& name, bool writable = false) {
    if (!py::isinstance<py::array>(obj))
        throw std::invalid_argument(name + " must be a numpy float32 array, got " +
                                    std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!py::isinstance<py::array_t<float>>(a))
        throw std::invalid_argument(name + " must be float32, got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(name + " must be C-contiguous");
    if (writable && !a.writeable()) throw std::invalid_argument(name + " must be writable");
    return a;
}

// Shape check with alternatives, e.g. {{C, 1, 3, 3}, {C, 3, 3}}.
inline void expect_shape(const py::array& a, const std::string& name, const std::vector<std::vector<py::ssize_t>>& options) {
    for (const auto& dims : options) {
        if (a.ndim() != static_cast<py::ssize_t>(dims.size())) continue;
        bool ok = true;
        for (std::size_t i = 0; i < dims.size(); ++i) ok = ok && a.shape(i) == dims[i];
        if (ok) return;
    }
    std::string expected;
    for (std::size_t i = 0; i < options.size(); ++i) expected += (i ? " or " : "") + dims_str(options[i]);
    throw std::invalid_argument(name + " must have shape " + expected + ", got " + shape_str(a));
}

inline py::array nchw(const py::handle& obj, const std::string& name, bool writable = false) {
    py::array a = float_array(obj, name, writable);
    if (a.ndim() != 4)
        throw std::invalid_argument(name + " must be an N x C x H x W array (4 dimensions), got shape " + shape_str(a));
    if (a.shape(0) < 1) throw std::invalid_argument(name + " must hold at least one image");
    return a;
}

inline const float* fptr(const py::array& a) { return static_cast<const float*>(a.data()); }
inline float* mptr(py::array& a) { return static_cast<float*>(a.mutable_data()); }

// Whether two arrays share memory.
inline bool overlaps(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// A float32 weight array of one of the given shapes, copied into a vector.
inline std::vector<float> weight_vector(const py::handle& obj, const std::string& name,
                                        const std::vector<std::vector<py::ssize_t>>& shapes) {
    py::array a = float_array(obj, name);
    expect_shape(a, name, shapes);
    return std::vector<float>(fptr(a), fptr(a) + a.size());
}

}  // namespace mfs_py
