// The pointwise (1x1 conv) GEMM of a tile: C[M x N] = epilogue(A[M x K] * B[K x N]).
//
// A: weights packed by pack_weights (MR x K panels); B: the tile's depthwise output, K rows of
// N pixels (row stride ldb, padded to whole micro-tiles); C: NCHW output (row stride = the
// output's channel stride), so results land in their planes directly.
// Register tiling MR x (NV vectors): AVX2 4 x 24 = 12 ymm accumulators, 3 B loads and one
// broadcast per k; K is blocked (kc) so a micro-tile's B panel stays in L1 while all M rows
// stream past it. Included from an isa_*.cpp translation unit after simd.hpp.
#pragma once

namespace mfs {
namespace MFS_ISA_NS {

#if defined(__GNUC__)
#define MFS_NOINLINE __attribute__((noinline))
#else
#define MFS_NOINLINE
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define MFS_UNROLL _Pragma("GCC unroll 8")
#elif defined(__clang__)
#define MFS_UNROLL _Pragma("unroll")
#else
#define MFS_UNROLL
#endif

// One MR x (NV * V::W) micro-tile over kc steps of k. `accumulate`: add to what C holds (a
// previous K block); `finish`: apply scale, bias and activation (the last K block).
// Not inlined: on its own it keeps every pointer and stride in registers.
template <class V, int NV>
MFS_NOINLINE void micro_kernel(int kc, const float* __restrict A, const float* __restrict B, std::size_t ldb,
                         float* __restrict C, std::size_t ldc, int m_valid, int n_valid, bool accumulate, bool finish,
                         const float* scale, const float* bias, bool leaky) {
    using T = typename V::T;
    constexpr int NR = NV * V::W;
    T acc[MR][NV];
    MFS_UNROLL for (int r = 0; r < MR; ++r) MFS_UNROLL for (int j = 0; j < NV; ++j) acc[r][j] = V::zero();
    for (int k = 0; k < kc; ++k) {
        T b[NV];
        MFS_UNROLL for (int j = 0; j < NV; ++j) b[j] = V::loadu(B + j * V::W);
        MFS_UNROLL for (int r = 0; r < MR; ++r) {
            const T a = V::set1(A[r]);
            MFS_UNROLL for (int j = 0; j < NV; ++j) acc[r][j] = V::fmadd(a, b[j], acc[r][j]);
        }
        A += MR;
        B += ldb;
    }
    MFS_UNROLL for (int r = 0; r < MR; ++r) {
        if (r >= m_valid) break;
        float* c = C + r * ldc;
        const T s = V::set1(scale ? scale[r] : 1.0f);
        const T bb = V::set1(bias ? bias[r] : 0.0f);
        MFS_UNROLL for (int j = 0; j < NV; ++j) {
            const int n = n_valid - j * V::W;
            if (n <= 0) break;
            T v = acc[r][j];
            if (n >= V::W) {
                if (accumulate) v = V::add(v, V::loadu(c + j * V::W));
                if (finish) {
                    v = V::fmadd(v, s, bb);
                    if (leaky) v = vleaky<V>(v);
                }
                V::storeu(c + j * V::W, v);
            } else {
                if (accumulate) v = V::add(v, V::load_partial(c + j * V::W, n));
                if (finish) {
                    v = V::fmadd(v, s, bb);
                    if (leaky) v = vleaky<V>(v);
                }
                V::store_partial(c + j * V::W, v, n);
            }
        }
    }
    (void)NR;
}

// K block: the B panel of one micro-tile (kc x NR floats) should sit in L1 next to the streamed A.
inline int k_block(int K) {
    static const int kc = [] {
        const char* env = std::getenv("MFS_FAST_KC");
        const int v = env ? std::atoi(env) : 0;
        return v > 0 ? v : 128;
    }();
    if (K <= kc + kc / 4) return K;
    return ceil_div(K, ceil_div(K, kc));  // equal blocks
}

// Output channels [m0, m1) (m0 a multiple of MR) of a tile of N pixels.
template <class V, int NV>
inline void gemm_tile(const Pointwise& pw, int m0, int m1, const float* B, std::size_t ldb, int N, float* C,
                      std::size_t ldc) {
    constexpr int NR = NV * V::W;
    const int K = pw.K;
    const int kc = k_block(K);
    for (int k0 = 0; k0 < K; k0 += kc) {
        const int kb = std::min(kc, K - k0);
        const bool accumulate = k0 > 0, finish = k0 + kb == K;
        for (int j0 = 0; j0 < N; j0 += NR) {
            const int nv = std::min(NR, N - j0);
            // a narrow last micro-tile uses a narrower kernel (7x7 planes: 49 = 24 + 24 + 1 pixels)
            auto kernel = micro_kernel<V, NV>;
            if (NV > 1 && nv <= V::W) kernel = micro_kernel<V, 1>;
            else if (NV > 2 && nv <= 2 * V::W) kernel = micro_kernel<V, (NV > 2 ? 2 : NV)>;
            for (int i0 = m0; i0 < m1; i0 += MR) {
                const float* a = pw.a + (std::size_t(i0 / MR) * K + k0) * MR;
                kernel(kb, a, B + std::size_t(k0) * ldb + j0, ldb, C + std::size_t(i0) * ldc + j0, ldc,
                       std::min(MR, m1 - i0), nv, accumulate, finish, pw.scale ? pw.scale + i0 : nullptr,
                       pw.bias ? pw.bias + i0 : nullptr, pw.leaky);
            }
        }
    }
}

}  // namespace MFS_ISA_NS
}  // namespace mfs
