// pybind11 entry point of mfs_fast's C++ core (imported as mfs_fast._native).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "fused_idn.hpp"
#include "modulation.hpp"
#include "pipeline.hpp"
#include "py_arrays.hpp"
#include "thread_pool.hpp"

namespace py = pybind11;
using namespace mfs_py;
using FloatArray = py::array_t<float, py::array::c_style>;

namespace {

// Inputs must already be C-contiguous float32 (no silent copies on the update path).
void require(const py::array& a, int ndim, const char* name) {
    if (!py::isinstance<FloatArray>(a) || !(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + " must be a C-contiguous float32 array");
    if (a.ndim() != ndim)
        throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
                                    std::to_string(a.ndim()));
}

// Fill caller-provided buffers in place: the zero-allocation form used by backends.
void modulate_demodulate_into(const py::array& base, const py::array& style, py::array& fused, py::array& scale,
                              py::array& demod, float eps) {
    require(base, 2, "base");
    require(style, 1, "style");
    require(fused, 2, "fused");
    require(scale, 1, "scale");
    require(demod, 1, "demod");
    const auto c_out = static_cast<std::size_t>(base.shape(0));
    const auto c_in = static_cast<std::size_t>(base.shape(1));
    if (static_cast<std::size_t>(style.shape(0)) != c_in || static_cast<std::size_t>(scale.shape(0)) != c_in)
        throw std::invalid_argument("style and scale must have c_in = " + std::to_string(c_in) + " entries");
    if (fused.shape(0) != base.shape(0) || fused.shape(1) != base.shape(1))
        throw std::invalid_argument("fused must have the shape of base");
    if (static_cast<std::size_t>(demod.shape(0)) != c_out)
        throw std::invalid_argument("demod must have c_out = " + std::to_string(c_out) + " entries");
    const float* b = static_cast<const float*>(base.data());
    const float* s = static_cast<const float*>(style.data());
    float* f = static_cast<float*>(fused.mutable_data());
    float* sc = static_cast<float*>(scale.mutable_data());
    float* d = static_cast<float*>(demod.mutable_data());
    py::gil_scoped_release release;
    mfs::modulate_demodulate(b, s, c_out, c_in, eps, f, sc, d);
}

py::tuple modulate_demodulate(const py::array& base, const py::array& style, float eps) {
    require(base, 2, "base");
    FloatArray fused({base.shape(0), base.shape(1)});
    FloatArray scale({base.shape(1)});
    FloatArray demod({base.shape(0)});
    py::array f = fused, sc = scale, d = demod;
    modulate_demodulate_into(base, style, f, sc, d, eps);
    return py::make_tuple(fused, scale, demod);
}

// ---------------------------------------------------------------------------------------------
// Array checks for the fused kernels (the shared ones: py_arrays.hpp).

// Optional per-channel vector (None or float32 (n,)).
const float* optional_vector(const py::object& obj, const std::string& name, py::ssize_t n, py::array& keep) {
    if (obj.is_none()) return nullptr;
    keep = float_array(obj, name);
    expect_shape(keep, name, {{n}});
    return fptr(keep);
}

int check_threads(int threads) {
    if (threads < 1 || threads > 256) throw std::invalid_argument("threads must be in [1, 256], got " + std::to_string(threads));
    return threads;
}


// Per-thread scratch arenas for the block functions.
struct Arenas {
    std::vector<std::unique_ptr<float[], void (*)(void*)>> arenas;
    Arenas(int threads, std::size_t floats) {
        for (int i = 0; i < threads; ++i) arenas.push_back(mfs::alloc_scratch(floats + 64));
    }
    float* operator[](int i) { return arenas[i].get(); }
};

// ---------------------------------------------------------------------------------------------
// Per-block functions (each block testable alone; the FusedIDN runs the same kernels).

py::array encoder_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                        const py::object& scale_obj, const py::object& demod_obj, bool normalize, int threads,
                        const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
    if (H < 2 || W < 2 || H % 2 || W % 2)
        throw std::invalid_argument("x: height and width must be even (stride 2), got " + shape_str(x));
    py::array dw = float_array(dw_obj, "depthwise"), pw = float_array(pw_obj, "pointwise");
    expect_shape(dw, "depthwise", {{C, 1, 4, 4}, {C, 4, 4}});
    const py::ssize_t M = pw.ndim() >= 1 ? pw.shape(0) : 0;
    expect_shape(pw, "pointwise", {{M, C}, {M, C, 1, 1}});
    if (M < 1) throw std::invalid_argument("pointwise must have at least one output channel");
    py::array s_keep, d_keep;
    const float* s = optional_vector(scale_obj, "scale", C, s_keep);
    const float* d = optional_vector(demod_obj, "demod", M, d_keep);
    FloatArray out({N, M, H / 2, W / 2});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<float> kernel(fptr(dw), fptr(dw) + C * 16);
        if (s)
            for (py::ssize_t c = 0; c < C; ++c)
                for (int t = 0; t < 16; ++t) kernel[c * 16 + t] *= s[c];
        std::vector<float> a(mfs::packed_size(int(M), int(C)));
        mfs::pack_weights(fptr(pw), int(M), int(C), a.data());
        mfs::EncoderLayer L;
        L.C = int(C), L.H = int(H), L.W = int(W), L.dw = kernel.data(), L.normalize = normalize;
        L.pw.a = a.data(), L.pw.M = int(M), L.pw.K = int(C), L.pw.scale = d, L.pw.leaky = true;
        const int P = int((H / 2) * (W / 2));
        const auto tasks = mfs::plan_tasks(P, int(C), int(M), threads, k->nr);
        Arenas arenas(threads, mfs::encoder_scratch(L, mfs::max_tile(tasks), k->nr).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            L.x = fptr(x) + i * C * H * W;
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
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), C = x.shape(1), h = x.shape(2), w = x.shape(3);
    py::array dw = float_array(dw_obj, "depthwise"), pw = float_array(pw_obj, "pointwise");
    expect_shape(dw, "depthwise", {{C, 1, 3, 3}, {C, 3, 3}});
    const py::ssize_t M = pw.ndim() >= 1 ? pw.shape(0) : 0;
    expect_shape(pw, "pointwise", {{M, C}, {M, C, 1, 1}});
    if (M < 1) throw std::invalid_argument("pointwise must have at least one output channel");
    py::array keep[4];
    const float* dwb = optional_vector(dw_bias_obj, "depthwise_bias", C, keep[0]);
    const float* pwb = optional_vector(pw_bias_obj, "pointwise_bias", M, keep[1]);
    const float* s = optional_vector(scale_obj, "scale", C, keep[2]);
    const float* d = optional_vector(demod_obj, "demod", M, keep[3]);
    py::array skip;
    py::ssize_t Cs = 0;
    if (!skip_obj.is_none()) {
        skip = nchw(skip_obj, "skip");
        Cs = skip.shape(1);
        expect_shape(skip, "skip", {{N, Cs, 2 * h, 2 * w}});
    }
    const py::ssize_t P = 4 * h * w;
    // out=: the caller's buffer (e.g. a TVM VM tensor), written in place; else a new array
    py::array out;
    if (out_obj.is_none()) {
        out = FloatArray({N, M + Cs, 2 * h, 2 * w});
    } else {
        out = nchw(out_obj, "out", true);
        expect_shape(out, "out", {{N, M + Cs, 2 * h, 2 * w}});
        if (overlaps(out, x) || (Cs && overlaps(out, skip)))
            throw std::invalid_argument("out must not overlap x or skip");
    }
    float* o = mptr(out);
    {
        py::gil_scoped_release release;
        // factored form: s scales the pointwise input, i.e. the depthwise output (kernel and bias)
        std::vector<float> kernel(fptr(dw), fptr(dw) + C * 9), bias;
        if (s) {
            for (py::ssize_t c = 0; c < C; ++c)
                for (int t = 0; t < 9; ++t) kernel[c * 9 + t] *= s[c];
            if (dwb) {
                bias.assign(dwb, dwb + C);
                for (py::ssize_t c = 0; c < C; ++c) bias[c] *= s[c];
                dwb = bias.data();
            }
        }
        std::vector<float> a(mfs::packed_size(int(M), int(C)));
        mfs::pack_weights(fptr(pw), int(M), int(C), a.data());
        mfs::Interp rows, cols;
        rows.build(int(h));
        cols.build(int(w));
        mfs::UpLayer L;
        L.C = int(C), L.h = int(h), L.w = int(w), L.dw = kernel.data(), L.dw_bias = dwb, L.rows = &rows, L.cols = &cols;
        L.pw.a = a.data(), L.pw.M = int(M), L.pw.K = int(C), L.pw.scale = d, L.pw.bias = pwb, L.pw.leaky = true;
        const auto tasks = mfs::plan_tasks(int(P), int(C), int(M), threads, k->nr);
        Arenas arenas(threads, mfs::up_scratch(L, mfs::max_tile(tasks), k->nr).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            L.x = fptr(x) + i * C * h * w;
            L.out = o + i * (M + Cs) * P;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int thread) {
                k->up_tile(L, tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1, arenas[thread]);
            });
            if (Cs) std::memcpy(L.out + M * P, fptr(skip) + i * Cs * P, std::size_t(Cs * P) * sizeof(float));
        }
    }
    return std::move(out);
}

