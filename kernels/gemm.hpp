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

// Writes a micro-tile's accumulators to C. `accumulate`: add to what C holds (a previous K
// block); `finish`: apply scale, bias and activation (the last K block).
template <class V, int NV>
inline void store_micro_tile(typename V::T (&acc)[MR][NV], float* __restrict C, std::size_t ldc, int m_valid,
                             int n_valid, bool accumulate, bool finish, const float* scale, const float* bias,
                             bool leaky) {
    using T = typename V::T;
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
}

// One MR x (NV * V::W) micro-tile over kc steps of k.
// Not inlined: on its own it keeps every pointer and stride in registers.
template <class V, int NV>
MFS_NOINLINE void micro_kernel(int kc, const float* __restrict A, const float* __restrict B, std::size_t ldb,
                         float* __restrict C, std::size_t ldc, int m_valid, int n_valid, bool accumulate, bool finish,
                         const float* scale, const float* bias, bool leaky) {
    using T = typename V::T;
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
    store_micro_tile<V, NV>(acc, C, ldc, m_valid, n_valid, accumulate, finish, scale, bias, leaky);
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

#if defined(MFS_GEMM_BF16)
// bf16 GEMM (AVX512-BF16, 16 lanes): each vdpbf16ps adds two products per lane, a pair of k's,
// into float32 sums. B's rows are converted a pair at a time into a per-micro-tile panel
// (k even in the low half of each 32-bit element), reused by every row block of A.

// Rows [k0, k0 + 2 kp) of B's columns [j0, j0 + cols) as bf16 pairs, `cols` a multiple of 16;
// rows at or past K read as 0.
inline void convert_b_pairs(const float* B, std::size_t ldb, int k0, int kp, int K, int j0, int cols,
                            std::uint32_t* panel, int panel_stride) {
    alignas(64) static const std::uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                        8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i interleave = _mm512_load_si512(order);
    for (int p = 0; p < kp; ++p) {
        const int k = k0 + 2 * p;
        const float* r0 = B + std::size_t(k) * ldb + j0;
        const float* r1 = k + 1 < K ? r0 + ldb : nullptr;
        std::uint32_t* out = panel + std::size_t(p) * panel_stride;
        for (int j = 0; j < cols; j += 16) {
            const __m512 x0 = _mm512_loadu_ps(r0 + j), x1 = r1 ? _mm512_loadu_ps(r1 + j) : _mm512_setzero_ps();
            const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);  // x0 in the low 16 elements
            _mm512_storeu_si512(out + j, _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

template <int NV>
MFS_NOINLINE void micro_kernel_bf16(int kp, const std::uint32_t* __restrict A, const std::uint32_t* __restrict panel,
                                    int panel_stride, float* __restrict C, std::size_t ldc, int m_valid, int n_valid,
                                    bool accumulate, bool finish, const float* scale, const float* bias, bool leaky) {
    __m512 acc[MR][NV];
    MFS_UNROLL for (int r = 0; r < MR; ++r) MFS_UNROLL for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_setzero_ps();
    for (int p = 0; p < kp; ++p) {
        __m512bh b[NV];
        MFS_UNROLL for (int j = 0; j < NV; ++j) b[j] = (__m512bh)_mm512_loadu_si512(panel + j * 16);
        MFS_UNROLL for (int r = 0; r < MR; ++r) {
            const __m512bh a = (__m512bh)_mm512_set1_epi32(int(A[r]));
            MFS_UNROLL for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], a, b[j]);
        }
        A += MR;
        panel += panel_stride;
    }
    store_micro_tile<VecAVX512, NV>(acc, C, ldc, m_valid, n_valid, accumulate, finish, scale, bias, leaky);
}

// gemm_tile with A as bf16 pairs (pw.a16); K blocked in pairs, as the float32 path blocks it.
template <int NV>
inline void gemm_tile_bf16(const Pointwise& pw, int m0, int m1, const float* B, std::size_t ldb, int N, float* C,
                           std::size_t ldc) {
    constexpr int NR = NV * 16;
    const int K = pw.K, Kp = ceil_div(K, 2);
    const int kcp = ceil_div(k_block(K), 2);
    thread_local std::vector<std::uint32_t> panel;
    if (panel.size() < std::size_t(kcp) * NR) panel.resize(std::size_t(kcp) * NR);
    for (int p0 = 0; p0 < Kp; p0 += kcp) {
        const int kb = std::min(kcp, Kp - p0);
        const bool accumulate = p0 > 0, finish = p0 + kb == Kp;
        for (int j0 = 0; j0 < N; j0 += NR) {
            const int nv = std::min(NR, N - j0), vectors = ceil_div(nv, 16);
            convert_b_pairs(B, ldb, 2 * p0, kb, K, j0, 16 * vectors, panel.data(), NR);
            auto kernel = micro_kernel_bf16<NV>;
            if (NV > 1 && vectors == 1) kernel = micro_kernel_bf16<1>;
            else if (NV > 2 && vectors == 2) kernel = micro_kernel_bf16<(NV > 2 ? 2 : NV)>;
            for (int i0 = m0; i0 < m1; i0 += MR) {
                const std::uint32_t* a = pw.a16 + (std::size_t(i0 / MR) * Kp + p0) * MR;
                kernel(kb, a, panel.data(), NR, C + std::size_t(i0) * ldc + j0, ldc, std::min(MR, m1 - i0), nv,
                       accumulate, finish, pw.scale ? pw.scale + i0 : nullptr, pw.bias ? pw.bias + i0 : nullptr, pw.leaky);
            }
        }
    }
}
#endif

// Output channels [m0, m1) (m0 a multiple of MR) of a tile of N pixels.
template <class V, int NV>
inline void gemm_tile(const Pointwise& pw, int m0, int m1, const float* B, std::size_t ldb, int N, float* C,
                      std::size_t ldc) {
#if defined(MFS_GEMM_BF16)
    if (pw.a16) return gemm_tile_bf16<NV>(pw, m0, m1, B, ldb, N, C, ldc);
#endif
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
