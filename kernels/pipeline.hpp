// The frame pipeline core: align -> IDN -> blend of whole frames in C++ (no Python per face).
//
//   warp      each face's 5-point alignment: a bilinear affine warp of the BGR uint8 frame into
//             the IDN's input (RGB float32 planes in [0, 1]), as cv2.warpAffine(INTER_LINEAR,
//             BORDER_CONSTANT 0) computes it (see warp.hpp);
//   IDN       the FusedIDNEngine (fused_idn.hpp), all faces of the frame as one batch;
//   mask      the official paste mask from the IDN's fusion mask: binarise (> 0.001), dilate
//             11x11, erode 11x11 twice, box blur 7x7, times the border fade (mfs_fast.face.paste);
//   detail    (detail > 0, chroma or brightness < 1) each face becomes its change, face - crop,
//             low band only (Gaussian, detail > 0), with only shares of its colour and mean
//             brightness (limit_colour), and the paste adds it: the frame keeps its own fine
//             detail and colour (mfs_fast.face.paste);
//   paste     face and mask warped back with the inverse affine and blended into the frame,
//             only inside each face's footprint box (see blend.hpp), faces in order.
//
// Matrices are the frame -> crop 2x3 alignment matrices (float32, as mfs_fast.face.align makes
// them and cv2.warpAffine takes them); every derived coefficient is computed the way OpenCV
// (5.x / 4.11+) does, so the crops are bit-identical to cv2's on CPUs with FMA and the blended
// frame matches the Python pipeline to within one level (truncation to uint8 after float math).
//
// The per-ISA kernels (warp.hpp, blend.hpp) are compiled in pipeline_portable.cpp and
// pipeline_avx2.cpp with -ffp-contract=off: products that OpenCV or NumPy round separately are
// never fused here, and the fused multiply-adds OpenCV uses are written out explicitly.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common.hpp"
#include "fused_idn.hpp"

