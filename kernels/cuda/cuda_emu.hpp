// A host-only emulation of the CUDA subset mfs_fast's kernels and engine use, so that the same
// sources (compiled by g++ with -DMFS_CUDA_EMULATE, see emulate.py) run on a CPU where there is
// no GPU. It is a test tool, slow by design, and strict where a GPU would be lenient:
//
// * every thread of a block is a fiber with its own stack; __syncthreads() switches
//   back to the scheduler, which resumes the block's fibers one after the other, in a shuffled
//   order each round. A missing barrier therefore shows up as wrong results (one thread runs
//   through two phases before the others wrote what it reads), a barrier reached by only some
//   threads (or at different source lines) is a launch failure, and so is a thread that returns
//   while others still wait at a barrier;
// * dynamic shared memory and every cudaMalloc'd buffer start as NaN (0xFF bytes): reading
//   anything nobody wrote poisons the result;
// * launches are checked like the hardware checks them (at most 1024 threads, grid y/z at most
//   65535, at most 48 KiB of dynamic shared memory) and fail with the same errors;
// * cudaMemcpy* checks that device-side pointers really lie in device allocations (a host
//   pointer handed to a kernel or a copy is the classic bug this cannot otherwise catch), and
//   MFS_EXPECT_DEVICE does the same for kernel arguments;
// * float4/float2 accesses through ld4/ld2 are checked for alignment (a GPU faults on those).
//
// Streams run synchronously (a launch finishes before it returns); events read a host clock;
// stream capture records launches and replays them on cudaGraphLaunch.
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

// ------------------------------------------------------------------------------ language subset
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __shared__ static
#define __constant__
#define __launch_bounds__(...)
#define __align__(n) alignas(n)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

template <class T>
inline T __ldg(const T* p) {
    return *p;
}

// ------------------------------------------------------------------------------ runtime subset
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrMultiProcessorCount = 16,
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
constexpr unsigned cudaStreamNonBlocking = 1;

struct cudaDeviceProp {
    char name[256];
    std::size_t totalGlobalMem;
    std::size_t sharedMemPerBlock;
    int multiProcessorCount;
    int major, minor;
};

