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
#include "head_weights.hpp"
#include "thread_pool.hpp"

namespace mfs {

// IDN_ENC, ENC_CH, ..., layer_in/out/taps and HeadWeights (the fixed weights of the two heads,
// BatchNorm folded): head_weights.hpp, shared with the CUDA engine.

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

    static int layer_in(int layer) { return mfs::layer_in(layer); }
    static int layer_out(int layer) { return mfs::layer_out(layer); }
    static int layer_kernel(int layer) { return layer_taps(layer); }

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
    // the same as bf16 pairs, for a kernel set with bf16 GEMMs (empty otherwise)
    std::array<std::vector<std::uint32_t>, 9> base_bf16_, mod_bf16_;
    std::array<std::vector<std::uint32_t>, IDN_MASK> mask_bf16_;
    std::vector<std::uint32_t> final1_bf16_;
    std::vector<std::uint32_t> bf16_of(const std::vector<float>& packed, int M, int K) const;
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
