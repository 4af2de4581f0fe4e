// The portable kernels: plain C++, no intrinsics, built for the baseline target. Always
// available; MFS_FAST_ISA=scalar (or isa="scalar") forces it, so tests can check every path.
#include "common.hpp"

#define MFS_ISA_NS portable
#include "simd.hpp"
#include "gemm.hpp"
#include "fused_blocks.hpp"

MFS_DEFINE_ENTRIES(VecPortable, 3)

namespace mfs {
const KernelTable* kernels_scalar() {
    static const KernelTable table{"scalar", portable::entry_nr, &portable::encoder_entry, &portable::up_entry,
                                   &portable::head_entry, &portable::pointwise_entry};
    return &table;
}
}  // namespace mfs
