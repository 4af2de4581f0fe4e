// The IDN forward on the fused kernels: buffers, layer wiring, per-identity updates, the run.
#include "fused_idn.hpp"

#include <chrono>

namespace mfs {

std::unique_ptr<float[], void (*)(void*)> alloc_scratch(std::size_t floats) {
    const std::size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    return {static_cast<float*>(p), &std::free};
}

namespace {

std::vector<float> packed(const float* w, int M, int K) {
    std::vector<float> out(packed_size(M, K));
    pack_weights(w, M, K, out.data());
    return out;
}

}  // namespace

std::vector<std::uint32_t> FusedIDNEngine::bf16_of(const std::vector<float>& packed, int M, int K) const {
    if (!k_->bf16_gemm) return {};
    std::vector<std::uint32_t> out(packed_bf16_size(M, K));
    pack_bf16_pairs(packed.data(), M, K, out.data());
    return out;
}

FusedIDNEngine::FusedIDNEngine(int height, int width, HeadWeights heads, const std::vector<const float*>& bases,
                               const KernelTable* kernels)
    : H_(height), W_(width), k_(kernels), heads_(std::move(heads)) {
    check_idn_size(H_, W_);
    if (!k_) throw std::invalid_argument("no kernel set");
    check_head_weights(heads_);
    for (int i = 0; i < IDN_MASK; ++i) {
        mask_packed_[i] = packed(heads_.mask_pw[i].data(), MASK_CH[i + 1], MASK_CH[i]);
        mask_bf16_[i] = bf16_of(mask_packed_[i], MASK_CH[i + 1], MASK_CH[i]);
    }
    final1_packed_ = packed(heads_.final_w1.data(), FINAL_HIDDEN, FINAL_IN);
    final1_bf16_ = bf16_of(final1_packed_, FINAL_HIDDEN, FINAL_IN);

    if (!bases.empty()) {
        if (bases.size() != 9) throw std::invalid_argument("bases: expected 9 base pointwise kernels or none");
        for (int l = 0; l < 9; ++l) {
            base_packed_[l] = packed(bases[l], layer_out(l), layer_in(l));
            base_bf16_[l] = bf16_of(base_packed_[l], layer_out(l), layer_in(l));
        }
        has_bases_ = true;
    }
    for (int l = 0; l < 9; ++l) {
        dw_[l].assign(std::size_t(layer_in(l)) * layer_kernel(l), 0.0f);
        demod_[l].assign(layer_out(l), 1.0f);
    }
    for (int k = 0; k < 5; ++k) {
        rows_[k].build(H_ >> (5 - k));
        cols_[k].build(W_ >> (5 - k));
    }

    auto plane = [&](int s) { return std::size_t(H_ / s) * (W_ / s); };
    e0_.assign(32 * plane(2), 0.0f);
    cat2_.assign(128 * plane(4), 0.0f);
    cat1_.assign(256 * plane(8), 0.0f);
    cat0_.assign(512 * plane(16), 0.0f);
    e4_.assign(512 * plane(32), 0.0f);
    z_.assign(FINAL_HIDDEN * plane(2), 0.0f);
    for (int i = 0; i < IDN_MASK; ++i) m_[i].assign(MASK_CH[i + 1] * plane(16 >> i), 0.0f);

    // encoder: each skip goes straight into the upper slice of its decoder concat buffer
    const float* enc_in[5] = {nullptr, e0_.data(), cat2_.data() + 64 * plane(4), cat1_.data() + 128 * plane(8),
                              cat0_.data() + 256 * plane(16)};
    float* enc_out[5] = {e0_.data(), cat2_.data() + 64 * plane(4), cat1_.data() + 128 * plane(8),
                         cat0_.data() + 256 * plane(16), e4_.data()};
    for (int l = 0; l < IDN_ENC; ++l) {
        EncoderLayer& L = enc_[l];
        L.C = ENC_CH[l];
        L.H = H_ >> l;
        L.W = W_ >> l;
        L.x = enc_in[l];
        L.normalize = l == 0;
        L.pw.M = ENC_CH[l + 1];
        L.pw.K = ENC_CH[l];
        L.pw.leaky = true;
        L.out = enc_out[l];
    }
    // decoder: output into the lower slice of the next concat buffer; the last stage feeds
    // final's 1x1 conv (+BN) directly (pw2), computed before the upsample it commutes with
    const float* dec_in[4] = {e4_.data(), cat0_.data(), cat1_.data(), cat2_.data()};
    float* dec_out[4] = {cat0_.data(), cat1_.data(), cat2_.data(), z_.data()};
    for (int l = 0; l < IDN_DEC; ++l) {
        UpLayer& L = dec_[l];
        L.C = DEC_IN[l];
        L.h = H_ >> (5 - l);
        L.w = W_ >> (5 - l);
        L.x = dec_in[l];
        L.rows = &rows_[l];
        L.cols = &cols_[l];
        L.pw.M = DEC_OUT[l];
        L.pw.K = DEC_IN[l];
        L.pw.leaky = true;
        L.out = dec_out[l];
    }
    UpLayer& last = dec_[IDN_DEC - 1];
    last.pw2.a = final1_packed_.data();
    last.pw2.a16 = final1_bf16_.empty() ? nullptr : final1_bf16_.data();
    last.pw2.M = FINAL_HIDDEN;
    last.pw2.K = FINAL_IN;
    last.pw2.bias = heads_.final_b1.data();
    last.pw2.leaky = false;  // LeakyReLU comes after the upsample (in the head)
    // fusion-mask head on the last encoder stage
    for (int i = 0; i < IDN_MASK; ++i) {
        UpLayer& L = mask_[i];
        L.C = MASK_CH[i];
        L.h = H_ >> (5 - i);
        L.w = W_ >> (5 - i);
        L.x = i == 0 ? e4_.data() : m_[i - 1].data();
        L.dw = heads_.mask_dw[i].data();
        L.dw_bias = heads_.mask_dw_bias[i].data();
        L.rows = &rows_[i];
        L.cols = &cols_[i];
        L.pw.a = mask_packed_[i].data();
        L.pw.a16 = mask_bf16_[i].empty() ? nullptr : mask_bf16_[i].data();
        L.pw.M = MASK_CH[i + 1];
        L.pw.K = MASK_CH[i];
        L.pw.bias = heads_.mask_pw_bias[i].data();
        L.pw.leaky = true;
        L.out = m_[i].data();
    }
    head_.H = H_;
    head_.W = W_;
    head_.z = z_.data();
    head_.m5 = m_[IDN_MASK - 1].data();
    head_.w2 = heads_.final_w2.data();
    head_.b2 = heads_.final_b2.data();
    head_.w3 = heads_.final_w3.data();
    head_.b3 = heads_.final_b3.data();
    head_.wm = heads_.mask_out_w.data();
    head_.bm = heads_.mask_out_b.data();
    head_.rows = &rows_[4];
    head_.cols = &cols_[4];
}

void FusedIDNEngine::set_identity_factored(const std::array<IdentityLayer, 9>& layers) {
    if (!has_bases_)
        throw std::invalid_argument("the factored pointwise form needs the base kernels W at construction");
    std::lock_guard<std::mutex> lock(mutex_);
    for (int l = 0; l < 9; ++l) {
        const int C = layer_in(l), M = layer_out(l), kk = layer_kernel(l);
        const IdentityLayer& id = layers[l];
        for (int c = 0; c < C; ++c)
            for (int t = 0; t < kk; ++t) dw_[l][std::size_t(c) * kk + t] = id.depthwise[std::size_t(c) * kk + t] * id.scale[c];
        std::copy(id.demod, id.demod + M, demod_[l].begin());
    }
    factored_ = true;
    has_identity_ = true;
}

void FusedIDNEngine::set_identity_modulated(const std::array<IdentityLayer, 9>& layers) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (int l = 0; l < 9; ++l) {
        const int C = layer_in(l), M = layer_out(l), kk = layer_kernel(l);
        const IdentityLayer& id = layers[l];
        std::copy(id.depthwise, id.depthwise + std::size_t(C) * kk, dw_[l].begin());
        mod_packed_[l].resize(packed_size(M, C));
        pack_weights(id.pointwise, M, C, mod_packed_[l].data());
        mod_bf16_[l] = bf16_of(mod_packed_[l], M, C);
    }
    factored_ = false;
    has_identity_ = true;
}

