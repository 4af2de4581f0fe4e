// ISA-independent definitions shared by every fused-kernel translation unit: layer descriptors,
// the kernel table each instruction set fills in, weight packing, scratch layouts, tiling.
//
// Activations are NCHW float32 planes. A "tile" is a range [p0, p1) of flattened output pixels
// (y * W + x) of one layer: its depthwise result lives only in a per-thread buffer (the B
// matrix, channels x pixels) that the pointwise GEMM consumes straight away.
//
// This header must be included *before* any target pragma (see isa_avx2.cpp): every inline
// function defined here is compiled for the baseline ISA in every translation unit.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mfs {

constexpr int MR = 4;             // output channels per micro-tile (rows of packed weights), all ISAs
constexpr float LEAKY_SLOPE = 0.1f;

inline int round_up(int a, int b) { return (a + b - 1) / b * b; }
inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// Pointwise weights, packed once: blocks of MR output channels, each K x MR (k-major), rows
// past M zero. The micro-kernel broadcasts the MR values of one k and streams B's row k.
inline std::size_t packed_size(int M, int K) { return std::size_t(ceil_div(M, MR)) * MR * K; }

inline void pack_weights(const float* w, int M, int K, float* out) {  // w: M x K row-major
    for (int b = 0; b < ceil_div(M, MR); ++b)
        for (int k = 0; k < K; ++k)
            for (int r = 0; r < MR; ++r) {
                const int o = b * MR + r;
                out[(std::size_t(b) * K + k) * MR + r] = o < M ? w[std::size_t(o) * K + k] : 0.0f;
            }
}

// bfloat16 of a float, rounded to nearest even (as AVX512-BF16's conversions round); NaN stays NaN.
inline std::uint16_t to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>(u >> 16);
}

// pack_weights' layout with k taken in pairs, as bf16: element (b, kp, r) holds W[o, 2 kp] in its
// low half and W[o, 2 kp + 1] (0 past K) in its high half, what a bf16 dot product multiplies.
inline std::size_t packed_bf16_size(int M, int K) { return std::size_t(ceil_div(M, MR)) * MR * ceil_div(K, 2); }

inline void pack_bf16_pairs(const float* packed, int M, int K, std::uint32_t* out) {  // packed: pack_weights'
    const int Kp = ceil_div(K, 2);
    for (int b = 0; b < ceil_div(M, MR); ++b)
        for (int kp = 0; kp < Kp; ++kp)
            for (int r = 0; r < MR; ++r) {
                const int k = 2 * kp;
                const float lo = packed[(std::size_t(b) * K + k) * MR + r];
                const float hi = k + 1 < K ? packed[(std::size_t(b) * K + k + 1) * MR + r] : 0.0f;
                out[(std::size_t(b) * Kp + kp) * MR + r] = std::uint32_t(to_bf16(lo)) | (std::uint32_t(to_bf16(hi)) << 16);
            }
}

// y[o] = act(scale[o] * sum_i A[o, i] x[i] + bias[o]) over a tile of pixels.
struct Pointwise {
    const float* a = nullptr;      // packed (pack_weights), M x K
    const std::uint32_t* a16 = nullptr;  // the same as bf16 pairs (pack_bf16_pairs): used by kernel sets with bf16 GEMMs
    int M = 0, K = 0;
    const float* scale = nullptr;  // per output channel (demodulation d of the factored form), or null
    const float* bias = nullptr;   // per output channel (BN folded), or null
    bool leaky = true;             // LeakyReLU(0.1) after scale/bias
};

