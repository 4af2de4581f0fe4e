// The argument checks of the IDN bindings that both pybind11 modules share: mfs_fast._native
// (kernels/bind/) and mfs_fast._cuda (kernels/cuda/bind/) bind the same per-block functions and
// the same engine methods, so they read and check their arrays here, with the same messages.
// Each module adds only what is its own (threads and isa on the CPU; the tile configuration and
// the device on CUDA). The generic NumPy checks are py_arrays.hpp's.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "../head_weights.hpp"
#include "../py_arrays.hpp"

// The types here hold py::array fields and are hidden like pybind11's own (no -Wattributes
// warning where a module is compiled without -fvisibility=hidden, as emulate.py does).
#if defined(__GNUC__)
#define MFS_PY_HIDDEN __attribute__((visibility("hidden")))
#else
#define MFS_PY_HIDDEN
#endif

namespace mfs_py {

using Shapes = std::vector<std::vector<py::ssize_t>>;

// ------------------------------------------------------------------------------ shapes
// Identity layer l's depthwise kernel (C, 1, k, k) or (C, k, k) and pointwise kernel (M, C[, 1, 1]).
inline Shapes depthwise_shapes(int l) {
    const py::ssize_t C = mfs::layer_in(l), k = l < mfs::IDN_ENC ? 4 : 3;
    return {{C, 1, k, k}, {C, k, k}};
}
inline Shapes pointwise_shapes(int l) {
    const py::ssize_t M = mfs::layer_out(l), C = mfs::layer_in(l);
    return {{M, C}, {M, C, 1, 1}};
}

// A pointwise kernel (M, K) or (M, K, 1, 1) with at least one row: returns M.
inline py::ssize_t pointwise_rows(const py::array& a, const std::string& name, py::ssize_t K) {
    const py::ssize_t M = a.ndim() >= 1 ? a.shape(0) : 0;
    expect_shape(a, name, {{M, K}, {M, K, 1, 1}});
    if (M < 1) throw std::invalid_argument(name + " must have at least one output channel");
    return M;
}

// An optional per-channel vector: None or float32 (n,).
class MFS_PY_HIDDEN OptionalVector {
public:
    OptionalVector() = default;
    OptionalVector(const py::object& obj, const std::string& name, py::ssize_t n) {
        if (obj.is_none()) return;
        a_ = float_array(obj, name);
        expect_shape(*a_, name, {{n}});
    }
    const float* data() const { return a_ ? fptr(*a_) : nullptr; }  // null for None
    std::vector<float> copy() const {                                // empty for None
        return a_ ? std::vector<float>(data(), data() + a_->size()) : std::vector<float>{};
    }

private:
    std::optional<py::array> a_;
};

// ------------------------------------------------------------------------------ blocks
// x (N, C, H, W), depthwise (C, [1,] k, k), pointwise (M, C[, 1, 1]): what encoder_block (k = 4,
// stride 2: H and W even) and upsample_block (k = 3) take first.
struct MFS_PY_HIDDEN BlockArrays {
    py::array x, depthwise, pointwise;
    py::ssize_t N = 0, C = 0, H = 0, W = 0, M = 0, taps = 0;

    BlockArrays(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj, py::ssize_t k)
        : x(nchw(x_obj, "x")), N(x.shape(0)), C(x.shape(1)), H(x.shape(2)), W(x.shape(3)), taps(k * k) {
        if (k == 4 && (H < 2 || W < 2 || H % 2 || W % 2))
            throw std::invalid_argument("x: height and width must be even (stride 2), got " + shape_str(x));
        depthwise = float_array(dw_obj, "depthwise");
        pointwise = float_array(pw_obj, "pointwise");
        expect_shape(depthwise, "depthwise", {{C, 1, k, k}, {C, k, k}});
        M = pointwise_rows(pointwise, "pointwise", C);
    }

