// The IDN forward on the CUDA blocks: device buffers, layer wiring, identity updates, the run.
#include "cuda_idn.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace mfs {
namespace cuda {

// ------------------------------------------------------------------------------------ buffers
DeviceBuffer::DeviceBuffer(std::size_t floats) : n_(floats) {
    void* p = nullptr;
    MFS_CUDA_CHECK(cudaMalloc(&p, std::max<std::size_t>(floats, 1) * sizeof(float)));
    p_ = static_cast<float*>(p);
}

DeviceBuffer::~DeviceBuffer() {
    if (p_) cudaFree(p_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
        if (p_) cudaFree(p_);
        p_ = o.p_, n_ = o.n_;
        o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
}

void DeviceBuffer::upload(const float* host, std::size_t floats, std::size_t offset, cudaStream_t stream) {
    if (offset + floats > n_) throw std::invalid_argument("DeviceBuffer::upload: out of range");
    MFS_CUDA_CHECK(cudaMemcpyAsync(p_ + offset, host, floats * sizeof(float), cudaMemcpyHostToDevice, stream));
    MFS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

namespace {

DeviceBuffer uploaded(const std::vector<float>& v) {
    DeviceBuffer b(v.size());
    b.upload(v.data(), v.size());
    return b;
}

// Events created and destroyed together (timing helpers).
struct Events {
    std::vector<cudaEvent_t> ev;
    explicit Events(std::size_t n) {
        ev.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
            cudaEvent_t e = nullptr;
            MFS_CUDA_CHECK(cudaEventCreate(&e));
            ev.push_back(e);
        }
    }
    ~Events() {
        for (cudaEvent_t e : ev) cudaEventDestroy(e);
    }
    float ms(std::size_t a, std::size_t b) const {
        float v = 0;
        MFS_CUDA_CHECK(cudaEventElapsedTime(&v, ev[a], ev[b]));
        return v;
    }
};

float median(std::vector<float> v) {
    if (v.empty()) return 0.0f;
    std::sort(v.begin(), v.end());
    const std::size_t h = v.size() / 2;
    return v.size() % 2 ? v[h] : 0.5f * (v[h - 1] + v[h]);
}

}  // namespace

// ------------------------------------------------------------------------------------ head weights
std::vector<float> packed_head_weights(const OutputHeadWeights& heads) {
    std::vector<float> hw(HEAD_WEIGHTS);
    std::copy(heads.final_w2.begin(), heads.final_w2.end(), hw.begin() + HEAD_W2);
    std::copy(heads.final_b2.begin(), heads.final_b2.end(), hw.begin() + HEAD_B2);
    std::copy(heads.final_w3.begin(), heads.final_w3.end(), hw.begin() + HEAD_W3);
    std::copy(heads.final_b3.begin(), heads.final_b3.end(), hw.begin() + HEAD_B3);
    std::copy(heads.mask_out_w.begin(), heads.mask_out_w.end(), hw.begin() + HEAD_WM);
    hw[HEAD_BM] = heads.mask_out_b[0];
    return hw;
}

// ------------------------------------------------------------------------------------ engine
CudaIDNEngine::CudaIDNEngine(int height, int width, const HeadWeights& heads, const std::vector<const float*>& bases,
                             int device, bool graphs)
    : H_(height), W_(width), device_(device), graphs_(graphs) {
    check_idn_size(H_, W_);
    if (bases.size() != IDN_LAYERS)
        throw std::invalid_argument("bases: expected the 9 base pointwise kernels W (encoder 0-4, decoder 0-3)");
    check_head_weights(heads);
    int count = 0;
    MFS_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (device < 0 || device >= count)
        throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" +
                                    std::to_string(count) + " visible)");
    select();
    MFS_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, device_));
    try {
        MFS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        for (auto& e : events_) MFS_CUDA_CHECK(cudaEventCreate(&e));
        for (int i = 0; i < IDN_MASK; ++i) {
            mask_dw_[i] = uploaded(heads.mask_dw[i]);
            mask_dw_bias_[i] = uploaded(heads.mask_dw_bias[i]);
            mask_pw_[i] = uploaded(heads.mask_pw[i]);
            mask_pw_bias_[i] = uploaded(heads.mask_pw_bias[i]);
        }
        final_w1_ = uploaded(heads.final_w1);
        final_b1_ = uploaded(heads.final_b1);
        head_w_ = uploaded(packed_head_weights(heads));
        std::size_t total = 0;
        for (int l = 0; l < IDN_LAYERS; ++l) {
            base_[l] = DeviceBuffer(std::size_t(layer_out(l)) * layer_in(l));
            base_[l].upload(bases[l], base_[l].size());
            dw_off_[l] = total;
            total += std::size_t(layer_in(l)) * layer_taps(l);
            demod_off_[l] = total;
            total += layer_out(l);
        }
        identity_ = DeviceBuffer(total);
        staging_.assign(total, 0.0f);
        MFS_CUDA_CHECK(cudaDeviceSynchronize());  // every upload above is complete
    } catch (...) {
        for (auto& e : events_)
            if (e) cudaEventDestroy(e);
        if (stream_) cudaStreamDestroy(stream_);
        throw;
    }
}

