// The fused IDN blocks, written once over a SIMD vector type V (simd.hpp) and compiled per ISA.
//
//   encoder_tile  depthwise 4x4 s2 p1 -> pointwise -> LeakyReLU
//   up_tile       bilinear 2x (align_corners) -> depthwise 3x3 p1 (+bias) -> pointwise -> LeakyReLU
//                 [-> a second pointwise]   (decoder stages, fusion-mask blocks, final's 1x1)
//   head_band     upsample + 3x3 convs + tanh of the output head, 3x3 conv + sigmoid of the mask
//                 head, and the blend with the input image, for a band of output rows
//
// Each tile does one pass: per input channel, the few source rows it needs are expanded
// (deinterleaved or upsampled) into L1-sized row buffers, the depthwise result goes straight
// into the tile's B matrix (per-thread scratch), and the pointwise GEMM writes the tile's
// output pixels into their NCHW planes (a concat buffer's channel slice when the layer feeds a
// skip connection: no separate resize or concat pass, no copies).
#pragma once

namespace mfs {
namespace MFS_ISA_NS {

// ---------------------------------------------------------------------------------------------
// Row helpers

// dst rows = src rows horizontally upsampled 2x (2n values each; may write up to 8 past them).
template <class V>
inline void upsample_rows(const float* __restrict src, std::size_t src_stride, int rows, const Interp& cols,
                          float* __restrict dst, std::size_t dst_stride) {
    V::upsample_rows(src, src_stride, rows, cols, dst, dst_stride);
}

// dst[x] = (1 - l) a[x] + l b[x]   (optionally LeakyReLU), n a multiple of nothing in particular.
template <class V>
inline void lerp_rows(const float* __restrict a, const float* __restrict b, float l, float* __restrict dst, int n,
                      bool leaky) {
    using T = typename V::T;
    const T wa = V::set1(1.0f - l), wb = V::set1(l);
    int x = 0;
    for (; x + V::W <= n; x += V::W) {
        T v = V::fmadd(wb, V::loadu(b + x), V::mul(wa, V::loadu(a + x)));
        if (leaky) v = vleaky<V>(v);
        V::storeu(dst + x, v);
    }
    for (; x < n; ++x) {
        float v = (1.0f - l) * a[x] + l * b[x];
        dst[x] = leaky ? std::max(v, v * LEAKY_SLOPE) : v;
    }
}

// Prefetch rows [r0, r1] (n floats each, stride `stride`) of a plane: a tile reads only a few
// short rows per channel at a large channel stride, a pattern hardware prefetchers miss.
inline void prefetch_rows(const float* plane, std::size_t stride, int r0, int r1, int n) {
    for (int r = r0; r <= r1; ++r) {
        const char* p = reinterpret_cast<const char*>(plane + std::size_t(r) * stride);
        for (int b = 0; b < n * 4; b += 64) __builtin_prefetch(p + b, 0, 3);
        __builtin_prefetch(p + n * 4 - 1, 0, 3);
    }
}
constexpr int PREFETCH_CHANNELS = 2;  // how far ahead

// ---------------------------------------------------------------------------------------------
// Encoder: depthwise 4x4 stride 2 pad 1 -> pointwise -> LeakyReLU

template <class V>
inline void encoder_depthwise(const EncoderLayer& L, int p0, int p1, float* scratch, std::size_t ldb,
                              const EncoderScratch& s) {
    using T = typename V::T;
    const int H = L.H, W = L.W, Ho = H / 2, Wo = W / 2;
    const std::size_t rs = s.row_stride;
    float* B = scratch + s.b;
    float* rows = scratch + s.rows;
    float* zero = scratch + s.zero;
    std::memset(zero, 0, rs * sizeof(float));
    const int ya = p0 / Wo, yb = (p1 - 1) / Wo;
    const int ra = 2 * ya - 1, rb = 2 * yb + 2;  // input rows touched (may lie outside the image)
    for (int c = 0; c < L.C; ++c) {
        const float* xc = L.x + std::size_t(c) * H * W;
        if (c + PREFETCH_CHANNELS < L.C)
            prefetch_rows(xc + std::size_t(PREFETCH_CHANNELS) * H * W, W, std::max(ra, 0), std::min(rb, H - 1), W);
        // even / odd columns of each input row: E[j] = in[2j] (E[Wo] = 0), O[j] = in[2j - 1] (O[0] = 0)
        for (int r = std::max(ra, 0); r <= std::min(rb, H - 1); ++r) {
            float* E = rows + std::size_t(2 * (r - ra)) * rs;
            float* O = E + rs;
            const float* src = xc + std::size_t(r) * W;
            if (L.normalize) {
                for (int j = 0; j < Wo; ++j) {
                    E[j] = (src[2 * j] - 0.5f) * 2.0f;
                    O[j + 1] = (src[2 * j + 1] - 0.5f) * 2.0f;
                }
            } else {
                for (int j = 0; j < Wo; ++j) {
                    E[j] = src[2 * j];
                    O[j + 1] = src[2 * j + 1];
                }
            }
            E[Wo] = 0.0f;
            O[0] = 0.0f;
        }
        const float* k = L.dw + std::size_t(c) * 16;
        T kv[16];
        for (int t = 0; t < 16; ++t) kv[t] = V::set1(k[t]);
        for (int y = ya; y <= yb; ++y) {
            const float* E[4];
            const float* O[4];
            for (int dy = 0; dy < 4; ++dy) {
                const int r = 2 * y - 1 + dy;
                if (r < 0 || r >= H) {
                    E[dy] = O[dy] = zero;
                } else {
                    E[dy] = rows + std::size_t(2 * (r - ra)) * rs;
                    O[dy] = E[dy] + rs;
                }
            }
            const int xs = y == ya ? p0 - y * Wo : 0;
            const int xe = y == yb ? p1 - y * Wo : Wo;
            float* dst = B + std::size_t(c) * ldb + (std::size_t(y) * Wo - p0);
            for (int x = xs; x < xe; x += V::W) {
                T acc = V::zero();
                for (int dy = 0; dy < 4; ++dy) {
                    acc = V::fmadd(kv[dy * 4 + 0], V::loadu(O[dy] + x), acc);
                    acc = V::fmadd(kv[dy * 4 + 1], V::loadu(E[dy] + x), acc);
                    acc = V::fmadd(kv[dy * 4 + 2], V::loadu(O[dy] + x + 1), acc);
                    acc = V::fmadd(kv[dy * 4 + 3], V::loadu(E[dy] + x + 1), acc);
                }
                if (x + V::W <= xe)
                    V::storeu(dst + x, acc);
                else
                    V::store_partial(dst + x, acc, xe - x);
            }
        }
    }
    (void)Ho;
}

template <class V, int NV>
void encoder_tile(const EncoderLayer& L, int p0, int p1, int m0, int m1, float* scratch) {
    const int n = p1 - p0;
    const EncoderScratch s = encoder_scratch(L, n, NV * V::W);
    encoder_depthwise<V>(L, p0, p1, scratch, s.ldb, s);
    const std::size_t plane = std::size_t(L.H / 2) * (L.W / 2);
    gemm_tile<V, NV>(L.pw, m0, m1, scratch + s.b, s.ldb, n, L.out + p0, plane);
}

// ---------------------------------------------------------------------------------------------
// Upsample 2x -> depthwise 3x3 (+bias) -> pointwise -> LeakyReLU [-> pointwise]

// Bilinear 2x upsampling is separable: each source row is first upsampled horizontally (V rows,
// bordered with a zero column each side for the 3x3 padding), and the vertical interpolation is
// folded into the depthwise kernel: output row y reads upsampled rows y-1..y+1, which mix at most
// three consecutive V rows (a 2x upsample advances half a source row per output row), so
//   out[y][x] = bias + sum_{t,dx} K_y[t][dx] V[j_y + t][x + dx - 1],
//   K_y[t][dx] = sum_dy k[dy][dx] * (weight of V row j_y + t in upsampled row y - 1 + dy).
// Rows outside the image get weight 0 (zero padding). 9 FMAs per output, no upsampled rows.
template <class V>
inline void up_depthwise(const UpLayer& L, int p0, int p1, float* scratch, std::size_t ldb, const UpScratch& s) {
    using T = typename V::T;
    const int h = L.h, w = L.w, H2 = 2 * h, W2 = 2 * w;
    const std::size_t rs = s.row_stride;
    float* B = scratch + s.b;
    float* vbuf = scratch + s.v;
    float* zero = scratch + s.zero;
    std::memset(zero, 0, rs * sizeof(float));
    const int ya = p0 / W2, yb = (p1 - 1) / W2;
    const int ua = std::max(ya - 1, 0), ub = std::min(yb + 1, H2 - 1);
    const Interp& R = *L.rows;
    const int ja = R.i0[ua], jb = R.i1[ub];
    for (int c = 0; c < L.C; ++c) {
        const float* xc = L.x + std::size_t(c) * h * w;
        if (c + PREFETCH_CHANNELS < L.C) prefetch_rows(xc + std::size_t(PREFETCH_CHANNELS) * h * w, w, ja, jb, w);
        upsample_rows<V>(xc + std::size_t(ja) * w, w, jb - ja + 1, *L.cols, vbuf + 1, rs);
        for (int j = ja; j <= jb; ++j) {
            float* vr = vbuf + std::size_t(j - ja) * rs;
            vr[0] = 0.0f;
            vr[W2 + 1] = 0.0f;
        }
        const float* k = L.dw + std::size_t(c) * 9;
        const T bias = V::set1(L.dw_bias ? L.dw_bias[c] : 0.0f);
        float kd[9];
        for (int t = 0; t < 9; ++t) kd[t] = k[t];
        for (int y = ya; y <= yb; ++y) {
            const int j0 = R.j0[y];
            const float* vw = &R.vt[std::size_t(y) * 9];
            float kk[3][3];
            for (int t = 0; t < 3; ++t)
                for (int dx = 0; dx < 3; ++dx)
                    kk[t][dx] = vw[t] * kd[dx] + vw[3 + t] * kd[3 + dx] + vw[6 + t] * kd[6 + dx];
            const float* r0 = vbuf + std::size_t(j0 - ja) * rs;
            const float* r1 = j0 + 1 <= jb ? r0 + rs : zero;
            const float* r2 = j0 + 2 <= jb ? r0 + 2 * rs : zero;
            const T k00 = V::set1(kk[0][0]), k01 = V::set1(kk[0][1]), k02 = V::set1(kk[0][2]);
            const T k10 = V::set1(kk[1][0]), k11 = V::set1(kk[1][1]), k12 = V::set1(kk[1][2]);
            const T k20 = V::set1(kk[2][0]), k21 = V::set1(kk[2][1]), k22 = V::set1(kk[2][2]);
            const int xs = y == ya ? p0 - y * W2 : 0;
            const int xe = y == yb ? p1 - y * W2 : W2;
            float* dst = B + std::size_t(c) * ldb + (std::size_t(y) * W2 - p0);
            int x = xs;
            for (; x + 2 * V::W <= xe; x += 2 * V::W) {  // two vectors, three partial sums each (ILP)
                T a0 = V::fmadd(k00, V::loadu(r0 + x), bias), b0 = V::fmadd(k00, V::loadu(r0 + x + V::W), bias);
                T a1 = V::mul(k10, V::loadu(r1 + x)), b1 = V::mul(k10, V::loadu(r1 + x + V::W));
                T a2 = V::mul(k20, V::loadu(r2 + x)), b2 = V::mul(k20, V::loadu(r2 + x + V::W));
                a0 = V::fmadd(k01, V::loadu(r0 + x + 1), a0), b0 = V::fmadd(k01, V::loadu(r0 + x + V::W + 1), b0);
                a1 = V::fmadd(k11, V::loadu(r1 + x + 1), a1), b1 = V::fmadd(k11, V::loadu(r1 + x + V::W + 1), b1);
                a2 = V::fmadd(k21, V::loadu(r2 + x + 1), a2), b2 = V::fmadd(k21, V::loadu(r2 + x + V::W + 1), b2);
                a0 = V::fmadd(k02, V::loadu(r0 + x + 2), a0), b0 = V::fmadd(k02, V::loadu(r0 + x + V::W + 2), b0);
                a1 = V::fmadd(k12, V::loadu(r1 + x + 2), a1), b1 = V::fmadd(k12, V::loadu(r1 + x + V::W + 2), b1);
                a2 = V::fmadd(k22, V::loadu(r2 + x + 2), a2), b2 = V::fmadd(k22, V::loadu(r2 + x + V::W + 2), b2);
                V::storeu(dst + x, V::add(V::add(a0, a1), a2));
                V::storeu(dst + x + V::W, V::add(V::add(b0, b1), b2));
            }
            for (; x < xe; x += V::W) {
                T a0 = V::fmadd(k00, V::loadu(r0 + x), bias);
                T a1 = V::mul(k10, V::loadu(r1 + x));
                T a2 = V::mul(k20, V::loadu(r2 + x));
                a0 = V::fmadd(k01, V::loadu(r0 + x + 1), a0);
                a1 = V::fmadd(k11, V::loadu(r1 + x + 1), a1);
                a2 = V::fmadd(k21, V::loadu(r2 + x + 1), a2);
                a0 = V::fmadd(k02, V::loadu(r0 + x + 2), a0);
                a1 = V::fmadd(k12, V::loadu(r1 + x + 2), a1);
                a2 = V::fmadd(k22, V::loadu(r2 + x + 2), a2);
                const T acc = V::add(V::add(a0, a1), a2);
                if (x + V::W <= xe)
                    V::storeu(dst + x, acc);
                else
                    V::store_partial(dst + x, acc, xe - x);
            }
        }
    }
}

template <class V, int NV>
void up_tile(const UpLayer& L, int p0, int p1, int m0, int m1, float* scratch) {
    const int n = p1 - p0;
    const UpScratch s = up_scratch(L, n, NV * V::W);
    up_depthwise<V>(L, p0, p1, scratch, s.ldb, s);
    const std::size_t plane = std::size_t(2 * L.h) * (2 * L.w);
    if (!L.pw2.a) {
        gemm_tile<V, NV>(L.pw, m0, m1, scratch + s.b, s.ldb, n, L.out + p0, plane);
    } else {  // the block's output stays in scratch and feeds the second pointwise
        float* mid = scratch + s.c;
        gemm_tile<V, NV>(L.pw, 0, L.pw.M, scratch + s.b, s.ldb, n, mid, s.ldb);
        gemm_tile<V, NV>(L.pw2, 0, L.pw2.M, mid, s.ldb, n, L.out + p0, plane);
    }
}

// ---------------------------------------------------------------------------------------------
// Plain pointwise over a tile (tests): copies the tile into a padded B, then the same GEMM.

template <class V, int NV>
void pointwise_tile(const Pointwise& pw, const float* x, std::size_t x_stride, int p0, int p1, int m0, int m1,
                    float* out, std::size_t out_stride) {
    const int n = p1 - p0;
    const std::size_t ldb = b_stride(n, NV * V::W);
    std::vector<float> B(std::size_t(pw.K) * ldb, 0.0f);
    for (int k = 0; k < pw.K; ++k) std::memcpy(&B[std::size_t(k) * ldb], x + std::size_t(k) * x_stride + p0, n * 4);
    gemm_tile<V, NV>(pw, m0, m1, B.data(), ldb, n, out + p0, out_stride);
}

// ---------------------------------------------------------------------------------------------
// Output heads

// One output row of a 3x3 conv (pad 1) with COUT outputs: in[i * 3 + dy] points at input
// channel i's row y - 1 + dy, bordered (element 0 is column -1); out[o] at column 0.
template <class V, int CIN, int COUT>
inline void conv3x3_row(const float* const* in, const float* w, const float* b, int W, float* const* out, bool leaky) {
    using T = typename V::T;
    for (int x = 0; x < W; x += 2 * V::W) {
        T acc[COUT][2];
        for (int o = 0; o < COUT; ++o) acc[o][0] = acc[o][1] = V::set1(b[o]);
        for (int i = 0; i < CIN; ++i)
            for (int dy = 0; dy < 3; ++dy) {
                const float* r = in[i * 3 + dy] + x;
                for (int dx = 0; dx < 3; ++dx) {
                    const T v0 = V::loadu(r + dx), v1 = V::loadu(r + dx + V::W);
                    for (int o = 0; o < COUT; ++o) {
                        const T wv = V::set1(w[(o * CIN + i) * 9 + dy * 3 + dx]);
                        acc[o][0] = V::fmadd(wv, v0, acc[o][0]);
                        acc[o][1] = V::fmadd(wv, v1, acc[o][1]);
                    }
                }
            }
        for (int o = 0; o < COUT; ++o) {
            T a0 = acc[o][0], a1 = acc[o][1];
            if (leaky) a0 = vleaky<V>(a0), a1 = vleaky<V>(a1);
            V::storeu(out[o] + x, a0);
            V::storeu(out[o] + x + V::W, a1);
        }
    }
}

// Last row stage: face = sigmoid(2 conv3(h2)) (= (1 + tanh) / 2), mask = sigmoid(convm(m5)),
// result = face * mask + (1 - mask) * image.
template <class V>
inline void head_output_row(const HeadLayer& L, int y, const float* const* h2, const float* const* m5) {
    using T = typename V::T;
    const int W = L.W;
    const std::size_t plane = std::size_t(L.H) * W, row = std::size_t(y) * W;
    const T one = V::set1(1.0f), two = V::set1(2.0f);
    for (int x = 0; x < W; x += V::W) {
        T f[3], m = V::set1(L.bm[0]);
        for (int o = 0; o < 3; ++o) f[o] = V::set1(L.b3[o]);
        for (int i = 0; i < 3; ++i)
            for (int dy = 0; dy < 3; ++dy) {
                const float* r = h2[i * 3 + dy] + x;
                for (int dx = 0; dx < 3; ++dx) {
                    const T v = V::loadu(r + dx);
                    for (int o = 0; o < 3; ++o) f[o] = V::fmadd(V::set1(L.w3[(o * 3 + i) * 9 + dy * 3 + dx]), v, f[o]);
                }
            }
        for (int i = 0; i < HEAD_MASK; ++i)
            for (int dy = 0; dy < 3; ++dy) {
                const float* r = m5[i * 3 + dy] + x;
                for (int dx = 0; dx < 3; ++dx) m = V::fmadd(V::set1(L.wm[i * 9 + dy * 3 + dx]), V::loadu(r + dx), m);
            }
        const T mask = vsigmoid<V>(m);
        const T keep = V::sub(one, mask);
        const int n = W - x;  // the output planes are not padded: a last partial vector is masked
        if (n >= V::W) V::storeu(L.masks + row + x, mask);
        else V::store_partial(L.masks + row + x, mask, n);
        for (int o = 0; o < 3; ++o) {
            const T face = vsigmoid<V>(V::mul(two, f[o]));
            const float* ip = L.image + o * plane + row + x;
            const T img = n >= V::W ? V::loadu(ip) : V::load_partial(ip, n);
            const T v = V::add(V::mul(face, mask), V::mul(keep, img));
            if (n >= V::W) V::storeu(L.faces + o * plane + row + x, v);
            else V::store_partial(L.faces + o * plane + row + x, v, n);
        }
    }
}

// Output rows [ya, yb) of both heads.
template <class V>
void head_band(const HeadLayer& L, int ya, int yb, float* scratch) {
    const int H = L.H, W = L.W, h = H / 2, w = W / 2, band = yb - ya;
    const HeadScratch s = head_scratch(L, band);
    const std::size_t rs = s.row_stride;
    float* zero = scratch + s.zero;
    std::memset(zero, 0, rs * sizeof(float));
    // h1 = LeakyReLU(upsample(z)), rows ya-2 .. yb+1, bordered
    auto h1row = [&](int i, int y) { return scratch + s.h1 + (std::size_t(i) * (band + 4) + (y - ya + 2)) * rs; };
    const Interp& R = *L.rows;
    const int ua = std::max(ya - 2, 0), ub = std::min(yb + 1, H - 1);
    const int ja = R.i0[ua], jb = R.i1[ub];
    float* vbuf = scratch + s.v;
    for (int i = 0; i < HEAD_Z; ++i) {
        const float* zi = L.z + std::size_t(i) * h * w;
        if (i + 1 < HEAD_Z) prefetch_rows(zi + std::size_t(h) * w, w, ja, jb, w);
        upsample_rows<V>(zi + std::size_t(ja) * w, w, jb - ja + 1, *L.cols, vbuf, s.v_stride);
        for (int u = ua; u <= ub; ++u) {
            float* r = h1row(i, u);
            r[0] = 0.0f;
            lerp_rows<V>(vbuf + std::size_t(R.i0[u] - ja) * s.v_stride, vbuf + std::size_t(R.i1[u] - ja) * s.v_stride,
                         R.l[u], r + 1, W, true);
            r[W + 1] = 0.0f;
        }
    }
    auto h1ptr = [&](int i, int y) -> const float* { return y < 0 || y >= H ? zero : h1row(i, y); };
    // h2 = LeakyReLU(conv3x3 8->3 (h1)), rows ya-1 .. yb
    auto h2row = [&](int o, int y) { return scratch + s.h2 + (std::size_t(o) * (band + 2) + (y - ya + 1)) * rs; };
    for (int y = std::max(ya - 1, 0); y <= std::min(yb, H - 1); ++y) {
        const float* in[HEAD_Z * 3];
        for (int i = 0; i < HEAD_Z; ++i)
            for (int dy = 0; dy < 3; ++dy) in[i * 3 + dy] = h1ptr(i, y - 1 + dy);
        float* out[3];
        for (int o = 0; o < 3; ++o) {
            float* r = h2row(o, y);
            r[0] = 0.0f;
            out[o] = r + 1;
        }
        conv3x3_row<V, HEAD_Z, 3>(in, L.w2, L.b2, W, out, true);
        // the conv writes whole vector pairs, past column W - 1 when W is not a multiple of
        // 2 * V::W: the right border goes in after it
        for (int o = 0; o < 3; ++o) out[o][W] = 0.0f;
    }
    auto h2ptr = [&](int o, int y) -> const float* { return y < 0 || y >= H ? zero : h2row(o, y); };
    // mask features, bordered copies of rows ya-1 .. yb
    auto m5row = [&](int i, int y) { return scratch + s.m5 + (std::size_t(i) * (band + 2) + (y - ya + 1)) * rs; };
    for (int y = std::max(ya - 1, 0); y <= std::min(yb, H - 1); ++y)
        for (int i = 0; i < HEAD_MASK; ++i) {
            float* r = m5row(i, y);
            r[0] = 0.0f;
            std::memcpy(r + 1, L.m5 + (std::size_t(i) * H + y) * W, std::size_t(W) * sizeof(float));
            r[W + 1] = 0.0f;
        }
    auto m5ptr = [&](int i, int y) -> const float* { return y < 0 || y >= H ? zero : m5row(i, y); };
    for (int y = ya; y < yb; ++y) {
        const float* f_in[9];
        const float* m_in[HEAD_MASK * 3];
        for (int dy = 0; dy < 3; ++dy) {
            for (int o = 0; o < 3; ++o) f_in[o * 3 + dy] = h2ptr(o, y - 1 + dy);
            for (int i = 0; i < HEAD_MASK; ++i) m_in[i * 3 + dy] = m5ptr(i, y - 1 + dy);
        }
        head_output_row<V>(L, y, f_in, m_in);
    }
}

}  // namespace MFS_ISA_NS
}  // namespace mfs