namespace mfs_emu {

using Op = std::function<void()>;
struct Stream {
    bool capturing = false;
    std::vector<Op> captured;
};
struct Event {
    double ms = 0.0;
    bool recorded = false;
};
struct Graph {
    std::vector<Op> ops;
};

inline thread_local cudaError_t last_error = cudaSuccess;
inline cudaError_t fail(cudaError_t e) {
    if (last_error == cudaSuccess) last_error = e;
    return e;
}

inline double now_ms() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

// Device allocations: start -> size.
struct Allocations {
    std::mutex mutex;
    std::map<std::uintptr_t, std::size_t> blocks;
};
inline Allocations& allocations() {
    static Allocations a;
    return a;
}
// Whether [p, p + bytes) lies inside one device allocation.
inline bool is_device(const void* p, std::size_t bytes = 1) {
    Allocations& a = allocations();
    std::lock_guard<std::mutex> lock(a.mutex);
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    auto it = a.blocks.upper_bound(addr);
    if (it == a.blocks.begin()) return false;
    --it;
    return addr >= it->first && addr + bytes <= it->first + it->second;
}
inline void expect_device(const void* p, const char* what) {
    if (p && !is_device(p)) {
        std::fprintf(stderr, "mfs_emu: %s is not a device pointer (%p)\n", what, p);
        std::abort();
    }
}

inline int emulated_sms() {
    const char* env = std::getenv("MFS_CUDA_EMU_SMS");
    const int v = env ? std::atoi(env) : 0;
    return v > 0 ? v : 132;  // an H100's count, so that plans match the GPU's by default
}

// ------------------------------------------------------------------------------ the scheduler
constexpr std::size_t STACK_BYTES = 128 * 1024;

// Execution contexts. On x86-64 a minimal switch (callee-saved registers, MXCSR and the x87
// control word; a few ns) replaces swapcontext, which makes two system calls per switch.
#if defined(__x86_64__) && defined(__ELF__) && !defined(MFS_EMU_UCONTEXT)
struct Context {
    void* sp = nullptr;
};
extern "C" void mfs_emu_switch(void** save_sp, void* load_sp);
asm(".pushsection .text\n"
    ".weak mfs_emu_switch\n"
    ".hidden mfs_emu_switch\n"
    ".type mfs_emu_switch, @function\n"
    "mfs_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size mfs_emu_switch, .-mfs_emu_switch\n"
    ".popsection\n");
inline void switch_to(Context* from, const Context* to) { mfs_emu_switch(&from->sp, to->sp); }
// A fresh stack whose first switch "returns" into entry (with the ABI's stack alignment).
inline void init_context(Context& c, char* stack, std::size_t bytes, void (*entry)()) {
    auto top = reinterpret_cast<std::uintptr_t>(stack + bytes) & ~std::uintptr_t(15);
    auto* s = reinterpret_cast<std::uint64_t*>(top);
    s[-1] = 0;                                          // entry's (never used) return address
    s[-2] = reinterpret_cast<std::uint64_t>(entry);     // popped by ret
    for (int i = 3; i <= 8; ++i) s[-i] = 0;             // rbp, rbx, r12-r15
    std::uint32_t mxcsr = 0;
    std::uint16_t fpucw = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    s[-9] = 0;
    std::memcpy(&s[-9], &mxcsr, 4);
    std::memcpy(reinterpret_cast<char*>(&s[-9]) + 4, &fpucw, 2);
    c.sp = &s[-9];
}
#else
struct Context {
    ucontext_t uc;
};
// swapcontext returns twice (like setjmp): kept out of line so that no caller's locals live
// across it in registers the compiler cannot account for.
__attribute__((noinline)) inline void switch_to(Context* from, const Context* to) { swapcontext(&from->uc, &to->uc); }
__attribute__((noinline)) inline void init_context(Context& c, char* stack, std::size_t bytes, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
    Context ctx;
    bool done = false;
    int line = 0;  // source line of the barrier it waits at
    dim3 tid;
};

// Fiber stacks of this OS thread, kept between launches (never zeroed: nothing reads them first).
struct Stacks {
    std::unique_ptr<char[]> data;
    std::size_t bytes = 0;
    char* get(std::size_t need) {
        if (need > bytes) data.reset(new char[need]), bytes = need;
        return data.get();
    }
};
inline thread_local Stacks stacks;

struct Runner {
    Context main;
    std::vector<Fiber> fibers;
    std::vector<float> smem;  // dynamic shared memory of the block being run
    const Op* body = nullptr;
    int current = -1;
    std::string error;
    std::mt19937 rng{12345};
};
inline thread_local Runner* runner = nullptr;

inline float* dynamic_smem() { return runner->smem.data(); }

inline void fiber_main() {
    Runner* r = runner;
    (*r->body)();
    Fiber& f = r->fibers[r->current];
    f.done = true;
    switch_to(&f.ctx, &r->main);  // never resumed
    std::abort();
}

inline void barrier(int line) {
    Runner* r = runner;
    if (!r || r->current < 0) {
        std::fprintf(stderr, "mfs_emu: __syncthreads() outside a kernel\n");
        std::abort();
    }
    Fiber& f = r->fibers[r->current];
    f.line = line;
    switch_to(&f.ctx, &r->main);
}

// Runs every block of the grid, one after the other; returns false (r.error says why) when
// the barriers were misused.
inline bool run_grid(dim3 grid, dim3 block, std::size_t smem_bytes, const Op& body) {
    Runner local;
    Runner* saved = runner;
    runner = &local;
    Runner& r = local;
    const int n = int(block.x * block.y * block.z);
    r.fibers.resize(n);
    char* stack = stacks.get(std::size_t(n) * STACK_BYTES);
    r.smem.resize((smem_bytes + 3) / 4 + 4);
    r.body = &body;
    std::vector<int> order(n);
    gridDim = grid;
    blockDim = block;
    bool ok = true;
    for (unsigned bz = 0; bz < grid.z && ok; ++bz)
        for (unsigned by = 0; by < grid.y && ok; ++by)
            for (unsigned bx = 0; bx < grid.x && ok; ++bx) {
                blockIdx = dim3(bx, by, bz);
                std::memset(r.smem.data(), 0xFF, r.smem.size() * sizeof(float));  // NaN
                for (int i = 0; i < n; ++i) {
                    Fiber& f = r.fibers[i];
                    f.done = false;
                    f.line = 0;
                    f.tid = dim3(unsigned(i) % block.x, (unsigned(i) / block.x) % block.y, unsigned(i) / (block.x * block.y));
                    init_context(f.ctx, stack + std::size_t(i) * STACK_BYTES, STACK_BYTES, fiber_main);
                    order[i] = i;
                }
                int alive = n;
                while (alive > 0) {
                    std::shuffle(order.begin(), order.end(), r.rng);
                    int waiting = 0, finished = 0, line = -1;
                    bool lines_agree = true;
                    for (int i : order) {
                        Fiber& f = r.fibers[i];
                        if (f.done) continue;
                        r.current = i;
                        threadIdx = f.tid;
                        switch_to(&r.main, &f.ctx);
                        if (f.done) {
                            ++finished;
                            --alive;
                        } else {
                            ++waiting;
                            if (line < 0) line = f.line;
                            lines_agree = lines_agree && f.line == line;
                        }
                    }
                    if (waiting && finished) {
                        r.error = "some threads of a block returned while others wait at the __syncthreads() of line " +
                                  std::to_string(line);
                        ok = false;
                    } else if (!lines_agree) {
                        r.error = "threads of a block wait at __syncthreads() of different lines";
                        ok = false;
                    }
                    if (!ok) break;
                }
                r.current = -1;
            }
    runner = saved;
    if (!ok) std::fprintf(stderr, "mfs_emu: launch failed: %s\n", r.error.c_str());
    return ok;
}

template <class F>
inline void launch(dim3 grid, dim3 block, std::size_t smem, Stream* stream, F body) {
    const unsigned long long threads = 1ull * block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > 48 * 1024) {
        fail(cudaErrorInvalidValue);
        return;
    }
    Op op = [grid, block, smem, body]() {
        if (!run_grid(grid, block, smem, Op(body))) fail(cudaErrorLaunchFailure);
    };
    if (stream && stream->capturing)
        stream->captured.push_back(std::move(op));
    else
        op();
}