py::array pointwise(const py::object& x_obj, const py::object& w_obj, const py::object& scale_obj,
                    const py::object& bias_obj, bool leaky, int threads, const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), K = x.shape(1), H = x.shape(2), W = x.shape(3);
    py::array w = float_array(w_obj, "weight");
    const py::ssize_t M = w.ndim() >= 1 ? w.shape(0) : 0;
    expect_shape(w, "weight", {{M, K}, {M, K, 1, 1}});
    if (M < 1) throw std::invalid_argument("weight must have at least one output channel");
    py::array keep[2];
    const float* s = optional_vector(scale_obj, "scale", M, keep[0]);
    const float* b = optional_vector(bias_obj, "bias", M, keep[1]);
    const py::ssize_t P = H * W;
    FloatArray out({N, M, H, W});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<float> a(mfs::packed_size(int(M), int(K)));
        mfs::pack_weights(fptr(w), int(M), int(K), a.data());
        mfs::Pointwise pw;
        pw.a = a.data(), pw.M = int(M), pw.K = int(K), pw.scale = s, pw.bias = b, pw.leaky = leaky;
        const auto tasks = mfs::plan_tasks(int(P), int(K), int(M), threads, k->nr);
        for (py::ssize_t i = 0; i < N; ++i) {
            const float* xi = fptr(x) + i * K * P;
            float* oi = o + i * M * P;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int) {
                k->pointwise_tile(pw, xi, std::size_t(P), tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1, oi,
                                  std::size_t(P));
            });
        }
    }
    return std::move(out);
}

