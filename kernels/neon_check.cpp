// Standalone check of a vector kernel set against the portable one, in one binary (no Python):
// every block and the whole IDN on random data, max abs difference per case, exit status 1
// when any exceeds the tolerance (1e-4). Built and run under qemu for AArch64 by
// cross_check.sh (NEON vs portable); built natively it checks AVX2 vs portable the same way.
//
//   neon_check [--bench N]     N > 0: also time N whole-IDN runs per kernel set (1 thread)
#include <chrono>
#include <cstdio>
#include <random>
#include <tuple>

#include "common.hpp"
#include "fused_idn.hpp"

using namespace mfs;

namespace {

std::mt19937 rng(12345);

std::vector<float> randn(std::size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

std::vector<float> uniform(std::size_t n) {
    std::uniform_real_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float m = 0.0f;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

constexpr float TOL = 1e-4f;
int failures = 0;

void report(const char* what, float err) {
    const bool ok = err <= TOL && std::isfinite(err);
    std::printf("%-44s max |diff| %.3g %s\n", what, double(err), ok ? "ok" : "FAIL");
    if (!ok) ++failures;
}

std::vector<float> encoder(const KernelTable* k, int C, int H, int W, int M, bool normalize, const std::vector<float>& x,
                           const std::vector<float>& dw, const std::vector<float>& pw, const std::vector<float>& d) {
    std::vector<float> a(packed_size(M, C)), out(std::size_t(M) * (H / 2) * (W / 2));
    pack_weights(pw.data(), M, C, a.data());
    EncoderLayer L;
    L.C = C, L.H = H, L.W = W, L.x = x.data(), L.dw = dw.data(), L.normalize = normalize, L.out = out.data();
    L.pw.a = a.data(), L.pw.M = M, L.pw.K = C, L.pw.scale = d.data();
    const int P = (H / 2) * (W / 2);
    const auto tasks = plan_tasks(P, C, M, 3, k->nr);
    auto scratch = alloc_scratch(encoder_scratch(L, max_tile(tasks), k->nr).total + 64);
    for (const Task& t : tasks) k->encoder_tile(L, t.p0, t.p1, t.m0, t.m1, scratch.get());
    return out;
}

std::vector<float> upsample(const KernelTable* k, int C, int h, int w, int M, const std::vector<float>& x,
                            const std::vector<float>& dw, const std::vector<float>& dwb, const std::vector<float>& pw,
                            const std::vector<float>& pwb) {
    std::vector<float> a(packed_size(M, C)), out(std::size_t(M) * 4 * h * w);
    pack_weights(pw.data(), M, C, a.data());
    Interp rows, cols;
    rows.build(h);
    cols.build(w);
    UpLayer L;
    L.C = C, L.h = h, L.w = w, L.x = x.data(), L.dw = dw.data(), L.dw_bias = dwb.data(), L.rows = &rows,
    L.cols = &cols, L.out = out.data();
    L.pw.a = a.data(), L.pw.M = M, L.pw.K = C, L.pw.bias = pwb.data();
    const auto tasks = plan_tasks(4 * h * w, C, M, 3, k->nr);
    auto scratch = alloc_scratch(up_scratch(L, max_tile(tasks), k->nr).total + 64);
    for (const Task& t : tasks) k->up_tile(L, t.p0, t.p1, t.m0, t.m1, scratch.get());
    return out;
}

std::vector<float> head(const KernelTable* k, int H, int W, const std::vector<float>& z, const std::vector<float>& m5,
                        const std::vector<float>& image, const std::vector<float>& w2, const std::vector<float>& b2,
                        const std::vector<float>& w3, const std::vector<float>& b3, const std::vector<float>& wm,
                        const std::vector<float>& bm) {
    std::vector<float> out(std::size_t(4) * H * W);  // faces then mask
    Interp rows, cols;
    rows.build(H / 2);
    cols.build(W / 2);
    HeadLayer L;
    L.H = H, L.W = W, L.z = z.data(), L.m5 = m5.data(), L.image = image.data(), L.w2 = w2.data(), L.b2 = b2.data(),
    L.w3 = w3.data(), L.b3 = b3.data(), L.wm = wm.data(), L.bm = bm.data(), L.rows = &rows, L.cols = &cols,
    L.faces = out.data(), L.masks = out.data() + 3 * H * W;
    const int band = 13;  // odd bands: partial edges
    auto scratch = alloc_scratch(head_scratch(L, band).total + 64);
    for (int y = 0; y < H; y += band) k->head_band(L, y, std::min(H, y + band), scratch.get());
    return out;
}

HeadWeights random_heads() {
    HeadWeights hw;
    for (int i = 0; i < IDN_MASK; ++i) {
        const int C = MASK_CH[i], M = MASK_CH[i + 1];
        hw.mask_dw[i] = randn(std::size_t(C) * 9, 0.4f);
        hw.mask_dw_bias[i] = randn(C, 0.1f);
        hw.mask_pw[i] = randn(std::size_t(M) * C, 1.5f / std::sqrt(float(C)));
        hw.mask_pw_bias[i] = randn(M, 0.1f);
    }
    hw.mask_out_w = randn(18, 0.5f);
    hw.mask_out_b = randn(1, 0.1f);
    hw.final_w1 = randn(8 * 32, 0.3f);
    hw.final_b1 = randn(8, 0.1f);
    hw.final_w2 = randn(3 * 8 * 9, 0.2f);
    hw.final_b2 = randn(3, 0.1f);
    hw.final_w3 = randn(81, 0.3f);
    hw.final_b3 = randn(3, 0.1f);
    return hw;
}

}  // namespace

int main(int argc, char** argv) {
    int bench = 0;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--bench") bench = std::atoi(argv[i + 1]);
    const KernelTable* ref = kernels_scalar();
    const KernelTable* vec = kernels_neon() ? kernels_neon() : (cpu_has_avx2_fma() ? kernels_avx2() : nullptr);
    if (!vec) {
        std::printf("no vector kernel set for this CPU: nothing to compare\n");
        return 0;
    }
    std::printf("checking '%s' against '%s' (tolerance %g)\n", vec->name, ref->name, double(TOL));

    for (auto [C, H, W, M, norm] : {std::tuple{3, 64, 96, 32, true}, std::tuple{32, 30, 22, 40, false},
                                    std::tuple{64, 14, 14, 128, false}}) {
        const auto x = uniform(std::size_t(C) * H * W);
        const auto dw = randn(std::size_t(C) * 16, 0.25f), pw = randn(std::size_t(M) * C, 1.0f / std::sqrt(float(C)));
        const auto d = randn(M, 0.3f);
        char name[96];
        std::snprintf(name, sizeof name, "encoder C=%d %dx%d M=%d%s", C, H, W, M, norm ? " normalize" : "");
        report(name, max_diff(encoder(vec, C, H, W, M, norm, x, dw, pw, d), encoder(ref, C, H, W, M, norm, x, dw, pw, d)));
    }
    for (auto [C, h, w, M] : {std::tuple{128, 7, 7, 64}, std::tuple{32, 13, 9, 8}, std::tuple{8, 28, 28, 2},
                              std::tuple{37, 5, 11, 5}}) {
        const auto x = randn(std::size_t(C) * h * w), dw = randn(std::size_t(C) * 9, 0.3f), dwb = randn(C, 0.1f);
        const auto pw = randn(std::size_t(M) * C, 1.0f / std::sqrt(float(C))), pwb = randn(M, 0.1f);
        char name[96];
        std::snprintf(name, sizeof name, "upsample block C=%d %dx%d M=%d", C, h, w, M);
        report(name, max_diff(upsample(vec, C, h, w, M, x, dw, dwb, pw, pwb), upsample(ref, C, h, w, M, x, dw, dwb, pw, pwb)));
    }
    {
        const int H = 64, W = 96;
        const auto z = randn(std::size_t(8) * H * W / 4), m5 = randn(std::size_t(2) * H * W), image = uniform(std::size_t(3) * H * W);
        const auto w2 = randn(216, 0.2f), b2 = randn(3, 0.1f), w3 = randn(81, 0.3f), b3 = randn(3, 0.1f);
        const auto wm = randn(18, 0.5f), bm = randn(1, 0.1f);
        report("output head + mask + blend 64x96",
               max_diff(head(vec, H, W, z, m5, image, w2, b2, w3, b3, wm, bm), head(ref, H, W, z, m5, image, w2, b2, w3, b3, wm, bm)));
    }
    {
        const int S = 224;
        const HeadWeights hw = random_heads();
        std::vector<std::vector<float>> bases, dws, scales, demods;
        for (int l = 0; l < 9; ++l) {
            const int C = FusedIDNEngine::layer_in(l), M = FusedIDNEngine::layer_out(l), kk = FusedIDNEngine::layer_kernel(l);
            bases.push_back(randn(std::size_t(M) * C, 1.0f / std::sqrt(float(C))));
            dws.push_back(randn(std::size_t(C) * kk, 1.4f / std::sqrt(float(kk))));
            std::vector<float> s = randn(C, 0.2f), d = randn(M, 0.2f);
            for (float& v : s) v += 1.0f;
            for (float& v : d) v = 1.0f + std::fabs(v);
            scales.push_back(s);
            demods.push_back(d);
        }
        std::vector<const float*> base_ptrs;
        std::array<IdentityLayer, 9> id{};
        for (int l = 0; l < 9; ++l) {
            base_ptrs.push_back(bases[l].data());
            id[l].depthwise = dws[l].data(), id[l].scale = scales[l].data(), id[l].demod = demods[l].data();
        }
        const int n = 2;
        const auto images = uniform(std::size_t(n) * 3 * S * S);
        std::vector<float> out[2];
        const KernelTable* sets[2] = {vec, ref};
        for (int i = 0; i < 2; ++i) {
            FusedIDNEngine engine(S, S, hw, base_ptrs, sets[i]);
            engine.set_identity_factored(id);
            out[i].assign(std::size_t(n) * 4 * S * S, 0.0f);
            engine.run(images.data(), n, out[i].data(), out[i].data() + std::size_t(n) * 3 * S * S, 2);
            if (bench > 0) {
                double best = 1e9;
                std::vector<double> stages(engine.stage_names().size(), 1e9);
                for (int r = 0; r < bench; ++r) {
                    const auto t0 = std::chrono::steady_clock::now();
                    engine.run(images.data(), 1, out[i].data(), out[i].data() + std::size_t(n) * 3 * S * S, 1);
                    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
                    for (std::size_t k = 0; k < stages.size(); ++k) stages[k] = std::min(stages[k], engine.stage_seconds()[k]);
                }
                std::printf("whole IDN %dx%d, 1 thread, '%s': best of %d %.2f ms; fastest per stage (ms):", S, S,
                            sets[i]->name, bench, best * 1e3);
                for (std::size_t k = 0; k < stages.size(); ++k)
                    std::printf("%s %s %.3f", k ? "," : "", engine.stage_names()[k].c_str(), stages[k] * 1e3);
                std::printf("\n");
                engine.run(images.data(), n, out[i].data(), out[i].data() + std::size_t(n) * 3 * S * S, 2);
            }
        }
        report("whole IDN 224x224, batch 2, factored", max_diff(out[0], out[1]));
    }
    std::printf(failures ? "%d case(s) FAILED\n" : "all cases within tolerance\n", failures);
    return failures ? 1 : 0;
}
