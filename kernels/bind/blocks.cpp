// mfs_fast._native: the kernel sets (isas, default_isa) and the per-block functions, each block
// testable alone (the FusedIDN runs the same kernels). Their arrays are read and checked as
// mfs_fast._cuda's are (idn_args.hpp); threads and isa are this module's own.
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <vector>

#include "../common.hpp"
#include "../fused_idn.hpp"
#include "../thread_pool.hpp"
#include "bind.hpp"
#include "idn_args.hpp"

namespace mfs_native {
namespace {
using namespace mfs_py;

// Per-thread scratch arenas for the block functions.
struct Arenas {
    std::vector<std::unique_ptr<float[], void (*)(void*)>> arenas;
    Arenas(int threads, std::size_t floats) {
        for (int i = 0; i < threads; ++i) arenas.push_back(mfs::alloc_scratch(floats + 64));
    }
    float* operator[](int i) { return arenas[i].get(); }
};

py::array encoder_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                        const py::object& scale_obj, const py::object& demod_obj, bool normalize, int threads,
                        const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    const EncoderBlockInputs in(x_obj, dw_obj, pw_obj, scale_obj, demod_obj);
    const py::ssize_t N = in.N, C = in.C, H = in.H, W = in.W, M = in.M;
    FloatArray out({N, M, H / 2, W / 2});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        const std::vector<float> kernel = in.scaled_kernel(in.scale);
        std::vector<float> a(mfs::packed_size(int(M), int(C)));
        mfs::pack_weights(fptr(in.pointwise), int(M), int(C), a.data());
        mfs::EncoderLayer L;
        L.C = int(C), L.H = int(H), L.W = int(W), L.dw = kernel.data(), L.normalize = normalize;
        L.pw.a = a.data(), L.pw.M = int(M), L.pw.K = int(C), L.pw.scale = in.demod.data(), L.pw.leaky = true;
        const int P = int((H / 2) * (W / 2));
        const auto tasks = mfs::plan_tasks(P, int(C), int(M), threads, k->nr);
        Arenas arenas(threads, mfs::encoder_scratch(L, mfs::max_tile(tasks), k->nr).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            L.x = fptr(in.x) + i * C * H * W;
            L.out = o + i * M * P;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int thread) {
                k->encoder_tile(L, tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1, arenas[thread]);
            });
        }
    }
    return std::move(out);
}

py::array upsample_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                         const py::object& dw_bias_obj, const py::object& pw_bias_obj, const py::object& scale_obj,
                         const py::object& demod_obj, const py::object& skip_obj, int threads, const std::string& isa,
                         const py::object& out_obj) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    const UpsampleBlockInputs in(x_obj, dw_obj, pw_obj, dw_bias_obj, pw_bias_obj, scale_obj, demod_obj, skip_obj);
    const py::ssize_t N = in.N, C = in.C, h = in.H, w = in.W, M = in.M, Cs = in.Cs;
    const py::ssize_t P = 4 * h * w;
    // out=: the caller's buffer (e.g. a TVM VM tensor), written in place; else a new array
    py::array out;
    if (out_obj.is_none()) {
        out = FloatArray({N, M + Cs, 2 * h, 2 * w});
    } else {
        out = nchw(out_obj, "out", true);
        expect_shape(out, "out", {{N, M + Cs, 2 * h, 2 * w}});
        if (overlaps(out, in.x) || (Cs && overlaps(out, in.skip)))
            throw std::invalid_argument("out must not overlap x or skip");
    }
    float* o = mptr(out);
    {
        py::gil_scoped_release release;
        const std::vector<float> kernel = in.scaled_kernel(in.scale);
        const std::vector<float> bias = BlockArrays::scaled_bias(in.dw_bias, in.scale);
        std::vector<float> a(mfs::packed_size(int(M), int(C)));
        mfs::pack_weights(fptr(in.pointwise), int(M), int(C), a.data());
        mfs::Interp rows, cols;
        rows.build(int(h));
        cols.build(int(w));
        mfs::UpLayer L;
        L.C = int(C), L.h = int(h), L.w = int(w), L.dw = kernel.data(), L.dw_bias = bias.empty() ? nullptr : bias.data(),
        L.rows = &rows, L.cols = &cols;
        L.pw.a = a.data(), L.pw.M = int(M), L.pw.K = int(C), L.pw.scale = in.demod.data(), L.pw.bias = in.pw_bias.data(),
        L.pw.leaky = true;
        const auto tasks = mfs::plan_tasks(int(P), int(C), int(M), threads, k->nr);
        Arenas arenas(threads, mfs::up_scratch(L, mfs::max_tile(tasks), k->nr).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            L.x = fptr(in.x) + i * C * h * w;
            L.out = o + i * (M + Cs) * P;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int thread) {
                k->up_tile(L, tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1, arenas[thread]);
            });
            if (Cs) std::memcpy(L.out + M * P, fptr(in.skip) + i * Cs * P, std::size_t(Cs * P) * sizeof(float));
        }
    }
    return out;
}

