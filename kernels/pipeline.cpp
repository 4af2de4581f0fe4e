// The pipeline core: face geometry, the official paste mask, the stages over all faces of a
// frame, and PipelineCore (align -> IDN -> blend). ISA-independent; the per-pixel kernels are
// in warp.hpp / blend.hpp. Compiled with -ffp-contract=off (CMakeLists.txt): the double
// precision matrix algebra below must round like OpenCV's and NumPy's.
#include "pipeline.hpp"

#include <chrono>
#include <cmath>
#include <stdexcept>

namespace mfs {

const PipelineKernels* pipeline_kernels_for(const std::string& isa) {
    if ((isa == "avx2" || isa == "avx512" || isa == "avx512bf16") && pipeline_kernels_avx2() && cpu_has_avx2_fma())
        return pipeline_kernels_avx2();
    return pipeline_kernels_portable();
}

YuvCoefficients yuv_coefficients(double kr, double kb, bool full_range) {
    const double kg = 1.0 - kr - kb;
    const double ys = full_range ? 1.0 : 219.0 / 255.0, cs = full_range ? 1.0 : 224.0 / 255.0;
    auto fixed = [](double v) { return static_cast<std::int32_t>(std::lround(v * 65536.0)); };
    YuvCoefficients c;
    c.y_offset = full_range ? 0 : 16;
    // to BGR: E = (Y - y_offset) / ys, B = E + 2 (1 - kb) Cb / cs, R = E + 2 (1 - kr) Cr / cs, G = (E - kr R - kb B) / kg
    c.y_scale = fixed(1.0 / ys);
    c.b_u = fixed(2.0 * (1.0 - kb) / cs);
    c.r_v = fixed(2.0 * (1.0 - kr) / cs);
    c.g_u = fixed(2.0 * (1.0 - kb) * kb / kg / cs);
    c.g_v = fixed(2.0 * (1.0 - kr) * kr / kg / cs);
    // to YUV: Y = ys (kr R + kg G + kb B) + y_offset, Cb = cs (B - E') / (2 (1 - kb)) + 128, Cr likewise
    c.y_b = fixed(ys * kb), c.y_g = fixed(ys * kg), c.y_r = fixed(ys * kr);
    const double u = cs / (2.0 * (1.0 - kb)), v = cs / (2.0 * (1.0 - kr));
    c.u_b = fixed(u * (1.0 - kb)), c.u_g = fixed(-u * kg), c.u_r = fixed(-u * kr);
    c.v_b = fixed(-v * kb), c.v_g = fixed(-v * kg), c.v_r = fixed(v * (1.0 - kr));
    return c;
}

// ---------------------------------------------------------------------------------------------
// Geometry

bool cv_warp_coefficients(const double forward[6], float out[6]) {
    // what cv2.warpAffine does with a matrix given without WARP_INVERSE_MAP (imgwarp.cpp)
    double M[6];
    for (int i = 0; i < 6; ++i) M[i] = forward[i];
    double D = M[0] * M[4] - M[1] * M[3];
    if (D == 0.0 || !std::isfinite(D)) return false;
    D = 1.0 / D;
    const double A11 = M[4] * D, A22 = M[0] * D;
    M[0] = A11;
    M[1] *= -D;
    M[3] *= -D;
    M[4] = A22;
    const double b1 = -M[0] * M[2] - M[1] * M[5];
    const double b2 = -M[3] * M[2] - M[4] * M[5];
    M[2] = b1;
    M[5] = b2;
    for (int i = 0; i < 6; ++i) {
        out[i] = static_cast<float>(M[i]);
        if (!std::isfinite(out[i])) return false;
    }
    return true;
}

bool invert_affine(const double m[6], double out[6]) {
    const double det = m[0] * m[4] - m[1] * m[3];
    if (det == 0.0 || !std::isfinite(det)) return false;
    const double a = m[4] / det, b = -m[1] / det, d = -m[3] / det, e = m[0] / det;
    out[0] = a;
    out[1] = b;
    out[2] = -(a * m[2] + b * m[5]);
    out[3] = d;
    out[4] = e;
    out[5] = -(d * m[2] + e * m[5]);
    for (int i = 0; i < 6; ++i)
        if (!std::isfinite(out[i])) return false;
    return true;
}

bool alignment_matrix(const float landmarks[10], int size, float out[6]) {
    static const double TEMPLATE_112[5][2] = {{30.2946, 51.6963},
                                              {65.5318, 51.5014},
                                              {48.0252, 71.7366},
                                              {33.5493, 92.3655},
                                              {62.7299, 92.2041}};
    const double scale = double(size) / 112.0;
    double t[5][2], x[5], y[5], xm = 0.0, ym = 0.0;
    for (int i = 0; i < 5; ++i) {
        t[i][0] = (TEMPLATE_112[i][0] + 8.0) * scale;
        t[i][1] = TEMPLATE_112[i][1] * scale;
        x[i] = landmarks[2 * i];
        y[i] = landmarks[2 * i + 1];
        if (!std::isfinite(x[i]) || !std::isfinite(y[i])) return false;
        xm += x[i];
        ym += y[i];
    }
    xm /= 5.0;
    ym /= 5.0;
    // centred normal equations: well conditioned whatever the frame coordinates
    double sxx = 0.0, sxy = 0.0, syy = 0.0;
    for (int i = 0; i < 5; ++i) {
        const double dx = x[i] - xm, dy = y[i] - ym;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    const double det = sxx * syy - sxy * sxy;
    if (!(det > 1e-12 * (sxx + syy) * (sxx + syy))) return false;  // collinear (rank < 3)
    for (int r = 0; r < 2; ++r) {
        double bx = 0.0, by = 0.0, tm = 0.0;
        for (int i = 0; i < 5; ++i) {
            bx += (x[i] - xm) * t[i][r];
            by += (y[i] - ym) * t[i][r];
            tm += t[i][r];
        }
        tm /= 5.0;
        const double a = (syy * bx - sxy * by) / det, b = (sxx * by - sxy * bx) / det;
        out[3 * r + 0] = static_cast<float>(a);
        out[3 * r + 1] = static_cast<float>(b);
        out[3 * r + 2] = static_cast<float>(tm - a * xm - b * ym);
    }
    return true;
}

bool footprint_box(const double inv[6], int size, int H, int W, int box[4]) {
    const double S = size;
    const double us[4] = {0.0, S, 0.0, S}, vs[4] = {0.0, 0.0, S, S};
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < 4; ++k) {
        const double X = us[k] * inv[0] + vs[k] * inv[1] + inv[2];
        const double Y = us[k] * inv[3] + vs[k] * inv[4] + inv[5];
        xmin = std::min(xmin, X), xmax = std::max(xmax, X);
        ymin = std::min(ymin, Y), ymax = std::max(ymax, Y);
    }
    if (!std::isfinite(xmin) || !std::isfinite(xmax) || !std::isfinite(ymin) || !std::isfinite(ymax)) return false;
    const double lim = 1e9;  // far outside any frame: clipped below anyway
    const double x0 = std::floor(std::max(xmin, -lim)) - 1.0, y0 = std::floor(std::max(ymin, -lim)) - 1.0;
    const double x1 = std::ceil(std::min(xmax, lim)) + 1.0, y1 = std::ceil(std::min(ymax, lim)) + 1.0;
    box[0] = int(std::max(x0, 0.0));
    box[1] = int(std::max(y0, 0.0));
    box[2] = int(std::min(x1, double(W)));
    box[3] = int(std::min(y1, double(H)));
    return box[0] < box[2] && box[1] < box[3];
}

// ---------------------------------------------------------------------------------------------
// The official paste mask. Every intermediate is a small integer, so the whole chain runs on
// bytes (row operations the compiler vectorises) and only the last step is float.

namespace {

inline int reflect101(int i, int n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

// 1-D counts of a 0/1 vector over a (2r+1) window with reflect-101 borders.
std::vector<int> reflect_counts(const std::vector<std::uint8_t>& v, int r) {
    const int n = static_cast<int>(v.size());
    std::vector<int> c(n, 0);
    for (int i = 0; i < n; ++i)
        for (int d = -r; d <= r; ++d) c[i] += v[reflect101(i + d, n)];
    return c;
}

// 16 bytes at a time (GCC/Clang vector extensions: SSE2 on x86-64, NEON on AArch64), the
// accumulator kept in a register while the window's rows or shifts stream past it.
typedef std::uint8_t u8x16 __attribute__((vector_size(16)));
inline u8x16 load16(const std::uint8_t* p) {
    u8x16 v;
    std::memcpy(&v, p, 16);
    return v;
}
inline void store16(std::uint8_t* p, u8x16 v) { std::memcpy(p, &v, 16); }

enum class Reduce { Max, Min, Sum };
template <Reduce R>
inline u8x16 reduce16(u8x16 a, u8x16 b) {
    if constexpr (R == Reduce::Max) return a > b ? a : b;
    if constexpr (R == Reduce::Min) return a < b ? a : b;
    return a + b;
}
template <Reduce R>
inline std::uint8_t reduce1(std::uint8_t a, std::uint8_t b) {
    if constexpr (R == Reduce::Max) return a > b ? a : b;
    if constexpr (R == Reduce::Min) return a < b ? a : b;
    return std::uint8_t(a + b);
}

// out[x] = reduce of rows[0][x], rows[1][x], ... rows[k-1][x] for x < n.
template <Reduce R>
inline void reduce_rows(const std::uint8_t* const* rows, int k, int n, std::uint8_t* out) {
    int x = 0;
    for (; x + 16 <= n; x += 16) {
        u8x16 acc = load16(rows[0] + x);
        for (int i = 1; i < k; ++i) acc = reduce16<R>(acc, load16(rows[i] + x));
        store16(out + x, acc);
    }
    for (; x < n; ++x) {
        std::uint8_t acc = rows[0][x];
        for (int i = 1; i < k; ++i) acc = reduce1<R>(acc, rows[i][x]);
        out[x] = acc;
    }
}

// A (2r+1)^2 box reduction of an S x S byte image: rows first (each row padded by r on both
// sides by `pad`), then columns (rows clipped to the image when clip, else reflect-101).
// Dilation is Max with zero padding and clipped columns, erosion Min with one padding (pixels
// outside ignored: OpenCV's default morphology border), the box blur's counts Sum with
// reflect-101 in both directions.
template <Reduce R>
void box_reduce(const std::uint8_t* in, int S, int r, bool reflect, std::uint8_t pad, std::uint8_t* row,
                std::uint8_t* tmp, std::uint8_t* out) {
    const int k = 2 * r + 1;
    std::vector<const std::uint8_t*> rows(k);
    std::memset(row, pad, std::size_t(S) + 2 * r);
    for (int y = 0; y < S; ++y) {
        const std::uint8_t* src = in + std::size_t(y) * S;
        std::memcpy(row + r, src, std::size_t(S));
        if (reflect)
            for (int d = 1; d <= r; ++d) row[r - d] = src[d], row[r + S - 1 + d] = src[S - 1 - d];
        for (int i = 0; i < k; ++i) rows[i] = row + i;
        reduce_rows<R>(rows.data(), k, S, tmp + std::size_t(y) * S);
    }
    for (int y = 0; y < S; ++y) {
        int n = 0;
        for (int d = -r; d <= r; ++d) {
            const int yy = y + d;
            if (reflect)
                rows[n++] = tmp + std::size_t(reflect101(yy, S)) * S;
            else if (yy >= 0 && yy < S)
                rows[n++] = tmp + std::size_t(yy) * S;
        }
        reduce_rows<R>(rows.data(), n, S, out + std::size_t(y) * S);
    }
}

}  // namespace

std::vector<float> border_fade(int S) {
    // cv2.blur(ones inside a 10 px margin, (11, 11)): the 2-D box sum of a separable 0/1 image
    // is the product of the 1-D counts; cv2 scales the (exact) sum by 1/121 in double
    std::vector<std::uint8_t> inside(S);
    for (int i = 0; i < S; ++i) inside[i] = i >= 10 && i < S - 10;
    const std::vector<int> c = reflect_counts(inside, 5);
    std::vector<float> fade(std::size_t(S) * S);
    for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) fade[std::size_t(y) * S + x] = static_cast<float>(double(c[y] * c[x]) * (1.0 / 121.0));
    return fade;
}

void MaskScratch::reserve(int S) {
    const std::size_t n = std::size_t(S) * S;
    if (a.size() < n) a.resize(n), b.resize(n), c.resize(n);
    if (row.size() < std::size_t(S) + 32) row.resize(std::size_t(S) + 32);
}

void mask_postprocess(const float* m, int S, const float* fade, MaskScratch& s, float* out) {
    s.reserve(S);
    const std::size_t n = std::size_t(S) * S;
    std::uint8_t *a = s.a.data(), *b = s.b.data(), *c = s.c.data(), *row = s.row.data();
    // binarise (NumPy compares float32 with the float32 value of 0.001)
    const float threshold = 0.001f;
    for (std::size_t i = 0; i < n; ++i) a[i] = m[i] > threshold;
    box_reduce<Reduce::Max>(a, S, 5, false, 0, row, b, c);   // dilate 11x11
    box_reduce<Reduce::Min>(c, S, 10, false, 1, row, b, a);  // erode 11x11 twice = erode 21x21 (rectangles)
    // box blur 7x7 with reflect-101 borders: exact counts (at most 49, so bytes), scaled by 1/49
    // in double (as cv2.blur) and rounded to float, times the fade
    box_reduce<Reduce::Sum>(a, S, 3, true, 0, row, b, c);
    float scaled[50];
    for (int k = 0; k < 50; ++k) scaled[k] = static_cast<float>(double(k) * (1.0 / 49.0));
    for (int y = 0; y < S; ++y) {
        const std::uint8_t* sum = c + std::size_t(y) * S;
        const float* f = fade + std::size_t(y) * S;
        float* o = out + std::size_t(y) * S;
        for (int x = 0; x < S; ++x) o[x] = scaled[sum[x]] * f[x];
    }
}

// ---------------------------------------------------------------------------------------------
// Stages

namespace {

// Splits n rows into about 4 tasks per thread (at least 8 rows each).
int row_tasks(int n, int threads) { return std::max(1, std::min(ceil_div(n, 8), 4 * threads)); }

bool warp_jobs(const std::uint8_t* frame, int H, int W, const float* matrices, int F, int S, float* crops,
               std::vector<WarpJob>& jobs, int* bad_face) {
    jobs.assign(F, WarpJob{});
    for (int f = 0; f < F; ++f) {
        double forward[6];
        for (int i = 0; i < 6; ++i) forward[i] = matrices[6 * f + i];
        WarpJob& J = jobs[f];
        if (!cv_warp_coefficients(forward, J.M)) {
            if (bad_face) *bad_face = f;
            return false;
        }
        J.frame = frame, J.H = H, J.W = W, J.stride = std::size_t(W) * 3, J.S = S;
        J.out = crops + std::size_t(f) * 3 * S * S;
    }
    return true;
}

bool paste_jobs(std::uint8_t* frame, int H, int W, const float* matrices, int F, int S, const float* faces,
                const float* blend_masks, std::vector<PasteJob>& jobs, int* bad_face, bool additive = false) {
    jobs.clear();
    for (int f = 0; f < F; ++f) {
        double forward[6], inverse[6];
        for (int i = 0; i < 6; ++i) forward[i] = matrices[6 * f + i];
        if (!invert_affine(forward, inverse)) {
            if (bad_face) *bad_face = f;
            return false;
        }
        int box[4];
        if (!footprint_box(inverse, S, H, W, box)) continue;  // entirely outside the frame
        PasteJob J;
        double local[6] = {inverse[0], inverse[1], inverse[2] - box[0], inverse[3], inverse[4], inverse[5] - box[1]};
        if (!cv_warp_coefficients(local, J.M)) {
            if (bad_face) *bad_face = f;
            return false;
        }
        J.frame = frame, J.stride = std::size_t(W) * 3, J.S = S;
        J.x0 = box[0], J.y0 = box[1], J.x1 = box[2], J.y1 = box[3];
        J.face = faces + std::size_t(f) * 3 * S * S;
        J.mask = blend_masks + std::size_t(f) * S * S;
        J.additive = additive;
        jobs.push_back(J);
    }
    return true;
}

void run_warp(const PipelineKernels& k, const std::vector<WarpJob>& jobs, int S, int threads) {
    const int per_face = row_tasks(S, threads);
    global_pool().run(threads, static_cast<int>(jobs.size()) * per_face, [&](int t, int) {
        const int f = t / per_face, b = t % per_face;
        k.warp_rows(jobs[f], int(std::int64_t(b) * S / per_face), int(std::int64_t(b + 1) * S / per_face));
    });
}

void run_paste(const PipelineKernels& k, const std::vector<PasteJob>& jobs, int threads) {
    for (const PasteJob& J : jobs) {  // in order: a later face blends over an earlier one
        const int rows = J.y1 - J.y0, tasks = row_tasks(rows, threads);
        global_pool().run(threads, tasks, [&](int t, int) {
            k.paste_rows(J, int(std::int64_t(t) * rows / tasks), int(std::int64_t(t + 1) * rows / tasks));
        });
    }
}

}  // namespace

bool warp_faces(const PipelineKernels& k, const std::uint8_t* frame, int H, int W, const float* matrices, int F,
                int S, float* crops, int threads, int* bad_face) {
    std::vector<WarpJob> jobs;
    if (!warp_jobs(frame, H, W, matrices, F, S, crops, jobs, bad_face)) return false;
    run_warp(k, jobs, S, threads);
    return true;
}

bool paste_faces(const PipelineKernels& k, std::uint8_t* frame, int H, int W, const float* matrices, int F, int S,
                 const float* faces, const float* blend_masks, int threads, int* bad_face) {
    std::vector<PasteJob> jobs;
    if (!paste_jobs(frame, H, W, matrices, F, S, faces, blend_masks, jobs, bad_face)) return false;
    run_paste(k, jobs, threads);
    return true;
}

void blend_change(const float* face, const float* crop, int S, float sigma, float* scratch, float* out) {
    if (sigma == 0.0f) {
        for (std::size_t i = 0, n = std::size_t(3) * S * S; i < n; ++i) out[i] = face[i] - crop[i];
        return;
    }
    // OpenCV's kernel for float images: size round(sigma * 4 * 2 + 1) | 1, weights in double
    const int ksize = int(std::lround(double(sigma) * 8.0 + 1.0)) | 1, r = ksize / 2;
    std::vector<double> weight(static_cast<std::size_t>(ksize));
    double sum = 0.0;
    for (int i = 0; i < ksize; ++i) sum += weight[std::size_t(i)] = std::exp(-0.5 * double((i - r) * (i - r)) / (double(sigma) * sigma));
    std::vector<float> kernel(static_cast<std::size_t>(ksize)), padded(static_cast<std::size_t>(S + 2 * r));
    for (int i = 0; i < ksize; ++i) kernel[std::size_t(i)] = float(weight[std::size_t(i)] / sum);
    const std::size_t plane = std::size_t(S) * S;
    for (int c = 0; c < 3; ++c) {
        const float* f = face + c * plane;
        const float* g = crop + c * plane;
        float* o = out + c * plane;
        for (int y = 0; y < S; ++y) {  // rows: the difference, reflected at both ends, blurred along x
            const std::size_t row = std::size_t(y) * S;
            for (int x = -r; x < S + r; ++x) {
                const std::size_t i = row + std::size_t(reflect101(x, S));
                padded[std::size_t(x + r)] = f[i] - g[i];
            }
            float* dst = scratch + row;
            for (int x = 0; x < S; ++x) dst[x] = 0.0f;
            for (int k = 0; k < ksize; ++k) {
                const float w = kernel[std::size_t(k)];
                const float* src = padded.data() + k;
                for (int x = 0; x < S; ++x) dst[x] += w * src[x];
            }
        }
        for (int y = 0; y < S; ++y) {  // then along y, whole rows at a time
            float* dst = o + std::size_t(y) * S;
            for (int x = 0; x < S; ++x) dst[x] = 0.0f;
            for (int k = 0; k < ksize; ++k) {
                const float w = kernel[std::size_t(k)];
                const float* src = scratch + std::size_t(reflect101(y + k - r, S)) * S;
                for (int x = 0; x < S; ++x) dst[x] += w * src[x];
            }
        }
    }
}

void limit_colour(float* change, const float* weights, int S, float chroma, float brightness) {
    if (chroma == 1.0f && brightness == 1.0f) return;
    const std::size_t plane = std::size_t(S) * S;
    float* r = change;
    float* g = change + plane;
    float* b = change + 2 * plane;
    double weighted = 0.0, total = 0.0;
    for (std::size_t i = 0; i < plane; ++i) {
        const float luma = 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
        weighted += double(luma) * weights[i];
        total += weights[i];
        r[i] = luma + chroma * (r[i] - luma);
        g[i] = luma + chroma * (g[i] - luma);
        b[i] = luma + chroma * (b[i] - luma);
    }
    if (brightness == 1.0f || total <= 0.0) return;
    const float shift = float((1.0 - brightness) * weighted / total);
    for (std::size_t i = 0; i < 3 * plane; ++i) change[i] -= shift;
}

// ---------------------------------------------------------------------------------------------
// PipelineCore

PipelineCore::PipelineCore(FusedIDNEngine& engine, const PipelineKernels* kernels)
    : engine_(engine), k_(kernels), S_(engine.height()) {
    if (engine.height() != engine.width())
        throw std::invalid_argument("the pipeline core needs a square IDN input, got " + std::to_string(engine.height()) +
                                    "x" + std::to_string(engine.width()));
    if (!k_) throw std::invalid_argument("no pipeline kernel set");
    fade_ = border_fade(S_);
}

void PipelineCore::reserve(int F) {
    if (F <= capacity_) return;
    const std::size_t plane = std::size_t(S_) * S_;
    crops_.resize(std::size_t(F) * 3 * plane);
    faces_.resize(std::size_t(F) * 3 * plane);
    masks_.resize(std::size_t(F) * plane);
    blend_.resize(std::size_t(F) * plane);
    change_.resize(std::size_t(F) * 3 * plane);
    change_scratch_.resize(std::size_t(F) * plane);
    scratch_.resize(F);
    for (MaskScratch& s : scratch_) s.reserve(S_);
    capacity_ = F;
}

void PipelineCore::swap(const std::uint8_t* frame, std::uint8_t* out, int H, int W, const float* matrices, int F,
                        int threads) {
    std::lock_guard<std::mutex> lock(mutex_);
    threads = std::max(1, threads);
    const int S = S_;
    for (int f = 0; f < F; ++f) {  // every matrix is checked before anything is written
        double forward[6], inverse[6];
        for (int i = 0; i < 6; ++i) forward[i] = matrices[6 * f + i];
        if (!invert_affine(forward, inverse))
            throw std::invalid_argument("face " + std::to_string(f) + ": the alignment matrix is singular or not finite");
    }
    if (F > 0 && !engine_.has_identity()) throw std::invalid_argument("no identity set: call set_identity first");
    reserve(F);
    using clock = std::chrono::steady_clock;
    seconds_.fill(0.0);
    auto t = clock::now();
    auto lap = [&](int stage) {
        const auto now = clock::now();
        seconds_[stage] = std::chrono::duration<double>(now - t).count();
        t = now;
    };
    ThreadPool& pool = global_pool();
    const std::size_t row_bytes = std::size_t(W) * 3;
    std::vector<WarpJob> warp;
    if (F > 0 && !warp_jobs(frame, H, W, matrices, F, S, crops_.data(), warp, nullptr))
        throw std::invalid_argument("an alignment matrix is singular");
    if (out != frame) {
        const int tasks = std::min(H, 4 * threads);
        pool.run(threads, tasks, [&](int k, int) {
            const std::size_t r0 = std::size_t(k) * H / tasks, r1 = std::size_t(k + 1) * H / tasks;
            std::memcpy(out + r0 * row_bytes, frame + r0 * row_bytes, (r1 - r0) * row_bytes);
        });
    }
    lap(0);
    if (F == 0) return;
    run_warp(*k_, warp, S, threads);
    lap(1);
    engine_.run(crops_.data(), F, faces_.data(), masks_.data(), threads);
    lap(2);
    const std::size_t plane = std::size_t(S) * S;
    pool.run(threads, F, [&](int f, int) {
        mask_postprocess(masks_.data() + f * plane, S, fade_.data(), scratch_[f], blend_.data() + f * plane);
    });
    lap(3);
    const bool paste_change = detail_ > 0.0f || chroma_ != 1.0f || brightness_ != 1.0f;
    if (paste_change) {
        pool.run(threads, F, [&](int f, int) {
            const std::size_t at = std::size_t(f) * 3 * plane;
            blend_change(faces_.data() + at, crops_.data() + at, S, detail_, change_scratch_.data() + f * plane,
                         change_.data() + at);
            limit_colour(change_.data() + at, blend_.data() + f * plane, S, chroma_, brightness_);
        });
    }
    lap(4);
    std::vector<PasteJob> paste;
    const float* pasted = paste_change ? change_.data() : faces_.data();
    if (!paste_jobs(out, H, W, matrices, F, S, pasted, blend_.data(), paste, nullptr, paste_change))
        throw std::invalid_argument("an alignment matrix is singular");
    run_paste(*k_, paste, threads);
    lap(5);
}

void PipelineCore::set_detail(float sigma) {
    if (!(sigma >= 0.0f && sigma <= 8.0f)) throw std::invalid_argument("detail must be from 0 to 8 crop pixels");
    std::lock_guard<std::mutex> lock(mutex_);
    detail_ = sigma;
}

void PipelineCore::set_paste_weights(const float* weights) {
    std::vector<float> fade = border_fade(S_);
    if (weights) {
        for (std::size_t i = 0; i < fade.size(); ++i) {
            if (!(weights[i] >= 0.0f && weights[i] <= 1.0f))
                throw std::invalid_argument("paste weights must be within [0, 1]");
            fade[i] *= weights[i];
        }
    }
    std::lock_guard<std::mutex> lock(mutex_);
    fade_ = std::move(fade);
}

void PipelineCore::set_colour(float chroma, float brightness) {
    if (!(chroma >= 0.0f && chroma <= 1.0f && brightness >= 0.0f && brightness <= 1.0f))
        throw std::invalid_argument("chroma and brightness must be shares from 0 to 1");
    std::lock_guard<std::mutex> lock(mutex_);
    chroma_ = chroma;
    brightness_ = brightness;
}

}  // namespace mfs
