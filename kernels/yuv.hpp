// Colour conversion of whole frames between BGR (what the pipeline works on) and planar YUV
// 4:2:0 (I420: what H.264 files hold), compiled per ISA (pipeline_portable.cpp,
// pipeline_avx2.cpp) for the video pipes: ffmpeg then moves half the bytes and does no
// conversion of its own, which cost it ~6 ms of CPU a 720p frame (decode + encode).
//
// Integer arithmetic with 16 fractional bits (coefficients from the exact matrices, computed in
// double by yuv_coefficients), rounded to nearest, saturated: within one level of the exact
// result everywhere (swscale's default decoding path is up to 3 levels off it).
//   to BGR    chroma of each 2 x 2 block used as is (as swscale does without scaling);
//   to I420   Y per pixel, Cb and Cr from the mean of each 2 x 2 block (swscale's "area").
// Included by a translation unit that defines MFS_ISA_NS.
#pragma once

#ifndef MFS_ISA_NS
#error "yuv.hpp is included from a pipeline_*.cpp translation unit that defines MFS_ISA_NS"
#endif

namespace mfs {
namespace MFS_ISA_NS {

inline std::uint8_t clamp_u8(std::int32_t v) { return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v); }

// Pixels go in blocks of 16: planar per block (fixed-size loops the compiler vectorises), and
// packed BGR is split into planes or made from them with byte shuffles where SSSE3 is on.
constexpr int YUV_BLOCK = 16;

#if defined(MFS_PIPE_AVX2)
// pshufb tables: packed byte 3 j + c (in vector (3 j + c) / 16) is pixel j of plane c; -1 gives 0.
struct BgrShuffles {
    alignas(16) std::int8_t pack[3][3][16];    // [packed vector][plane][byte]
    alignas(16) std::int8_t unpack[3][3][16];  // [plane][packed vector][byte]
};
constexpr BgrShuffles make_bgr_shuffles() {
    BgrShuffles t{};
    for (int k = 0; k < 3; ++k)
        for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 16; ++i) {
                const int at = 16 * k + i;  // packed byte
                t.pack[k][c][i] = static_cast<std::int8_t>(at % 3 == c ? at / 3 : -1);
                const int from = 3 * i + c;  // where plane c's byte i is packed
                t.unpack[c][k][i] = static_cast<std::int8_t>(from / 16 == k ? from % 16 : -1);
            }
    return t;
}
inline constexpr BgrShuffles kBgrShuffles = make_bgr_shuffles();

inline __m128i shuffle_table(const std::int8_t* t) { return _mm_load_si128(reinterpret_cast<const __m128i*>(t)); }

inline void pack_bgr16(const std::uint8_t* b, const std::uint8_t* g, const std::uint8_t* r, std::uint8_t* out) {
    const __m128i p[3] = {_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(g)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(r))};
    for (int k = 0; k < 3; ++k) {
        __m128i v = _mm_setzero_si128();
        for (int c = 0; c < 3; ++c) v = _mm_or_si128(v, _mm_shuffle_epi8(p[c], shuffle_table(kBgrShuffles.pack[k][c])));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16 * k), v);
    }
}
inline void unpack_bgr16(const std::uint8_t* in, std::uint8_t* b, std::uint8_t* g, std::uint8_t* r) {
    const __m128i v[3] = {_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 16)),
                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 32))};
    std::uint8_t* planes[3] = {b, g, r};
    for (int c = 0; c < 3; ++c) {
        __m128i p = _mm_setzero_si128();
        for (int k = 0; k < 3; ++k) p = _mm_or_si128(p, _mm_shuffle_epi8(v[k], shuffle_table(kBgrShuffles.unpack[c][k])));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(planes[c]), p);
    }
}
#else
inline void pack_bgr16(const std::uint8_t* b, const std::uint8_t* g, const std::uint8_t* r, std::uint8_t* out) {
    for (int i = 0; i < YUV_BLOCK; ++i) out[3 * i] = b[i], out[3 * i + 1] = g[i], out[3 * i + 2] = r[i];
}
inline void unpack_bgr16(const std::uint8_t* in, std::uint8_t* b, std::uint8_t* g, std::uint8_t* r) {
    for (int i = 0; i < YUV_BLOCK; ++i) b[i] = in[3 * i], g[i] = in[3 * i + 1], r[i] = in[3 * i + 2];
}
#endif