// Aligned vector loads (checked: a misaligned float4 access faults on a GPU).
inline void check_aligned(const void* p, std::size_t a, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(p) % a) {
        std::fprintf(stderr, "mfs_emu: misaligned %s access at %p\n", what, p);
        std::abort();
    }
}

}  // namespace mfs_emu

#define __syncthreads() ::mfs_emu::barrier(__LINE__)

using cudaStream_t = mfs_emu::Stream*;
using cudaEvent_t = mfs_emu::Event*;
using cudaGraph_t = mfs_emu::Graph*;
using cudaGraphExec_t = mfs_emu::Graph*;

inline const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    }
    return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
        case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: see stderr)";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    }
    return "unknown error";
}

inline cudaError_t cudaGetLastError() {
    const cudaError_t e = mfs_emu::last_error;
    mfs_emu::last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError() { return mfs_emu::last_error; }
inline cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : mfs_emu::fail(cudaErrorInvalidDevice); }
inline cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
    if (d != 0) return mfs_emu::fail(cudaErrorInvalidDevice);
    std::memset(p, 0, sizeof(*p));
    std::snprintf(p->name, sizeof(p->name), "mfs_fast CUDA emulator (CPU)");
    p->totalGlobalMem = std::size_t(8) << 30;
    p->sharedMemPerBlock = 48 * 1024;
    p->multiProcessorCount = mfs_emu::emulated_sms();
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int d) {
    if (d != 0) return mfs_emu::fail(cudaErrorInvalidDevice);
    switch (attr) {
        case cudaDevAttrMultiProcessorCount: *v = mfs_emu::emulated_sms(); return cudaSuccess;
        case cudaDevAttrMaxSharedMemoryPerBlock: *v = 48 * 1024; return cudaSuccess;
    }
    return mfs_emu::fail(cudaErrorInvalidValue);
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
    const std::size_t size = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
    void* q = std::aligned_alloc(256, size);
    if (!q) return mfs_emu::fail(cudaErrorMemoryAllocation);
    std::memset(q, 0xFF, size);  // NaN: nothing reads what nobody wrote
    mfs_emu::Allocations& a = mfs_emu::allocations();
    std::lock_guard<std::mutex> lock(a.mutex);
    a.blocks[reinterpret_cast<std::uintptr_t>(q)] = bytes;
    *p = q;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
    if (!p) return cudaSuccess;
    mfs_emu::Allocations& a = mfs_emu::allocations();
    {
        std::lock_guard<std::mutex> lock(a.mutex);
        auto it = a.blocks.find(reinterpret_cast<std::uintptr_t>(p));
        if (it == a.blocks.end()) return mfs_emu::fail(cudaErrorInvalidValue);
        a.blocks.erase(it);
    }
    std::free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
    *p = std::malloc(std::max<std::size_t>(bytes, 1));
    return *p ? cudaSuccess : mfs_emu::fail(cudaErrorMemoryAllocation);
}
inline cudaError_t cudaFreeHost(void* p) {
    std::free(p);
    return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
    if (bytes == 0) return cudaSuccess;
    if (stream && stream->capturing) return mfs_emu::fail(cudaErrorStreamCaptureUnsupported);
    const bool dst_dev = mfs_emu::is_device(dst, bytes), src_dev = mfs_emu::is_device(src, bytes);
    bool ok = true;
    switch (kind) {
        case cudaMemcpyHostToDevice: ok = dst_dev && !mfs_emu::is_device(src); break;
        case cudaMemcpyDeviceToHost: ok = src_dev && !mfs_emu::is_device(dst); break;
        case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
        case cudaMemcpyHostToHost: ok = !mfs_emu::is_device(dst) && !mfs_emu::is_device(src); break;
        case cudaMemcpyDefault: break;
    }
    if (!ok) {
        std::fprintf(stderr, "mfs_emu: cudaMemcpy kind %d with dst %p (device: %d) src %p (device: %d), %zu bytes\n",
                     int(kind), dst, int(dst_dev), src, int(src_dev), bytes);
        return mfs_emu::fail(cudaErrorInvalidValue);
    }
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t stream = nullptr) {
    if (stream && stream->capturing) return mfs_emu::fail(cudaErrorStreamCaptureUnsupported);
    if (bytes && !mfs_emu::is_device(p, bytes)) return mfs_emu::fail(cudaErrorInvalidValue);
    std::memset(p, value, bytes);
    return cudaSuccess;
}

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = new mfs_emu::Stream();
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s && s->capturing) return mfs_emu::fail(cudaErrorStreamCaptureUnsupported);
    return cudaSuccess;
}

inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new mfs_emu::Event();
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
    if (s && s->capturing) return mfs_emu::fail(cudaErrorStreamCaptureUnsupported);
    e->ms = mfs_emu::now_ms();
    e->recorded = true;
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a->recorded || !b->recorded) return mfs_emu::fail(cudaErrorInvalidResourceHandle);
    *ms = float(b->ms - a->ms);
    return cudaSuccess;
}

inline cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || s->capturing) return mfs_emu::fail(cudaErrorInvalidValue);
    s->capturing = true;
    s->captured.clear();
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
    if (!s || !s->capturing) return mfs_emu::fail(cudaErrorInvalidValue);
    s->capturing = false;
    *g = new mfs_emu::Graph{std::move(s->captured)};
    s->captured.clear();
    return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long = 0) {
    *e = new mfs_emu::Graph{g->ops};
    return cudaSuccess;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (s && s->capturing) return mfs_emu::fail(cudaErrorStreamCaptureUnsupported);
    for (const auto& op : e->ops) op();
    return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}
