// pybind11 bindings of the CUDA blocks and engine (imported as mfs_fast._cuda).
//
// Importing never needs a GPU or a driver: the CUDA runtime is linked statically and loads the
// driver only when first used; device_count() / device_name() / unavailable_reason() report
// what is missing instead of raising. Everything else raises RuntimeError naming the failed
// CUDA call when there is no usable GPU, ValueError for bad arguments.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <sstream>

#include "cuda_idn.hpp"

#include "../py_arrays.hpp"

namespace py = pybind11;
using namespace mfs_py;
namespace mc = mfs::cuda;

namespace {

// ------------------------------------------------------------------------------------ devices
std::string unavailable_reason() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        int driver = 0;
        const bool no_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0;
        cudaGetLastError();
        return std::string(no_driver ? "no CUDA GPU: no NVIDIA driver is installed (libcuda.so.1 not found); "
                                     : "no CUDA GPU usable: ") +
               "cudaGetDeviceCount failed (" + mc::error_text(e) + ")";
    }
    if (n == 0) return "no CUDA GPU: cudaGetDeviceCount found 0 devices";
    return "";
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

std::string device_name(int device) {
    const std::string reason = unavailable_reason();
    if (!reason.empty()) return reason;
    const int n = device_count();
    if (device < 0 || device >= n)
        return "no CUDA device " + std::to_string(device) + " (" + std::to_string(n) + " visible)";
    cudaDeviceProp prop{};
    const cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return "cudaGetDeviceProperties failed (" + mc::error_text(e) + ")";
    }
    return prop.name;
}

void require_device() {
    const std::string reason = unavailable_reason();
    if (!reason.empty()) throw std::runtime_error(reason);
}

int version(cudaError_t (*get)(int*)) {
    int v = 0;
    if (get(&v) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return v;
}

// ------------------------------------------------------------------------------------ arrays

// Optional per-channel vector (None or float32 (n,)), copied.
std::vector<float> optional_vector(const py::object& obj, const std::string& name, py::ssize_t n) {
    if (obj.is_none()) return {};
    py::array a = float_array(obj, name);
    expect_shape(a, name, {{n}});
    return std::vector<float>(fptr(a), fptr(a) + n);
}



// A device copy of host data (empty vector: null buffer).
struct Dev {
    std::unique_ptr<mc::DeviceBuffer> buf;
    Dev() = default;
    explicit Dev(std::size_t floats) : buf(std::make_unique<mc::DeviceBuffer>(floats)) {}
    Dev(const float* host, std::size_t floats) : Dev(floats) { buf->upload(host, floats); }
    explicit Dev(const std::vector<float>& v) {
        if (!v.empty()) buf = std::make_unique<mc::DeviceBuffer>(v.size()), buf->upload(v.data(), v.size());
    }
    float* get() const { return buf ? buf->get() : nullptr; }
};

void download(float* host, const float* dev, std::size_t floats) {
    MFS_CUDA_CHECK(cudaMemcpy(host, dev, floats * sizeof(float), cudaMemcpyDeviceToHost));
}

void finish(cudaError_t launch) {
    MFS_CUDA_CHECK(launch);
    MFS_CUDA_CHECK(cudaDeviceSynchronize());
    MFS_CUDA_CHECK(cudaGetLastError());
}

int sms() {
    int device = 0, v = 1;
    MFS_CUDA_CHECK(cudaGetDevice(&device));
    MFS_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
    return v;
}

// ------------------------------------------------------------------------------------ blocks
py::array encoder_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                        const py::object& scale_obj, const py::object& demod_obj, bool normalize,
                        const std::string& config) {
    const mc::TileConfig tile = mc::parse_tile_config(config);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
    if (H < 2 || W < 2 || H % 2 || W % 2)
        throw std::invalid_argument("x: height and width must be even (stride 2), got " + shape_str(x));
    py::array dw = float_array(dw_obj, "depthwise"), pw = float_array(pw_obj, "pointwise");
    expect_shape(dw, "depthwise", {{C, 1, 4, 4}, {C, 4, 4}});
    const py::ssize_t M = pw.ndim() >= 1 ? pw.shape(0) : 0;
    expect_shape(pw, "pointwise", {{M, C}, {M, C, 1, 1}});
    if (M < 1) throw std::invalid_argument("pointwise must have at least one output channel");
    const std::vector<float> s = optional_vector(scale_obj, "scale", C), d = optional_vector(demod_obj, "demod", M);
    require_device();
    std::vector<float> kernel(fptr(dw), fptr(dw) + C * 16);
    if (!s.empty())
        for (py::ssize_t c = 0; c < C; ++c)
            for (int t = 0; t < 16; ++t) kernel[c * 16 + t] *= s[c];
    const py::ssize_t P = (H / 2) * (W / 2);
    py::array_t<float> out({N, M, H / 2, W / 2});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(x), std::size_t(N * C * H * W)), K(kernel), A(fptr(pw), std::size_t(M * C)), D(d), O(std::size_t(N * M * P));
        mc::EncoderArgs a;
        a.x = X.get(), a.x_img = C * H * W, a.C = int(C), a.H = int(H), a.W = int(W);
        a.dw = K.get(), a.pw = A.get(), a.scale = D.get(), a.M = int(M), a.normalize = normalize;
        a.out = O.get(), a.out_img = M * P, a.N = int(N);
        finish(mc::launch_encoder(a, nullptr, sms(), tile));
        download(o, O.get(), std::size_t(N * M * P));
    }
    return std::move(out);
}

