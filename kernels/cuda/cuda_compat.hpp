// What every CUDA source of mfs_fast._cuda includes first: the real CUDA runtime, or (with
// MFS_CUDA_EMULATE defined) cuda_emu.hpp, a host-only emulation of the subset used here, so
// that the very same kernel and engine sources can be compiled by g++ and run on a CPU (the
// tests do that where no GPU is present; see cuda_emu.hpp for what it checks).
//
// The kernels use no CUDA syntax beyond what both understand, plus these macros:
//   MFS_LAUNCH(kernel, grid, block, smem, stream, args...)   kernel<<<grid, block, smem, stream>>>(args...)
//   MFS_DYNAMIC_SMEM(name)                                  float* name = the block's dynamic shared memory
#pragma once

#include <stdexcept>
#include <string>

#ifdef MFS_CUDA_EMULATE
#include "cuda_emu.hpp"
#define MFS_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::mfs_emu::launch((grid), (block), (smem), (stream), [=]() { kernel(__VA_ARGS__); })
#define MFS_DYNAMIC_SMEM(name) float* name = ::mfs_emu::dynamic_smem()
#define MFS_EXPECT_DEVICE(ptr, what) ::mfs_emu::expect_device((ptr), (what))
#else
#include <cuda_runtime_api.h>
#if defined(__CUDACC__)
#define MFS_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#define MFS_DYNAMIC_SMEM(name)                      \
    extern __shared__ float4 mfs_dynamic_smem_[];   \
    float* name = reinterpret_cast<float*>(mfs_dynamic_smem_)
#endif
#define MFS_EXPECT_DEVICE(ptr, what) ((void)0)
#endif

namespace mfs {
namespace cuda {

// Thrown for every failed CUDA call: names the call, the error and where it happened.
struct CudaError : std::runtime_error {
    cudaError_t code;
    CudaError(cudaError_t c, const std::string& what) : std::runtime_error(what), code(c) {}
};

inline std::string error_text(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

inline void check(cudaError_t e, const char* expr, const char* file, int line) {
    if (e != cudaSuccess)
        throw CudaError(e, std::string(expr) + " failed (" + error_text(e) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace cuda
}  // namespace mfs

#define MFS_CUDA_CHECK(expr) ::mfs::cuda::check((expr), #expr, __FILE__, __LINE__)