py::array pointwise(const py::object& x_obj, const py::object& w_obj, const py::object& scale_obj,
                    const py::object& bias_obj, bool leaky, int threads, const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    const PointwiseInputs in(x_obj, w_obj, scale_obj, bias_obj);
    const py::ssize_t N = in.N, K = in.K, M = in.M, P = in.H * in.W;
    FloatArray out({N, M, in.H, in.W});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<float> a(mfs::packed_size(int(M), int(K)));
        mfs::pack_weights(fptr(in.weight), int(M), int(K), a.data());
        mfs::Pointwise pw;
        pw.a = a.data(), pw.M = int(M), pw.K = int(K), pw.scale = in.scale.data(), pw.bias = in.bias.data(),
        pw.leaky = leaky;
        const auto tasks = mfs::plan_tasks(int(P), int(K), int(M), threads, k->nr);
        for (py::ssize_t i = 0; i < N; ++i) {
            const float* xi = fptr(in.x) + i * K * P;
            float* oi = o + i * M * P;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int) {
                k->pointwise_tile(pw, xi, std::size_t(P), tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1, oi,
                                  std::size_t(P));
            });
        }
    }
    return std::move(out);
}

void check_head_size(py::ssize_t, py::ssize_t w) {
    if ((2 * w) % 16)
        throw std::invalid_argument("x: the output width (2 x " + std::to_string(w) + ") must be a multiple of 16");
}

py::tuple output_head(const py::object& x_obj, const py::object& m5_obj, const py::object& image_obj,
                      const py::dict& weights, int threads, const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    const OutputHeadInputs in(x_obj, m5_obj, image_obj, weights, &check_head_size);
    const mfs::OutputHeadWeights& hw = in.weights;
    const py::ssize_t N = in.N, h = in.h, w = in.w, H = in.H, W = in.W;
    FloatArray faces({N, py::ssize_t(3), H, W}), masks({N, py::ssize_t(1), H, W});
    float* fo = faces.mutable_data();
    float* mo = masks.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<float> a(mfs::packed_size(8, 32)), z(std::size_t(8 * h * w));
        mfs::pack_weights(hw.final_w1.data(), 8, 32, a.data());
        mfs::Pointwise pw;
        pw.a = a.data(), pw.M = 8, pw.K = 32, pw.bias = hw.final_b1.data(), pw.leaky = false;
        mfs::Interp rows, cols;
        rows.build(int(h));
        cols.build(int(w));
        mfs::HeadLayer L;
        L.H = int(H), L.W = int(W), L.z = z.data(), L.w2 = hw.final_w2.data(), L.b2 = hw.final_b2.data(),
        L.w3 = hw.final_w3.data(), L.b3 = hw.final_b3.data(), L.wm = hw.mask_out_w.data(), L.bm = hw.mask_out_b.data(),
        L.rows = &rows, L.cols = &cols;
        const auto tasks = mfs::plan_tasks(int(h * w), 32, 8, threads, k->nr);
        const int bands = std::min<int>(int(H), mfs::round_up(mfs::ceil_div(int(H), 16), threads));
        Arenas arenas(threads, mfs::head_scratch(L, mfs::ceil_div(int(H), bands) + 1).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            const float* xi = fptr(in.x) + i * 32 * h * w;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int) {
                k->pointwise_tile(pw, xi, std::size_t(h * w), tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1,
                                  z.data(), std::size_t(h * w));
            });
            L.m5 = fptr(in.m5) + i * 2 * H * W;
            L.image = fptr(in.image) + i * 3 * H * W;
            L.faces = fo + i * 3 * H * W;
            L.masks = mo + i * H * W;
            mfs::global_pool().run(threads, bands, [&](int b, int thread) {
                const int y0 = int(std::int64_t(b) * H / bands), y1 = int(std::int64_t(b + 1) * H / bands);
                k->head_band(L, y0, y1, arenas[thread]);
            });
        }
    }
    return py::make_tuple(faces, masks);
}

}  // namespace