#if defined(MFS_PIPE_AVX2)
// 8 int32 -> 8 uint8 (saturated) in the low half of the result; 16 int32 (lo, hi) -> 16 uint8.
inline __m128i saturate_u8(__m256i lo, __m256i hi) {
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);  // pixels 0..15 as int16
    return _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
}
inline __m256i widen8(const std::uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
inline __m256i mul(std::int32_t k, __m256i v) { return _mm256_mullo_epi32(_mm256_set1_epi32(k), v); }

// The same arithmetic as the portable version below, 8 int32 lanes at a time (bit-identical).
inline void i420_block_to_bgr(const YuvCoefficients& c, const std::uint8_t* y, const std::uint8_t* u,
                              const std::uint8_t* v, std::uint8_t* out) {
    const __m256i off = _mm256_set1_epi32(c.y_offset), half = _mm256_set1_epi32(1 << 15), mid = _mm256_set1_epi32(128);
    const __m256i l0 = _mm256_add_epi32(mul(c.y_scale, _mm256_sub_epi32(widen8(y), off)), half);
    const __m256i l1 = _mm256_add_epi32(mul(c.y_scale, _mm256_sub_epi32(widen8(y + 8), off)), half);
    const __m256i cu = _mm256_sub_epi32(widen8(u), mid), cv = _mm256_sub_epi32(widen8(v), mid);
    const __m256i du = mul(c.b_u, cu), dr = mul(c.r_v, cv);
    const __m256i dg = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_add_epi32(mul(c.g_u, cu), mul(c.g_v, cv)));
    const __m256i first = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), second = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
    auto channel = [&](__m256i d) {  // each chroma term serves two pixels
        return saturate_u8(_mm256_srai_epi32(_mm256_add_epi32(l0, _mm256_permutevar8x32_epi32(d, first)), 16),
                           _mm256_srai_epi32(_mm256_add_epi32(l1, _mm256_permutevar8x32_epi32(d, second)), 16));
    };
    alignas(16) std::uint8_t b[YUV_BLOCK], g[YUV_BLOCK], r[YUV_BLOCK];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), channel(du));
    _mm_store_si128(reinterpret_cast<__m128i*>(g), channel(dg));
    _mm_store_si128(reinterpret_cast<__m128i*>(r), channel(dr));
    pack_bgr16(b, g, r, out);
}
#else
// 16 pixels of one row: luma y[0..15], chroma u, v[0..7] (each for 2 pixels) -> packed BGR.
inline void i420_block_to_bgr(const YuvCoefficients& c, const std::uint8_t* y, const std::uint8_t* u,
                              const std::uint8_t* v, std::uint8_t* out) {
    std::int32_t l[YUV_BLOCK], du[YUV_BLOCK], dg[YUV_BLOCK], dr[YUV_BLOCK];
    alignas(16) std::uint8_t b[YUV_BLOCK], g[YUV_BLOCK], r[YUV_BLOCK];
    for (int i = 0; i < YUV_BLOCK; ++i) l[i] = c.y_scale * (std::int32_t(y[i]) - c.y_offset) + (1 << 15);
    for (int i = 0; i < YUV_BLOCK; ++i) {
        const std::int32_t cu = std::int32_t(u[i >> 1]) - 128, cv = std::int32_t(v[i >> 1]) - 128;
        du[i] = c.b_u * cu, dg[i] = -c.g_u * cu - c.g_v * cv, dr[i] = c.r_v * cv;
    }
    for (int i = 0; i < YUV_BLOCK; ++i) {
        b[i] = clamp_u8((l[i] + du[i]) >> 16);
        g[i] = clamp_u8((l[i] + dg[i]) >> 16);
        r[i] = clamp_u8((l[i] + dr[i]) >> 16);
    }
    pack_bgr16(b, g, r, out);
}
#endif