CudaIDNEngine::~CudaIDNEngine() {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    drop_graphs();
    for (auto& e : events_)
        if (e) cudaEventDestroy(e);
    if (stream_) cudaStreamDestroy(stream_);
    cudaGetLastError();  // nothing to report from a destructor
}

void CudaIDNEngine::select() const { MFS_CUDA_CHECK(cudaSetDevice(device_)); }

void CudaIDNEngine::drop_graphs() {
    for (auto& kv : graph_cache_) cudaGraphExecDestroy(kv.second);
    graph_cache_.clear();
}

void CudaIDNEngine::set_identity_factored(const std::array<const float*, IDN_LAYERS>& depthwise,
                                          const std::array<const float*, IDN_LAYERS>& scale,
                                          const std::array<const float*, IDN_LAYERS>& demod) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int l = 0; l < IDN_LAYERS; ++l) {
        const int C = layer_in(l), M = layer_out(l), taps = layer_taps(l);
        float* dw = staging_.data() + dw_off_[l];
        for (int c = 0; c < C; ++c)
            for (int t = 0; t < taps; ++t)
                dw[std::size_t(c) * taps + t] = depthwise[l][std::size_t(c) * taps + t] * scale[l][c];
        std::copy(demod[l], demod[l] + M, staging_.data() + demod_off_[l]);
    }
    select();
    identity_.upload(staging_.data(), staging_.size(), 0, stream_);  // one copy of O(C) values per layer
    has_identity_ = true;
}

void CudaIDNEngine::set_base(int layer, const float* w) {
    if (layer < 0 || layer >= IDN_LAYERS) throw std::invalid_argument("layer must be in [0, 9)");
    std::lock_guard<std::mutex> lock(mutex_);
    select();
    base_[layer].upload(w, base_[layer].size(), 0, stream_);
}

void CudaIDNEngine::ensure_capacity(int n) {
    if (n <= capacity_) return;
    drop_graphs();  // they hold the old buffers' addresses
    auto P = [&](int s) { return std::size_t(H_ / s) * (W_ / s); };
    const std::size_t N = std::size_t(n);
    images_ = DeviceBuffer(N * 3 * P(1));
    faces_ = DeviceBuffer(N * 3 * P(1));
    masks_ = DeviceBuffer(N * P(1));
    e0_ = DeviceBuffer(N * 32 * P(2));
    cat2_ = DeviceBuffer(N * 128 * P(4));
    cat1_ = DeviceBuffer(N * 256 * P(8));
    cat0_ = DeviceBuffer(N * 512 * P(16));
    e4_ = DeviceBuffer(N * 512 * P(32));
    z_ = DeviceBuffer(N * FINAL_HIDDEN * P(2));
    for (int i = 0; i < IDN_MASK; ++i) m_[i] = DeviceBuffer(N * MASK_CH[i + 1] * P(16 >> i));
    capacity_ = n;
    valid_images_ = 0;
}