// Copy a fixed weight into a vector after checking its shape.

py::tuple output_head(const py::object& x_obj, const py::object& m5_obj, const py::object& image_obj,
                      const py::dict& weights, int threads, const std::string& isa) {
    const mfs::KernelTable* k = mfs::select_kernels(isa);
    check_threads(threads);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), h = x.shape(2), w = x.shape(3), H = 2 * h, W = 2 * w;
    expect_shape(x, "x", {{N, mfs::FINAL_IN, h, w}});
    if (W % 16) throw std::invalid_argument("x: the output width (2 x " + std::to_string(w) + ") must be a multiple of 16");
    py::array m5 = nchw(m5_obj, "mask_features"), image = nchw(image_obj, "image");
    expect_shape(m5, "mask_features", {{N, 2, H, W}});
    expect_shape(image, "image", {{N, 3, H, W}});
    auto get = [&](const char* key, const std::vector<std::vector<py::ssize_t>>& shapes) {
        if (!weights.contains(key)) throw std::invalid_argument(std::string("weights: missing '") + key + "'");
        return weight_vector(weights[key], key, shapes);
    };
    const auto w1 = get("final.0.weight", {{8, 32}, {8, 32, 1, 1}}), b1 = get("final.0.bias", {{8}});
    const auto w2 = get("final.1.weight", {{3, 8, 3, 3}}), b2 = get("final.1.bias", {{3}});
    const auto w3 = get("final.2.weight", {{3, 3, 3, 3}}), b3 = get("final.2.bias", {{3}});
    const auto wm = get("mask.out.weight", {{1, 2, 3, 3}}), bm = get("mask.out.bias", {{1}});
    FloatArray faces({N, py::ssize_t(3), H, W}), masks({N, py::ssize_t(1), H, W});
    float* fo = faces.mutable_data();
    float* mo = masks.mutable_data();
    {
        py::gil_scoped_release release;
        std::vector<float> a(mfs::packed_size(8, 32)), z(std::size_t(8 * h * w));
        mfs::pack_weights(w1.data(), 8, 32, a.data());
        mfs::Pointwise pw;
        pw.a = a.data(), pw.M = 8, pw.K = 32, pw.bias = b1.data(), pw.leaky = false;
        mfs::Interp rows, cols;
        rows.build(int(h));
        cols.build(int(w));
        mfs::HeadLayer L;
        L.H = int(H), L.W = int(W), L.z = z.data(), L.w2 = w2.data(), L.b2 = b2.data(), L.w3 = w3.data(),
        L.b3 = b3.data(), L.wm = wm.data(), L.bm = bm.data(), L.rows = &rows, L.cols = &cols;
        const auto tasks = mfs::plan_tasks(int(h * w), 32, 8, threads, k->nr);
        const int bands = std::min<int>(int(H), mfs::round_up(mfs::ceil_div(int(H), 16), threads));
        Arenas arenas(threads, mfs::head_scratch(L, mfs::ceil_div(int(H), bands) + 1).total);
        for (py::ssize_t i = 0; i < N; ++i) {
            const float* xi = fptr(x) + i * 32 * h * w;
            mfs::global_pool().run(threads, int(tasks.size()), [&](int t, int) {
                k->pointwise_tile(pw, xi, std::size_t(h * w), tasks[t].p0, tasks[t].p1, tasks[t].m0, tasks[t].m1,
                                  z.data(), std::size_t(h * w));
            });
            L.m5 = fptr(m5) + i * 2 * H * W;
            L.image = fptr(image) + i * 3 * H * W;
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

// ---------------------------------------------------------------------------------------------
// The whole IDN.

class PyFusedIDN {
public:
    PyFusedIDN(int height, int width, const py::dict& heads, const py::object& bases, const std::string& isa) {
        if (height <= 0 || width <= 0 || height % 32 || width % 32)
            throw std::invalid_argument("IDN input sides must be positive multiples of 32 (5 stride-2 stages), got " +
                                        std::to_string(height) + "x" + std::to_string(width));
        const mfs::KernelTable* k = mfs::select_kernels(isa);
        mfs::HeadWeights hw;
        read_head_weights(heads, mfs::MASK_CH, mfs::IDN_MASK, hw);
        std::vector<py::array> keep;
        std::vector<const float*> base_ptrs;
        if (!bases.is_none()) {
            py::sequence seq = bases;
            if (py::len(seq) != 9) throw std::invalid_argument("bases must hold 9 arrays (encoder 0-4, decoder 0-3)");
            for (int l = 0; l < 9; ++l) {
                const std::string name = "bases[" + std::to_string(l) + "]";
                keep.push_back(float_array(seq[l], name));
                expect_shape(keep.back(), name, pointwise_shapes(l));
                base_ptrs.push_back(fptr(keep.back()));
            }
        }
        engine_ = std::make_unique<mfs::FusedIDNEngine>(height, width, std::move(hw), base_ptrs, k);
    }

    void set_identity_factored(const py::sequence& depthwise, const py::sequence& scale, const py::sequence& demod) {
        if (!engine_->has_bases())
            throw std::invalid_argument("the factored pointwise form needs the base kernels: construct with bases=[...]");
        std::vector<py::array> keep;
        std::array<mfs::IdentityLayer, 9> layers{};
        check_layer_count(depthwise, "depthwise");
        check_layer_count(scale, "scale");
        check_layer_count(demod, "demod");
        for (int l = 0; l < 9; ++l) {
            layers[l].depthwise = identity_array(depthwise[l], "depthwise", l, depthwise_shapes(l), keep);
            layers[l].scale = identity_array(scale[l], "scale", l, {{in(l)}}, keep);
            layers[l].demod = identity_array(demod[l], "demod", l, {{out(l)}}, keep);
        }
        py::gil_scoped_release release;
        engine_->set_identity_factored(layers);
    }

    void set_identity_modulated(const py::sequence& depthwise, const py::sequence& pointwise) {
        std::vector<py::array> keep;
        std::array<mfs::IdentityLayer, 9> layers{};
        check_layer_count(depthwise, "depthwise");
        check_layer_count(pointwise, "pointwise");
        for (int l = 0; l < 9; ++l) {
            layers[l].depthwise = identity_array(depthwise[l], "depthwise", l, depthwise_shapes(l), keep);
            layers[l].pointwise = identity_array(pointwise[l], "pointwise", l, pointwise_shapes(l), keep);
        }
        py::gil_scoped_release release;
        engine_->set_identity_modulated(layers);
    }

    // (address, copy) of a layer's packed base kernel: lets tests prove that identity changes
    // never repack (or move) W.
    py::tuple packed_base(int layer) const {
        if (layer < 0 || layer >= 9) throw std::invalid_argument("layer must be in [0, 9), got " + std::to_string(layer));
        const std::vector<float>& w = engine_->base_packed(layer);
        FloatArray copy({py::ssize_t(w.size())});
        std::copy(w.begin(), w.end(), copy.mutable_data());
        return py::make_tuple(reinterpret_cast<std::uintptr_t>(w.data()), copy);
    }

    void set_base(int layer, const py::object& w_obj) {
        if (layer < 0 || layer >= 9) throw std::invalid_argument("layer must be in [0, 9), got " + std::to_string(layer));
        py::array w = float_array(w_obj, "weight");
        expect_shape(w, "weight", pointwise_shapes(layer));
        py::gil_scoped_release release;
        engine_->set_base(layer, fptr(w));
    }

    void run(const py::object& images_obj, const py::object& faces_obj, const py::object& masks_obj, int threads) {
        check_threads(threads);
        py::array images = nchw(images_obj, "images");
        py::array faces = nchw(faces_obj, "faces", true);
        py::array masks = nchw(masks_obj, "masks", true);
        const py::ssize_t N = images.shape(0), H = engine_->height(), W = engine_->width();
        if (images.shape(1) != 3 || images.shape(2) != H || images.shape(3) != W)
            throw std::invalid_argument("images must have shape (N, 3, " + std::to_string(H) + ", " + std::to_string(W) +
                                        ") for this FusedIDN (built for " + std::to_string(H) + "x" +
                                        std::to_string(W) + "), got " + shape_str(images));
        expect_shape(faces, "faces", {{N, 3, H, W}});
        expect_shape(masks, "masks", {{N, 1, H, W}});
        if (overlaps(masks, faces) || overlaps(masks, images))
            throw std::invalid_argument("masks must not overlap images or faces");
        if (!engine_->has_identity()) throw std::invalid_argument("no identity set: call set_identity_* first");
        const float* in = fptr(images);
        float* f = mptr(faces);
        float* m = mptr(masks);
        py::gil_scoped_release release;
        engine_->run(in, int(N), f, m, threads);
    }

    py::dict stage_seconds() const {
        py::dict d;
        const auto names = mfs::FusedIDNEngine::stage_names();
        const auto& secs = engine_->stage_seconds();
        for (std::size_t i = 0; i < secs.size(); ++i) d[py::str(names[i])] = secs[i];
        return d;
    }

    int height() const { return engine_->height(); }
    int width() const { return engine_->width(); }
    std::string isa() const { return engine_->kernels().name; }
    std::string form() const { return engine_->form(); }
    bool has_identity() const { return engine_->has_identity(); }
    mfs::FusedIDNEngine& engine() { return *engine_; }

private:
    static py::ssize_t in(int l) { return mfs::FusedIDNEngine::layer_in(l); }
    static py::ssize_t out(int l) { return mfs::FusedIDNEngine::layer_out(l); }
    static std::vector<std::vector<py::ssize_t>> depthwise_shapes(int l) {
        const py::ssize_t k = l < mfs::IDN_ENC ? 4 : 3;
        return {{in(l), 1, k, k}, {in(l), k, k}};
    }
    static std::vector<std::vector<py::ssize_t>> pointwise_shapes(int l) { return {{out(l), in(l)}, {out(l), in(l), 1, 1}}; }

    std::unique_ptr<mfs::FusedIDNEngine> engine_;
};


// ---------------------------------------------------------------------------------------------
// The pipeline core: align -> IDN -> blend on whole BGR frames (pipeline.hpp).

// A BGR uint8 frame, used in place (never converted or copied).
py::array frame_array(const py::handle& obj, const std::string& name, bool writable) {
    if (!py::isinstance<py::array>(obj))
        throw std::invalid_argument(name + " must be a numpy uint8 array (H x W x 3, BGR), got " +
                                    std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!py::isinstance<py::array_t<std::uint8_t>>(a))
        throw std::invalid_argument(name + " must be uint8 (H x W x 3, BGR), got dtype " + std::string(py::str(a.dtype())));
    if (a.ndim() != 3 || a.shape(2) != 3)
        throw std::invalid_argument(name + " must have shape (H, W, 3) (BGR), got " + shape_str(a));
    if (a.shape(0) < 1 || a.shape(1) < 1) throw std::invalid_argument(name + " is empty: shape " + shape_str(a));
    if (!(a.flags() & py::array::c_style))
        throw std::invalid_argument(name + " must be C-contiguous (use np.ascontiguousarray)");
    if (writable && !a.writeable()) throw std::invalid_argument(name + " must be writable");
    if (a.nbytes() > (py::ssize_t(1) << 31) - 64) throw std::invalid_argument(name + " is too large (2 GiB at most)");
    return a;
}

// Small per-face float arrays (landmarks F x 5 x 2, matrices F x 2 x 3): converted to float32.
py::array_t<float> face_floats(const py::handle& obj, const std::string& name, py::ssize_t rows, py::ssize_t cols) {
    const std::string expected = "(F, " + std::to_string(rows) + ", " + std::to_string(cols) + ") or (" +
                                 std::to_string(rows) + ", " + std::to_string(cols) + ")";
    auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!a) throw std::invalid_argument(name + " must be a float array of shape " + expected);
    const bool one = a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols;
    const bool many = a.ndim() == 3 && a.shape(1) == rows && a.shape(2) == cols;
    if (!one && !many) throw std::invalid_argument(name + " must have shape " + expected + ", got " + shape_str(a));
    const float* p = a.data();
    for (py::ssize_t i = 0; i < a.size(); ++i)
        if (!std::isfinite(p[i])) throw std::invalid_argument(name + " must be finite");
    return a;
}
py::ssize_t faces_in(const py::array& a) { return a.ndim() == 2 ? 1 : a.shape(0); }

// The frame -> crop matrices: given, or fitted to the landmarks.
std::vector<float> face_matrices(const py::object& landmarks_obj, const py::object& matrices_obj, int size) {
    if (!matrices_obj.is_none()) {
        auto m = face_floats(matrices_obj, "matrices", 2, 3);
        if (!landmarks_obj.is_none()) {
            auto l = face_floats(landmarks_obj, "landmarks", 5, 2);
            if (faces_in(l) != faces_in(m))
                throw std::invalid_argument("landmarks and matrices must describe the same faces: " +
                                            std::to_string(faces_in(l)) + " vs " + std::to_string(faces_in(m)));
        }
        return std::vector<float>(m.data(), m.data() + m.size());
    }
    if (landmarks_obj.is_none()) throw std::invalid_argument("give landmarks (F x 5 x 2) or matrices (F x 2 x 3)");
    auto l = face_floats(landmarks_obj, "landmarks", 5, 2);
    const py::ssize_t F = faces_in(l);
    std::vector<float> out(std::size_t(F) * 6);
    for (py::ssize_t f = 0; f < F; ++f)
        if (!mfs::alignment_matrix(l.data() + 10 * f, size, out.data() + 6 * f))
            throw std::invalid_argument("landmarks of face " + std::to_string(f) + " are collinear: no alignment");
    return out;
}

int check_size(int size) {
    if (size < 32 || size % 32) throw std::invalid_argument("size must be a positive multiple of 32, got " + std::to_string(size));
    return size;
}

py::array alignment_matrix_py(const py::object& landmarks, int size) {
    if (size < 1) throw std::invalid_argument("size must be positive");
    const std::vector<float> m = face_matrices(landmarks, py::none(), size);
    auto l = face_floats(landmarks, "landmarks", 5, 2);
    FloatArray out = l.ndim() == 2 ? FloatArray({py::ssize_t(2), py::ssize_t(3)})
                                   : FloatArray({faces_in(l), py::ssize_t(2), py::ssize_t(3)});
    std::copy(m.begin(), m.end(), out.mutable_data());
    return std::move(out);
}

py::array warp_faces_py(const py::object& frame_obj, const py::object& matrices_obj, int size, int threads,
                        const std::string& isa) {
    const mfs::PipelineKernels* k = mfs::pipeline_kernels_for(mfs::select_kernels(isa)->name);
    check_threads(threads);
    check_size(size);
    py::array frame = frame_array(frame_obj, "frame", false);
    const std::vector<float> m = face_matrices(py::none(), matrices_obj, size);
    const int F = int(m.size() / 6), H = int(frame.shape(0)), W = int(frame.shape(1));
    FloatArray crops({py::ssize_t(F), py::ssize_t(3), py::ssize_t(size), py::ssize_t(size)});
    const auto* src = static_cast<const std::uint8_t*>(frame.data());
    float* dst = crops.mutable_data();
    int bad = -1;
    bool ok;
    {
        py::gil_scoped_release release;
        ok = mfs::warp_faces(*k, src, H, W, m.data(), F, size, dst, threads, &bad);
    }
    if (!ok) throw std::invalid_argument("matrices[" + std::to_string(bad) + "] is singular");
    return std::move(crops);
}

py::array blend_mask_py(const py::object& mask_obj) {
    py::array m = float_array(mask_obj, "mask");
    const py::ssize_t S = m.ndim() >= 1 ? m.shape(m.ndim() - 1) : 0;
    expect_shape(m, "mask", {{S, S}, {1, S, S}});
    if (S < 21) throw std::invalid_argument("mask must be at least 21 x 21");
    FloatArray out({S, S});
    const float* src = fptr(m);
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        const std::vector<float> fade = mfs::border_fade(int(S));
        mfs::MaskScratch scratch;
        mfs::mask_postprocess(src, int(S), fade.data(), scratch, dst);
    }
    return std::move(out);
}