    // Factored form: the modulation scale s multiplies the pointwise input, i.e. the depthwise
    // output, so it is folded into the depthwise kernel (k[c] * s[c]) and bias (b[c] * s[c]).
    std::vector<float> scaled_kernel(const OptionalVector& s) const {
        std::vector<float> kernel(fptr(depthwise), fptr(depthwise) + C * taps);
        if (const float* sp = s.data())
            for (py::ssize_t c = 0; c < C; ++c)
                for (py::ssize_t t = 0; t < taps; ++t) kernel[c * taps + t] *= sp[c];
        return kernel;
    }
    static std::vector<float> scaled_bias(const OptionalVector& bias, const OptionalVector& s) {
        std::vector<float> b = bias.copy();
        if (const float* sp = s.data())
            for (std::size_t c = 0; c < b.size(); ++c) b[c] *= sp[c];
        return b;
    }
};

// encoder_block(x, depthwise, pointwise, scale (C) or None, demod (M) or None, ...).
struct MFS_PY_HIDDEN EncoderBlockInputs : BlockArrays {
    OptionalVector scale, demod;
    EncoderBlockInputs(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                       const py::object& scale_obj, const py::object& demod_obj)
        : BlockArrays(x_obj, dw_obj, pw_obj, 4), scale(scale_obj, "scale", C), demod(demod_obj, "demod", M) {}
};

// upsample_block(x, depthwise, pointwise, depthwise_bias (C), pointwise_bias (M), scale (C),
// demod (M), skip (N, Cs, 2H, 2W), ...), each optional one None or the array.
struct MFS_PY_HIDDEN UpsampleBlockInputs : BlockArrays {
    OptionalVector dw_bias, pw_bias, scale, demod;
    py::array skip;
    py::ssize_t Cs = 0;  // skip channels (0: no skip)
    UpsampleBlockInputs(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                        const py::object& dw_bias_obj, const py::object& pw_bias_obj, const py::object& scale_obj,
                        const py::object& demod_obj, const py::object& skip_obj)
        : BlockArrays(x_obj, dw_obj, pw_obj, 3), dw_bias(dw_bias_obj, "depthwise_bias", C),
          pw_bias(pw_bias_obj, "pointwise_bias", M), scale(scale_obj, "scale", C), demod(demod_obj, "demod", M) {
        if (!skip_obj.is_none()) {
            skip = nchw(skip_obj, "skip");
            Cs = skip.shape(1);
            expect_shape(skip, "skip", {{N, Cs, 2 * H, 2 * W}});
        }
    }
};

// pointwise(x (N, K, H, W), weight (M, K[, 1, 1]), scale (M) or None, bias (M) or None, ...).
struct MFS_PY_HIDDEN PointwiseInputs {
    py::array x, weight;
    py::ssize_t N = 0, K = 0, H = 0, W = 0, M = 0;
    OptionalVector scale, bias;
    PointwiseInputs(const py::object& x_obj, const py::object& w_obj, const py::object& scale_obj,
                    const py::object& bias_obj)
        : x(nchw(x_obj, "x")), weight(float_array(w_obj, "weight")), N(x.shape(0)), K(x.shape(1)), H(x.shape(2)),
          W(x.shape(3)), M(pointwise_rows(weight, "weight", K)), scale(scale_obj, "scale", M),
          bias(bias_obj, "bias", M) {}
};

// ------------------------------------------------------------------------------ head weights
// Weight arrays out of a dict: "<what>: missing '<key>'" when absent, each array named
// <what>['<key>'] (qualified) or plain <key> in the messages.
struct MFS_PY_HIDDEN WeightDict {
    const py::dict& dict;
    std::string what;
    bool qualified;
    std::vector<float> operator()(const std::string& key, const Shapes& shapes) const {
        if (!dict.contains(key.c_str())) throw std::invalid_argument(what + ": missing '" + key + "'");
        return weight_vector(dict[key.c_str()], qualified ? what + "['" + key + "']" : key, shapes);
    }
};

// The output head's entries (mask.out.*, final.*) of the dict mfs_fast.fused.head_weights() makes.
inline void read_output_head_weights(const WeightDict& get, mfs::OutputHeadWeights& hw) {
    hw.mask_out_w = get("mask.out.weight", {{1, 2, 3, 3}});
    hw.mask_out_b = get("mask.out.bias", {{1}});
    hw.final_w1 = get("final.0.weight", {{8, 32}, {8, 32, 1, 1}});
    hw.final_b1 = get("final.0.bias", {{8}});
    hw.final_w2 = get("final.1.weight", {{3, 8, 3, 3}});
    hw.final_b2 = get("final.1.bias", {{3}});
    hw.final_w3 = get("final.2.weight", {{3, 3, 3, 3}});
    hw.final_b3 = get("final.2.bias", {{3}});
}

// The IDN's fixed head weights (fusion-mask branch, output head) out of the dict `heads` that
// mfs_fast.fused.head_weights() makes: what both engines are built with.
inline mfs::HeadWeights read_head_weights(const py::dict& heads) {
    const WeightDict get{heads, "heads", true};
    mfs::HeadWeights hw;
    for (int i = 0; i < mfs::IDN_MASK; ++i) {
        const py::ssize_t C = mfs::MASK_CH[i], M = mfs::MASK_CH[i + 1];
        const std::string p = "mask." + std::to_string(i) + ".";
        hw.mask_dw[i] = get(p + "depthwise", {{C, 1, 3, 3}, {C, 3, 3}});
        hw.mask_dw_bias[i] = get(p + "depthwise_bias", {{C}});
        hw.mask_pw[i] = get(p + "pointwise", {{M, C}, {M, C, 1, 1}});
        hw.mask_pw_bias[i] = get(p + "pointwise_bias", {{M}});
    }
    read_output_head_weights(get, hw);
    return hw;
}

// output_head(x (N, 32, h, w), mask_features (N, 2, 2h, 2w), image (N, 3, 2h, 2w), weights):
// check_size is the module's own check of h and w (what its kernels tile), made after x's shape.
struct MFS_PY_HIDDEN OutputHeadInputs {
    py::array x, m5, image;
    py::ssize_t N = 0, h = 0, w = 0, H = 0, W = 0;
    mfs::OutputHeadWeights weights;
    OutputHeadInputs(const py::object& x_obj, const py::object& m5_obj, const py::object& image_obj,
                     const py::dict& weights_dict, void (*check_size)(py::ssize_t h, py::ssize_t w))
        : x(nchw(x_obj, "x")), N(x.shape(0)), h(x.shape(2)), w(x.shape(3)), H(2 * h), W(2 * w) {
        expect_shape(x, "x", {{N, mfs::FINAL_IN, h, w}});
        check_size(h, w);
        m5 = nchw(m5_obj, "mask_features");
        image = nchw(image_obj, "image");
        expect_shape(m5, "mask_features", {{N, 2, H, W}});
        expect_shape(image, "image", {{N, 3, H, W}});
        read_output_head_weights(WeightDict{weights_dict, "weights", false}, weights);
    }
};

// ------------------------------------------------------------------------------ the engines
// The 9 identity-dependent layers of the IDN (encoder 0-4, decoder 0-3).

inline std::string identity_layer_name(int l) {
    return l < mfs::IDN_ENC ? "encoder " + std::to_string(l) : "decoder " + std::to_string(l - mfs::IDN_ENC);
}

inline void check_layer_count(const py::sequence& seq, const char* name) {
    if (py::len(seq) != mfs::IDN_LAYERS)
        throw std::invalid_argument(std::string(name) + " must hold 9 arrays (encoder 0-4, decoder 0-3), got " +
                                    std::to_string(py::len(seq)));
}

inline void check_layer(int layer) {
    if (layer < 0 || layer >= mfs::IDN_LAYERS)
        throw std::invalid_argument("layer must be in [0, 9), got " + std::to_string(layer));
}

// Layer l's array of a per-identity list, checked against its shapes; kept alive in `keep`.
inline const float* identity_array(const py::handle& obj, const char* what, int l, const Shapes& shapes,
                                   std::vector<py::array>& keep) {
    const std::string name = std::string(what) + "[" + std::to_string(l) + "] (" + identity_layer_name(l) + ")";
    keep.push_back(float_array(obj, name));
    expect_shape(keep.back(), name, shapes);
    return fptr(keep.back());
}

// The constructor's `bases`: the 9 base pointwise kernels W, kept alive in `keep`.
inline std::vector<const float*> base_kernels(const py::sequence& bases, std::vector<py::array>& keep) {
    check_layer_count(bases, "bases");
    std::vector<const float*> ptrs;
    for (int l = 0; l < mfs::IDN_LAYERS; ++l) {
        const std::string name = "bases[" + std::to_string(l) + "]";
        keep.push_back(float_array(bases[l], name));
        expect_shape(keep.back(), name, pointwise_shapes(l));
        ptrs.push_back(fptr(keep.back()));
    }
    return ptrs;
}

// set_identity_factored(depthwise, scale, demod): per layer the depthwise kernel, s (C), d (M).
struct MFS_PY_HIDDEN FactoredIdentity {
    std::vector<py::array> keep;
    std::array<const float*, mfs::IDN_LAYERS> depthwise{}, scale{}, demod{};
    FactoredIdentity(const py::sequence& dw, const py::sequence& s, const py::sequence& d) {
        check_layer_count(dw, "depthwise");
        check_layer_count(s, "scale");
        check_layer_count(d, "demod");
        for (int l = 0; l < mfs::IDN_LAYERS; ++l) {
            depthwise[l] = identity_array(dw[l], "depthwise", l, depthwise_shapes(l), keep);
            scale[l] = identity_array(s[l], "scale", l, {{mfs::layer_in(l)}}, keep);
            demod[l] = identity_array(d[l], "demod", l, {{mfs::layer_out(l)}}, keep);
        }
    }
};

// set_base(layer, weight): the new base kernel W of one layer.
inline py::array base_weight(int layer, const py::object& w_obj) {
    check_layer(layer);
    py::array w = float_array(w_obj, "weight");
    expect_shape(w, "weight", pointwise_shapes(layer));
    return w;
}

// run(images (N, 3, H, W), faces (N, 3, H, W), masks (N, 1, H, W)) on an engine built for H x W.
struct MFS_PY_HIDDEN RunArrays {
    py::array images, faces, masks;
    py::ssize_t N = 0;
    RunArrays(const py::object& images_obj, const py::object& faces_obj, const py::object& masks_obj, py::ssize_t H,
              py::ssize_t W, const char* engine)
        : images(nchw(images_obj, "images")), faces(nchw(faces_obj, "faces", true)),
          masks(nchw(masks_obj, "masks", true)), N(images.shape(0)) {
        if (images.shape(1) != 3 || images.shape(2) != H || images.shape(3) != W)
            throw std::invalid_argument("images must have shape (N, 3, " + std::to_string(H) + ", " +
                                        std::to_string(W) + ") for this " + engine + " (built for " +
                                        std::to_string(H) + "x" + std::to_string(W) + "), got " + shape_str(images));
        expect_shape(faces, "faces", {{N, 3, H, W}});
        expect_shape(masks, "masks", {{N, 1, H, W}});
    }
};

// The properties both engine classes (FusedIDN, CudaFusedIDN) have.
template <class Engine>
void def_idn_properties(py::class_<Engine>& cls) {
    cls.def_property_readonly("height", &Engine::height)
        .def_property_readonly("width", &Engine::width)
        .def_property_readonly("has_identity", &Engine::has_identity);
}

// {names[i]: values[i]}: the per-stage dicts (seconds, configurations).
template <class Values>
py::dict stage_dict(const std::vector<std::string>& names, const Values& values) {
    py::dict d;
    for (std::size_t i = 0; i < values.size(); ++i) d[py::str(names[i])] = values[i];
    return d;
}

}  // namespace mfs_py