std::vector<std::string> CudaIDNEngine::stage_names() { return idn_stage_names(); }

// The 15 launches for n images, in stage_names() order. Pointers are those of the current
// buffers (capacity >= n), so this is only called after ensure_capacity.
std::vector<CudaIDNEngine::Stage> CudaIDNEngine::stages(int n) const {
    auto P = [&](int s) { return (long long)(H_ / s) * (W_ / s); };
    float* const id = identity_.get();
    std::vector<Stage> out(IDN_STAGES);
    // encoder: each skip goes straight into the upper channel slice of its decoder concat buffer
    const float* enc_in[5] = {images_.get(), e0_.get(), cat2_.get() + 64 * P(4), cat1_.get() + 128 * P(8),
                              cat0_.get() + 256 * P(16)};
    const long long enc_in_img[5] = {3 * P(1), 32 * P(2), 128 * P(4), 256 * P(8), 512 * P(16)};
    float* enc_out[5] = {e0_.get(), cat2_.get() + 64 * P(4), cat1_.get() + 128 * P(8), cat0_.get() + 256 * P(16),
                         e4_.get()};
    const long long enc_out_img[5] = {32 * P(2), 128 * P(4), 256 * P(8), 512 * P(16), 512 * P(32)};
    for (int l = 0; l < IDN_ENC; ++l) {
        Stage& s = out[l];
        s.kind = 0;
        EncoderArgs& a = s.enc;
        a.x = enc_in[l], a.x_img = enc_in_img[l];
        a.C = ENC_CH[l], a.H = H_ >> l, a.W = W_ >> l;
        a.dw = id + dw_off_[l], a.pw = base_[l].get(), a.scale = id + demod_off_[l], a.M = ENC_CH[l + 1];
        a.normalize = l == 0;
        a.out = enc_out[l], a.out_img = enc_out_img[l];
        a.N = n;
    }
    // decoder: into the lower slice of the next concat buffer; the last stage feeds final's
    // 1x1 conv (+BN), stored at half resolution (it commutes with the head's upsample)
    const float* dec_in[4] = {e4_.get(), cat0_.get(), cat1_.get(), cat2_.get()};
    const long long dec_in_img[4] = {512 * P(32), 512 * P(16), 256 * P(8), 128 * P(4)};
    float* dec_out[4] = {cat0_.get(), cat1_.get(), cat2_.get(), z_.get()};
    const long long dec_out_img[4] = {512 * P(16), 256 * P(8), 128 * P(4), FINAL_HIDDEN * P(2)};
    for (int l = 0; l < IDN_DEC; ++l) {
        Stage& s = out[IDN_ENC + l];
        s.kind = 1;
        UpArgs& a = s.up;
        const int layer = IDN_ENC + l;
        a.x = dec_in[l], a.x_img = dec_in_img[l];
        a.C = DEC_IN[l], a.h = H_ >> (5 - l), a.w = W_ >> (5 - l);
        a.dw = id + dw_off_[layer], a.pw = base_[layer].get(), a.scale = id + demod_off_[layer], a.M = DEC_OUT[l];
        a.out = dec_out[l], a.out_img = dec_out_img[l];
        a.N = n;
        if (l == IDN_DEC - 1) a.w2 = final_w1_.get(), a.b2 = final_b1_.get(), a.M2 = FINAL_HIDDEN;
    }
    // fusion-mask head on the last encoder stage
    for (int i = 0; i < IDN_MASK; ++i) {
        Stage& s = out[IDN_ENC + IDN_DEC + i];
        s.kind = 1;
        UpArgs& a = s.up;
        a.x = i == 0 ? e4_.get() : m_[i - 1].get();
        a.x_img = i == 0 ? 512 * P(32) : MASK_CH[i] * P(32 >> i);
        a.C = MASK_CH[i], a.h = H_ >> (5 - i), a.w = W_ >> (5 - i);
        a.dw = mask_dw_[i].get(), a.dw_bias = mask_dw_bias_[i].get();
        a.pw = mask_pw_[i].get(), a.bias = mask_pw_bias_[i].get(), a.M = MASK_CH[i + 1];
        a.out = m_[i].get(), a.out_img = MASK_CH[i + 1] * P(16 >> i);
        a.N = n;
    }
    Stage& s = out[IDN_STAGES - 1];
    s.kind = 2;
    HeadArgs& h = s.head;
    h.z = z_.get(), h.z_img = FINAL_HIDDEN * P(2);
    h.m5 = m_[IDN_MASK - 1].get(), h.m5_img = 2 * P(1);
    h.image = images_.get(), h.weights = head_w_.get();
    h.faces = faces_.get(), h.masks = masks_.get();
    h.H = H_, h.W = W_, h.N = n;
    return out;
}