void FusedIDNEngine::set_base(int layer, const float* w) {
    if (layer < 0 || layer >= 9) throw std::invalid_argument("layer must be in [0, 9)");
    if (!has_bases_) throw std::invalid_argument("this engine was built without base kernels");
    std::lock_guard<std::mutex> lock(mutex_);
    pack_weights(w, layer_out(layer), layer_in(layer), base_packed_[layer].data());
    base_bf16_[layer] = bf16_of(base_packed_[layer], layer_out(layer), layer_in(layer));
}

void FusedIDNEngine::plan(int threads) {
    if (plan_.threads == threads) return;
    Plan p;
    p.threads = threads;
    const int nr = k_->nr;
    std::size_t scratch = 0;
    for (int l = 0; l < IDN_ENC; ++l) {
        const EncoderLayer& L = enc_[l];
        p.layers.push_back(plan_tasks((L.H / 2) * (L.W / 2), L.pw.K, L.pw.M, threads, nr));
        scratch = std::max(scratch, encoder_scratch(L, max_tile(p.layers.back()), nr).total);
    }
    for (int l = 0; l < IDN_DEC; ++l) {
        UpLayer L = dec_[l];
        p.layers.push_back(plan_tasks(4 * L.h * L.w, L.pw.K, L.pw.M, threads, nr, /*allow_m_split=*/!L.pw2.a));
        scratch = std::max(scratch, up_scratch(L, max_tile(p.layers.back()), nr).total);
    }
    for (int l = 0; l < IDN_MASK; ++l) {
        const UpLayer& L = mask_[l];
        p.layers.push_back(plan_tasks(4 * L.h * L.w, L.pw.K, L.pw.M, threads, nr));
        scratch = std::max(scratch, up_scratch(L, max_tile(p.layers.back()), nr).total);
    }
    int bands = ceil_div(H_, 16);
    if (threads > 1) bands = round_up(bands, threads);
    bands = std::min(bands, H_);
    int max_band = 0;
    for (int b = 0; b < bands; ++b) {
        const int y0 = int(std::int64_t(b) * H_ / bands), y1 = int(std::int64_t(b + 1) * H_ / bands);
        p.head.push_back({y0, y1, 0, 0});
        max_band = std::max(max_band, y1 - y0);
    }
    scratch = std::max(scratch, head_scratch(head_, max_band).total);
    p.scratch = scratch + 64;
    plan_ = std::move(p);
    if (!scratch_.empty() && plan_.scratch > scratch_size_) scratch_.clear();
    scratch_size_ = std::max(scratch_size_, plan_.scratch);
    while (static_cast<int>(scratch_.size()) < threads) scratch_.push_back(alloc_scratch(scratch_size_));
}