void paste_faces_py(const py::object& frame_obj, const py::object& matrices_obj, const py::object& faces_obj,
                    const py::object& masks_obj, int threads, const std::string& isa) {
    const mfs::PipelineKernels* k = mfs::pipeline_kernels_for(mfs::select_kernels(isa)->name);
    check_threads(threads);
    py::array frame = frame_array(frame_obj, "frame", true);
    py::array faces = nchw(faces_obj, "faces"), masks = nchw(masks_obj, "masks");
    const py::ssize_t F = faces.shape(0), S = faces.shape(3);
    expect_shape(faces, "faces", {{F, 3, S, S}});
    expect_shape(masks, "masks", {{F, 1, S, S}});
    if (S < 21) throw std::invalid_argument("faces must be at least 21 x 21");
    const std::vector<float> m = face_matrices(py::none(), matrices_obj, int(S));
    if (py::ssize_t(m.size() / 6) != F)
        throw std::invalid_argument("matrices must have one 2 x 3 matrix per face (" + std::to_string(F) + ")");
    const int H = int(frame.shape(0)), W = int(frame.shape(1));
    auto* dst = static_cast<std::uint8_t*>(frame.mutable_data());
    const float* fp = fptr(faces);
    const float* mp = fptr(masks);
    int bad = -1;
    bool ok;
    {
        py::gil_scoped_release release;
        const std::size_t plane = std::size_t(S) * S;
        const std::vector<float> fade = mfs::border_fade(int(S));
        std::vector<float> blend(std::size_t(F) * plane);
        mfs::MaskScratch scratch;
        for (py::ssize_t f = 0; f < F; ++f) mfs::mask_postprocess(mp + f * plane, int(S), fade.data(), scratch, blend.data() + f * plane);
        ok = mfs::paste_faces(*k, dst, H, W, m.data(), int(F), int(S), fp, blend.data(), threads, &bad);
    }
    if (!ok) throw std::invalid_argument("matrices[" + std::to_string(bad) + "] is singular");
}