py::array upsample_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                         const py::object& dw_bias_obj, const py::object& pw_bias_obj, const py::object& scale_obj,
                         const py::object& demod_obj, const py::object& skip_obj, const py::object& w2_obj,
                         const py::object& b2_obj, const std::string& config) {
    const mc::TileConfig tile = mc::parse_tile_config(config);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), C = x.shape(1), h = x.shape(2), w = x.shape(3);
    py::array dw = float_array(dw_obj, "depthwise"), pw = float_array(pw_obj, "pointwise");
    expect_shape(dw, "depthwise", {{C, 1, 3, 3}, {C, 3, 3}});
    const py::ssize_t M = pw.ndim() >= 1 ? pw.shape(0) : 0;
    expect_shape(pw, "pointwise", {{M, C}, {M, C, 1, 1}});
    if (M < 1) throw std::invalid_argument("pointwise must have at least one output channel");
    std::vector<float> dwb = optional_vector(dw_bias_obj, "depthwise_bias", C);
    const std::vector<float> pwb = optional_vector(pw_bias_obj, "pointwise_bias", M);
    const std::vector<float> s = optional_vector(scale_obj, "scale", C), d = optional_vector(demod_obj, "demod", M);
    py::array skip;
    py::ssize_t Cs = 0;
    if (!skip_obj.is_none()) {
        skip = nchw(skip_obj, "skip");
        Cs = skip.shape(1);
        expect_shape(skip, "skip", {{N, Cs, 2 * h, 2 * w}});
    }
    std::vector<float> w2, b2;
    py::ssize_t M2 = 0;
    if (!w2_obj.is_none()) {
        py::array a = float_array(w2_obj, "second_pointwise");
        M2 = a.ndim() >= 1 ? a.shape(0) : 0;
        expect_shape(a, "second_pointwise", {{M2, M}, {M2, M, 1, 1}});
        if (M2 < 1) throw std::invalid_argument("second_pointwise must have at least one output channel");
        if (M > 32) throw std::invalid_argument("second_pointwise needs a block of at most 32 output channels");
        if (Cs) throw std::invalid_argument("second_pointwise and skip cannot be combined");
        w2.assign(fptr(a), fptr(a) + a.size());
        b2 = optional_vector(b2_obj, "second_bias", M2);
    } else if (!b2_obj.is_none()) {
        throw std::invalid_argument("second_bias needs second_pointwise");
    }
    require_device();
    // factored form: s scales the pointwise input, i.e. the depthwise output (kernel and bias)
    std::vector<float> kernel(fptr(dw), fptr(dw) + C * 9);
    if (!s.empty()) {
        for (py::ssize_t c = 0; c < C; ++c)
            for (int t = 0; t < 9; ++t) kernel[c * 9 + t] *= s[c];
        for (std::size_t c = 0; c < dwb.size(); ++c) dwb[c] *= s[c];
    }
    const py::ssize_t P = 4 * h * w, Mo = M2 ? M2 : M + Cs;
    py::array_t<float> out({N, Mo, 2 * h, 2 * w});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(x), std::size_t(N * C * h * w)), K(kernel), KB(dwb), A(fptr(pw), std::size_t(M * C)), B(pwb), D(d),
            A2(w2), B2(b2), O(std::size_t(N * Mo * P));
        if (Cs)  // the skip goes into the upper channel slice; the block writes the lower one
            for (py::ssize_t i = 0; i < N; ++i)
                MFS_CUDA_CHECK(cudaMemcpy(O.get() + (i * Mo + M) * P, fptr(skip) + i * Cs * P,
                                          std::size_t(Cs * P) * sizeof(float), cudaMemcpyHostToDevice));
        mc::UpArgs a;
        a.x = X.get(), a.x_img = C * h * w, a.C = int(C), a.h = int(h), a.w = int(w);
        a.dw = K.get(), a.dw_bias = KB.get(), a.pw = A.get(), a.scale = D.get(), a.bias = B.get(), a.M = int(M);
        a.w2 = A2.get(), a.b2 = B2.get(), a.M2 = int(M2);
        a.out = O.get(), a.out_img = Mo * P, a.N = int(N);
        finish(mc::launch_up(a, nullptr, sms(), tile));
        download(o, O.get(), std::size_t(N * Mo * P));
    }
    return std::move(out);
}