void bind_blocks(py::module_& m) {
    m.def("isas", &mfs::available_isas, "Kernel sets this CPU runs, best first (always ends with 'scalar')");
    m.def(
        "default_isa", [] { return std::string(mfs::select_kernels("auto")->name); },
        "The kernel set isa='auto' picks (MFS_FAST_ISA overrides the CPU's best)");
    m.def(
        "bf16_isa", []() -> py::object {
            if (mfs::kernels_avx512bf16() && mfs::cpu_has_avx512bf16()) return py::str("avx512bf16");
            return py::none();
        },
        "The kernel set with bfloat16 GEMMs this CPU runs (opt-in: never 'auto'), or None");
    m.def("encoder_block", &encoder_block, py::arg("x"), py::arg("depthwise"), py::arg("pointwise"),
          py::arg("scale") = py::none(), py::arg("demod") = py::none(), py::arg("normalize") = false,
          py::arg("threads") = 1, py::arg("isa") = "auto",
          "IDN encoder block on N x C x H x W: depthwise 4x4 stride 2 pad 1 -> pointwise (M x C) -> LeakyReLU(0.1).\n"
          "Modulated form: pointwise = W~. Factored form: pointwise = base W with scale s (C) and demod d (M):\n"
          "y[o] = d[o] * sum_i W[o,i] s[i] x[i]. normalize applies (x - 0.5) / 0.5 first.");
    m.def("upsample_block", &upsample_block, py::arg("x"), py::arg("depthwise"), py::arg("pointwise"),
          py::arg("depthwise_bias") = py::none(), py::arg("pointwise_bias") = py::none(), py::arg("scale") = py::none(),
          py::arg("demod") = py::none(), py::arg("skip") = py::none(), py::arg("threads") = 1, py::arg("isa") = "auto",
          py::arg("out") = py::none(),
          "IDN decoder / fusion-mask block: bilinear 2x (align_corners=True) -> depthwise 3x3 pad 1 (+bias) ->\n"
          "pointwise (+bias; scale/demod as in encoder_block) -> LeakyReLU(0.1); with skip, returns the concat\n"
          "[block output, skip] along channels (the block writes its slice of the concat buffer directly).\n"
          "out: an N x (M + skip channels) x 2h x 2w float32 buffer to write into (returned), else a new array.");
    m.def("pointwise", &pointwise, py::arg("x"), py::arg("weight"), py::arg("scale") = py::none(),
          py::arg("bias") = py::none(), py::arg("leaky") = false, py::arg("threads") = 1, py::arg("isa") = "auto",
          "1x1 convolution on the fused kernels' GEMM: act(scale[o] * sum_i W[o,i] x[i] + bias[o]).");
    m.def("output_head", &output_head, py::arg("x"), py::arg("mask_features"), py::arg("image"), py::arg("weights"),
          py::arg("threads") = 1, py::arg("isa") = "auto",
          "Output head + mask output + blend: x (N,32,h,w) decoder output, mask_features (N,2,2h,2w), image\n"
          "(N,3,2h,2w), weights {'final.0.weight' (8,32), 'final.0.bias', 'final.1.weight' (3,8,3,3), ...,\n"
          "'mask.out.weight' (1,2,3,3), 'mask.out.bias'} with BatchNorm folded. Returns (faces, masks).");
}

}  // namespace mfs_native