std::vector<std::string> FusedIDNEngine::stage_names() { return idn_stage_names(); }

void FusedIDNEngine::run(const float* images, int n, float* faces, float* masks, int threads) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!has_identity_) throw std::invalid_argument("no identity: call set_identity first");
    threads = std::max(1, threads);
    plan(threads);
    for (int l = 0; l < 9; ++l) {
        Pointwise& pw = l < IDN_ENC ? enc_[l].pw : dec_[l - IDN_ENC].pw;
        pw.a = factored_ ? base_packed_[l].data() : mod_packed_[l].data();
        pw.scale = factored_ ? demod_[l].data() : nullptr;
        const std::vector<std::uint32_t>& a16 = factored_ ? base_bf16_[l] : mod_bf16_[l];
        pw.a16 = a16.empty() ? nullptr : a16.data();
        if (l < IDN_ENC)
            enc_[l].dw = dw_[l].data();
        else
            dec_[l - IDN_ENC].dw = dw_[l].data();
    }
    ThreadPool& pool = global_pool();
    using clock = std::chrono::steady_clock;
    stage_seconds_.assign(IDN_ENC + IDN_DEC + IDN_MASK + 1, 0.0);
    auto t_last = clock::now();
    auto lap = [&](int stage) {
        const auto now = clock::now();
        stage_seconds_[stage] += std::chrono::duration<double>(now - t_last).count();
        t_last = now;
    };
    const std::size_t image_size = std::size_t(3) * H_ * W_;
    for (int i = 0; i < n; ++i) {
        const float* image = images + i * image_size;
        enc_[0].x = image;
        head_.image = image;
        head_.faces = faces + i * image_size;
        head_.masks = masks + i * (image_size / 3);
        t_last = clock::now();
        for (int l = 0; l < IDN_ENC; ++l) {
            const EncoderLayer& L = enc_[l];
            const std::vector<Task>& tasks = plan_.layers[l];
            pool.run(threads, static_cast<int>(tasks.size()), [&](int t, int thread) {
                const Task& task = tasks[t];
                k_->encoder_tile(L, task.p0, task.p1, task.m0, task.m1, scratch_[thread].get());
            });
            lap(l);
        }
        // Decoder stage l and mask-head stage l are independent: with several threads they
        // share one job (fewer barriers, better balance); the time then counts for the decoder.
        auto run_up = [&](const UpLayer* A, const std::vector<Task>* ta, const UpLayer* B, const std::vector<Task>* tb) {
            const int na = static_cast<int>(ta->size()), nb = B ? static_cast<int>(tb->size()) : 0;
            pool.run(threads, na + nb, [&](int t, int thread) {
                const UpLayer& L = t < na ? *A : *B;
                const Task& task = t < na ? (*ta)[t] : (*tb)[t - na];
                k_->up_tile(L, task.p0, task.p1, task.m0, task.m1, scratch_[thread].get());
            });
        };
        const int dec0 = IDN_ENC, mask0 = IDN_ENC + IDN_DEC;
        if (threads > 1) {
            for (int l = 0; l < IDN_DEC; ++l) {
                run_up(&dec_[l], &plan_.layers[dec0 + l], &mask_[l], &plan_.layers[mask0 + l]);
                lap(dec0 + l);
            }
            for (int l = IDN_DEC; l < IDN_MASK; ++l) {
                run_up(&mask_[l], &plan_.layers[mask0 + l], nullptr, nullptr);
                lap(mask0 + l);
            }
        } else {
            for (int l = 0; l < IDN_DEC; ++l) {
                run_up(&dec_[l], &plan_.layers[dec0 + l], nullptr, nullptr);
                lap(dec0 + l);
            }
            for (int l = 0; l < IDN_MASK; ++l) {
                run_up(&mask_[l], &plan_.layers[mask0 + l], nullptr, nullptr);
                lap(mask0 + l);
            }
        }
        pool.run(threads, static_cast<int>(plan_.head.size()), [&](int t, int thread) {
            k_->head_band(head_, plan_.head[t].p0, plan_.head[t].p1, scratch_[thread].get());
        });
        lap(IDN_ENC + IDN_DEC + IDN_MASK);
    }
}

}  // namespace mfs
