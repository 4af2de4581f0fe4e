// The fused IDN blocks on CUDA: host-side declarations (no device code; included by the engine
// and the bindings, compiled by the host compiler).
//
// Activations are NCHW float32. Every pointer here is device memory. A layer's input and output
// may be a channel slice of a larger buffer (the decoder's concat buffers): `x`/`out` point at
// channel 0 of the slice of image 0 and `*_img` is the distance between images in floats.
//
//   encoder   depthwise 4x4 stride 2 pad 1 -> pointwise -> LeakyReLU(0.1)
//             (stage 0 applies (x - 0.5) / 0.5 to the image on the fly)
//   up        bilinear 2x (align_corners=True) -> depthwise 3x3 pad 1 (+bias) -> pointwise (+bias)
//             -> LeakyReLU(0.1) [-> a second, plain pointwise (+bias), stored instead]
//   pointwise act(scale[o] * sum_i W[o, i] x[i] + bias[o])
//   head      LeakyReLU(up(z)) -> conv3x3 8->3 (+bias) -> LeakyReLU -> conv3x3 3->3 (+bias) -> (1+tanh)/2,
//             mask = sigmoid(conv3x3 2->1 (m5) + bias), result = face * mask + (1 - mask) * image
//
// Pointwise kernels are the base W (factored form: y[o] = d[o] * sum_i W[o,i] s[i] x[i], with s
// already folded into the depthwise kernel and d passed as `scale`) or any plain M x K matrix.
#pragma once

#include <cstddef>
#include <string>

#include "cuda_compat.hpp"

namespace mfs {
namespace cuda {

// Tile configurations of the fused block kernels (output channels x output pixels per block).
enum class TileConfig {
    Auto = 0,
    Big,   // 64 channels x 8x8 pixels, 4x4 outputs per thread
    Mid,   // 32 channels x 8x8 pixels, 2x4 outputs per thread
    Thin,  // 8 channels x 8x16 pixels, 1x4 outputs per thread (layers of <= 8 outputs)
};
TileConfig parse_tile_config(const std::string& name);  // "auto", "big", "mid", "thin"
const char* tile_config_name(TileConfig c);

struct EncoderArgs {
    const float* x = nullptr;
    long long x_img = 0;
    int C = 0, H = 0, W = 0;       // input channels and size (even); output M x H/2 x W/2
    const float* dw = nullptr;     // C x 16
    const float* pw = nullptr;     // M x C
    const float* scale = nullptr;  // M (demodulation) or null
    int M = 0;
    bool normalize = false;
    float* out = nullptr;
    long long out_img = 0;
    int N = 0;
};

struct UpArgs {
    const float* x = nullptr;
    long long x_img = 0;
    int C = 0, h = 0, w = 0;          // input channels and size; output 2h x 2w
    const float* dw = nullptr;        // C x 9
    const float* dw_bias = nullptr;   // C or null
    const float* pw = nullptr;        // M x C
    const float* scale = nullptr;     // M or null
    const float* bias = nullptr;      // M or null
    int M = 0;
    // optional second pointwise (no activation) applied to the block's output, which is then
    // never stored: the decoder's last stage feeds final's 1x1 conv this way (M <= 32)
    const float* w2 = nullptr;        // M2 x M
    const float* b2 = nullptr;        // M2 or null
    int M2 = 0;
    float* out = nullptr;             // M (or M2) planes of 2h x 2w
    long long out_img = 0;
    int N = 0;
};

struct PointwiseArgs {
    const float* x = nullptr;
    long long x_img = 0;
    int K = 0, H = 0, W = 0;
    const float* pw = nullptr;     // M x K
    const float* scale = nullptr;  // M or null
    const float* bias = nullptr;   // M or null
    int M = 0;
    bool leaky = false;
    float* out = nullptr;
    long long out_img = 0;
    int N = 0;
};

// Fixed weights of the output heads, BatchNorm folded, packed in this order (HEAD_WEIGHTS floats).
constexpr int HEAD_W2 = 0, HEAD_B2 = HEAD_W2 + 3 * 8 * 9, HEAD_W3 = HEAD_B2 + 3, HEAD_B3 = HEAD_W3 + 3 * 3 * 9,
              HEAD_WM = HEAD_B3 + 3, HEAD_BM = HEAD_WM + 2 * 9, HEAD_WEIGHTS = HEAD_BM + 1;

struct HeadArgs {
    const float* z = nullptr;       // 8 x H/2 x W/2 (final's 1x1 conv + BN, before the upsample)
    long long z_img = 0;
    const float* m5 = nullptr;      // 2 x H x W (last mask block)
    long long m5_img = 0;
    const float* image = nullptr;   // 3 x H x W, in [0, 1]
    const float* weights = nullptr; // HEAD_WEIGHTS floats
    float* faces = nullptr;         // 3 x H x W
    float* masks = nullptr;         // 1 x H x W
    int H = 0, W = 0;               // multiples of 16
    int N = 0;
};

// Launchers: queue one kernel on `stream` and return the launch's error (cudaGetLastError).
// `sms` (multiprocessors) steers the automatic tile choice. Shapes are validated (throwing
// std::invalid_argument) before anything is queued.
cudaError_t launch_encoder(const EncoderArgs& a, cudaStream_t stream, int sms, TileConfig config = TileConfig::Auto);
cudaError_t launch_up(const UpArgs& a, cudaStream_t stream, int sms, TileConfig config = TileConfig::Auto);
cudaError_t launch_pointwise(const PointwiseArgs& a, cudaStream_t stream, int sms, TileConfig config = TileConfig::Auto);
cudaError_t launch_head(const HeadArgs& a, cudaStream_t stream);

// The configuration launch_* would pick (for plans and tests).
TileConfig choose_encoder_config(const EncoderArgs& a, int sms);
TileConfig choose_up_config(const UpArgs& a, int sms);

}  // namespace cuda
}  // namespace mfs