namespace mfs {

// OpenCV's SIMD width for its warp loops on AVX2 (2 x 8 floats): columns past the last whole
// block of 16 are computed by its scalar tail, with a different rounding of the coordinates.
constexpr int CV_WARP_BLOCK = 16;

// One face crop: out[c][y][x] (RGB planes of S x S) = bilinear sample of the frame at
// (M[0] x + M[1] y + M[2], M[3] x + M[4] y + M[5]) / 255, pixels outside the frame are 0.
struct WarpJob {
    const std::uint8_t* frame = nullptr;  // H x W x 3 BGR, rows of `stride` bytes
    int H = 0, W = 0;
    std::size_t stride = 0;
    float M[6] = {};  // crop pixel -> frame coordinates (cv2's float coefficients)
    int S = 0;
    float* out = nullptr;  // 3 x S x S
};

// One face's paste: for box pixel (x, y) (frame pixel (x0 + x, y0 + y)), face and mask are
// sampled bilinearly at crop coordinates (M[0] x + M[1] y + M[2], M[3] x + M[4] y + M[5])
// (0 outside the crop) and blended: out = face * m + out * (1 - m), clipped, truncated; with
// `additive`, face is a change and out = out + face * m.
struct PasteJob {
    std::uint8_t* frame = nullptr;  // H x W x 3 BGR, read and written in place
    std::size_t stride = 0;
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // the face's footprint box
    float M[6] = {};                     // box pixel -> crop coordinates
    int S = 0;
    const float* face = nullptr;  // 3 x S x S, RGB in [0, 1] (the IDN's output)
    const float* mask = nullptr;  // S x S blend mask (mask_postprocess)
    bool additive = false;
};

// A YCbCr matrix and range in fixed point (16 fractional bits; yuv.hpp): to BGR,
// value = y_scale (Y - y_offset) + (chroma terms); to YUV, Y = y_* . (B, G, R) + y_offset and
// Cb, Cr = *_b, *_g, *_r . (B, G, R) + 128.
struct YuvCoefficients {
    std::int32_t y_scale = 0, y_offset = 0, b_u = 0, g_u = 0, g_v = 0, r_v = 0;
    std::int32_t y_b = 0, y_g = 0, y_r = 0, u_b = 0, u_g = 0, u_r = 0, v_b = 0, v_g = 0, v_r = 0;
};
// kr, kb: the matrix's red and blue weights (BT.601 0.299, 0.114; BT.709 0.2126, 0.0722);
// full_range: 0-255 luma and chroma (JPEG) instead of 16-235 / 16-240 (video).
YuvCoefficients yuv_coefficients(double kr, double kb, bool full_range);

// A BGR frame (H x W x 3) and its I420 planes: Y (H x W), then Cb and Cr ((H+1)/2 x (W+1)/2).
struct YuvJob {
    std::uint8_t* bgr = nullptr;
    std::uint8_t *y = nullptr, *u = nullptr, *v = nullptr;
    int width = 0, height = 0;
    YuvCoefficients c;
};

// The per-ISA kernels of the pipeline. Row ranges may run concurrently on different threads.
struct PipelineKernels {
    const char* name;
    void (*warp_rows)(const WarpJob&, int y0, int y1);   // crop rows [y0, y1)
    void (*paste_rows)(const PasteJob&, int r0, int r1);  // box rows [r0, r1)
    void (*i420_to_bgr_rows)(const YuvJob&, int r0, int r1);  // frame rows [r0, r1)
    void (*bgr_to_i420_rows)(const YuvJob&, int p0, int p1);  // row pairs [p0, p1) (even sizes)
};
const PipelineKernels* pipeline_kernels_portable();
const PipelineKernels* pipeline_kernels_avx2();  // null when not compiled in
// The kernel set that goes with a FusedIDN kernel set name: "avx2" -> AVX2, otherwise portable.
const PipelineKernels* pipeline_kernels_for(const std::string& isa);

// ---------------------------------------------------------------------------------------------
// Face geometry (double precision, as NumPy and OpenCV compute it).

// The coefficients cv2.warpAffine uses for `forward` (dst -> src is its inverse, computed in
// double from the given values, then rounded to float). False when forward is singular.
bool cv_warp_coefficients(const double forward[6], float out[6]);
// Plain 2x3 inverse of a 2x3 affine (mfs_fast.face.align.invert_affine). False when singular.
bool invert_affine(const double m[6], double out[6]);
// Least-squares affine fit of 5 landmarks (x, y pairs) to the ArcFace template scaled to
// `size` (mfs_fast.face.align.alignment_matrix), as float32. False for collinear points.
bool alignment_matrix(const float landmarks[10], int size, float out[6]);
// Integer box (x0, y0, x1, y1) covering the warped-back crop plus one pixel, clipped to the
// frame (mfs_fast.face.paste.footprint_box). False when it is empty.
bool footprint_box(const double inverse[6], int size, int H, int W, int box[4]);

// ---------------------------------------------------------------------------------------------
// The official paste mask.

// ones inside a 10 px margin, box-blurred 11x11 (reflect-101 border): S x S.
std::vector<float> border_fade(int S);

struct MaskScratch {
    std::vector<std::uint8_t> a, b, c, row;
    void reserve(int S);
};
// mask = blur7(erode11x2(dilate11(idn_mask > 0.001))) * fade, all S x S. Morphology ignores
// pixels outside the crop (OpenCV's default border for dilate/erode), the blur reflects (101).
void mask_postprocess(const float* idn_mask, int S, const float* fade, MaskScratch& scratch, float* out);

// ---------------------------------------------------------------------------------------------
// The detail-keeping paste's change: out = Gaussian(face - crop) per plane (3 x S x S), sigma in
// crop pixels, as cv2.GaussianBlur(face - crop, (0, 0), sigma) on float32 (kernel size
// round(8 sigma + 1) | 1, reflect-101 borders). `scratch` holds S x S floats.
// sigma 0: the plain difference.
void blend_change(const float* face, const float* crop, int S, float sigma, float* scratch, float* out);

// The change (RGB planes, 3 x S x S) in place with only `chroma` of its colour (the part off the
// grey axis; BT.601 luminance kept) and `brightness` of its mean luminance over `weights` (S x S),
// as mfs_fast.face.paste.limit_colour.
void limit_colour(float* change, const float* weights, int S, float chroma, float brightness);

// ---------------------------------------------------------------------------------------------
// Stages over all faces of a frame (threads from the global pool). matrices: F x 6 (float32).

// crops: F x 3 x S x S. False (nothing written for it) when a face's matrix is singular:
// `bad_face` says which.
bool warp_faces(const PipelineKernels& k, const std::uint8_t* frame, int H, int W, const float* matrices, int F,
                int S, float* crops, int threads, int* bad_face = nullptr);
// Blend F faces (F x 3 x S x S) with their blend masks (F x S x S) into `frame`, in order.
bool paste_faces(const PipelineKernels& k, std::uint8_t* frame, int H, int W, const float* matrices, int F, int S,
                 const float* faces, const float* blend_masks, int threads, int* bad_face = nullptr);

// ---------------------------------------------------------------------------------------------

// The whole pipeline on one FusedIDNEngine (not owned: the caller keeps it alive; it may be
// shared with other users, the engine serialises runs). Buffers grow with the number of faces
// and are reused.
class PipelineCore {
public:
    PipelineCore(FusedIDNEngine& engine, const PipelineKernels* kernels);

    // frame: H x W x 3 BGR (rows of W * 3 bytes); out: the same size, may be `frame` itself
    // (in place), otherwise the frame is copied into it first. Throws std::invalid_argument
    // when a matrix is singular (nothing is written then).
    void swap(const std::uint8_t* frame, std::uint8_t* out, int H, int W, const float* matrices, int F, int threads);

    int size() const { return S_; }
    const char* isa() const { return k_->name; }
    // Keep the frame's detail finer than `sigma` crop pixels (0: the official blend).
    void set_detail(float sigma);
    float detail() const { return detail_; }
    // Shares of the change's colour and mean brightness pasted, each in [0, 1] (1: all).
    void set_colour(float chroma, float brightness);
    float chroma() const { return chroma_; }
    float brightness() const { return brightness_; }
    // Per-pixel weights (S x S, row-major, each in [0, 1]) multiplied into every face's paste
    // mask: 0 leaves the target's pixels there (mfs_fast.face.paste.target_eyes); nullptr: all 1.
    void set_paste_weights(const float* weights);
    // Seconds of the last swap: copy, warp, idn, mask, detail, paste.
    const std::array<double, 6>& seconds() const { return seconds_; }
    static std::vector<std::string> stage_names() { return {"copy", "warp", "idn", "mask", "detail", "paste"}; }

private:
    void reserve(int F);

    FusedIDNEngine& engine_;
    const PipelineKernels* k_;
    int S_;
    std::vector<float> fade_;
    int capacity_ = 0;
    std::vector<float> crops_, faces_, masks_, blend_, change_, change_scratch_;
    std::vector<MaskScratch> scratch_;
    std::array<double, 6> seconds_{};
    float detail_ = 0.0f;
    float chroma_ = 1.0f;
    float brightness_ = 1.0f;
    std::mutex mutex_;
};

}  // namespace mfs
