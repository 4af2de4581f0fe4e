// mfs_fast._native: the pipeline core, align -> IDN -> blend on whole BGR frames (pipeline.hpp):
// its stages one by one (alignment_matrix, warp_faces, blend_mask, paste_faces) and PipelineCore,
// which runs them all on a FusedIDN's engine.
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "../pipeline.hpp"
#include "bind.hpp"
#include "idn_args.hpp"

namespace mfs_native {
namespace {
using namespace mfs_py;

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
        mfs::FusedIDNEngine& e = fused_engine(engine);
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

    py::dict seconds() const { return stage_dict(mfs::PipelineCore::stage_names(), core_->seconds()); }
    int size() const { return core_->size(); }
    std::string isa() const { return core_->isa(); }
    py::object engine() const { return engine_obj_; }
    float detail() const { return core_->detail(); }
    void set_detail(float sigma) { core_->set_detail(sigma); }
    py::tuple colour() const { return py::make_tuple(core_->chroma(), core_->brightness()); }
    void set_colour(float chroma, float brightness) { core_->set_colour(chroma, brightness); }
    void set_paste_weights(const py::object& weights) {
        if (weights.is_none()) return core_->set_paste_weights(nullptr);
        const py::ssize_t S = core_->size();
        auto w = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(weights);
        if (!w || w.ndim() != 2 || w.shape(0) != S || w.shape(1) != S)
            throw std::invalid_argument("weights must be a float array of shape (" + std::to_string(S) + ", " +
                                        std::to_string(S) + ")");
        core_->set_paste_weights(w.data());
    }

private:
    py::object engine_obj_;  // keeps the FusedIDN (and its engine) alive
    std::unique_ptr<mfs::PipelineCore> core_;
};

}  // namespace

void bind_pipeline(py::module_& m) {
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
        .def("colour", &PyPipelineCore::colour, "(chroma, brightness): shares of the change's colour and mean\n"
             "brightness pasted (1, 1: all)")
        .def("set_colour", &PyPipelineCore::set_colour, py::arg("chroma"), py::arg("brightness"),
             "Paste only these shares (0 to 1) of the change's colour and mean brightness\n"
             "(mfs_fast.face.paste.limit_colour; both 1: the change as it is)")
        .def("set_paste_weights", &PyPipelineCore::set_paste_weights, py::arg("weights"),
             "Per-pixel weights (size, size) in [0, 1] multiplied into every face's paste mask (0: the\n"
             "target's pixels stay, e.g. mfs_fast.face.paste.target_eyes); None: all 1 (the official paste)")
        .def_property_readonly("size", &PyPipelineCore::size)
        .def_property_readonly("isa", &PyPipelineCore::isa)
        .def_property_readonly("engine", &PyPipelineCore::engine);
}

}  // namespace mfs_native