py::array pointwise(const py::object& x_obj, const py::object& w_obj, const py::object& scale_obj,
                    const py::object& bias_obj, bool leaky, const std::string& config) {
    const mc::TileConfig tile = mc::parse_tile_config(config);
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), K = x.shape(1), H = x.shape(2), W = x.shape(3);
    py::array w = float_array(w_obj, "weight");
    const py::ssize_t M = w.ndim() >= 1 ? w.shape(0) : 0;
    expect_shape(w, "weight", {{M, K}, {M, K, 1, 1}});
    if (M < 1) throw std::invalid_argument("weight must have at least one output channel");
    const std::vector<float> s = optional_vector(scale_obj, "scale", M), b = optional_vector(bias_obj, "bias", M);
    require_device();
    const py::ssize_t P = H * W;
    py::array_t<float> out({N, M, H, W});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(x), std::size_t(N * K * P)), A(fptr(w), std::size_t(M * K)), S(s), B(b), O(std::size_t(N * M * P));
        mc::PointwiseArgs a;
        a.x = X.get(), a.x_img = K * P, a.K = int(K), a.H = int(H), a.W = int(W);
        a.pw = A.get(), a.scale = S.get(), a.bias = B.get(), a.M = int(M), a.leaky = leaky;
        a.out = O.get(), a.out_img = M * P, a.N = int(N);
        finish(mc::launch_pointwise(a, nullptr, sms(), tile));
        download(o, O.get(), std::size_t(N * M * P));
    }
    return std::move(out);
}

py::tuple output_head(const py::object& x_obj, const py::object& m5_obj, const py::object& image_obj,
                      const py::dict& weights) {
    py::array x = nchw(x_obj, "x");
    const py::ssize_t N = x.shape(0), h = x.shape(2), w = x.shape(3), H = 2 * h, W = 2 * w;
    expect_shape(x, "x", {{N, mc::FINAL_IN, h, w}});
    if (H % 16 || W % 16)
        throw std::invalid_argument("x: the output size (2 x " + std::to_string(h) + ", 2 x " + std::to_string(w) +
                                    ") must be a multiple of 16");
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
    require_device();
    std::vector<float> hw(mc::HEAD_WEIGHTS);
    std::copy(w2.begin(), w2.end(), hw.begin() + mc::HEAD_W2);
    std::copy(b2.begin(), b2.end(), hw.begin() + mc::HEAD_B2);
    std::copy(w3.begin(), w3.end(), hw.begin() + mc::HEAD_W3);
    std::copy(b3.begin(), b3.end(), hw.begin() + mc::HEAD_B3);
    std::copy(wm.begin(), wm.end(), hw.begin() + mc::HEAD_WM);
    hw[mc::HEAD_BM] = bm[0];
    py::array_t<float> faces({N, py::ssize_t(3), H, W}), masks({N, py::ssize_t(1), H, W});
    float* fo = faces.mutable_data();
    float* mo = masks.mutable_data();
    {
        py::gil_scoped_release release;
        const std::size_t half = std::size_t(h * w), full = std::size_t(H * W);
        Dev X(fptr(x), N * 32 * half), W1(w1), B1(b1), Z(N * 8 * half), M5(fptr(m5), N * 2 * full),
            I(fptr(image), N * 3 * full), HW(hw), F(N * 3 * full), MK(N * full);
        mc::PointwiseArgs p;  // final's 1x1 conv (+BN) before the upsample, as the engine's decoder does
        p.x = X.get(), p.x_img = 32 * half, p.K = 32, p.H = int(h), p.W = int(w);
        p.pw = W1.get(), p.bias = B1.get(), p.M = 8, p.leaky = false, p.out = Z.get(), p.out_img = 8 * half, p.N = int(N);
        MFS_CUDA_CHECK(mc::launch_pointwise(p, nullptr, sms()));
        mc::HeadArgs a;
        a.z = Z.get(), a.z_img = 8 * half, a.m5 = M5.get(), a.m5_img = 2 * full, a.image = I.get(), a.weights = HW.get();
        a.faces = F.get(), a.masks = MK.get(), a.H = int(H), a.W = int(W), a.N = int(N);
        finish(mc::launch_head(a, nullptr));
        download(fo, F.get(), N * 3 * full);
        download(mo, MK.get(), N * full);
    }
    return py::make_tuple(faces, masks);
}