std::vector<std::string> CudaIDNEngine::stage_configs(int n) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> names;
    for (const Stage& s : stages(n)) {
        if (s.kind == 0) names.push_back(tile_config_name(choose_encoder_config(s.enc, sms_)));
        if (s.kind == 1) names.push_back(tile_config_name(choose_up_config(s.up, sms_)) + std::string(s.up.w2 ? "+chain" : ""));
        if (s.kind == 2) names.push_back("head");
    }
    return names;
}

void CudaIDNEngine::enqueue(int n, const std::vector<cudaEvent_t>* stage_events) {
    const std::vector<Stage> all = stages(n);
    const std::vector<std::string> names = stage_names();
    for (std::size_t i = 0; i < all.size(); ++i) {
        if (stage_events) MFS_CUDA_CHECK(cudaEventRecord((*stage_events)[i], stream_));
        const Stage& s = all[i];
        const cudaError_t e = s.kind == 0   ? launch_encoder(s.enc, stream_, sms_)
                              : s.kind == 1 ? launch_up(s.up, stream_, sms_)
                                            : launch_head(s.head, stream_);
        if (e != cudaSuccess) throw CudaError(e, "launching IDN stage " + names[i] + " failed (" + error_text(e) + ")");
    }
    if (stage_events) MFS_CUDA_CHECK(cudaEventRecord((*stage_events)[all.size()], stream_));
}

void CudaIDNEngine::launch_kernels(int n, bool graphs) {
    if (!graphs || !graphs_) {
        enqueue(n, nullptr);
        return;
    }
    auto it = graph_cache_.find(n);
    if (it == graph_cache_.end()) {
        if (graph_cache_.size() >= 16) drop_graphs();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        try {
            MFS_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            try {
                enqueue(n, nullptr);
            } catch (...) {
                cudaStreamEndCapture(stream_, &graph);
                if (graph) cudaGraphDestroy(graph);
                throw;
            }
            MFS_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
            const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
            cudaGraphDestroy(graph);
            MFS_CUDA_CHECK(e);
        } catch (const CudaError& error) {  // run eagerly from now on, and say why
            cudaGetLastError();
            graphs_ = false;
            graph_error_ = error.what();
            enqueue(n, nullptr);
            return;
        }
        it = graph_cache_.emplace(n, exec).first;
    }
    MFS_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
}

