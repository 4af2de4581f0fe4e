// The whole IDN forward on the CUDA blocks, for one input size (no Python here).
//
// Built once with the fixed heads (BatchNorm folded) and the nine base pointwise kernels W,
// which are uploaded once. An identity (set_identity_factored) then only sends O(C) data per
// layer to the device: the depthwise kernels with the modulation scale s folded in (k[i] * s[i])
// and the demodulation d; y[o] = d[o] * sum_i W[o,i] * s[i] * x[i] as in the CPU engine.
//
// Device buffers are owned here and reused: the encoder writes each skip straight into the
// upper channel slice of its decoder concat buffer, the decoder stage into the lower slice;
// the last decoder stage feeds final's 1x1 conv (+BN) in shared memory (only its 8 channels
// are stored, at half resolution; the head upsamples them). run() copies the batch in, queues
// the 15 kernels on one stream (replayed from a CUDA graph captured per batch size, when
// graphs are on), copies faces and masks out and waits.
#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../head_weights.hpp"
#include "blocks.cuh"

namespace mfs {
namespace cuda {

// IDN_ENC, IDN_LAYERS, ENC_CH, ..., layer_in/out/taps and HeadWeights (the fixed weights, BatchNorm
// folded, row-major: the arrays of mfs_fast.fused.head_weights) are mfs's (../head_weights.hpp),
// the same as the CPU engine's.
constexpr int IDN_STAGES = IDN_ENC + IDN_DEC + IDN_MASK + 1;

// The output head's weights in the order launch_head reads them (HEAD_WEIGHTS floats, blocks.cuh).
std::vector<float> packed_head_weights(const OutputHeadWeights& heads);

// Owns one cudaMalloc'd float array.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t floats);
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
    float* get() const { return p_; }
    std::size_t size() const { return n_; }
    // Host -> device copy of `floats` values at `offset`, complete on return: queued on `stream`
    // and waited for (a plain cudaMemcpy may return before its DMA ends, and work queued later
    // on a non-blocking stream is not ordered after it).
    void upload(const float* host, std::size_t floats, std::size_t offset = 0, cudaStream_t stream = nullptr);

private:
    float* p_ = nullptr;
    std::size_t n_ = 0;
};

// Milliseconds between the events of the last run(): copy in, kernels, copy out, all.
struct RunTimes {
    float h2d = 0, kernels = 0, d2h = 0, total = 0;
};

class CudaIDNEngine {
public:
    CudaIDNEngine(int height, int width, const HeadWeights& heads, const std::vector<const float*>& bases, int device,
                  bool graphs);
    ~CudaIDNEngine();
    CudaIDNEngine(const CudaIDNEngine&) = delete;
    CudaIDNEngine& operator=(const CudaIDNEngine&) = delete;

    // Per layer (encoder 0-4, decoder 0-3): depthwise C x k x k, scale s (C), demod d (M).
    void set_identity_factored(const std::array<const float*, IDN_LAYERS>& depthwise,
                               const std::array<const float*, IDN_LAYERS>& scale,
                               const std::array<const float*, IDN_LAYERS>& demod);
    // Replace one base kernel W (M x C): an identity modulated from another IIN's W.
    void set_base(int layer, const float* w);

    // images n x 3 x H x W (host, in [0, 1]) -> faces n x 3 x H x W, masks n x 1 x H x W (host).
    void run(const float* images, int n, float* faces, float* masks);
    RunTimes last_times() const { return times_; }

    // Kernel-only timing on the batch of the last run (its n images must still be on the
    // device): `warmup` untimed runs, then `repeats` runs each between two events. ms per run.
    std::vector<float> time_kernels(int n, int warmup, int repeats, bool graphs);
    // Median ms per stage over `repeats` eager runs on the last batch (events between stages).
    std::vector<std::pair<std::string, float>> stage_ms(int n, int repeats);
    static std::vector<std::string> stage_names();

    // Fill every activation and output buffer with NaN (0xFF bytes): a later run that leaves
    // anything unwritten shows it.
    void poison();

    int height() const { return H_; }
    int width() const { return W_; }
    int device() const { return device_; }
    int capacity() const { return capacity_; }
    int multiprocessors() const { return sms_; }
    bool graphs() const { return graphs_; }
    const std::string& graph_error() const { return graph_error_; }
    bool has_identity() const { return has_identity_; }
    // Tile configuration each GEMM stage uses at batch n (encoder 0-4, decoder 0-3, mask 0-4).
    std::vector<std::string> stage_configs(int n) const;

private:
    struct Stage {
        int kind;  // 0 encoder, 1 up, 2 head
        EncoderArgs enc;
        UpArgs up;
        HeadArgs head;
    };
    std::vector<Stage> stages(int n) const;
    void ensure_capacity(int n);
    void enqueue(int n, const std::vector<cudaEvent_t>* stage_events);
    void launch_kernels(int n, bool graphs);
    void drop_graphs();
    void select() const;

    int H_, W_, device_, sms_ = 1;
    bool graphs_;
    std::string graph_error_;
    cudaStream_t stream_ = nullptr;
    std::array<cudaEvent_t, 4> events_{};
    RunTimes times_;
    bool has_identity_ = false;
    int valid_images_ = 0;  // images of the last run, still in images_

    // weights
    std::array<DeviceBuffer, IDN_LAYERS> base_;
    DeviceBuffer identity_;  // per layer: depthwise (s folded in) at dw_off_, demod d at demod_off_
    std::array<std::size_t, IDN_LAYERS> dw_off_{}, demod_off_{};
    std::array<DeviceBuffer, IDN_MASK> mask_dw_, mask_dw_bias_, mask_pw_, mask_pw_bias_;
    DeviceBuffer final_w1_, final_b1_, head_w_;
    std::vector<float> staging_;

    // activations (capacity_ images)
    int capacity_ = 0;
    DeviceBuffer images_, faces_, masks_, e0_, cat2_, cat1_, cat0_, e4_, z_;
    std::array<DeviceBuffer, IDN_MASK> m_;

    std::map<int, cudaGraphExec_t> graph_cache_;
    mutable std::mutex mutex_;
};

}  // namespace cuda
}  // namespace mfs