// ------------------------------------------------------------------------------------ the IDN
class PyCudaIDN {
public:
    PyCudaIDN(int height, int width, const py::dict& heads, const py::sequence& bases, int device, bool graphs) {
        if (height <= 0 || width <= 0 || height % 32 || width % 32)
            throw std::invalid_argument("IDN input sides must be positive multiples of 32 (5 stride-2 stages), got " +
                                        std::to_string(height) + "x" + std::to_string(width));
        mc::HeadWeights hw;
        read_head_weights(heads, mc::MASK_CH, mc::IDN_MASK, hw);
        if (py::len(bases) != mc::IDN_LAYERS)
            throw std::invalid_argument("bases must hold 9 arrays (encoder 0-4, decoder 0-3), got " +
                                        std::to_string(py::len(bases)));
        std::vector<py::array> keep;
        std::vector<const float*> ptrs;
        for (int l = 0; l < mc::IDN_LAYERS; ++l) {
            const std::string name = "bases[" + std::to_string(l) + "]";
            keep.push_back(float_array(bases[l], name));
            expect_shape(keep.back(), name, pointwise_shapes(l));
            ptrs.push_back(fptr(keep.back()));
        }
        require_device();
        py::gil_scoped_release release;
        engine_ = std::make_unique<mc::CudaIDNEngine>(height, width, hw, ptrs, device, graphs);
    }

    void set_identity_factored(const py::sequence& depthwise, const py::sequence& scale, const py::sequence& demod) {
        check_layer_count(depthwise, "depthwise");
        check_layer_count(scale, "scale");
        check_layer_count(demod, "demod");
        std::vector<py::array> keep;
        std::array<const float*, mc::IDN_LAYERS> dw{}, s{}, d{};
        for (int l = 0; l < mc::IDN_LAYERS; ++l) {
            const py::ssize_t k = l < mc::IDN_ENC ? 4 : 3;
            dw[l] = identity_array(depthwise[l], "depthwise", l, {{in(l), 1, k, k}, {in(l), k, k}}, keep);
            s[l] = identity_array(scale[l], "scale", l, {{in(l)}}, keep);
            d[l] = identity_array(demod[l], "demod", l, {{out(l)}}, keep);
        }
        py::gil_scoped_release release;
        engine_->set_identity_factored(dw, s, d);
    }

    void set_base(int layer, const py::object& w_obj) {
        if (layer < 0 || layer >= mc::IDN_LAYERS)
            throw std::invalid_argument("layer must be in [0, 9), got " + std::to_string(layer));
        py::array w = float_array(w_obj, "weight");
        expect_shape(w, "weight", pointwise_shapes(layer));
        py::gil_scoped_release release;
        engine_->set_base(layer, fptr(w));
    }