// Frame rows [r0, r1) of J.bgr from J's planes.
inline void i420_to_bgr_rows_impl(const YuvJob& J, int r0, int r1) {
    const int W = J.width, cw = (W + 1) / 2;
    alignas(16) std::uint8_t y[YUV_BLOCK], u[YUV_BLOCK / 2], v[YUV_BLOCK / 2], tail[3 * YUV_BLOCK];
    for (int r = r0; r < r1; ++r) {
        const std::uint8_t* yr = J.y + std::size_t(r) * W;
        const std::uint8_t* ur = J.u + std::size_t(r / 2) * cw;
        const std::uint8_t* vr = J.v + std::size_t(r / 2) * cw;
        std::uint8_t* out = J.bgr + std::size_t(r) * W * 3;
        int x = 0;
        for (; x + YUV_BLOCK <= W; x += YUV_BLOCK) i420_block_to_bgr(J.c, yr + x, ur + x / 2, vr + x / 2, out + 3 * x);
        if (x < W) {  // the last, partial block through copies
            const int n = W - x;
            std::memset(y, 0, sizeof y), std::memset(u, 128, sizeof u), std::memset(v, 128, sizeof v);
            std::memcpy(y, yr + x, n);
            std::memcpy(u, ur + x / 2, (n + 1) / 2);
            std::memcpy(v, vr + x / 2, (n + 1) / 2);
            i420_block_to_bgr(J.c, y, u, v, tail);
            std::memcpy(out + 3 * x, tail, std::size_t(3) * n);
        }
    }
}

#if defined(MFS_PIPE_AVX2)
inline void bgr_block_to_i420(const YuvCoefficients& c, const std::uint8_t* a, const std::uint8_t* b, std::uint8_t* ya,
                              std::uint8_t* yb, std::uint8_t* u, std::uint8_t* v) {
    alignas(16) std::uint8_t p[2][3][YUV_BLOCK];
    unpack_bgr16(a, p[0][0], p[0][1], p[0][2]);
    unpack_bgr16(b, p[1][0], p[1][1], p[1][2]);
    const __m256i y_add = _mm256_set1_epi32((c.y_offset << 16) + (1 << 15)), c_add = _mm256_set1_epi32((128 << 18) + (1 << 17));
    auto luma = [&](std::uint8_t(&q)[3][YUV_BLOCK], int at) {
        return _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(mul(c.y_b, widen8(q[0] + at)), mul(c.y_g, widen8(q[1] + at))),
                                                  _mm256_add_epi32(mul(c.y_r, widen8(q[2] + at)), y_add)), 16);
    };
    _mm_storeu_si128(reinterpret_cast<__m128i*>(ya), saturate_u8(luma(p[0], 0), luma(p[0], 8)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(yb), saturate_u8(luma(p[1], 0), luma(p[1], 8)));
    // 2 x 2 sums: the two rows added as int16, then adjacent pairs by madd with ones (8 int32)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i sum[3];
    for (int k = 0; k < 3; ++k) {
        const __m256i rows = _mm256_add_epi16(_mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(p[0][k]))),
                                              _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(p[1][k]))));
        sum[k] = _mm256_madd_epi16(rows, ones);
    }
    auto chroma = [&](std::int32_t kb, std::int32_t kg, std::int32_t kr) {
        const __m256i t = _mm256_add_epi32(_mm256_add_epi32(mul(kb, sum[0]), mul(kg, sum[1])), _mm256_add_epi32(mul(kr, sum[2]), c_add));
        return saturate_u8(_mm256_srai_epi32(t, 18), _mm256_setzero_si256());
    };
    _mm_storel_epi64(reinterpret_cast<__m128i*>(u), chroma(c.u_b, c.u_g, c.u_r));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(v), chroma(c.v_b, c.v_g, c.v_r));
}
#else
// 16 pixels of two rows (packed BGR a, b) -> 16 luma values of each row, 8 Cb and 8 Cr.
inline void bgr_block_to_i420(const YuvCoefficients& c, const std::uint8_t* a, const std::uint8_t* b, std::uint8_t* ya,
                              std::uint8_t* yb, std::uint8_t* u, std::uint8_t* v) {
    alignas(16) std::uint8_t p[2][3][YUV_BLOCK];
    unpack_bgr16(a, p[0][0], p[0][1], p[0][2]);
    unpack_bgr16(b, p[1][0], p[1][1], p[1][2]);
    const std::int32_t y_add = (c.y_offset << 16) + (1 << 15), c_add = (128 << 18) + (1 << 17);
    for (int i = 0; i < YUV_BLOCK; ++i) {
        ya[i] = clamp_u8((c.y_b * p[0][0][i] + c.y_g * p[0][1][i] + c.y_r * p[0][2][i] + y_add) >> 16);
        yb[i] = clamp_u8((c.y_b * p[1][0][i] + c.y_g * p[1][1][i] + c.y_r * p[1][2][i] + y_add) >> 16);
    }
    std::int32_t s[3][YUV_BLOCK / 2];
    for (int k = 0; k < 3; ++k)
        for (int i = 0; i < YUV_BLOCK / 2; ++i)
            s[k][i] = p[0][k][2 * i] + p[0][k][2 * i + 1] + p[1][k][2 * i] + p[1][k][2 * i + 1];
    for (int i = 0; i < YUV_BLOCK / 2; ++i) {
        u[i] = clamp_u8((c.u_b * s[0][i] + c.u_g * s[1][i] + c.u_r * s[2][i] + c_add) >> 18);
        v[i] = clamp_u8((c.v_b * s[0][i] + c.v_g * s[1][i] + c.v_r * s[2][i] + c_add) >> 18);
    }
}
#endif

