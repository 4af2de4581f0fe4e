// The fused IDN blocks as CUDA kernels (fp32, NCHW). See blocks.cuh for what each computes.
//
// Every GEMM block computes a tile of TM output channels x TP = TY x TX output pixels of one
// image (grid: pixel tiles, channel tiles, images). It walks the input channels in chunks of KC:
//   1. stage what the chunk's depthwise needs in shared memory: the input patch under the tile
//      (encoder: (2TY+2) x (2TX+2) input pixels; up: the (TY+2) x (TX+2) *upsampled* pixels,
//      interpolated straight from the source plane, never stored), the chunk's depthwise kernels;
//   2. depthwise into the B tile (KC x TP, shared memory) and the weights into the A tile
//      (KC x TM, k-major);
//   3. the pointwise GEMM: each thread accumulates RM x RP outputs in registers.
// Two barriers per chunk (staging and B/A are written in different phases, see below). The
// epilogue applies the demodulation scale d (factored form), the bias and LeakyReLU and writes
// the tile's pixels into their NCHW planes, which may be a concat buffer's channel slice.
// No cuBLAS/cuDNN: the depthwise result never leaves shared memory.
#include <stdexcept>
#include <string>

#include "blocks.cuh"

namespace mfs {
namespace cuda {
namespace {

constexpr float LEAKY = 0.1f;

__device__ __forceinline__ float leaky(float v) { return v > 0.0f ? v : v * LEAKY; }

template <int TM_, int TY_, int TX_, int RM_, int RP_, int KC_>
struct Tile {
    static constexpr int TM = TM_, TY = TY_, TX = TX_, TP = TY_ * TX_, RM = RM_, RP = RP_, KC = KC_;
    static constexpr int NTP = TP / RP;  // threads along the pixels
    static constexpr int THREADS = (TM / RM) * NTP;
    static constexpr int AS = TM + 4;  // row stride of the k-major A tile (keeps rows 16-byte aligned)
    static_assert(TX % RP == 0, "a thread's pixels must lie in one tile row");
    static_assert(RP == 4, "B rows are read as float4");
    static_assert(RM == 1 || RM == 2 || RM == 4, "A rows are read as float, float2 or float4");
    static_assert(TM % RM == 0 && TP % 4 == 0 && AS % 4 == 0, "16-byte aligned tiles");
};
using BigTile = Tile<64, 8, 8, 4, 4, 16>;   // 256 threads
using MidTile = Tile<32, 8, 8, 2, 4, 16>;   // 256 threads
using Mid4Tile = Tile<32, 8, 8, 2, 4, 4>;   // 256 threads, for the 3-channel image
using ThinTile = Tile<8, 8, 16, 1, 4, 8>;   // 256 threads, layers of <= 8 outputs

// Vector loads from shared memory (checked for alignment under emulation).
__device__ __forceinline__ float4 ld4(const float* p) {
#ifdef MFS_CUDA_EMULATE
    mfs_emu::check_aligned(p, 16, "float4");
#endif
    return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float2 ld2(const float* p) {
#ifdef MFS_CUDA_EMULATE
    mfs_emu::check_aligned(p, 8, "float2");
#endif
    return *reinterpret_cast<const float2*>(p);
}
template <int R>
__device__ __forceinline__ void load_row(const float* p, float (&v)[R]) {
    if constexpr (R == 4) {
        const float4 q = ld4(p);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else if constexpr (R == 2) {
        const float2 q = ld2(p);
        v[0] = q.x, v[1] = q.y;
    } else {
        v[0] = p[0];
    }
}

// PyTorch's source index for bilinear 2x upsampling with align_corners=True (n -> 2n):
// src = scale * d, scale = float(n - 1) / float(2n - 1) (computed on the host).
__device__ __forceinline__ void source_index(int d, int n, float scale, int& i0, int& i1, float& l) {
    const float src = scale * float(d);
    int a = int(src);
    a = a < n - 1 ? a : n - 1;
    i0 = a;
    i1 = a + 1 < n ? a + 1 : n - 1;
    l = src - float(a);
}

// Bilinear sample (row r, column c of the 2x upsampled plane) of an h x w plane.
__device__ __forceinline__ float upsampled(const float* plane, int h, int w, float sy, float sx, int r, int c) {
    int y0, y1, x0, x1;
    float ly, lx;
    source_index(r, h, sy, y0, y1, ly);
    source_index(c, w, sx, x0, x1, lx);
    const float* r0 = plane + std::size_t(y0) * w;
    const float* r1 = plane + std::size_t(y1) * w;
    const float top = (1.0f - lx) * __ldg(r0 + x0) + lx * __ldg(r0 + x1);
    const float bottom = (1.0f - lx) * __ldg(r1 + x0) + lx * __ldg(r1 + x1);
    return (1.0f - ly) * top + ly * bottom;
}

// A tile (k-major, KC x AS) from W (M x K row-major); zeros outside.
template <class T>
__device__ __forceinline__ void load_a(float* As, const float* __restrict__ w, int M, int K, int m0, int k0, int t) {
    for (int e = t; e < T::TM * T::KC; e += T::THREADS) {
        const int mm = e / T::KC, kc = e % T::KC, m = m0 + mm, k = k0 + kc;
        As[kc * T::AS + mm] = (m < M && k < K) ? __ldg(w + std::size_t(m) * K + k) : 0.0f;
    }
}

template <class T>
__device__ __forceinline__ void gemm_chunk(const float* As, const float* Bs, int tm, int tp,
                                           float (&acc)[T::RM][T::RP]) {
#pragma unroll
    for (int kk = 0; kk < T::KC; ++kk) {
        float a[T::RM], b[T::RP];
        load_row<T::RM>(As + kk * T::AS + tm * T::RM, a);
        load_row<T::RP>(Bs + kk * T::TP + tp * T::RP, b);
#pragma unroll
        for (int i = 0; i < T::RM; ++i)
#pragma unroll
            for (int j = 0; j < T::RP; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

// act(acc * scale[m] + bias[m]) into the Ho x Wo planes at `out` (channel 0 of this image).
template <class T>
__device__ __forceinline__ void store_tile(const float (&acc)[T::RM][T::RP], float* __restrict__ out, int M, int Ho,
                                           int Wo, int m0, int oy0, int ox0, int tm, int tp,
                                           const float* __restrict__ scale, const float* __restrict__ bias, bool act) {
#pragma unroll
    for (int i = 0; i < T::RM; ++i) {
        const int m = m0 + tm * T::RM + i;
        if (m >= M) continue;
        const float sc = scale ? __ldg(scale + m) : 1.0f;
        const float bi = bias ? __ldg(bias + m) : 0.0f;
        float* o = out + std::size_t(m) * Ho * Wo;
#pragma unroll
        for (int j = 0; j < T::RP; ++j) {
            const int pp = tp * T::RP + j, y = oy0 + pp / T::TX, x = ox0 + pp % T::TX;
            if (y < Ho && x < Wo) {
                const float v = fmaf(acc[i][j], sc, bi);
                o[std::size_t(y) * Wo + x] = act ? leaky(v) : v;
            }
        }
    }
}

// ------------------------------------------------------------------------------------ encoder
struct EncParams {
    const float* x;
    long long x_img;
    int C, H, W;
    const float* dw;
    const float* pw;
    const float* scale;
    int M;
    int normalize;
    float* out;
    long long out_img;
    int tiles_x;
};

template <class T>
constexpr int encoder_smem_floats() {
    return T::KC * T::AS + T::KC * T::TP + T::KC * 16 + T::KC * (2 * T::TY + 2) * (2 * T::TX + 2);
}

template <class T>
__global__ void __launch_bounds__(T::THREADS, 2) encoder_kernel(EncParams p) {
    constexpr int PR = 2 * T::TY + 2, PC = 2 * T::TX + 2, PATCH = PR * PC;
    MFS_DYNAMIC_SMEM(smem);
    float* As = smem;                   // KC x AS
    float* Bs = As + T::KC * T::AS;     // KC x TP
    float* Ks = Bs + T::KC * T::TP;     // KC x 16
    float* Xs = Ks + T::KC * 16;        // KC x PR x PC
    const int t = int(threadIdx.x), tm = t / T::NTP, tp = t % T::NTP;
    const int oy0 = int(blockIdx.x) / p.tiles_x * T::TY, ox0 = int(blockIdx.x) % p.tiles_x * T::TX;
    const int m0 = int(blockIdx.y) * T::TM, n = int(blockIdx.z);
    const int Ho = p.H / 2, Wo = p.W / 2;
    const float* __restrict__ x = p.x + n * p.x_img;
    const std::size_t plane = std::size_t(p.H) * p.W;
    const int iy0 = 2 * oy0 - 1, ix0 = 2 * ox0 - 1;
    float acc[T::RM][T::RP] = {};
    for (int k0 = 0; k0 < p.C; k0 += T::KC) {
        // 1. the input patch (zero padding; stage 0 normalises in-image pixels) and the kernels.
        // Xs/Ks were last read in phase 2 of the previous chunk, before its second barrier.
        for (int e = t; e < T::KC * PATCH; e += T::THREADS) {
            const int kc = e / PATCH, r = e % PATCH / PC, c = e % PC;
            const int k = k0 + kc, iy = iy0 + r, ix = ix0 + c;
            float v = 0.0f;
            if (k < p.C && iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) {
                v = __ldg(x + k * plane + std::size_t(iy) * p.W + ix);
                if (p.normalize) v = (v - 0.5f) * 2.0f;
            }
            Xs[e] = v;
        }
        for (int e = t; e < T::KC * 16; e += T::THREADS)
            Ks[e] = k0 + e / 16 < p.C ? __ldg(p.dw + std::size_t(k0) * 16 + e) : 0.0f;
        __syncthreads();
        // 2. depthwise 4x4 stride 2 into B, weights into A (both last read by phase 3 of the
        // previous chunk, which every thread finished before the barrier above)
        for (int e = t; e < T::KC * T::TP; e += T::THREADS) {
            const int kc = e / T::TP, pp = e % T::TP, py = pp / T::TX, px = pp % T::TX;
            const float* xs = Xs + kc * PATCH + 2 * py * PC + 2 * px;
            const float* ks = Ks + kc * 16;
            float s = 0.0f;
#pragma unroll
            for (int dy = 0; dy < 4; ++dy)
#pragma unroll
                for (int dx = 0; dx < 4; ++dx) s = fmaf(ks[dy * 4 + dx], xs[dy * PC + dx], s);
            Bs[e] = s;
        }
        load_a<T>(As, p.pw, p.M, p.C, m0, k0, t);
        __syncthreads();
        // 3. pointwise
        gemm_chunk<T>(As, Bs, tm, tp, acc);
    }
    store_tile<T>(acc, p.out + n * p.out_img, p.M, Ho, Wo, m0, oy0, ox0, tm, tp, p.scale, nullptr, true);
}

// ------------------------------------------------------------------------------------ up
struct UpParams {
    const float* x;
    long long x_img;
    int C, h, w;
    const float* dw;
    const float* dw_bias;
    const float* pw;
    const float* scale;
    const float* bias;
    int M;
    const float* w2;
    const float* b2;
    int M2;
    float* out;
    long long out_img;
    int tiles_x;
    float sy, sx;
};

template <class T, bool CHAIN>
constexpr int up_smem_floats() {
    return T::KC * T::AS + T::KC * T::TP + T::KC * 9 + T::KC + T::KC * (T::TY + 2) * (T::TX + 2) +
           (CHAIN ? T::TM * T::TP : 0);
}

template <class T, bool CHAIN>
__global__ void __launch_bounds__(T::THREADS) up_kernel(UpParams p) {
    constexpr int UR = T::TY + 2, UC = T::TX + 2, PATCH = UR * UC;
    MFS_DYNAMIC_SMEM(smem);
    float* As = smem;                   // KC x AS
    float* Bs = As + T::KC * T::AS;     // KC x TP
    float* Ks = Bs + T::KC * T::TP;     // KC x 9
    float* Kb = Ks + T::KC * 9;         // KC
    float* Us = Kb + T::KC;             // KC x UR x UC: upsampled pixels under the tile (+1 halo)
    float* Cs = Us + T::KC * PATCH;     // CHAIN: TM x TP, the block's output
    const int t = int(threadIdx.x), tm = t / T::NTP, tp = t % T::NTP;
    const int oy0 = int(blockIdx.x) / p.tiles_x * T::TY, ox0 = int(blockIdx.x) % p.tiles_x * T::TX;
    const int m0 = int(blockIdx.y) * T::TM, n = int(blockIdx.z);
    const int H2 = 2 * p.h, W2 = 2 * p.w;
    const float* __restrict__ x = p.x + n * p.x_img;
    const std::size_t plane = std::size_t(p.h) * p.w;
    float acc[T::RM][T::RP] = {};
    for (int k0 = 0; k0 < p.C; k0 += T::KC) {
        // 1. upsampled pixels (zero outside the upsampled plane: the depthwise conv's padding)
        for (int e = t; e < T::KC * PATCH; e += T::THREADS) {
            const int kc = e / PATCH, a = e % PATCH / UC, b = e % UC;
            const int k = k0 + kc, r = oy0 - 1 + a, c = ox0 - 1 + b;
            float v = 0.0f;
            if (k < p.C && r >= 0 && r < H2 && c >= 0 && c < W2) v = upsampled(x + k * plane, p.h, p.w, p.sy, p.sx, r, c);
            Us[e] = v;
        }
        for (int e = t; e < T::KC * 9; e += T::THREADS)
            Ks[e] = k0 + e / 9 < p.C ? __ldg(p.dw + std::size_t(k0) * 9 + e) : 0.0f;
        for (int e = t; e < T::KC; e += T::THREADS)
            Kb[e] = (p.dw_bias && k0 + e < p.C) ? __ldg(p.dw_bias + k0 + e) : 0.0f;
        __syncthreads();
        // 2. depthwise 3x3 (+bias) into B, weights into A
        for (int e = t; e < T::KC * T::TP; e += T::THREADS) {
            const int kc = e / T::TP, pp = e % T::TP, py = pp / T::TX, px = pp % T::TX;
            const float* us = Us + kc * PATCH + py * UC + px;
            const float* ks = Ks + kc * 9;
            float s = Kb[kc];
#pragma unroll
            for (int dy = 0; dy < 3; ++dy)
#pragma unroll
                for (int dx = 0; dx < 3; ++dx) s = fmaf(ks[dy * 3 + dx], us[dy * UC + dx], s);
            Bs[e] = s;
        }
        load_a<T>(As, p.pw, p.M, p.C, m0, k0, t);
        __syncthreads();
        // 3. pointwise
        gemm_chunk<T>(As, Bs, tm, tp, acc);
    }
    if constexpr (!CHAIN) {
        store_tile<T>(acc, p.out + n * p.out_img, p.M, H2, W2, m0, oy0, ox0, tm, tp, p.scale, p.bias, true);
    } else {
        // the block's output (all M <= TM channels: one channel tile) stays in shared memory and
        // feeds the second pointwise; only its M2 channels are stored
#pragma unroll
        for (int i = 0; i < T::RM; ++i) {
            const int m = tm * T::RM + i;
            const float sc = m < p.M && p.scale ? __ldg(p.scale + m) : 1.0f;
            const float bi = m < p.M && p.bias ? __ldg(p.bias + m) : 0.0f;
#pragma unroll
            for (int j = 0; j < T::RP; ++j)
                Cs[m * T::TP + tp * T::RP + j] = m < p.M ? leaky(fmaf(acc[i][j], sc, bi)) : 0.0f;
        }
        __syncthreads();
        float* out = p.out + n * p.out_img;
        for (int e = t; e < p.M2 * T::TP; e += T::THREADS) {
            const int o = e / T::TP, pp = e % T::TP, y = oy0 + pp / T::TX, xx = ox0 + pp % T::TX;
            if (y < H2 && xx < W2) {
                float s = p.b2 ? __ldg(p.b2 + o) : 0.0f;
                for (int i = 0; i < p.M; ++i) s = fmaf(__ldg(p.w2 + std::size_t(o) * p.M + i), Cs[i * T::TP + pp], s);
                out[std::size_t(o) * H2 * W2 + std::size_t(y) * W2 + xx] = s;
            }
        }
    }
}

// ------------------------------------------------------------------------------------ pointwise
struct PwParams {
    const float* x;
    long long x_img;
    int K, H, W;
    const float* pw;
    const float* scale;
    const float* bias;
    int M;
    int leaky;
    float* out;
    long long out_img;
    int tiles_x;
};

template <class T>
constexpr int pointwise_smem_floats() {
    return T::KC * T::AS + T::KC * T::TP;
}

template <class T>
__global__ void __launch_bounds__(T::THREADS, 2) pointwise_kernel(PwParams p) {
    MFS_DYNAMIC_SMEM(smem);
    float* As = smem;
    float* Bs = As + T::KC * T::AS;
    const int t = int(threadIdx.x), tm = t / T::NTP, tp = t % T::NTP;
    const int oy0 = int(blockIdx.x) / p.tiles_x * T::TY, ox0 = int(blockIdx.x) % p.tiles_x * T::TX;
    const int m0 = int(blockIdx.y) * T::TM, n = int(blockIdx.z);
    const float* __restrict__ x = p.x + n * p.x_img;
    const std::size_t plane = std::size_t(p.H) * p.W;
    float acc[T::RM][T::RP] = {};
    for (int k0 = 0; k0 < p.K; k0 += T::KC) {
        for (int e = t; e < T::KC * T::TP; e += T::THREADS) {
            const int kc = e / T::TP, pp = e % T::TP, k = k0 + kc, y = oy0 + pp / T::TX, xx = ox0 + pp % T::TX;
            Bs[e] = (k < p.K && y < p.H && xx < p.W) ? __ldg(x + k * plane + std::size_t(y) * p.W + xx) : 0.0f;
        }
        load_a<T>(As, p.pw, p.M, p.K, m0, k0, t);
        __syncthreads();
        gemm_chunk<T>(As, Bs, tm, tp, acc);
        __syncthreads();  // A and B are rewritten by the next chunk
    }
    store_tile<T>(acc, p.out + n * p.out_img, p.M, p.H, p.W, m0, oy0, ox0, tm, tp, p.scale, p.bias, p.leaky != 0);
}

// ------------------------------------------------------------------------------------ heads
constexpr int HEAD_TILE = 16, HEAD_THREADS = HEAD_TILE * HEAD_TILE;
constexpr int HEAD_R1 = HEAD_TILE + 4, HEAD_R2 = HEAD_TILE + 2;
constexpr int HEAD_WPAD = (HEAD_WEIGHTS + 3) / 4 * 4;
constexpr int HEAD_SMEM_FLOATS = HEAD_WPAD + 8 * HEAD_R1 * HEAD_R1 + 2 * HEAD_R2 * HEAD_R2 + 3 * HEAD_R2 * HEAD_R2;

struct HeadParams {
    const float* z;
    long long z_img;
    const float* m5;
    long long m5_img;
    const float* image;
    const float* weights;
    float* faces;
    float* masks;
    int H, W;
    int tiles_x;
    float sy, sx;
};

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// One 16 x 16 tile of output pixels per block (one pixel per thread):
//   h1 = LeakyReLU(up(z))             rows/cols -2..17 of the tile (zero outside the image)
//   h2 = LeakyReLU(conv3x3(h1) + b2)  rows/cols -1..16 (zero outside the image)
//   face = sigmoid(2 (conv3x3(h2) + b3)) = (1 + tanh) / 2,  mask = sigmoid(conv3x3(m5) + bm)
__global__ void __launch_bounds__(HEAD_THREADS) head_kernel(HeadParams p) {
    constexpr int A1 = HEAD_R1 * HEAD_R1, A2 = HEAD_R2 * HEAD_R2;
    MFS_DYNAMIC_SMEM(smem);
    float* Wt = smem;               // HEAD_WEIGHTS
    float* H1 = Wt + HEAD_WPAD;     // 8 x R1 x R1
    float* M5 = H1 + 8 * A1;        // 2 x R2 x R2
    float* H2 = M5 + 2 * A2;        // 3 x R2 x R2
    const int t = int(threadIdx.x);
    const int Y0 = int(blockIdx.x) / p.tiles_x * HEAD_TILE, X0 = int(blockIdx.x) % p.tiles_x * HEAD_TILE;
    const int n = int(blockIdx.z);
    const int H = p.H, W = p.W, h = H / 2, w = W / 2;
    const std::size_t plane = std::size_t(H) * W, half = std::size_t(h) * w;
    const float* z = p.z + n * p.z_img;
    const float* m5 = p.m5 + n * p.m5_img;
    for (int e = t; e < HEAD_WEIGHTS; e += HEAD_THREADS) Wt[e] = __ldg(p.weights + e);
    for (int e = t; e < 8 * A1; e += HEAD_THREADS) {
        const int c = e / A1, r = Y0 - 2 + e % A1 / HEAD_R1, col = X0 - 2 + e % HEAD_R1;
        float v = 0.0f;
        if (r >= 0 && r < H && col >= 0 && col < W) v = leaky(upsampled(z + c * half, h, w, p.sy, p.sx, r, col));
        H1[e] = v;
    }
    for (int e = t; e < 2 * A2; e += HEAD_THREADS) {
        const int c = e / A2, r = Y0 - 1 + e % A2 / HEAD_R2, col = X0 - 1 + e % HEAD_R2;
        M5[e] = (r >= 0 && r < H && col >= 0 && col < W) ? __ldg(m5 + c * plane + std::size_t(r) * W + col) : 0.0f;
    }
    __syncthreads();
    for (int e = t; e < A2; e += HEAD_THREADS) {
        const int a = e / HEAD_R2, b = e % HEAD_R2, r = Y0 - 1 + a, col = X0 - 1 + b;
        const bool inside = r >= 0 && r < H && col >= 0 && col < W;
        float s[3];
#pragma unroll
        for (int o = 0; o < 3; ++o) s[o] = Wt[HEAD_B2 + o];
        if (inside) {
            for (int c = 0; c < 8; ++c) {
                const float* h1 = H1 + c * A1 + a * HEAD_R1 + b;
#pragma unroll
                for (int dy = 0; dy < 3; ++dy)
#pragma unroll
                    for (int dx = 0; dx < 3; ++dx) {
                        const float v = h1[dy * HEAD_R1 + dx];
#pragma unroll
                        for (int o = 0; o < 3; ++o) s[o] = fmaf(Wt[HEAD_W2 + (o * 8 + c) * 9 + dy * 3 + dx], v, s[o]);
                    }
            }
        }
#pragma unroll
        for (int o = 0; o < 3; ++o) H2[o * A2 + e] = inside ? leaky(s[o]) : 0.0f;
    }
    __syncthreads();
    const int ty = t / HEAD_TILE, tx = t % HEAD_TILE, Y = Y0 + ty, X = X0 + tx;
    float f[3];
#pragma unroll
    for (int o = 0; o < 3; ++o) f[o] = Wt[HEAD_B3 + o];
    float logit = Wt[HEAD_BM];
#pragma unroll
    for (int dy = 0; dy < 3; ++dy)
#pragma unroll
        for (int dx = 0; dx < 3; ++dx) {
            const int at = (ty + dy) * HEAD_R2 + tx + dx;
#pragma unroll
            for (int i = 0; i < 3; ++i) {
                const float v = H2[i * A2 + at];
#pragma unroll
                for (int o = 0; o < 3; ++o) f[o] = fmaf(Wt[HEAD_W3 + (o * 3 + i) * 9 + dy * 3 + dx], v, f[o]);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) logit = fmaf(Wt[HEAD_WM + i * 9 + dy * 3 + dx], M5[i * A2 + at], logit);
        }
    if (Y < H && X < W) {
        const std::size_t at = std::size_t(Y) * W + X;
        const float mask = sigmoid(logit);
        p.masks[n * plane + at] = mask;
        const float* image = p.image + n * 3 * plane;
        float* faces = p.faces + n * 3 * plane;
#pragma unroll
        for (int o = 0; o < 3; ++o) {
            const float face = sigmoid(2.0f * f[o]);
            faces[o * plane + at] = face * mask + (1.0f - mask) * __ldg(image + o * plane + at);
        }
    }
}

// ------------------------------------------------------------------------------------ launchers
int ceil_div(int a, int b) { return (a + b - 1) / b; }

float interp_scale(int n) { return float(n - 1) / float(2 * n - 1); }  // as PyTorch (and kernels/common.hpp)

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

template <class T>
dim3 grid_for(int Ho, int Wo, int M, int N, int& tiles_x) {
    tiles_x = ceil_div(Wo, T::TX);
    const long long tiles = 1LL * tiles_x * ceil_div(Ho, T::TY);
    require(tiles <= 0x7fffffffLL, "image too large");
    require(N <= 65535, "at most 65535 images per call");
    return dim3(unsigned(tiles), unsigned(ceil_div(M, T::TM)), unsigned(N));
}

// Big tiles only when they still give every multiprocessor a couple of blocks.
TileConfig auto_config(int M, int Ho, int Wo, int N, int sms) {
    if (M <= 8) return TileConfig::Thin;
    if (M <= 32) return TileConfig::Mid;
    const long long big_blocks = 1LL * ceil_div(Ho, 8) * ceil_div(Wo, 8) * N * ceil_div(M, 64);
    return big_blocks >= 2LL * sms ? TileConfig::Big : TileConfig::Mid;
}

template <class T>
cudaError_t encoder_with(const EncoderArgs& a, cudaStream_t stream) {
    EncParams p{a.x, a.x_img, a.C, a.H, a.W, a.dw, a.pw, a.scale, a.M, a.normalize ? 1 : 0, a.out, a.out_img, 0};
    const dim3 grid = grid_for<T>(a.H / 2, a.W / 2, a.M, a.N, p.tiles_x);
    constexpr std::size_t smem = encoder_smem_floats<T>() * sizeof(float);
    static_assert(smem <= 48 * 1024, "encoder tile exceeds the default shared-memory limit");
    auto kernel = encoder_kernel<T>;
    MFS_LAUNCH(kernel, grid, dim3(T::THREADS), smem, stream, p);
    return cudaGetLastError();
}

template <class T, bool CHAIN>
cudaError_t up_with(const UpArgs& a, cudaStream_t stream) {
    UpParams p{a.x, a.x_img, a.C, a.h, a.w, a.dw, a.dw_bias, a.pw, a.scale, a.bias, a.M, a.w2, a.b2, a.M2,
               a.out, a.out_img, 0, interp_scale(a.h), interp_scale(a.w)};
    const dim3 grid = grid_for<T>(2 * a.h, 2 * a.w, CHAIN ? T::TM : a.M, a.N, p.tiles_x);
    constexpr std::size_t smem = up_smem_floats<T, CHAIN>() * sizeof(float);
    static_assert(smem <= 48 * 1024, "up tile exceeds the default shared-memory limit");
    auto kernel = up_kernel<T, CHAIN>;
    MFS_LAUNCH(kernel, grid, dim3(T::THREADS), smem, stream, p);
    return cudaGetLastError();
}

template <class T>
cudaError_t pointwise_with(const PointwiseArgs& a, cudaStream_t stream) {
    PwParams p{a.x, a.x_img, a.K, a.H, a.W, a.pw, a.scale, a.bias, a.M, a.leaky ? 1 : 0, a.out, a.out_img, 0};
    const dim3 grid = grid_for<T>(a.H, a.W, a.M, a.N, p.tiles_x);
    constexpr std::size_t smem = pointwise_smem_floats<T>() * sizeof(float);
    auto kernel = pointwise_kernel<T>;
    MFS_LAUNCH(kernel, grid, dim3(T::THREADS), smem, stream, p);
    return cudaGetLastError();
}

}  // namespace

TileConfig parse_tile_config(const std::string& name) {
    if (name == "auto") return TileConfig::Auto;
    if (name == "big") return TileConfig::Big;
    if (name == "mid") return TileConfig::Mid;
    if (name == "thin") return TileConfig::Thin;
    throw std::invalid_argument("unknown tile config '" + name + "' (auto, big, mid, thin)");
}

const char* tile_config_name(TileConfig c) {
    switch (c) {
        case TileConfig::Auto: return "auto";
        case TileConfig::Big: return "big";
        case TileConfig::Mid: return "mid";
        case TileConfig::Thin: return "thin";
    }
    return "?";
}

TileConfig choose_encoder_config(const EncoderArgs& a, int sms) { return auto_config(a.M, a.H / 2, a.W / 2, a.N, sms); }

TileConfig choose_up_config(const UpArgs& a, int sms) {
    if (a.w2) return TileConfig::Mid;
    return auto_config(a.M, 2 * a.h, 2 * a.w, a.N, sms);
}

cudaError_t launch_encoder(const EncoderArgs& a, cudaStream_t stream, int sms, TileConfig config) {
    require(a.N >= 1 && a.C >= 1 && a.M >= 1, "encoder: N, C and M must be positive");
    require(a.H >= 2 && a.W >= 2 && a.H % 2 == 0 && a.W % 2 == 0, "encoder: the input sides must be even");
    require(a.x && a.dw && a.pw && a.out, "encoder: missing x, dw, pw or out");
    MFS_EXPECT_DEVICE(a.x, "encoder x");
    MFS_EXPECT_DEVICE(a.dw, "encoder dw");
    MFS_EXPECT_DEVICE(a.pw, "encoder pw");
    MFS_EXPECT_DEVICE(a.scale, "encoder scale");
    MFS_EXPECT_DEVICE(a.out, "encoder out");
    if (config == TileConfig::Auto) config = choose_encoder_config(a, sms);
    switch (config) {
        case TileConfig::Big: return encoder_with<BigTile>(a, stream);
        case TileConfig::Mid: return a.C <= 4 ? encoder_with<Mid4Tile>(a, stream) : encoder_with<MidTile>(a, stream);
        case TileConfig::Thin: return encoder_with<ThinTile>(a, stream);
        case TileConfig::Auto: break;
    }
    throw std::invalid_argument("encoder: bad tile config");
}

cudaError_t launch_up(const UpArgs& a, cudaStream_t stream, int sms, TileConfig config) {
    require(a.N >= 1 && a.C >= 1 && a.M >= 1 && a.h >= 1 && a.w >= 1, "up: N, C, M, h and w must be positive");
    require(a.x && a.dw && a.pw && a.out, "up: missing x, dw, pw or out");
    MFS_EXPECT_DEVICE(a.x, "up x");
    MFS_EXPECT_DEVICE(a.dw, "up dw");
    MFS_EXPECT_DEVICE(a.dw_bias, "up dw_bias");
    MFS_EXPECT_DEVICE(a.pw, "up pw");
    MFS_EXPECT_DEVICE(a.scale, "up scale");
    MFS_EXPECT_DEVICE(a.bias, "up bias");
    MFS_EXPECT_DEVICE(a.w2, "up w2");
    MFS_EXPECT_DEVICE(a.b2, "up b2");
    MFS_EXPECT_DEVICE(a.out, "up out");
    if (a.w2) {
        require(a.M <= MidTile::TM && a.M2 >= 1, "up: a second pointwise needs M <= 32 and M2 >= 1");
        require(config == TileConfig::Auto || config == TileConfig::Mid, "up: a second pointwise runs on mid tiles only");
        return up_with<MidTile, true>(a, stream);
    }
    if (config == TileConfig::Auto) config = choose_up_config(a, sms);
    switch (config) {
        case TileConfig::Big: return up_with<BigTile, false>(a, stream);
        case TileConfig::Mid: return up_with<MidTile, false>(a, stream);
        case TileConfig::Thin: return up_with<ThinTile, false>(a, stream);
        case TileConfig::Auto: break;
    }
    throw std::invalid_argument("up: bad tile config");
}

cudaError_t launch_pointwise(const PointwiseArgs& a, cudaStream_t stream, int sms, TileConfig config) {
    require(a.N >= 1 && a.K >= 1 && a.M >= 1 && a.H >= 1 && a.W >= 1, "pointwise: N, K, M, H and W must be positive");
    require(a.x && a.pw && a.out, "pointwise: missing x, pw or out");
    MFS_EXPECT_DEVICE(a.x, "pointwise x");
    MFS_EXPECT_DEVICE(a.pw, "pointwise pw");
    MFS_EXPECT_DEVICE(a.scale, "pointwise scale");
    MFS_EXPECT_DEVICE(a.bias, "pointwise bias");
    MFS_EXPECT_DEVICE(a.out, "pointwise out");
    if (config == TileConfig::Auto) config = auto_config(a.M, a.H, a.W, a.N, sms);
    switch (config) {
        case TileConfig::Big: return pointwise_with<BigTile>(a, stream);
        case TileConfig::Mid: return pointwise_with<MidTile>(a, stream);
        case TileConfig::Thin: return pointwise_with<ThinTile>(a, stream);
        case TileConfig::Auto: break;
    }
    throw std::invalid_argument("pointwise: bad tile config");
}

cudaError_t launch_head(const HeadArgs& a, cudaStream_t stream) {
    require(a.N >= 1 && a.H >= 16 && a.W >= 16 && a.H % 16 == 0 && a.W % 16 == 0,
            "head: the image sides must be positive multiples of 16");
    require(a.z && a.m5 && a.image && a.weights && a.faces && a.masks, "head: missing a pointer");
    require(a.N <= 65535, "at most 65535 images per call");
    MFS_EXPECT_DEVICE(a.z, "head z");
    MFS_EXPECT_DEVICE(a.m5, "head m5");
    MFS_EXPECT_DEVICE(a.image, "head image");
    MFS_EXPECT_DEVICE(a.weights, "head weights");
    MFS_EXPECT_DEVICE(a.faces, "head faces");
    MFS_EXPECT_DEVICE(a.masks, "head masks");
    HeadParams p{a.z, a.z_img, a.m5, a.m5_img, a.image, a.weights, a.faces, a.masks, a.H, a.W, a.W / HEAD_TILE,
                 interp_scale(a.H / 2), interp_scale(a.W / 2)};
    const dim3 grid(unsigned((a.H / HEAD_TILE) * (a.W / HEAD_TILE)), 1, unsigned(a.N));
    constexpr std::size_t smem = HEAD_SMEM_FLOATS * sizeof(float);
    static_assert(smem <= 48 * 1024, "head tile exceeds the default shared-memory limit");
    auto kernel = head_kernel;
    MFS_LAUNCH(kernel, grid, dim3(HEAD_THREADS), smem, stream, p);
    return cudaGetLastError();
}

}  // namespace cuda
}  // namespace mfs
