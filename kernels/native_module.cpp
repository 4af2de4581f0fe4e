// pybind11 entry point of mfs_fast's C++ core (imported as mfs_fast._native): the bindings are
// in bind/, one file per concept (bind.hpp lists them).
#include <pybind11/pybind11.h>

#include "bind/bind.hpp"

PYBIND11_MODULE(_native, m) {
    m.doc() = "mfs_fast C++ core";
    mfs_native::bind_modulation(m);
    mfs_native::bind_blocks(m);
    mfs_native::bind_fused_idn(m);
    mfs_native::bind_pipeline(m);
    mfs_native::bind_yuv(m);

    m.attr("compiler") = pybind11::str(
#if defined(__clang__)
        "clang " __clang_version__
#elif defined(__GNUC__)
        "gcc " __VERSION__
#else
        "unknown"
#endif
    );
}
