// The paste-back of the pipeline core, compiled per ISA (pipeline_portable.cpp,
// pipeline_avx2.cpp): the swapped face and its blend mask warped back into the frame with the
// inverse affine and blended in place, inside the face's footprint box only.
//
// It computes what mfs_fast.face.paste.paste_back does with NumPy and OpenCV:
//   warped_face = cv2.warpAffine(face * 255, local, box)   (float32, 3 channels)
//   warped_mask = cv2.warpAffine(mask, local, box)          (float32)
//   out = uint8(clip(warped_face * warped_mask + region * (1 - warped_mask), 0, 255))
// or, keeping the frame's detail (PasteJob::additive, face = the low-band change),
//   out = uint8(clip(region + warped_mask * warped_change, 0, 255))
// with the same float32 operations in the same order (coordinates and bilinear sampling as in
// warp.hpp, products and sums rounded separately: -ffp-contract=off), so the only differences
// left are the last bits of the double-precision matrix algebra before it. Pixels whose mask
// sample is 0 are left untouched (the formula gives the input back exactly there).
#pragma once

#ifndef MFS_ISA_NS
#error "blend.hpp is included from a pipeline_*.cpp translation unit that defines MFS_ISA_NS"
#endif

namespace mfs {
namespace MFS_ISA_NS {

// Bilinear sample of one S x S float plane (corners outside are 0), pre-scaled like NumPy's
// `face * 255` before the warp.
inline float sample_plane(const float* plane, int S, const Corner& c, float scale) {
    float p[4];
    for (int k = 0; k < 4; ++k) {
        const int X = c.ix + (k & 1), Y = c.iy + (k >> 1);
        p[k] = X >= 0 && X < S && Y >= 0 && Y < S ? plane[std::size_t(Y) * S + X] * scale : 0.0f;
    }
    return lerp1(c.ay, lerp1(c.ax, p[0], p[1]), lerp1(c.ax, p[2], p[3]));
}

inline std::uint8_t blend_value(float face, float mask, float one_minus_mask, std::uint8_t region) {
    float v = face * mask + float(region) * one_minus_mask;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    return static_cast<std::uint8_t>(v);  // truncation, as NumPy's astype(uint8)
}

// The detail-keeping paste: region + change * mask (the order NumPy computes it in).
inline std::uint8_t add_value(float change, float mask, std::uint8_t region) {
    float v = float(region) + change * mask;
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    return static_cast<std::uint8_t>(v);
}

// One box pixel (BGR bytes at p) from its crop coordinates.
inline void paste_pixel(const PasteJob& J, float sx, float sy, std::uint8_t* p) {
    Corner c;
    if (!split_coordinates(sx, sy, J.S, J.S, c)) return;
    const float m = sample_plane(J.mask, J.S, c, 1.0f);
    if (m == 0.0f) return;
    const float rest = 1.0f - m;
    const std::size_t plane = std::size_t(J.S) * J.S;
    for (int ch = 0; ch < 3; ++ch) {  // BGR channel ch <- RGB plane 2 - ch
        const float f = sample_plane(J.face + std::size_t(2 - ch) * plane, J.S, c, 255.0f);
        p[ch] = J.additive ? add_value(f, m, p[ch]) : blend_value(f, m, rest, p[ch]);
    }
}

#if defined(MFS_PIPE_AVX2)

inline __m256 gather_lerp(const float* plane, __m256i i00, __m256i step_x, __m256i step_y, __m256 ax, __m256 ay,
                          __m256 scale) {
    const __m256i i10 = _mm256_add_epi32(i00, step_y);
    const __m256 p00 = _mm256_mul_ps(_mm256_i32gather_ps(plane, i00, 4), scale);
    const __m256 p01 = _mm256_mul_ps(_mm256_i32gather_ps(plane, _mm256_add_epi32(i00, step_x), 4), scale);
    const __m256 p10 = _mm256_mul_ps(_mm256_i32gather_ps(plane, i10, 4), scale);
    const __m256 p11 = _mm256_mul_ps(_mm256_i32gather_ps(plane, _mm256_add_epi32(i10, step_x), 4), scale);
    return lerp8(ay, lerp8(ax, p00, p01), lerp8(ax, p10, p11));
}

inline void paste_row(const PasteJob& J, int r) {
    const int S = J.S, bw = J.x1 - J.x0;
    const float rf = float(r);
    const float ox = rf * J.M[1] + J.M[2], oy = rf * J.M[4] + J.M[5];
    const int vec_end = bw - bw % CV_WARP_BLOCK;
    std::uint8_t* row = J.frame + std::size_t(J.y0 + r) * J.stride + std::size_t(J.x0) * 3;
    const std::size_t plane = std::size_t(S) * S;
    const __m256 m0 = _mm256_set1_ps(J.M[0]), m3 = _mm256_set1_ps(J.M[3]);
    const __m256 vox = _mm256_set1_ps(ox), voy = _mm256_set1_ps(oy);
    const __m256 iota = _mm256_setr_ps(0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), v255 = _mm256_set1_ps(255.0f);
    const __m256 inner = _mm256_set1_ps(float(S - 2)), minus1 = _mm256_set1_ps(-1.0f), outer = _mm256_set1_ps(float(S - 1));
    const __m256i step_x = _mm256_set1_epi32(1), step_y = _mm256_set1_epi32(S), vS = _mm256_set1_epi32(S);
    int x = 0;
    for (; x < vec_end; x += 8) {
        const __m256 xs = _mm256_add_ps(_mm256_set1_ps(float(x)), iota);
        const __m256 sx = _mm256_fmadd_ps(m0, xs, vox), sy = _mm256_fmadd_ps(m3, xs, voy);
        const __m256 fx = _mm256_floor_ps(sx), fy = _mm256_floor_ps(sy);
        const __m256 in = in_box8(fx, fy, zero, inner, inner);
        if (_mm256_movemask_ps(in) != 0xFF) {
            // lanes with a corner inside the crop: per pixel; lanes entirely outside stay as they are
            const __m256 some = in_box8(fx, fy, minus1, outer, outer);
            if (_mm256_movemask_ps(some) == 0) continue;
            alignas(32) float lx[8], ly[8];
            _mm256_store_ps(lx, sx);
            _mm256_store_ps(ly, sy);
            for (int i = 0; i < 8; ++i) paste_pixel(J, lx[i], ly[i], row + std::size_t(x + i) * 3);
            continue;
        }
        const __m256 ax = _mm256_sub_ps(sx, fx), ay = _mm256_sub_ps(sy, fy);
        const __m256i i00 = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(fy), vS), _mm256_cvttps_epi32(fx));
        const __m256 m = gather_lerp(J.mask, i00, step_x, step_y, ax, ay, one);
        if (_mm256_movemask_ps(_mm256_cmp_ps(m, zero, _CMP_NEQ_UQ)) == 0) continue;  // mask 0: unchanged
        const __m256 rest = _mm256_sub_ps(one, m);
        std::uint8_t* p = row + std::size_t(x) * 3;
        alignas(32) float region[3][8];
        for (int i = 0; i < 8; ++i)
            for (int ch = 0; ch < 3; ++ch) region[ch][i] = float(p[i * 3 + ch]);
        alignas(32) std::int32_t result[3][8];
        for (int ch = 0; ch < 3; ++ch) {
            const __m256 f = gather_lerp(J.face + std::size_t(2 - ch) * plane, i00, step_x, step_y, ax, ay, v255);
            const __m256 r = _mm256_load_ps(region[ch]);
            __m256 v = J.additive ? _mm256_add_ps(r, _mm256_mul_ps(f, m))
                                  : _mm256_add_ps(_mm256_mul_ps(f, m), _mm256_mul_ps(r, rest));
            v = _mm256_min_ps(_mm256_max_ps(v, zero), v255);
            _mm256_store_si256(reinterpret_cast<__m256i*>(result[ch]), _mm256_cvttps_epi32(v));
        }
        for (int i = 0; i < 8; ++i)
            for (int ch = 0; ch < 3; ++ch) p[i * 3 + ch] = static_cast<std::uint8_t>(result[ch][i]);
    }
    for (; x < bw; ++x) {
        const float xf = float(x);
        paste_pixel(J, tail_coordinate(xf, rf, J.M[0], J.M[1], J.M[2]), tail_coordinate(xf, rf, J.M[3], J.M[4], J.M[5]),
                    row + std::size_t(x) * 3);
    }
}

#else  // portable

inline void paste_row(const PasteJob& J, int r) {
    const int bw = J.x1 - J.x0;
    const float rf = float(r);
    const float ox = rf * J.M[1] + J.M[2], oy = rf * J.M[4] + J.M[5];
    const int vec_end = bw - bw % CV_WARP_BLOCK;
    std::uint8_t* row = J.frame + std::size_t(J.y0 + r) * J.stride + std::size_t(J.x0) * 3;
    for (int x = 0; x < bw; ++x) {
        const float xf = float(x);
        const float sx = x < vec_end ? fma1(J.M[0], xf, ox) : tail_coordinate(xf, rf, J.M[0], J.M[1], J.M[2]);
        const float sy = x < vec_end ? fma1(J.M[3], xf, oy) : tail_coordinate(xf, rf, J.M[3], J.M[4], J.M[5]);
        paste_pixel(J, sx, sy, row + std::size_t(x) * 3);
    }
}

#endif

}  // namespace MFS_ISA_NS
}  // namespace mfs