// Bilinear 2x upsampling with align_corners=True along one axis (n -> 2n), as PyTorch computes
// its source index and weight: src = float((n - 1) / (2n - 1)) * dst.
struct Interp {
    std::vector<int32_t> i0, i1;
    std::vector<float> l;  // weight of i1 (i0 gets 1 - l)
    int n = 0;
    // The same, in blocks of 8 (AVX2) and 4 (NEON) outputs: each block reads source values
    // base .. base + lanes - 1 only (2x upsampling moves half a source step per output), so one
    // vector load and a lane permutation replace the gathers. Indices are relative to base.
    std::vector<int32_t> base8, rel0_8, rel1_8;
    std::vector<int32_t> base4;
    std::vector<uint8_t> byte0_4, byte1_4;  // byte-table indices (4 per lane) for NEON's tbl
    // For a 3x3 window over the upsampled rows y-1..y+1 (zero outside): the first source row
    // j0[y] and the weight vt[y*9 + dy*3 + t] of source row j0[y] + t in upsampled row y-1+dy
    // (t < 3: a 2x upsample advances half a source row per output row).
    std::vector<int32_t> j0;
    std::vector<float> vt;
    void build(int n_in) {
        n = n_in;
        const int out = 2 * n_in;
        i0.resize(out), i1.resize(out), l.resize(out);
        const float scale = out > 1 ? float(n_in - 1) / float(out - 1) : 0.0f;
        for (int d = 0; d < out; ++d) {
            const float src = scale * float(d);
            int a = static_cast<int>(src);
            a = std::min(a, n_in - 1);
            i0[d] = a;
            i1[d] = std::min(a + 1, n_in - 1);
            l[d] = src - float(a);
        }
        j0.assign(out, 0), vt.assign(std::size_t(out) * 9, 0.0f);
        for (int y = 0; y < out; ++y) {
            j0[y] = i0[std::max(y - 1, 0)];
            for (int dy = 0; dy < 3; ++dy) {
                const int r = y - 1 + dy;
                if (r < 0 || r >= out) continue;
                vt[y * 9 + dy * 3 + (i0[r] - j0[y])] += 1.0f - l[r];
                vt[y * 9 + dy * 3 + (i1[r] - j0[y])] += l[r];
            }
        }
        const int b8 = ceil_div(out, 8), b4 = ceil_div(out, 4);
        base8.assign(b8, 0), rel0_8.assign(std::size_t(b8) * 8, 0), rel1_8.assign(std::size_t(b8) * 8, 0);
        for (int b = 0; b < b8; ++b) {
            base8[b] = i0[b * 8];
            for (int k = 0; k < 8; ++k) {
                const int d = std::min(b * 8 + k, out - 1);
                rel0_8[b * 8 + k] = i0[d] - base8[b];
                rel1_8[b * 8 + k] = i1[d] - base8[b];
            }
        }
        base4.assign(b4, 0), byte0_4.assign(std::size_t(b4) * 16, 0), byte1_4.assign(std::size_t(b4) * 16, 0);
        for (int b = 0; b < b4; ++b) {
            base4[b] = i0[b * 4];
            for (int k = 0; k < 4; ++k) {
                const int d = std::min(b * 4 + k, out - 1);
                for (int byte = 0; byte < 4; ++byte) {
                    byte0_4[b * 16 + k * 4 + byte] = uint8_t(4 * (i0[d] - base4[b]) + byte);
                    byte1_4[b * 16 + k * 4 + byte] = uint8_t(4 * (i1[d] - base4[b]) + byte);
                }
            }
        }
    }
};

// ---------------------------------------------------------------------------------------------
// Layer descriptors (pointers filled per image by the caller).

// Depthwise 4x4 stride 2 pad 1 (no bias) -> pointwise -> LeakyReLU.
struct EncoderLayer {
    int C = 0, H = 0, W = 0;      // input channels and size; output is M x H/2 x W/2
    const float* x = nullptr;     // C x H x W
    const float* dw = nullptr;    // C x 16 (the factored form's input scale s already folded in)
    bool normalize = false;       // apply (x - 0.5) / 0.5 on the fly (first stage)
    Pointwise pw;
    float* out = nullptr;         // M planes, channel stride (H/2)*(W/2): may be a concat buffer's slice
};

// Bilinear 2x upsample (align_corners=True) -> depthwise 3x3 pad 1 (+bias) -> pointwise ->
// LeakyReLU; optionally a second pointwise (pw2) applied to that result before it is stored.
struct UpLayer {
    int C = 0, h = 0, w = 0;      // input channels and size; output is M x 2h x 2w
    const float* x = nullptr;     // C x h x w
    const float* dw = nullptr;    // C x 9
    const float* dw_bias = nullptr;
    const Interp* rows = nullptr;  // h -> 2h
    const Interp* cols = nullptr;  // w -> 2w
    Pointwise pw;
    float* out = nullptr;         // M planes (or, with pw2, pw2.M planes) of 2h x 2w
    Pointwise pw2;                // pw2.a == nullptr: none
};

