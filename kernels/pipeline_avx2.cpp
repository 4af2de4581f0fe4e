// The pipeline core's warp, paste and colour kernels with AVX2 + FMA (x86-64): 8 pixels per step,
// corners fetched with gathers. Same pattern as isa_avx2.cpp: compiled for the baseline target,
// AVX2/FMA enabled by a target pragma after every shared header, entered only after the
// run-time CPU check (pipeline_kernels_for). Compiled with -ffp-contract=off: see warp.hpp.
#include "pipeline.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define MFS_ISA_NS pipe_avx2
#define MFS_PIPE_AVX2 1
#include "warp.hpp"
#include "blend.hpp"
#include "yuv.hpp"

namespace mfs {
namespace pipe_avx2 {
void warp_entry(const WarpJob& J, int y0, int y1) {
    for (int y = y0; y < y1; ++y) warp_row(J, y);
}
void paste_entry(const PasteJob& J, int r0, int r1) {
    for (int r = r0; r < r1; ++r) paste_row(J, r);
}
void i420_to_bgr_entry(const YuvJob& J, int r0, int r1) { i420_to_bgr_rows_impl(J, r0, r1); }
void bgr_to_i420_entry(const YuvJob& J, int p0, int p1) { bgr_to_i420_rows_impl(J, p0, p1); }
}  // namespace pipe_avx2
}  // namespace mfs

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

namespace mfs {
const PipelineKernels* pipeline_kernels_avx2() {
    static const PipelineKernels table{"avx2", &pipe_avx2::warp_entry, &pipe_avx2::paste_entry,
                                       &pipe_avx2::i420_to_bgr_entry, &pipe_avx2::bgr_to_i420_entry};
    return &table;
}
}  // namespace mfs

#else
namespace mfs {
const PipelineKernels* pipeline_kernels_avx2() { return nullptr; }
}  // namespace mfs
#endif
