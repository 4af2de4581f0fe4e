// The AVX-512 kernels (x86-64: AVX-512 F/VL/DQ + AVX2 + FMA), 16 lanes. Same rules as
// isa_avx2.cpp: only the kernel code below the target pragma uses these instructions, and the
// dispatcher calls into it only after cpu_has_avx512().
#include "common.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#endif

#define MFS_ISA_NS avx512
#define MFS_ISA_AVX2 1
#define MFS_ISA_AVX512 1
#include "simd.hpp"
#include "gemm.hpp"
#include "fused_blocks.hpp"

#ifndef MFS_AVX512_NV
#define MFS_AVX512_NV 3  // 4 x 48 micro-tiles
#endif
MFS_DEFINE_ENTRIES(VecAVX512, MFS_AVX512_NV)

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

namespace mfs {
const KernelTable* kernels_avx512() {
    static const KernelTable table{"avx512", avx512::entry_nr, &avx512::encoder_entry, &avx512::up_entry,
                                   &avx512::head_entry, &avx512::pointwise_entry};
    return &table;
}
}  // namespace mfs

#else
namespace mfs {
const KernelTable* kernels_avx512() { return nullptr; }
}  // namespace mfs
#endif