class PyPipelineCore {
public:
    PyPipelineCore(const py::object& engine, const std::string& isa) : engine_obj_(engine) {
        if (!py::isinstance<PyFusedIDN>(engine))
            throw std::invalid_argument("engine must be a mfs_fast._native.FusedIDN, got " +
                                        std::string(py::str(py::type::handle_of(engine).attr("__name__"))));
        mfs::FusedIDNEngine& e = engine.cast<PyFusedIDN&>().engine();
        const std::string name = isa == "auto" ? std::string(e.kernels().name) : std::string(mfs::select_kernels(isa)->name);
        core_ = std::make_unique<mfs::PipelineCore>(e, mfs::pipeline_kernels_for(name));
    }

    py::object swap(const py::object& frame_obj, const py::object& landmarks, const py::object& matrices,
                    const py::object& out_obj, int threads) {
        check_threads(threads);
        const bool in_place = out_obj.is_none();
        py::array frame = frame_array(frame_obj, "frame", in_place);
        py::array out = in_place ? frame : frame_array(out_obj, "out", true);
        if (!in_place) {
            if (out.shape(0) != frame.shape(0) || out.shape(1) != frame.shape(1))
                throw std::invalid_argument("out must have the frame's shape " + shape_str(frame) + ", got " + shape_str(out));
            if (out.data() != frame.data() && overlaps(out, frame))
                throw std::invalid_argument("out must be the frame itself or not overlap it");
        }
        const std::vector<float> m = face_matrices(landmarks, matrices, core_->size());
        const int F = int(m.size() / 6), H = int(frame.shape(0)), W = int(frame.shape(1));
        const auto* src = static_cast<const std::uint8_t*>(frame.data());
        auto* dst = static_cast<std::uint8_t*>(out.mutable_data());
        {
            py::gil_scoped_release release;
            core_->swap(src, dst, H, W, m.data(), F, threads);
        }
        return std::move(out);
    }