// Defines mfs::MFS_ISA_NS::{encoder,up,head,pointwise}_entry: plain (non-template) functions
// compiled under the ISA's target options, for the kernel table.
#define MFS_DEFINE_ENTRIES(V, NV)                                                                                  \
    namespace mfs {                                                                                                \
    namespace MFS_ISA_NS {                                                                                         \
    void encoder_entry(const EncoderLayer& L, int p0, int p1, int m0, int m1, float* s) {                          \
        encoder_tile<V, NV>(L, p0, p1, m0, m1, s);                                                                 \
    }                                                                                                              \
    void up_entry(const UpLayer& L, int p0, int p1, int m0, int m1, float* s) { up_tile<V, NV>(L, p0, p1, m0, m1, s); } \
    void head_entry(const HeadLayer& L, int y0, int y1, float* s) { head_band<V>(L, y0, y1, s); }                  \
    void pointwise_entry(const Pointwise& pw, const float* x, std::size_t xs, int p0, int p1, int m0, int m1,      \
                         float* out, std::size_t os) {                                                             \
        pointwise_tile<V, NV>(pw, x, xs, p0, p1, m0, m1, out, os);                                                 \
    }                                                                                                              \
    constexpr int entry_nr = NV * V::W;                                                                            \
    }                                                                                                              \
    }
