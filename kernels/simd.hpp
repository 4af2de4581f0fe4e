// SIMD vectors: one struct per instruction set with the same static interface, so that every
// kernel is written once as a template over V and compiled once per ISA.
//
//   V::W                      lanes;   V::T  the vector type
//   zero, set1, loadu, storeu, load_partial(p, n), store_partial(p, v, n)   (n < W lanes)
//   add, sub, mul, div, fmadd(a, b, c) = a * b + c, max, min, round (to nearest), pow2i(n) = 2^n
//
// Included only from an isa_*.cpp translation unit, which defines MFS_ISA_NS (a namespace of its
// own, so the per-ISA copies of these inline functions never meet at link time) and, for the
// vector ISAs, MFS_ISA_AVX2 / MFS_ISA_NEON after switching the compiler's target.
#pragma once

#ifndef MFS_ISA_NS
#error "simd.hpp is included from an isa_*.cpp translation unit that defines MFS_ISA_NS"
#endif

namespace mfs {
namespace MFS_ISA_NS {

// Plain C++ (4 lanes in an array): the portable path. Compilers may map it onto whatever the
// baseline target has (SSE2 on x86-64); it never uses intrinsics.
struct VecPortable {
    static constexpr int W = 4;
    struct T {
        float v[4];
    };
#define MFS_LANES(expr)                      \
    T r;                                     \
    for (int i = 0; i < 4; ++i) r.v[i] = (expr); \
    return r
    static inline T zero() { MFS_LANES(0.0f); }
    static inline T set1(float a) { MFS_LANES(a); }
    static inline T loadu(const float* p) { MFS_LANES(p[i]); }
    static inline void storeu(float* p, T a) {
        for (int i = 0; i < 4; ++i) p[i] = a.v[i];
    }
    static inline T load_partial(const float* p, int n) { MFS_LANES(i < n ? p[i] : 0.0f); }
    static inline void store_partial(float* p, T a, int n) {
        for (int i = 0; i < n; ++i) p[i] = a.v[i];
    }
    static inline T add(T a, T b) { MFS_LANES(a.v[i] + b.v[i]); }
    static inline T sub(T a, T b) { MFS_LANES(a.v[i] - b.v[i]); }
    static inline T mul(T a, T b) { MFS_LANES(a.v[i] * b.v[i]); }
    static inline T div(T a, T b) { MFS_LANES(a.v[i] / b.v[i]); }
    static inline T fmadd(T a, T b, T c) { MFS_LANES(a.v[i] * b.v[i] + c.v[i]); }
    static inline T max(T a, T b) { MFS_LANES(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
    static inline T min(T a, T b) { MFS_LANES(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
    static inline T round(T a) { MFS_LANES(std::nearbyint(a.v[i])); }
    static inline T pow2i(T n) {  // n integral in [-126, 127]
        T r;
        for (int i = 0; i < 4; ++i) {
            const std::int32_t bits = (static_cast<std::int32_t>(n.v[i]) + 127) << 23;
            std::memcpy(&r.v[i], &bits, 4);
        }
        return r;
    }
#undef MFS_LANES
    // dst[0 .. 2n) = src[0 .. n) upsampled 2x (align_corners); dst may be written up to a
    // multiple of 8 past 2n.
    static inline void upsample_row(const float* __restrict src, const Interp& c, float* __restrict dst) {
        const int out = 2 * c.n;
        for (int x = 0; x < out; ++x) dst[x] = (1.0f - c.l[x]) * src[c.i0[x]] + c.l[x] * src[c.i1[x]];
    }
    static inline void upsample_rows(const float* __restrict src, std::size_t ss, int rows, const Interp& c,
                                     float* __restrict dst, std::size_t ds) {
        for (int r = 0; r < rows; ++r) upsample_row(src + r * ss, c, dst + r * ds);
    }
};

#if defined(MFS_ISA_AVX2)
struct VecAVX2 {
    static constexpr int W = 8;
    using T = __m256;
    static inline __m256i mask(int n) {
        alignas(32) static const std::int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8 - n));
    }
    static inline T zero() { return _mm256_setzero_ps(); }
    static inline T set1(float a) { return _mm256_set1_ps(a); }
    static inline T loadu(const float* p) { return _mm256_loadu_ps(p); }
    static inline void storeu(float* p, T a) { _mm256_storeu_ps(p, a); }
    static inline T load_partial(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
    static inline void store_partial(float* p, T a, int n) { _mm256_maskstore_ps(p, mask(n), a); }
    static inline T add(T a, T b) { return _mm256_add_ps(a, b); }
    static inline T sub(T a, T b) { return _mm256_sub_ps(a, b); }
    static inline T mul(T a, T b) { return _mm256_mul_ps(a, b); }
    static inline T div(T a, T b) { return _mm256_div_ps(a, b); }
    static inline T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
    static inline T max(T a, T b) { return _mm256_max_ps(a, b); }
    static inline T min(T a, T b) { return _mm256_min_ps(a, b); }
    static inline T round(T a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static inline T pow2i(T n) {
        const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
    }
    // rows source rows (stride ss) -> upsampled rows (stride ds); the block tables are loaded once
    // per block for all rows.
    static inline void upsample_rows(const float* __restrict src, std::size_t ss, int rows, const Interp& c,
                                     float* __restrict dst, std::size_t ds) {
        const int out = 2 * c.n, blocks = ceil_div(out, 8);
        const T one = set1(1.0f);
        for (int b = 0; b < blocks; ++b) {
            const int base = c.base8[b];
            const __m256i r0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.rel0_8.data() + b * 8));
            const __m256i r1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.rel1_8.data() + b * 8));
            const T l = b * 8 + 8 <= out ? loadu(c.l.data() + b * 8) : load_partial(c.l.data() + b * 8, out - b * 8);
            const T lc = sub(one, l);
            const float* s = src + base;
            float* d = dst + b * 8;
            if (base + 8 <= c.n) {
                for (int r = 0; r < rows; ++r, s += ss, d += ds) {
                    const T v = loadu(s);
                    storeu(d, fmadd(l, _mm256_permutevar8x32_ps(v, r1), mul(lc, _mm256_permutevar8x32_ps(v, r0))));
                }
            } else {
                const __m256i m = mask(c.n - base);
                for (int r = 0; r < rows; ++r, s += ss, d += ds) {
                    const T v = _mm256_maskload_ps(s, m);
                    storeu(d, fmadd(l, _mm256_permutevar8x32_ps(v, r1), mul(lc, _mm256_permutevar8x32_ps(v, r0))));
                }
            }
        }
    }
};
#endif

#if defined(MFS_ISA_AVX512)
// AVX-512F (+VL/DQ): 16 lanes. Partial loads and stores by mask registers; the upsample
// (an 8-lane permute per block) is AVX2's, compiled into the same translation unit.
struct VecAVX512 {
    static constexpr int W = 16;
    using T = __m512;
    static inline __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
    static inline T zero() { return _mm512_setzero_ps(); }
    static inline T set1(float a) { return _mm512_set1_ps(a); }
    static inline T loadu(const float* p) { return _mm512_loadu_ps(p); }
    static inline void storeu(float* p, T a) { _mm512_storeu_ps(p, a); }
    static inline T load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
    static inline void store_partial(float* p, T a, int n) { _mm512_mask_storeu_ps(p, mask(n), a); }
    static inline T add(T a, T b) { return _mm512_add_ps(a, b); }
    static inline T sub(T a, T b) { return _mm512_sub_ps(a, b); }
    static inline T mul(T a, T b) { return _mm512_mul_ps(a, b); }
    static inline T div(T a, T b) { return _mm512_div_ps(a, b); }
    static inline T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
    static inline T max(T a, T b) { return _mm512_max_ps(a, b); }
    static inline T min(T a, T b) { return _mm512_min_ps(a, b); }
    static inline T round(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static inline T pow2i(T n) {
        const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
        return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
    }
    static inline void upsample_rows(const float* __restrict src, std::size_t ss, int rows, const Interp& c,
                                     float* __restrict dst, std::size_t ds) {
        VecAVX2::upsample_rows(src, ss, rows, c, dst, ds);
    }
};
#endif

#if defined(MFS_ISA_NEON)
struct VecNEON {
    static constexpr int W = 4;
    using T = float32x4_t;
    static inline T zero() { return vdupq_n_f32(0.0f); }
    static inline T set1(float a) { return vdupq_n_f32(a); }
    static inline T loadu(const float* p) { return vld1q_f32(p); }
    static inline void storeu(float* p, T a) { vst1q_f32(p, a); }
    static inline T load_partial(const float* p, int n) {
        float tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int i = 0; i < n; ++i) tmp[i] = p[i];
        return vld1q_f32(tmp);
    }
    static inline void store_partial(float* p, T a, int n) {
        float tmp[4];
        vst1q_f32(tmp, a);
        for (int i = 0; i < n; ++i) p[i] = tmp[i];
    }
    static inline T add(T a, T b) { return vaddq_f32(a, b); }
    static inline T sub(T a, T b) { return vsubq_f32(a, b); }
    static inline T mul(T a, T b) { return vmulq_f32(a, b); }
    static inline T div(T a, T b) { return vdivq_f32(a, b); }
    static inline T fmadd(T a, T b, T c) { return vfmaq_f32(c, a, b); }
    static inline T max(T a, T b) { return vmaxq_f32(a, b); }
    static inline T min(T a, T b) { return vminq_f32(a, b); }
    static inline T round(T a) { return vrndnq_f32(a); }
    static inline T pow2i(T n) {
        const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
        return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
    }
    static inline void upsample_row(const float* __restrict src, const Interp& c, float* __restrict dst) {
        const int out = 2 * c.n, blocks = out / 4;  // whole blocks; the rest below
        const T one = set1(1.0f);
        for (int b = 0; b < blocks; ++b) {
            const int base = c.base4[b];
            const T s = base + 4 <= c.n ? loadu(src + base) : load_partial(src + base, c.n - base);
            const uint8x16_t t = vreinterpretq_u8_f32(s);
            const T v0 = vreinterpretq_f32_u8(vqtbl1q_u8(t, vld1q_u8(c.byte0_4.data() + b * 16)));
            const T v1 = vreinterpretq_f32_u8(vqtbl1q_u8(t, vld1q_u8(c.byte1_4.data() + b * 16)));
            const T l = loadu(c.l.data() + b * 4);
            storeu(dst + b * 4, fmadd(l, v1, mul(sub(one, l), v0)));
        }
        for (int x = blocks * 4; x < out; ++x) dst[x] = (1.0f - c.l[x]) * src[c.i0[x]] + c.l[x] * src[c.i1[x]];
    }
    static inline void upsample_rows(const float* __restrict src, std::size_t ss, int rows, const Interp& c,
                                     float* __restrict dst, std::size_t ds) {
        for (int r = 0; r < rows; ++r) upsample_row(src + r * ss, c, dst + r * ds);
    }
};
#endif

// exp(x), Cephes' single-precision polynomial (about 1 ulp on [-87, 88]; clamped outside).
template <class V>
inline typename V::T vexp(typename V::T x) {
    using T = typename V::T;
    x = V::min(V::max(x, V::set1(-87.0f)), V::set1(88.0f));
    const T n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
    x = V::fmadd(n, V::set1(-0.693359375f), x);
    x = V::fmadd(n, V::set1(2.12194440e-4f), x);
    T y = V::set1(1.9875691500e-4f);
    y = V::fmadd(y, x, V::set1(1.3981999507e-3f));
    y = V::fmadd(y, x, V::set1(8.3334519073e-3f));
    y = V::fmadd(y, x, V::set1(4.1665795894e-2f));
    y = V::fmadd(y, x, V::set1(1.6666665459e-1f));
    y = V::fmadd(y, x, V::set1(5.0000001201e-1f));
    y = V::fmadd(y, V::mul(x, x), V::add(x, V::set1(1.0f)));
    return V::mul(y, V::pow2i(n));
}

// 1 / (1 + exp(-x))
template <class V>
inline typename V::T vsigmoid(typename V::T x) {
    const typename V::T one = V::set1(1.0f);
    return V::div(one, V::add(one, vexp<V>(V::sub(V::zero(), x))));
}

template <class V>
inline typename V::T vleaky(typename V::T x) {
    return V::max(x, V::mul(x, V::set1(LEAKY_SLOPE)));  // slope in (0, 1)
}

}  // namespace MFS_ISA_NS
}  // namespace mfs
