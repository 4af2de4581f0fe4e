// The face alignment warp of the pipeline core, compiled per ISA (pipeline_portable.cpp,
// pipeline_avx2.cpp): a BGR uint8 frame -> one face crop as RGB float32 planes in [0, 1].
//
// It computes what cv2.warpAffine(frame, M, (S, S), flags=INTER_LINEAR) (BORDER_CONSTANT 0)
// computes in OpenCV 5.x / 4.11+ on a CPU with FMA, operation for operation, so the crops are
// bit-identical (then / 255 as the Python pipeline does):
//   row offsets   ox = float(y) * M[1] + M[2]   (product and sum rounded separately)
//   coordinates   sx = fma(M[0], float(x), ox)  (OpenCV's scalar tail past the last block of
//                 16 columns: fma(x, M[0], y * M[1]) + M[2])
//   bilinear      ix = floor(sx), ax = sx - ix; each of the 4 corners is 0 outside the frame;
//                 f0 = fma(ax, p01 - p00, p00), f1 = fma(ax, p11 - p10, p10), v = fma(ay, f1 - f0, f0)
//   store         round to nearest (even), saturate to [0, 255]
// Included by a translation unit that defines MFS_ISA_NS (and MFS_PIPE_AVX2 for AVX2 + FMA)
// and is compiled with -ffp-contract=off.
#pragma once

#ifndef MFS_ISA_NS
#error "warp.hpp is included from a pipeline_*.cpp translation unit that defines MFS_ISA_NS"
#endif

namespace mfs {
namespace MFS_ISA_NS {

// a * b + c with one rounding (OpenCV's v_fma on FMA hardware). Without FMA instructions it is
// computed in double: a * b is exact there, so only the (vanishingly rare) double rounding of
// the sum can differ.
#if defined(MFS_PIPE_AVX2)
inline float fma1(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
#else
inline float fma1(float a, float b, float c) { return static_cast<float>(double(a) * double(b) + double(c)); }
#endif

inline float lerp1(float a, float p0, float p1) { return fma1(a, p1 - p0, p0); }

// Source coordinates of destination pixel (x, y) in OpenCV's scalar tail columns: its
// `x * M[0] + y * M[1] + M[2]`, as the compiler fused it there.
inline float tail_coordinate(float x, float y, float m0, float m1, float m2) { return fma1(x, m0, y * m1) + m2; }

// Integer corner and fractions of a sample point; false when none of its 4 corners lies in a
// w x h image (the sample is then 0), or the coordinates are not finite.
struct Corner {
    int ix, iy;
    float ax, ay;
};
inline bool split_coordinates(float sx, float sy, int w, int h, Corner& c) {
    if (!(sx >= -1.0f && sx < float(w) && sy >= -1.0f && sy < float(h))) return false;
    const float fx = std::floor(sx), fy = std::floor(sy);
    c.ix = static_cast<int>(fx);
    c.iy = static_cast<int>(fy);
    c.ax = sx - fx;
    c.ay = sy - fy;
    return true;
}

inline float to_unit(float v) {  // round, saturate, / 255 (as uint8 -> float32 * float32(1 / 255))
    v = std::nearbyint(v);
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    return v * static_cast<float>(1.0 / 255.0);
}

// One crop pixel (index o = y * S + x) from its source coordinates.
inline void warp_pixel(const WarpJob& J, float sx, float sy, std::size_t o) {
    const std::size_t plane = std::size_t(J.S) * J.S;
    float v[3] = {0.0f, 0.0f, 0.0f};
    Corner c;
    if (split_coordinates(sx, sy, J.W, J.H, c)) {
        float p[4][3];
        for (int k = 0; k < 4; ++k) {
            const int X = c.ix + (k & 1), Y = c.iy + (k >> 1);
            const bool in = X >= 0 && X < J.W && Y >= 0 && Y < J.H;
            const std::uint8_t* s = J.frame + std::size_t(in ? Y : 0) * J.stride + std::size_t(in ? X : 0) * 3;
            for (int ch = 0; ch < 3; ++ch) p[k][ch] = in ? float(s[ch]) : 0.0f;
        }
        for (int ch = 0; ch < 3; ++ch) {
            const float f0 = lerp1(c.ax, p[0][ch], p[1][ch]), f1 = lerp1(c.ax, p[2][ch], p[3][ch]);
            v[ch] = lerp1(c.ay, f0, f1);
        }
    }
    for (int ch = 0; ch < 3; ++ch) J.out[std::size_t(2 - ch) * plane + o] = to_unit(v[ch]);  // BGR -> RGB planes
}

#if defined(MFS_PIPE_AVX2)

template <int SHIFT>
inline __m256 byte_lane(__m256i g) {
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g, SHIFT), _mm256_set1_epi32(0xFF)));
}

inline __m256 lerp8(__m256 a, __m256 p0, __m256 p1) { return _mm256_fmadd_ps(a, _mm256_sub_ps(p1, p0), p0); }

// Lanes whose floor coordinates (fx, fy) lie in [lo, xmax] x [lo, ymax] (all bounds inclusive).
inline __m256 in_box8(__m256 fx, __m256 fy, __m256 lo, __m256 xmax, __m256 ymax) {
    return _mm256_and_ps(_mm256_and_ps(_mm256_cmp_ps(fx, lo, _CMP_GE_OQ), _mm256_cmp_ps(fx, xmax, _CMP_LE_OQ)),
                         _mm256_and_ps(_mm256_cmp_ps(fy, lo, _CMP_GE_OQ), _mm256_cmp_ps(fy, ymax, _CMP_LE_OQ)));
}

