// mfs_fast._cuda: CudaFusedIDN, the whole IDN forward on the CUDA blocks (cuda_idn.hpp). Its
// constructor, set_identity_factored, set_base and run check their arrays as mfs_fast._native's
// FusedIDN does (idn_args.hpp).
#include <pybind11/stl.h>

#include <memory>

#include "../../bind/idn_args.hpp"
#include "../cuda_idn.hpp"
#include "bind.hpp"

namespace mfs_cuda_py {
namespace {
using namespace mfs_py;
namespace mc = mfs::cuda;

class PyCudaIDN {
public:
    PyCudaIDN(int height, int width, const py::dict& heads, const py::sequence& bases, int device, bool graphs) {
        mfs::check_idn_size(height, width);
        const mfs::HeadWeights hw = read_head_weights(heads);
        std::vector<py::array> keep;
        const std::vector<const float*> ptrs = base_kernels(bases, keep);
        require_device();
        py::gil_scoped_release release;
        engine_ = std::make_unique<mc::CudaIDNEngine>(height, width, hw, ptrs, device, graphs);
    }

    void set_identity_factored(const py::sequence& depthwise, const py::sequence& scale, const py::sequence& demod) {
        const FactoredIdentity id(depthwise, scale, demod);
        py::gil_scoped_release release;
        engine_->set_identity_factored(id.depthwise, id.scale, id.demod);
    }

    void set_base(int layer, const py::object& w_obj) {
        const py::array w = base_weight(layer, w_obj);
        py::gil_scoped_release release;
        engine_->set_base(layer, fptr(w));
    }

    void run(const py::object& images_obj, const py::object& faces_obj, const py::object& masks_obj) {
        RunArrays a(images_obj, faces_obj, masks_obj, engine_->height(), engine_->width(), "CudaFusedIDN");
        if (overlaps(a.masks, a.faces) || overlaps(a.masks, a.images) || overlaps(a.faces, a.images))
            throw std::invalid_argument("images, faces and masks must not overlap");
        if (!engine_->has_identity()) throw std::invalid_argument("no identity set: call set_identity_factored first");
        const float* in = fptr(a.images);
        float *f = mptr(a.faces), *m = mptr(a.masks);
        py::gil_scoped_release release;
        engine_->run(in, int(a.N), f, m);
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

    py::dict stage_configs(int n) const { return stage_dict(mc::CudaIDNEngine::stage_names(), engine_->stage_configs(n)); }

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
    std::unique_ptr<mc::CudaIDNEngine> engine_;
};

}  // namespace

void bind_fused_idn(py::module_& m) {
    py::class_<PyCudaIDN> cls(m, "CudaFusedIDN",
                              "The whole IDN forward on the CUDA blocks for one input size. heads: folded fixed weights\n"
                              "(mfs_fast.fused.head_weights); bases: the 9 base pointwise kernels W (factored form).");
    cls.def(py::init<int, int, const py::dict&, const py::sequence&, int, bool>(), py::arg("height"), py::arg("width"),
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
        .def_property_readonly("device", &PyCudaIDN::device)
        .def_property_readonly("capacity", &PyCudaIDN::capacity)
        .def_property_readonly("multiprocessors", &PyCudaIDN::multiprocessors)
        .def_property_readonly("graphs", &PyCudaIDN::graphs)
        .def_property_readonly("graph_error", &PyCudaIDN::graph_error);
    def_idn_properties(cls);
}

}  // namespace mfs_cuda_py