void CudaIDNEngine::run(const float* images, int n, float* faces, float* masks) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!has_identity_) throw std::invalid_argument("no identity: call set_identity_factored first");
    if (n < 1) throw std::invalid_argument("run needs at least one image");
    select();
    ensure_capacity(n);
    const std::size_t plane = std::size_t(H_) * W_;
    MFS_CUDA_CHECK(cudaEventRecord(events_[0], stream_));
    MFS_CUDA_CHECK(cudaMemcpyAsync(images_.get(), images, n * 3 * plane * sizeof(float), cudaMemcpyHostToDevice, stream_));
    MFS_CUDA_CHECK(cudaEventRecord(events_[1], stream_));
    launch_kernels(n, true);
    MFS_CUDA_CHECK(cudaEventRecord(events_[2], stream_));
    MFS_CUDA_CHECK(cudaMemcpyAsync(faces, faces_.get(), n * 3 * plane * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MFS_CUDA_CHECK(cudaMemcpyAsync(masks, masks_.get(), n * plane * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MFS_CUDA_CHECK(cudaEventRecord(events_[3], stream_));
    MFS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    MFS_CUDA_CHECK(cudaGetLastError());
    valid_images_ = n;
    auto ms = [&](int a, int b) {
        float v = 0;
        MFS_CUDA_CHECK(cudaEventElapsedTime(&v, events_[a], events_[b]));
        return v;
    };
    times_ = RunTimes{ms(0, 1), ms(1, 2), ms(2, 3), ms(0, 3)};
}

std::vector<float> CudaIDNEngine::time_kernels(int n, int warmup, int repeats, bool graphs) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n < 1 || n > valid_images_)
        throw std::invalid_argument("time_kernels: run() a batch of at least " + std::to_string(std::max(n, 1)) +
                                    " images first (its inputs are reused)");
    if (warmup < 0 || repeats < 1) throw std::invalid_argument("time_kernels: warmup >= 0 and repeats >= 1");
    select();
    for (int i = 0; i < warmup; ++i) launch_kernels(n, graphs);
    Events ev(2 * std::size_t(repeats));
    for (int i = 0; i < repeats; ++i) {
        MFS_CUDA_CHECK(cudaEventRecord(ev.ev[2 * i], stream_));
        launch_kernels(n, graphs);
        MFS_CUDA_CHECK(cudaEventRecord(ev.ev[2 * i + 1], stream_));
    }
    MFS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    MFS_CUDA_CHECK(cudaGetLastError());
    std::vector<float> out(repeats);
    for (int i = 0; i < repeats; ++i) out[i] = ev.ms(2 * i, 2 * i + 1);
    return out;
}

std::vector<std::pair<std::string, float>> CudaIDNEngine::stage_ms(int n, int repeats) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (n < 1 || n > valid_images_)
        throw std::invalid_argument("stage_ms: run() a batch of at least " + std::to_string(std::max(n, 1)) +
                                    " images first (its inputs are reused)");
    if (repeats < 1) throw std::invalid_argument("stage_ms: repeats >= 1");
    select();
    Events ev(IDN_STAGES + 1);
    std::vector<std::vector<float>> samples(IDN_STAGES);
    for (int r = 0; r < repeats; ++r) {
        enqueue(n, &ev.ev);
        MFS_CUDA_CHECK(cudaStreamSynchronize(stream_));
        for (int s = 0; s < IDN_STAGES; ++s) samples[s].push_back(ev.ms(s, s + 1));
    }
    MFS_CUDA_CHECK(cudaGetLastError());
    const std::vector<std::string> names = stage_names();
    std::vector<std::pair<std::string, float>> out;
    for (int s = 0; s < IDN_STAGES; ++s) out.emplace_back(names[s], median(samples[s]));
    return out;
}

void CudaIDNEngine::poison() {
    std::lock_guard<std::mutex> lock(mutex_);
    select();
    for (DeviceBuffer* b : {&images_, &faces_, &masks_, &e0_, &cat2_, &cat1_, &cat0_, &e4_, &z_, &m_[0], &m_[1], &m_[2],
                            &m_[3], &m_[4]})
        if (b->get()) MFS_CUDA_CHECK(cudaMemsetAsync(b->get(), 0xFF, b->size() * sizeof(float), stream_));
    MFS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    valid_images_ = 0;
}

}  // namespace cuda
}  // namespace mfs