// The output heads at full resolution, fused per band of rows:
//   face = (1 + tanh(conv3(lrelu(conv2(lrelu(up(z)))))) / 2,   mask = sigmoid(convm(m5)),
//   result = face * mask + (1 - mask) * image.
// z is final's 1x1 conv (+BN) computed *before* the upsample (they commute: both linear).
struct HeadLayer {
    int H = 0, W = 0;               // image size
    const float* z = nullptr;       // 8 x H/2 x W/2
    const float* m5 = nullptr;      // 2 x H x W
    const float* image = nullptr;   // 3 x H x W
    const float* w2 = nullptr;      // 3 x 8 x 9 (BN folded)
    const float* b2 = nullptr;      // 3
    const float* w3 = nullptr;      // 3 x 3 x 9
    const float* b3 = nullptr;      // 3
    const float* wm = nullptr;      // 1 x 2 x 9
    const float* bm = nullptr;      // 1
    const Interp* rows = nullptr;   // H/2 -> H
    const Interp* cols = nullptr;   // W/2 -> W
    float* faces = nullptr;         // 3 x H x W
    float* masks = nullptr;         // 1 x H x W
};
constexpr int HEAD_Z = 8, HEAD_MASK = 2;

// What one instruction set provides. Tile functions write only their own outputs: tiles of a
// layer run concurrently on different threads, each with its own scratch buffer.
struct KernelTable {
    const char* name;
    int nr;  // pixels per micro-tile (GEMM columns)
    void (*encoder_tile)(const EncoderLayer&, int p0, int p1, int m0, int m1, float* scratch);
    void (*up_tile)(const UpLayer&, int p0, int p1, int m0, int m1, float* scratch);
    void (*head_band)(const HeadLayer&, int y0, int y1, float* scratch);
    // Plain pointwise over x (K planes of P pixels, channel stride x_stride): for tests.
    void (*pointwise_tile)(const Pointwise&, const float* x, std::size_t x_stride, int p0, int p1, int m0, int m1,
                           float* out, std::size_t out_stride);
    // GEMMs in bfloat16 (float32 sums) wherever a layer's Pointwise::a16 is set: the engine packs those
    bool bf16_gemm = false;
};

const KernelTable* kernels_scalar();
const KernelTable* kernels_avx2();  // null when not compiled in
const KernelTable* kernels_neon();  // null when not compiled in
const KernelTable* kernels_avx512();  // null when not compiled in
const KernelTable* kernels_avx512bf16();  // null when not compiled in; never chosen by "auto"
bool cpu_has_avx512bf16();
bool cpu_has_avx2_fma();
bool cpu_has_avx512();
// "auto" (the best this CPU runs; MFS_FAST_ISA overrides), "avx2", "neon", "scalar".
// Throws std::invalid_argument for unknown or unsupported names.
const KernelTable* select_kernels(const std::string& isa);
std::vector<std::string> available_isas();  // best first

// ---------------------------------------------------------------------------------------------
// Scratch layouts (in floats). Every buffer starts on a 64-byte boundary (scratch is 64-aligned).

inline std::size_t align16(std::size_t n) { return (n + 15) / 16 * 16; }

// Row stride of the B matrix (channels x tile pixels): whole micro-tiles, and an odd number of
// cache lines so that the K rows of a micro-tile do not pile up in a few L1 sets.
inline std::size_t b_stride(int n, int nr) {
    std::size_t s = align16(std::size_t(round_up(n, nr)));
    if ((s / 16) % 2 == 0) s += 16;
    return s;
}

// Output rows touched by pixels [p0, p1) of a plane of width w: at most this many.
inline int rows_spanned(int n, int w) { return ceil_div(n, w) + 1; }

struct UpScratch {
    std::size_t ldb, b, c, v, zero, row_stride, total;
};
inline UpScratch up_scratch(const UpLayer& L, int n, int nr) {
    UpScratch s{};
    const int W2 = 2 * L.w;
    s.ldb = b_stride(n, nr);
    s.row_stride = align16(std::size_t(W2) + 2 + 16);  // zero border each side + one vector of slack
    const int u_rows = rows_spanned(n, W2) + 2;  // upsampled rows the tile's 3x3 windows touch
    const int v_rows = u_rows / 2 + 3;           // source rows behind them
    s.b = 0;
    s.c = s.b + std::size_t(L.C) * s.ldb;
    s.v = s.c + (L.pw2.a ? std::size_t(round_up(L.pw.M, MR)) * s.ldb : 0);
    s.zero = s.v + std::size_t(v_rows) * s.row_stride;
    s.total = s.zero + s.row_stride;
    return s;
}

