// mfs_fast._native: FusedIDN, the whole IDN forward on the fused kernels (fused_idn.hpp). Its
// constructor, set_identity_factored, set_base and run check their arrays as mfs_fast._cuda's
// CudaFusedIDN does (idn_args.hpp).
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>

#include "../fused_idn.hpp"
#include "bind.hpp"
#include "idn_args.hpp"

namespace mfs_native {
namespace {
using namespace mfs_py;

class PyFusedIDN {
public:
    PyFusedIDN(int height, int width, const py::dict& heads, const py::object& bases, const std::string& isa) {
        mfs::check_idn_size(height, width);
        const mfs::KernelTable* k = mfs::select_kernels(isa);
        mfs::HeadWeights hw = read_head_weights(heads);
        std::vector<py::array> keep;
        std::vector<const float*> base_ptrs;
        if (!bases.is_none()) {
            py::sequence seq = bases;
            base_ptrs = base_kernels(seq, keep);
        }
        engine_ = std::make_unique<mfs::FusedIDNEngine>(height, width, std::move(hw), base_ptrs, k);
    }

    void set_identity_factored(const py::sequence& depthwise, const py::sequence& scale, const py::sequence& demod) {
        if (!engine_->has_bases())
            throw std::invalid_argument("the factored pointwise form needs the base kernels: construct with bases=[...]");
        const FactoredIdentity id(depthwise, scale, demod);
        std::array<mfs::IdentityLayer, mfs::IDN_LAYERS> layers{};
        for (int l = 0; l < mfs::IDN_LAYERS; ++l) {
            layers[l].depthwise = id.depthwise[l];
            layers[l].scale = id.scale[l];
            layers[l].demod = id.demod[l];
        }
        py::gil_scoped_release release;
        engine_->set_identity_factored(layers);
    }

    void set_identity_modulated(const py::sequence& depthwise, const py::sequence& pointwise) {
        std::vector<py::array> keep;
        std::array<mfs::IdentityLayer, mfs::IDN_LAYERS> layers{};
        check_layer_count(depthwise, "depthwise");
        check_layer_count(pointwise, "pointwise");
        for (int l = 0; l < mfs::IDN_LAYERS; ++l) {
            layers[l].depthwise = identity_array(depthwise[l], "depthwise", l, depthwise_shapes(l), keep);
            layers[l].pointwise = identity_array(pointwise[l], "pointwise", l, pointwise_shapes(l), keep);
        }
        py::gil_scoped_release release;
        engine_->set_identity_modulated(layers);
    }

    // (address, copy) of a layer's packed base kernel: lets tests prove that identity changes
    // never repack (or move) W.
    py::tuple packed_base(int layer) const {
        check_layer(layer);
        const std::vector<float>& w = engine_->base_packed(layer);
        FloatArray copy({py::ssize_t(w.size())});
        std::copy(w.begin(), w.end(), copy.mutable_data());
        return py::make_tuple(reinterpret_cast<std::uintptr_t>(w.data()), copy);
    }

    void set_base(int layer, const py::object& w_obj) {
        const py::array w = base_weight(layer, w_obj);
        py::gil_scoped_release release;
        engine_->set_base(layer, fptr(w));
    }

    void run(const py::object& images_obj, const py::object& faces_obj, const py::object& masks_obj, int threads) {
        check_threads(threads);
        RunArrays a(images_obj, faces_obj, masks_obj, engine_->height(), engine_->width(), "FusedIDN");
        if (overlaps(a.masks, a.faces) || overlaps(a.masks, a.images))
            throw std::invalid_argument("masks must not overlap images or faces");
        if (!engine_->has_identity()) throw std::invalid_argument("no identity set: call set_identity_* first");
        const float* in = fptr(a.images);
        float *f = mptr(a.faces), *m = mptr(a.masks);
        py::gil_scoped_release release;
        engine_->run(in, int(a.N), f, m, threads);
    }

    py::dict stage_seconds() const { return stage_dict(mfs::FusedIDNEngine::stage_names(), engine_->stage_seconds()); }

    int height() const { return engine_->height(); }
    int width() const { return engine_->width(); }
    std::string isa() const { return engine_->kernels().name; }
    std::string form() const { return engine_->form(); }
    bool has_identity() const { return engine_->has_identity(); }
    mfs::FusedIDNEngine& engine() { return *engine_; }

private:
    std::unique_ptr<mfs::FusedIDNEngine> engine_;
};

}  // namespace

mfs::FusedIDNEngine& fused_engine(const py::object& engine) {
    if (!py::isinstance<PyFusedIDN>(engine))
        throw std::invalid_argument("engine must be a mfs_fast._native.FusedIDN, got " +
                                    std::string(py::str(py::type::handle_of(engine).attr("__name__"))));
    return engine.cast<PyFusedIDN&>().engine();
}

void bind_fused_idn(py::module_& m) {
    py::class_<PyFusedIDN> cls(m, "FusedIDN",
                               "The whole IDN forward on the fused kernels for one input size. heads: folded fixed\n"
                               "weights (see mfs_fast.fused); bases: the 9 base pointwise kernels W (factored form) or None.");
    cls.def(py::init<int, int, const py::dict&, const py::object&, const std::string&>(), py::arg("height"),
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
        .def_property_readonly("isa", &PyFusedIDN::isa)
        .def_property_readonly("form", &PyFusedIDN::form);
    def_idn_properties(cls);
}

}  // namespace mfs_native