    void run(const py::object& images_obj, const py::object& faces_obj, const py::object& masks_obj) {
        py::array images = nchw(images_obj, "images");
        py::array faces = nchw(faces_obj, "faces", true);
        py::array masks = nchw(masks_obj, "masks", true);
        const py::ssize_t N = images.shape(0), H = engine_->height(), W = engine_->width();
        if (images.shape(1) != 3 || images.shape(2) != H || images.shape(3) != W)
            throw std::invalid_argument("images must have shape (N, 3, " + std::to_string(H) + ", " + std::to_string(W) +
                                        ") for this CudaFusedIDN (built for " + std::to_string(H) + "x" +
                                        std::to_string(W) + "), got " + shape_str(images));
        expect_shape(faces, "faces", {{N, 3, H, W}});
        expect_shape(masks, "masks", {{N, 1, H, W}});
        if (overlaps(masks, faces) || overlaps(masks, images) || overlaps(faces, images))
            throw std::invalid_argument("images, faces and masks must not overlap");
        if (!engine_->has_identity()) throw std::invalid_argument("no identity set: call set_identity_factored first");
        const float* in = fptr(images);
        float* f = mptr(faces);
        float* m = mptr(masks);
        py::gil_scoped_release release;
        engine_->run(in, int(N), f, m);
    }

    py::dict last_run_ms() const {
        const mc::RunTimes t = engine_->last_times();
        py::dict d;
        d["h2d"] = t.h2d, d["kernels"] = t.kernels, d["d2h"] = t.d2h, d["total"] = t.total;
        return d;
    }

    std::vector<float> time_kernels(int n, int warmup, int repeats, bool graphs) {
        py::gil_scoped_release release;
        return engine_->time_kernels(n, warmup, repeats, graphs);
    }

    py::dict stage_ms(int n, int repeats) {
        std::vector<std::pair<std::string, float>> v;
        {
            py::gil_scoped_release release;
            v = engine_->stage_ms(n, repeats);
        }
        py::dict d;
        for (const auto& kv : v) d[py::str(kv.first)] = kv.second;
        return d;
    }

    py::dict stage_configs(int n) const {
        const auto names = mc::CudaIDNEngine::stage_names();
        const auto configs = engine_->stage_configs(n);
        py::dict d;
        for (std::size_t i = 0; i < names.size(); ++i) d[py::str(names[i])] = configs[i];
        return d;
    }

    void poison() {
        py::gil_scoped_release release;
        engine_->poison();
    }

    int height() const { return engine_->height(); }
    int width() const { return engine_->width(); }
    int device() const { return engine_->device(); }
    int capacity() const { return engine_->capacity(); }
    int multiprocessors() const { return engine_->multiprocessors(); }
    bool graphs() const { return engine_->graphs(); }
    std::string graph_error() const { return engine_->graph_error(); }
    bool has_identity() const { return engine_->has_identity(); }

private:
    static py::ssize_t in(int l) { return mc::layer_in(l); }
    static py::ssize_t out(int l) { return mc::layer_out(l); }
    static std::vector<std::vector<py::ssize_t>> pointwise_shapes(int l) { return {{out(l), in(l)}, {out(l), in(l), 1, 1}}; }

    std::unique_ptr<mc::CudaIDNEngine> engine_;
};

