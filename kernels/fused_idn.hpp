// The whole IDN forward on the fused kernels, for one input size (pure C++, no Python).
//
// Built once with the fixed heads (BatchNorm already folded into conv weights and biases) and,
// for the factored pointwise form, the shared base kernels W of the nine identity layers,
// which are packed here once. An identity then only rewrites O(C) data per layer:
//   factored   y[o] = d[o] * sum_i W[o,i] * s[i] * x[i]: s is folded into the depthwise kernel
//              (k[i] * s[i], both linear per channel), d scales the GEMM's output;
//   modulated  y[o] = sum_i W~[o,i] x[i] with W~ given per identity (packed on set_identity).
//
// Buffers: the encoder writes each skip straight into its decoder concat buffer's upper
// channel slice, the decoder stage into the lower slice; nothing is ever copied.
#pragma once

#include <array>
#include <stdexcept>

#include "common.hpp"
#include "thread_pool.hpp"

namespace mfs {

constexpr int IDN_ENC = 5, IDN_DEC = 4, IDN_MASK = 5;
constexpr std::array<int, 6> ENC_CH{3, 32, 64, 128, 256, 512};
constexpr std::array<int, 4> DEC_IN{512, 512, 256, 128};
constexpr std::array<int, 4> DEC_OUT{256, 128, 64, 32};
constexpr std::array<int, 6> MASK_CH{512, 128, 64, 32, 8, 2};
constexpr int FINAL_IN = 32, FINAL_HIDDEN = 8;

// Fixed weights of the two heads, BatchNorm folded (row-major, PyTorch shapes flattened).
struct HeadWeights {
    std::array<std::vector<float>, IDN_MASK> mask_dw, mask_dw_bias;  // C x 9, C
    std::array<std::vector<float>, IDN_MASK> mask_pw, mask_pw_bias;  // M x C, M
    std::vector<float> mask_out_w, mask_out_b;                       // 1 x 2 x 9, 1
    std::vector<float> final_w1, final_b1;                           // 8 x 32, 8
    std::vector<float> final_w2, final_b2;                           // 3 x 8 x 9, 3
    std::vector<float> final_w3, final_b3;                           // 3 x 3 x 9, 3
};

// Per-identity arrays of one layer (pointers into caller memory, read during the call only).
struct IdentityLayer {
    const float* depthwise = nullptr;  // C x k x k
    const float* pointwise = nullptr;  // modulated form: W~, M x C
    const float* scale = nullptr;      // factored form: s, C
    const float* demod = nullptr;      // factored form: d, M
};

class FusedIDNEngine {
public:
    // bases: empty, or the nine base kernels W (encoder 0..4, decoder 0..3), M x C each.
    FusedIDNEngine(int height, int width, HeadWeights heads, const std::vector<const float*>& bases,
                   const KernelTable* kernels);

    // layers: encoder 0..4 then decoder 0..3.
    // The packed base kernel of a layer (factored form): identity changes must leave it alone.
    const std::vector<float>& base_packed(int layer) const { return base_packed_[layer]; }
    void set_identity_factored(const std::array<IdentityLayer, 9>& layers);
    void set_identity_modulated(const std::array<IdentityLayer, 9>& layers);
    // Replace one base kernel (an identity made by a different IIN); packs it.
    void set_base(int layer, const float* w);

    // images: n x 3 x H x W in [0, 1]; faces: n x 3 x H x W; masks: n x 1 x H x W.
    void run(const float* images, int n, float* faces, float* masks, int threads);

    // Seconds spent in each stage by the last run (all images): encoder 0-4, decoder 0-3,
    // mask 0-4, head. With several threads, mask stages 0-3 run together with decoder stages
    // 0-3 and their time is counted there (they read 0).
    const std::vector<double>& stage_seconds() const { return stage_seconds_; }
    static std::vector<std::string> stage_names();

    int height() const { return H_; }
    int width() const { return W_; }
    bool has_bases() const { return has_bases_; }
    bool has_identity() const { return has_identity_; }
    const char* form() const { return factored_ ? "factored" : "modulated"; }
    const KernelTable& kernels() const { return *k_; }

    static int layer_in(int layer) { return layer < IDN_ENC ? ENC_CH[layer] : DEC_IN[layer - IDN_ENC]; }
    static int layer_out(int layer) { return layer < IDN_ENC ? ENC_CH[layer + 1] : DEC_OUT[layer - IDN_ENC]; }
    static int layer_kernel(int layer) { return layer < IDN_ENC ? 16 : 9; }

private:
    struct Plan {
        int threads = 0;
        std::vector<std::vector<Task>> layers;  // encoder 5, decoder 4, mask 5
        std::vector<Task> head;                 // bands (p0, p1 = rows)
        std::size_t scratch = 0;                // floats per thread
    };
    void plan(int threads);

    int H_, W_;
    const KernelTable* k_;
    HeadWeights heads_;
    bool has_bases_ = false, factored_ = true, has_identity_ = false;
    std::array<std::vector<float>, 9> base_packed_, mod_packed_, dw_, demod_;
    std::array<std::vector<float>, IDN_MASK> mask_packed_;
    std::vector<float> final1_packed_;
    std::array<Interp, 5> rows_, cols_;  // n = H/32 .. H/2 -> 2n

    // activations
    std::vector<float> e0_, cat2_, cat1_, cat0_, e4_, z_;
    std::array<std::vector<float>, IDN_MASK> m_;

    std::array<EncoderLayer, IDN_ENC> enc_;
    std::array<UpLayer, IDN_DEC> dec_;
    std::array<UpLayer, IDN_MASK> mask_;
    HeadLayer head_;

    Plan plan_;
    std::vector<double> stage_seconds_;
    std::size_t scratch_size_ = 0;  // floats per arena
    std::vector<std::unique_ptr<float[], void (*)(void*)>> scratch_;
    std::mutex mutex_;
};

// Scratch arenas (64-byte aligned).
std::unique_ptr<float[], void (*)(void*)> alloc_scratch(std::size_t floats);

}  // namespace mfs
