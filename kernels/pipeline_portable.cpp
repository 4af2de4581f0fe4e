// The pipeline core's warp, paste and colour kernels in plain C++ (every architecture; the fallback
// where AVX2 + FMA are missing, and what MFS_FAST_ISA=scalar selects). Compiled with
// -ffp-contract=off (CMakeLists.txt): see warp.hpp.
#include "pipeline.hpp"

#define MFS_ISA_NS pipe_portable
#include "warp.hpp"
#include "blend.hpp"
#include "yuv.hpp"

namespace mfs {
namespace pipe_portable {
void warp_entry(const WarpJob& J, int y0, int y1) {
    for (int y = y0; y < y1; ++y) warp_row(J, y);
}
void paste_entry(const PasteJob& J, int r0, int r1) {
    for (int r = r0; r < r1; ++r) paste_row(J, r);
}
void i420_to_bgr_entry(const YuvJob& J, int r0, int r1) { i420_to_bgr_rows_impl(J, r0, r1); }
void bgr_to_i420_entry(const YuvJob& J, int p0, int p1) { bgr_to_i420_rows_impl(J, p0, p1); }
}  // namespace pipe_portable

const PipelineKernels* pipeline_kernels_portable() {
    static const PipelineKernels table{"portable", &pipe_portable::warp_entry, &pipe_portable::paste_entry,
                                       &pipe_portable::i420_to_bgr_entry, &pipe_portable::bgr_to_i420_entry};
    return &table;
}
}  // namespace mfs
