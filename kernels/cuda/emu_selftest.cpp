// Checks that cuda_emu.hpp catches what it says it catches. Built and run by
// tests/test_cuda_kernels.py:  g++ -std=c++17 -O1 -DMFS_CUDA_EMULATE -I kernels/cuda emu_selftest.cpp
#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda_compat.hpp"

// Each thread writes its slot, then reads its neighbour's: needs the barrier in between.
__global__ void neighbour(float* out, int with_barrier) {
    MFS_DYNAMIC_SMEM(s);
    const int t = int(threadIdx.x), n = int(blockDim.x);
    s[t] = float(t);
    if (with_barrier) __syncthreads();
    out[blockIdx.x * n + t] = s[(t + 1) % n];
}

__global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void early_return(float* out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void write_all(float* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = 2.0f; }

static int failures = 0;
static void expect(bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

int main() {
    const int n = 64, blocks = 3;
    float* d = nullptr;
    MFS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&d), blocks * n * sizeof(float)));
    std::vector<float> h(blocks * n);

    MFS_CUDA_CHECK(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    expect(std::isnan(h[0]) && std::isnan(h.back()), "fresh device memory reads as NaN");

    auto k1 = neighbour;
    MFS_LAUNCH(k1, dim3(blocks), dim3(n), n * sizeof(float), nullptr, d, 1);
    expect(cudaGetLastError() == cudaSuccess, "a correct kernel launches");
    MFS_CUDA_CHECK(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    bool right = true;
    for (int i = 0; i < blocks * n; ++i) right = right && h[i] == float((i % n + 1) % n);
    expect(right, "with the barrier every thread reads its neighbour's value");

    MFS_LAUNCH(k1, dim3(blocks), dim3(n), n * sizeof(float), nullptr, d, 0);
    MFS_CUDA_CHECK(cudaMemcpy(h.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
    int wrong = 0;
    for (int i = 0; i < blocks * n; ++i) wrong += !(h[i] == float((i % n + 1) % n));
    expect(wrong > 0, "a missing barrier gives wrong (NaN) results");

    auto k2 = divergent_barrier;
    MFS_LAUNCH(k2, dim3(1), dim3(n), 0, nullptr, d);
    expect(cudaGetLastError() == cudaErrorLaunchFailure, "a barrier reached by some threads only fails the launch");

    auto k3 = early_return;
    MFS_LAUNCH(k3, dim3(1), dim3(n), 0, nullptr, d);
    expect(cudaGetLastError() == cudaErrorLaunchFailure, "a thread returning before a barrier fails the launch");

    auto k4 = write_all;
    MFS_LAUNCH(k4, dim3(1), dim3(2048), 0, nullptr, d);
    expect(cudaGetLastError() == cudaErrorInvalidConfiguration, "2048 threads per block are refused");
    MFS_LAUNCH(k4, dim3(1), dim3(64), 64 * 1024, nullptr, d);
    expect(cudaGetLastError() != cudaSuccess, "64 KiB of dynamic shared memory are refused");

    expect(cudaMemcpy(h.data(), h.data() + 1, sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess,
           "a host pointer as a copy's device side is refused");
    cudaGetLastError();
    expect(mfs_emu::is_device(d + blocks * n - 1) && !mfs_emu::is_device(d + blocks * n) && !mfs_emu::is_device(h.data()),
           "device pointers are told from host ones");

    cudaStream_t s = nullptr;
    MFS_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    MFS_CUDA_CHECK(cudaMemsetAsync(d, 0, blocks * n * sizeof(float), s));
    MFS_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    MFS_LAUNCH(k4, dim3(blocks), dim3(n), 0, s, d);
    cudaGraph_t g = nullptr;
    MFS_CUDA_CHECK(cudaStreamEndCapture(s, &g));
    MFS_CUDA_CHECK(cudaMemcpy(h.data(), d, sizeof(float), cudaMemcpyDeviceToHost));
    expect(h[0] == 0.0f, "a captured launch does not run");
    cudaGraphExec_t e = nullptr;
    MFS_CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
    MFS_CUDA_CHECK(cudaGraphLaunch(e, s));
    MFS_CUDA_CHECK(cudaMemcpy(h.data(), d, sizeof(float), cudaMemcpyDeviceToHost));
    expect(h[0] == 2.0f, "a graph launch replays it");
    cudaGraphExecDestroy(e);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
    cudaFree(d);
    std::printf(failures ? "%d FAILED\n" : "all emulator checks passed\n", failures);
    return failures ? 1 : 0;
}