// Row pairs [p0, p1) of J.bgr into J's planes (width and height even).
inline void bgr_to_i420_rows_impl(const YuvJob& J, int p0, int p1) {
    const int W = J.width, cw = W / 2;
    alignas(16) std::uint8_t a[3 * YUV_BLOCK], b[3 * YUV_BLOCK], ya[YUV_BLOCK], yb[YUV_BLOCK], u[YUV_BLOCK / 2],
        v[YUV_BLOCK / 2];
    for (int p = p0; p < p1; ++p) {
        const std::uint8_t* ra = J.bgr + std::size_t(2 * p) * W * 3;
        const std::uint8_t* rb = ra + std::size_t(W) * 3;
        std::uint8_t* ypa = J.y + std::size_t(2 * p) * W;
        std::uint8_t* ypb = ypa + W;
        std::uint8_t* up = J.u + std::size_t(p) * cw;
        std::uint8_t* vp = J.v + std::size_t(p) * cw;
        int x = 0;
        for (; x + YUV_BLOCK <= W; x += YUV_BLOCK)
            bgr_block_to_i420(J.c, ra + 3 * x, rb + 3 * x, ypa + x, ypb + x, up + x / 2, vp + x / 2);
        if (x < W) {
            const int n = W - x;  // even
            std::memset(a, 0, sizeof a), std::memset(b, 0, sizeof b);
            std::memcpy(a, ra + 3 * x, std::size_t(3) * n);
            std::memcpy(b, rb + 3 * x, std::size_t(3) * n);
            bgr_block_to_i420(J.c, a, b, ya, yb, u, v);
            std::memcpy(ypa + x, ya, n), std::memcpy(ypb + x, yb, n);
            std::memcpy(up + x / 2, u, n / 2), std::memcpy(vp + x / 2, v, n / 2);
        }
    }
}

}  // namespace MFS_ISA_NS
}  // namespace mfs
