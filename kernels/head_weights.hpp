// The IDN's layer sizes and its fixed head weights, one definition for both engines: the CPU
// FusedIDNEngine (fused_idn.hpp) and the CUDA CudaIDNEngine (cuda/cuda_idn.hpp, namespace
// mfs::cuda, which sees these names as its enclosing namespace's). Pure C++: the parsing from
// the Python dict mfs_fast.fused.head_weights() makes is in bind/idn_args.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace mfs {

// encoder 0-4, decoder 0-3 (the 9 identity layers), fusion-mask branch 0-4, output head
constexpr int IDN_ENC = 5, IDN_DEC = 4, IDN_MASK = 5, IDN_LAYERS = IDN_ENC + IDN_DEC;
constexpr std::array<int, 6> ENC_CH{3, 32, 64, 128, 256, 512};
constexpr std::array<int, 4> DEC_IN{512, 512, 256, 128};
constexpr std::array<int, 4> DEC_OUT{256, 128, 64, 32};
constexpr std::array<int, 6> MASK_CH{512, 128, 64, 32, 8, 2};
constexpr int FINAL_IN = 32, FINAL_HIDDEN = 8;

// Channels in / out and depthwise taps of identity layer l (encoder 0-4, decoder 0-3).
inline int layer_in(int l) { return l < IDN_ENC ? ENC_CH[l] : DEC_IN[l - IDN_ENC]; }
inline int layer_out(int l) { return l < IDN_ENC ? ENC_CH[l + 1] : DEC_OUT[l - IDN_ENC]; }
inline int layer_taps(int l) { return l < IDN_ENC ? 16 : 9; }

// The IDN's stages as both engines name and time them: encoder.0-4, decoder.0-3, mask.0-4, head.
inline std::vector<std::string> idn_stage_names() {
    std::vector<std::string> names;
    for (int l = 0; l < IDN_ENC; ++l) names.push_back("encoder." + std::to_string(l));
    for (int l = 0; l < IDN_DEC; ++l) names.push_back("decoder." + std::to_string(l));
    for (int l = 0; l < IDN_MASK; ++l) names.push_back("mask." + std::to_string(l));
    names.push_back("head");
    return names;
}

inline void check_idn_size(int height, int width) {
    if (height <= 0 || width <= 0 || height % 32 || width % 32)
        throw std::invalid_argument("IDN input sides must be positive multiples of 32 (5 stride-2 stages), got " +
                                    std::to_string(height) + "x" + std::to_string(width));
}

// The output head's fixed weights (the per-block output_head takes these alone), BatchNorm
// folded, row-major (PyTorch shapes flattened).
struct OutputHeadWeights {
    std::vector<float> mask_out_w, mask_out_b;  // 1 x 2 x 9, 1
    std::vector<float> final_w1, final_b1;      // 8 x 32, 8
    std::vector<float> final_w2, final_b2;      // 3 x 8 x 9, 3
    std::vector<float> final_w3, final_b3;      // 3 x 3 x 9, 3
};

// All fixed weights of the IDN: the fusion-mask branch and the output head.
struct HeadWeights : OutputHeadWeights {
    std::array<std::vector<float>, IDN_MASK> mask_dw, mask_dw_bias;  // C x 9, C
    std::array<std::vector<float>, IDN_MASK> mask_pw, mask_pw_bias;  // M x C, M
};

namespace detail {
inline void expect_size(const std::vector<float>& v, std::size_t n, const std::string& name) {
    if (v.size() != n)
        throw std::invalid_argument(name + " must have " + std::to_string(n) + " values, got " + std::to_string(v.size()));
}
}  // namespace detail

// Every array of the heads has its size (std::invalid_argument naming the first that has not).
inline void check_head_weights(const HeadWeights& h) {
    for (int i = 0; i < IDN_MASK; ++i) {
        const std::size_t C = std::size_t(MASK_CH[i]), M = std::size_t(MASK_CH[i + 1]);
        const std::string p = "mask." + std::to_string(i) + ".";
        detail::expect_size(h.mask_dw[i], C * 9, p + "depthwise");
        detail::expect_size(h.mask_dw_bias[i], C, p + "depthwise_bias");
        detail::expect_size(h.mask_pw[i], M * C, p + "pointwise");
        detail::expect_size(h.mask_pw_bias[i], M, p + "pointwise_bias");
    }
    detail::expect_size(h.mask_out_w, 2 * 9, "mask.out.weight");
    detail::expect_size(h.mask_out_b, 1, "mask.out.bias");
    detail::expect_size(h.final_w1, FINAL_HIDDEN * FINAL_IN, "final.0.weight");
    detail::expect_size(h.final_b1, FINAL_HIDDEN, "final.0.bias");
    detail::expect_size(h.final_w2, 3 * FINAL_HIDDEN * 9, "final.1.weight");
    detail::expect_size(h.final_b2, 3, "final.1.bias");
    detail::expect_size(h.final_w3, 3 * 3 * 9, "final.2.weight");
    detail::expect_size(h.final_b3, 3, "final.2.bias");
}

}  // namespace mfs