    py::dict seconds() const {
        py::dict d;
        const auto names = mfs::PipelineCore::stage_names();
        for (std::size_t i = 0; i < names.size(); ++i) d[py::str(names[i])] = core_->seconds()[i];
        return d;
    }
    int size() const { return core_->size(); }
    std::string isa() const { return core_->isa(); }
    py::object engine() const { return engine_obj_; }
    float detail() const { return core_->detail(); }
    void set_detail(float sigma) { core_->set_detail(sigma); }

private:
    py::object engine_obj_;  // keeps the FusedIDN (and its engine) alive
    std::unique_ptr<mfs::PipelineCore> core_;
};

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "mfs_fast C++ core";
    m.def("modulate_demodulate", &modulate_demodulate, py::arg("base"), py::arg("style"), py::arg("eps") = 1e-16f,
          "(W [c_out, c_in], style [c_in]) -> (fused W~, scale 1+style, demod d)");
    m.def("modulate_demodulate_into", &modulate_demodulate_into, py::arg("base"), py::arg("style"), py::arg("fused"),
          py::arg("scale"), py::arg("demod"), py::arg("eps") = 1e-16f,
          "In-place form writing into caller-owned float32 buffers");

    m.def("isas", &mfs::available_isas, "Kernel sets this CPU runs, best first (always ends with 'scalar')");
    m.def(
        "default_isa", [] { return std::string(mfs::select_kernels("auto")->name); },
        "The kernel set isa='auto' picks (MFS_FAST_ISA overrides the CPU's best)");
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

    py::class_<PyFusedIDN>(m, "FusedIDN",
                           "The whole IDN forward on the fused kernels for one input size. heads: folded fixed\n"
                           "weights (see mfs_fast.fused); bases: the 9 base pointwise kernels W (factored form) or None.")
        .def(py::init<int, int, const py::dict&, const py::object&, const std::string&>(), py::arg("height"),
             py::arg("width"), py::arg("heads"), py::arg("bases") = py::none(), py::arg("isa") = "auto")
        .def("set_identity_factored", &PyFusedIDN::set_identity_factored, py::arg("depthwise"), py::arg("scale"),
             py::arg("demod"),
             "Per-identity depthwise kernels and modulation vectors s, d of the 9 layers (O(C) each; W is not repacked)")
        .def("set_identity_modulated", &PyFusedIDN::set_identity_modulated, py::arg("depthwise"), py::arg("pointwise"),
             "Per-identity depthwise kernels and fused pointwise kernels W~ of the 9 layers (W~ is packed here)")
        .def("packed_base", &PyFusedIDN::packed_base, py::arg("layer"),
             "(address, copy) of a layer's packed base pointwise kernel (empty in the modulated form)")
        .def("set_base", &PyFusedIDN::set_base, py::arg("layer"), py::arg("weight"),
             "Replace and repack one base pointwise kernel (layers: encoder 0-4, decoder 0-3)")
        .def("run", &PyFusedIDN::run, py::arg("images"), py::arg("faces"), py::arg("masks"), py::arg("threads") = 1,
             "images (N,3,H,W) float32 in [0,1] -> writes faces (N,3,H,W) and masks (N,1,H,W) in place")
        .def("stage_seconds", &PyFusedIDN::stage_seconds, "Seconds per stage of the last run (all its images)")
        .def_property_readonly("height", &PyFusedIDN::height)
        .def_property_readonly("width", &PyFusedIDN::width)
        .def_property_readonly("isa", &PyFusedIDN::isa)
        .def_property_readonly("form", &PyFusedIDN::form)
        .def_property_readonly("has_identity", &PyFusedIDN::has_identity);


    m.def("alignment_matrix", &alignment_matrix_py, py::arg("landmarks"), py::arg("size") = 224,
          "Least-squares affine (F, 2, 3) (or (2, 3)) from 5 landmarks (F, 5, 2) to the ArcFace template at size\n"
          "(as mfs_fast.face.align.alignment_matrix); ValueError for collinear landmarks.");
    m.def("warp_faces", &warp_faces_py, py::arg("frame"), py::arg("matrices"), py::arg("size") = 224,
          py::arg("threads") = 1, py::arg("isa") = "auto",
          "Aligned crops (F, 3, size, size), RGB float32 in [0, 1], of a BGR uint8 frame (H, W, 3): what\n"
          "cv2.warpAffine(frame, matrices[f], (size, size)) / 255 gives, bit for bit where the CPU has FMA.");
    m.def("blend_mask", &blend_mask_py, py::arg("mask"),
          "The official paste mask (S, S) from an IDN fusion mask (S, S): binarise > 0.001, dilate 11x11,\n"
          "erode 11x11 twice, box blur 7x7, times the border fade (mfs_fast.face.paste.blend_mask).");
    m.def("paste_faces", &paste_faces_py, py::arg("frame"), py::arg("matrices"), py::arg("faces"), py::arg("masks"),
          py::arg("threads") = 1, py::arg("isa") = "auto",
          "Blend IDN outputs faces (F, 3, S, S) RGB [0, 1] with their raw fusion masks (F, 1, S, S) back into\n"
          "frame (H, W, 3) BGR uint8 in place, face by face (mfs_fast.face.paste.paste_back).");

    py::class_<PyPipelineCore>(m, "PipelineCore",
                               "align -> IDN -> blend of whole frames on a FusedIDN (shared with it: identity\n"
                               "changes made through the FusedIDN apply here). The GIL is released while it works.")
        .def(py::init<const py::object&, const std::string&>(), py::arg("engine"), py::arg("isa") = "auto")
        .def("swap", &PyPipelineCore::swap, py::arg("frame"), py::arg("landmarks") = py::none(),
             py::arg("matrices") = py::none(), py::arg("out") = py::none(), py::arg("threads") = 1,
             "Swap the faces given by landmarks (F, 5, 2) or frame -> crop matrices (F, 2, 3) in frame (H, W, 3)\n"
             "BGR uint8, C-contiguous: in place (out=None) or into out (the frame is copied there first).\n"
             "Returns the array written.")
        .def("seconds", &PyPipelineCore::seconds,
             "Seconds per stage of the last swap: copy, warp, idn, mask, detail, paste")
        .def_property("detail", &PyPipelineCore::detail, &PyPipelineCore::set_detail,
                      "Keep the frame's detail finer than this many crop pixels (0: the official blend)")
        .def_property_readonly("size", &PyPipelineCore::size)
        .def_property_readonly("isa", &PyPipelineCore::isa)
        .def_property_readonly("engine", &PyPipelineCore::engine);

    m.attr("compiler") = py::str(
#if defined(__clang__)
        "clang " __clang_version__
#elif defined(__GNUC__)
        "gcc " __VERSION__
#else
        "unknown"
#endif
    );
}
