// The NEON kernels (AArch64, where NEON is part of the baseline: no special flags).
#include "common.hpp"

#if defined(__aarch64__)
#include <arm_neon.h>

#define MFS_ISA_NS neon
#define MFS_ISA_NEON 1
#include "simd.hpp"
#include "gemm.hpp"
#include "fused_blocks.hpp"

// 4 x 16 micro-tiles: 16 of the 32 q registers accumulate.
MFS_DEFINE_ENTRIES(VecNEON, 4)

namespace mfs {
const KernelTable* kernels_neon() {
    static const KernelTable table{"neon", neon::entry_nr, &neon::encoder_entry, &neon::up_entry, &neon::head_entry,
                                   &neon::pointwise_entry};
    return &table;
}
}  // namespace mfs

#else
namespace mfs {
const KernelTable* kernels_neon() { return nullptr; }
}  // namespace mfs
#endif
