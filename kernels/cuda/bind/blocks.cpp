// mfs_fast._cuda: the per-block functions on the CUDA blocks (blocks.cuh), each testable alone
// (the CudaFusedIDN launches the same kernels). Their arrays are read and checked as
// mfs_fast._native's are (idn_args.hpp); the tile configuration and the device are this
// module's own. Each call copies its inputs to the device, launches and waits.
#include <pybind11/numpy.h>

#include <memory>
#include <vector>

#include "../../bind/idn_args.hpp"
#include "../cuda_idn.hpp"
#include "bind.hpp"

namespace mfs_cuda_py {
namespace {
using namespace mfs_py;
namespace mc = mfs::cuda;

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

py::array encoder_block(const py::object& x_obj, const py::object& dw_obj, const py::object& pw_obj,
                        const py::object& scale_obj, const py::object& demod_obj, bool normalize,
                        const std::string& config) {
    const mc::TileConfig tile = mc::parse_tile_config(config);
    const EncoderBlockInputs in(x_obj, dw_obj, pw_obj, scale_obj, demod_obj);
    const py::ssize_t N = in.N, C = in.C, H = in.H, W = in.W, M = in.M;
    const std::vector<float> d = in.demod.copy();
    require_device();
    const std::vector<float> kernel = in.scaled_kernel(in.scale);
    const py::ssize_t P = (H / 2) * (W / 2);
    py::array_t<float> out({N, M, H / 2, W / 2});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(in.x), std::size_t(N * C * H * W)), K(kernel), A(fptr(in.pointwise), std::size_t(M * C)), D(d),
            O(std::size_t(N * M * P));
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
    const UpsampleBlockInputs in(x_obj, dw_obj, pw_obj, dw_bias_obj, pw_bias_obj, scale_obj, demod_obj, skip_obj);
    const py::ssize_t N = in.N, C = in.C, h = in.H, w = in.W, M = in.M, Cs = in.Cs;
    std::vector<float> w2, b2;
    py::ssize_t M2 = 0;
    if (!w2_obj.is_none()) {
        py::array a = float_array(w2_obj, "second_pointwise");
        M2 = pointwise_rows(a, "second_pointwise", M);
        if (M > 32) throw std::invalid_argument("second_pointwise needs a block of at most 32 output channels");
        if (Cs) throw std::invalid_argument("second_pointwise and skip cannot be combined");
        w2.assign(fptr(a), fptr(a) + a.size());
        b2 = OptionalVector(b2_obj, "second_bias", M2).copy();
    } else if (!b2_obj.is_none()) {
        throw std::invalid_argument("second_bias needs second_pointwise");
    }
    require_device();
    const std::vector<float> kernel = in.scaled_kernel(in.scale);
    const std::vector<float> dwb = BlockArrays::scaled_bias(in.dw_bias, in.scale);
    const std::vector<float> pwb = in.pw_bias.copy(), d = in.demod.copy();
    const py::ssize_t P = 4 * h * w, Mo = M2 ? M2 : M + Cs;
    py::array_t<float> out({N, Mo, 2 * h, 2 * w});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(in.x), std::size_t(N * C * h * w)), K(kernel), KB(dwb), A(fptr(in.pointwise), std::size_t(M * C)),
            B(pwb), D(d), A2(w2), B2(b2), O(std::size_t(N * Mo * P));
        if (Cs)  // the skip goes into the upper channel slice; the block writes the lower one
            for (py::ssize_t i = 0; i < N; ++i)
                MFS_CUDA_CHECK(cudaMemcpy(O.get() + (i * Mo + M) * P, fptr(in.skip) + i * Cs * P,
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
    const PointwiseInputs in(x_obj, w_obj, scale_obj, bias_obj);
    const py::ssize_t N = in.N, K = in.K, H = in.H, W = in.W, M = in.M;
    const std::vector<float> s = in.scale.copy(), b = in.bias.copy();
    require_device();
    const py::ssize_t P = H * W;
    py::array_t<float> out({N, M, H, W});
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        Dev X(fptr(in.x), std::size_t(N * K * P)), A(fptr(in.weight), std::size_t(M * K)), S(s), B(b),
            O(std::size_t(N * M * P));
        mc::PointwiseArgs a;
        a.x = X.get(), a.x_img = K * P, a.K = int(K), a.H = int(H), a.W = int(W);
        a.pw = A.get(), a.scale = S.get(), a.bias = B.get(), a.M = int(M), a.leaky = leaky;
        a.out = O.get(), a.out_img = M * P, a.N = int(N);
        finish(mc::launch_pointwise(a, nullptr, sms(), tile));
        download(o, O.get(), std::size_t(N * M * P));
    }
    return std::move(out);
}

void check_head_size(py::ssize_t h, py::ssize_t w) {
    if ((2 * h) % 16 || (2 * w) % 16)
        throw std::invalid_argument("x: the output size (2 x " + std::to_string(h) + ", 2 x " + std::to_string(w) +
                                    ") must be a multiple of 16");
}

py::tuple output_head(const py::object& x_obj, const py::object& m5_obj, const py::object& image_obj,
                      const py::dict& weights) {
    const OutputHeadInputs in(x_obj, m5_obj, image_obj, weights, &check_head_size);
    const py::ssize_t N = in.N, h = in.h, w = in.w, H = in.H, W = in.W;
    require_device();
    const std::vector<float> hw = mc::packed_head_weights(in.weights);
    py::array_t<float> faces({N, py::ssize_t(3), H, W}), masks({N, py::ssize_t(1), H, W});
    float* fo = faces.mutable_data();
    float* mo = masks.mutable_data();
    {
        py::gil_scoped_release release;
        const std::size_t half = std::size_t(h * w), full = std::size_t(H * W);
        Dev X(fptr(in.x), N * 32 * half), W1(in.weights.final_w1), B1(in.weights.final_b1), Z(N * 8 * half),
            M5(fptr(in.m5), N * 2 * full), I(fptr(in.image), N * 3 * full), HW(hw), F(N * 3 * full), MK(N * full);
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

}  // namespace

void bind_blocks(py::module_& m) {
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
}

}  // namespace mfs_cuda_py