void define_module(py::module_& m) {
    m.doc() = "mfs_fast CUDA kernels: the fused IDN blocks and engine (fp32, NCHW)";
    py::register_exception<mc::CudaError>(m, "CudaError", PyExc_RuntimeError);
#ifdef MFS_CUDA_EMULATE
    m.attr("emulated") = true;
#else
    m.attr("emulated") = false;
#endif
    m.def("device_count", &device_count, "Number of CUDA GPUs visible (0, never an exception, without a GPU or driver)");
    m.def("device_name", &device_name, py::arg("device") = 0,
          "The GPU's name, or why there is none (never raises)");
    m.def("unavailable_reason", &unavailable_reason, "'' when a CUDA GPU is usable, else why not");
    m.def("runtime_version", [] { return version(&cudaRuntimeGetVersion); }, "CUDA runtime version (e.g. 13000)");
    m.def("driver_version", [] { return version(&cudaDriverGetVersion); }, "CUDA driver version, 0 without a driver");
    m.def("encoder_block", &encoder_block, py::arg("x"), py::arg("depthwise"), py::arg("pointwise"),
          py::arg("scale") = py::none(), py::arg("demod") = py::none(), py::arg("normalize") = false,
          py::arg("config") = "auto",
          "IDN encoder block on N x C x H x W: depthwise 4x4 stride 2 pad 1 -> pointwise (M x C) -> LeakyReLU(0.1).\n"
          "Factored form: pointwise = base W with scale s (C) and demod d (M). normalize: (x - 0.5) / 0.5 first.\n"
          "config: tile configuration ('auto', 'big', 'mid', 'thin').");
    m.def("upsample_block", &upsample_block, py::arg("x"), py::arg("depthwise"), py::arg("pointwise"),
          py::arg("depthwise_bias") = py::none(), py::arg("pointwise_bias") = py::none(), py::arg("scale") = py::none(),
          py::arg("demod") = py::none(), py::arg("skip") = py::none(), py::arg("second_pointwise") = py::none(),
          py::arg("second_bias") = py::none(), py::arg("config") = "auto",
          "IDN decoder / fusion-mask block: bilinear 2x (align_corners=True) -> depthwise 3x3 pad 1 (+bias) ->\n"
          "pointwise (+bias; scale/demod as in encoder_block) -> LeakyReLU(0.1); with skip, the concat [block, skip]\n"
          "(the block writes its slice of the concat buffer); with second_pointwise (M2 x M, M <= 32) returns\n"
          "second_pointwise @ block + second_bias (the decoder's last stage chained to final's 1x1 conv).");
    m.def("pointwise", &pointwise, py::arg("x"), py::arg("weight"), py::arg("scale") = py::none(),
          py::arg("bias") = py::none(), py::arg("leaky") = false, py::arg("config") = "auto",
          "1x1 convolution on the blocks' GEMM: act(scale[o] * sum_i W[o,i] x[i] + bias[o]).");
    m.def("output_head", &output_head, py::arg("x"), py::arg("mask_features"), py::arg("image"), py::arg("weights"),
          "Output head + mask output + blend: x (N,32,h,w) decoder output, mask_features (N,2,2h,2w), image (N,3,2h,2w),\n"
          "weights as mfs_fast.fused.head_weights names them. Returns (faces, masks).");

    py::class_<PyCudaIDN>(m, "CudaFusedIDN",
                          "The whole IDN forward on the CUDA blocks for one input size. heads: folded fixed weights\n"
                          "(mfs_fast.fused.head_weights); bases: the 9 base pointwise kernels W (factored form).")
        .def(py::init<int, int, const py::dict&, const py::sequence&, int, bool>(), py::arg("height"), py::arg("width"),
             py::arg("heads"), py::arg("bases"), py::arg("device") = 0, py::arg("graphs") = true)
        .def("set_identity_factored", &PyCudaIDN::set_identity_factored, py::arg("depthwise"), py::arg("scale"),
             py::arg("demod"), "Per-identity depthwise kernels and modulation vectors s, d of the 9 layers (O(C) each)")
        .def("set_base", &PyCudaIDN::set_base, py::arg("layer"), py::arg("weight"),
             "Replace one base pointwise kernel (layers: encoder 0-4, decoder 0-3)")
        .def("run", &PyCudaIDN::run, py::arg("images"), py::arg("faces"), py::arg("masks"),
             "images (N,3,H,W) float32 in [0,1] -> writes faces (N,3,H,W) and masks (N,1,H,W); waits for the GPU")
        .def("last_run_ms", &PyCudaIDN::last_run_ms, "CUDA-event times of the last run: h2d, kernels, d2h, total (ms)")
        .def("time_kernels", &PyCudaIDN::time_kernels, py::arg("n"), py::arg("warmup") = 20, py::arg("repeats") = 200,
             py::arg("graphs") = true, "Kernel-only ms per run (CUDA events) on the last run's first n images")
        .def("stage_ms", &PyCudaIDN::stage_ms, py::arg("n"), py::arg("repeats") = 20,
             "Median ms per stage (events between stages, no graph) on the last run's first n images")
        .def("stage_configs", &PyCudaIDN::stage_configs, py::arg("n"), "Tile configuration of each stage at batch n")
        .def("poison", &PyCudaIDN::poison, "Fill every device activation and output buffer with NaN")
        .def_property_readonly("height", &PyCudaIDN::height)
        .def_property_readonly("width", &PyCudaIDN::width)
        .def_property_readonly("device", &PyCudaIDN::device)
        .def_property_readonly("capacity", &PyCudaIDN::capacity)
        .def_property_readonly("multiprocessors", &PyCudaIDN::multiprocessors)
        .def_property_readonly("graphs", &PyCudaIDN::graphs)
        .def_property_readonly("graph_error", &PyCudaIDN::graph_error)
        .def_property_readonly("has_identity", &PyCudaIDN::has_identity);
}

}  // namespace

#ifdef MFS_CUDA_EMULATE
PYBIND11_MODULE(_cuda_emu, m) { define_module(m); }
#else
PYBIND11_MODULE(_cuda, m) { define_module(m); }
#endif
