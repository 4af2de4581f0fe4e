// The AVX-512 kernels with bfloat16 GEMMs (x86-64: AVX-512 F/VL/DQ/BW + AVX512-BF16): the same
// blocks as isa_avx512.cpp, except that each pointwise layer whose bf16 weights the engine packed
// (Pointwise::a16) multiplies in bf16 with float32 sums (gemm.hpp). Opt-in only: dispatch never
// picks it for "auto", since its results differ from float32 by up to ~1/255 on the IDN's output.
#include "common.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma")
#endif

#define MFS_ISA_NS avx512bf16
#define MFS_ISA_AVX2 1
#define MFS_ISA_AVX512 1
#define MFS_GEMM_BF16 1
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
const KernelTable* kernels_avx512bf16() {
    static const KernelTable table{"avx512bf16",          avx512bf16::entry_nr,   &avx512bf16::encoder_entry,
                                   &avx512bf16::up_entry, &avx512bf16::head_entry, &avx512bf16::pointwise_entry,
                                   /*bf16_gemm=*/true};
    return &table;
}
}  // namespace mfs

#else
namespace mfs {
const KernelTable* kernels_avx512bf16() { return nullptr; }
}  // namespace mfs
#endif