template <int CH>
inline void warp_store_channel(const WarpJob& J, __m256i g00, __m256i g01, __m256i g10, __m256i g11, __m256 ax,
                               __m256 ay, std::size_t o) {
    const __m256 f0 = lerp8(ax, byte_lane<8 * CH>(g00), byte_lane<8 * CH>(g01));
    const __m256 f1 = lerp8(ax, byte_lane<8 * CH>(g10), byte_lane<8 * CH>(g11));
    __m256 v = _mm256_round_ps(lerp8(ay, f0, f1), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(255.0f));
    v = _mm256_mul_ps(v, _mm256_set1_ps(static_cast<float>(1.0 / 255.0)));
    _mm256_storeu_ps(J.out + std::size_t(2 - CH) * J.S * J.S + o, v);
}

inline void warp_row(const WarpJob& J, int y) {
    const int S = J.S;
    const float yf = float(y);
    const float ox = yf * J.M[1] + J.M[2], oy = yf * J.M[4] + J.M[5];
    const int vec_end = S - S % CV_WARP_BLOCK;
    const std::size_t row = std::size_t(y) * S;
    const __m256 m0 = _mm256_set1_ps(J.M[0]), m3 = _mm256_set1_ps(J.M[3]);
    const __m256 vox = _mm256_set1_ps(ox), voy = _mm256_set1_ps(oy);
    const __m256 iota = _mm256_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f);
    const __m256 zero = _mm256_setzero_ps(), xmax = _mm256_set1_ps(float(J.W - 2)), ymax = _mm256_set1_ps(float(J.H - 2));
    const __m256i stride = _mm256_set1_epi32(int(J.stride)), three = _mm256_set1_epi32(3);
    // a 4-byte gather may start at most here (the corner p11 of the very last pixel reads one past)
    const __m256i last_start = _mm256_set1_epi32(int(std::size_t(J.H) * J.stride - 4));
    const int* base = reinterpret_cast<const int*>(J.frame);
    int x = 0;
    for (; x < vec_end; x += 8) {
        const __m256 xs = _mm256_add_ps(_mm256_set1_ps(float(x)), iota);
        const __m256 sx = _mm256_fmadd_ps(m0, xs, vox), sy = _mm256_fmadd_ps(m3, xs, voy);
        const __m256 fx = _mm256_floor_ps(sx), fy = _mm256_floor_ps(sy);
        const __m256 in = in_box8(fx, fy, zero, xmax, ymax);
        bool fast = _mm256_movemask_ps(in) == 0xFF;
        __m256i a00 = _mm256_setzero_si256(), a11 = a00;
        if (fast) {
            a00 = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(fy), stride),
                                   _mm256_mullo_epi32(_mm256_cvttps_epi32(fx), three));
            a11 = _mm256_add_epi32(a00, _mm256_add_epi32(stride, three));
            fast = _mm256_movemask_epi8(_mm256_cmpgt_epi32(a11, last_start)) == 0;
        }
        if (!fast) {  // some corner outside the frame (or the frame's last pixel): per pixel
            alignas(32) float lx[8], ly[8];
            _mm256_store_ps(lx, sx);
            _mm256_store_ps(ly, sy);
            for (int i = 0; i < 8; ++i) warp_pixel(J, lx[i], ly[i], row + x + i);
            continue;
        }
        const __m256 ax = _mm256_sub_ps(sx, fx), ay = _mm256_sub_ps(sy, fy);
        const __m256i g00 = _mm256_i32gather_epi32(base, a00, 1);
        const __m256i g01 = _mm256_i32gather_epi32(base, _mm256_add_epi32(a00, three), 1);
        const __m256i g10 = _mm256_i32gather_epi32(base, _mm256_add_epi32(a00, stride), 1);
        const __m256i g11 = _mm256_i32gather_epi32(base, a11, 1);
        warp_store_channel<0>(J, g00, g01, g10, g11, ax, ay, row + x);
        warp_store_channel<1>(J, g00, g01, g10, g11, ax, ay, row + x);
        warp_store_channel<2>(J, g00, g01, g10, g11, ax, ay, row + x);
    }
    for (; x < S; ++x) {
        const float xf = float(x);
        warp_pixel(J, tail_coordinate(xf, yf, J.M[0], J.M[1], J.M[2]), tail_coordinate(xf, yf, J.M[3], J.M[4], J.M[5]),
                   row + x);
    }
}

#else  // portable

inline void warp_row(const WarpJob& J, int y) {
    const int S = J.S;
    const float yf = float(y);
    const float ox = yf * J.M[1] + J.M[2], oy = yf * J.M[4] + J.M[5];
    const int vec_end = S - S % CV_WARP_BLOCK;
    const std::size_t row = std::size_t(y) * S;
    for (int x = 0; x < S; ++x) {
        const float xf = float(x);
        const float sx = x < vec_end ? fma1(J.M[0], xf, ox) : tail_coordinate(xf, yf, J.M[0], J.M[1], J.M[2]);
        const float sy = x < vec_end ? fma1(J.M[3], xf, oy) : tail_coordinate(xf, yf, J.M[3], J.M[4], J.M[5]);
        warp_pixel(J, sx, sy, row + x);
    }
}

#endif

}  // namespace MFS_ISA_NS
}  // namespace mfs
