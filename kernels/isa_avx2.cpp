// The AVX2 + FMA kernels (x86-64). This translation unit is compiled for the baseline target
// like every other one; only the kernel code below the target pragma may use AVX2/FMA, so no
// inline function shared with other translation units (standard library, common.hpp) is ever
// emitted with AVX2 instructions. The dispatcher calls into it only after
// __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma").
#include "common.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define MFS_ISA_NS avx2
#define MFS_ISA_AVX2 1
#include "simd.hpp"
#include "gemm.hpp"
#include "fused_blocks.hpp"

MFS_DEFINE_ENTRIES(VecAVX2, 3)

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

namespace mfs {
const KernelTable* kernels_avx2() {
    static const KernelTable table{"avx2", avx2::entry_nr, &avx2::encoder_entry, &avx2::up_entry, &avx2::head_entry,
                                   &avx2::pointwise_entry};
    return &table;
}
}  // namespace mfs

#else
namespace mfs {
const KernelTable* kernels_avx2() { return nullptr; }
}  // namespace mfs
#endif