struct EncoderScratch {
    std::size_t ldb, b, rows, zero, row_stride, total;
};
inline EncoderScratch encoder_scratch(const EncoderLayer& L, int n, int nr) {
    EncoderScratch s{};
    const int Wo = L.W / 2;
    s.ldb = b_stride(n, nr);
    s.row_stride = align16(std::size_t(Wo) + 2 + 16);
    const int in_rows = 2 * rows_spanned(n, Wo) + 2;
    s.b = 0;
    s.rows = s.b + std::size_t(L.C) * s.ldb;
    s.zero = s.rows + 2 * std::size_t(in_rows) * s.row_stride;  // even and odd halves of each row
    s.total = s.zero + s.row_stride;
    return s;
}

struct HeadScratch {
    std::size_t h1, h2, m5, v, zero, row_stride, v_stride, total;
};
inline HeadScratch head_scratch(const HeadLayer& L, int band) {
    HeadScratch s{};
    s.row_stride = align16(std::size_t(L.W) + 2 + 16);
    s.v_stride = align16(std::size_t(L.W) + 16);
    s.h1 = 0;
    s.h2 = s.h1 + std::size_t(HEAD_Z) * (band + 4) * s.row_stride;
    s.m5 = s.h2 + std::size_t(3) * (band + 2) * s.row_stride;
    s.v = s.m5 + std::size_t(HEAD_MASK) * (band + 2) * s.row_stride;
    s.zero = s.v + std::size_t((band + 4) / 2 + 4) * s.v_stride;
    s.total = s.zero + s.row_stride;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Tiling: how a layer's output is split into tasks for the thread pool.

struct Task {
    int p0, p1, m0, m1;
};

// Target size of a tile's B matrix (floats): about a quarter of a Zen/Skylake L2.
inline int tile_budget_floats() {
    static const int budget = [] {
        const char* env = std::getenv("MFS_FAST_TILE_FLOATS");
        const int v = env ? std::atoi(env) : 0;
        return v > 1024 ? v : 48 * 1024;
    }();
    return budget;
}

// Split P output pixels (K input channels, M output channels) into tasks: ranges of whole
// micro-tiles of nr pixels, as even as possible, a multiple of `threads` when that is possible;
// layers too small for that also split their output channels (their depthwise part is then
// computed once per channel chunk, which is cheap next to the pointwise part).
inline std::vector<Task> plan_tasks(int P, int K, int M, int threads, int nr, bool allow_m_split = true) {
    const int slivers = ceil_div(P, nr);
    // B (K x tile) within the budget; at most ~1200 pixels (small K: row buffers stay in L2)
    const int per_tile = std::max(1, std::min(tile_budget_floats() / (std::max(K, 1) * nr), 1200 / nr));
    int tiles = ceil_div(slivers, per_tile);
    if (threads > 1) tiles = round_up(tiles, threads);
    tiles = std::min(tiles, slivers);
    int m_chunks = 1;
    if (allow_m_split && threads > 1 && tiles < 2 * threads) {
        const int want = ceil_div(2 * threads, tiles);
        const int max_chunks = std::max(1, M / 32);  // keep chunks of at least 32 channels
        m_chunks = std::min(want, max_chunks);
    }
    std::vector<Task> tasks;
    tasks.reserve(std::size_t(tiles) * m_chunks);
    const int m_blocks = ceil_div(M, MR);
    for (int t = 0; t < tiles; ++t) {
        const int s0 = int(std::int64_t(t) * slivers / tiles), s1 = int(std::int64_t(t + 1) * slivers / tiles);
        const int p0 = s0 * nr, p1 = std::min(P, s1 * nr);
        for (int c = 0; c < m_chunks; ++c) {
            const int b0 = c * m_blocks / m_chunks, b1 = (c + 1) * m_blocks / m_chunks;
            tasks.push_back({p0, p1, b0 * MR, std::min(M, b1 * MR)});
        }
    }
    return tasks;
}

// Largest tile (pixels) among tasks.
inline int max_tile(const std::vector<Task>& tasks) {
    int n = 0;
    for (const Task& t : tasks) n = std::max(n, t.p1 - t.p0);
    return n;
}

}  // namespace mfs
