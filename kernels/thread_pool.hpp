// A small persistent thread pool (no OpenMP: PyTorch's libgomp lives in the same process).
//
// run(threads, n_tasks, fn) calls fn(task, thread) for every task in [0, n_tasks) on `threads`
// threads, the caller being thread 0, and returns when all are done. Tasks are taken from an
// atomic counter. Workers spin briefly after a job (the next layer follows within
// microseconds), then sleep on a condition variable, so an idle pool costs nothing.
// One job runs at a time (callers from several threads are serialised).
#pragma once

#include <chrono>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "common.hpp"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define MFS_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define MFS_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define MFS_CPU_RELAX() ((void)0)
#endif

namespace mfs {

// Flush denormals to zero while kernels run (x86): activations of random or badly scaled
// weights can become denormal, which costs ~100x per operation; results are unchanged at any
// sensible tolerance. Restores the caller's mode.
class DenormalGuard {
public:
    DenormalGuard() {
#if defined(__x86_64__) || defined(_M_X64)
        saved_ = _mm_getcsr();
        _mm_setcsr(saved_ | 0x8040);  // FTZ | DAZ
#endif
    }
    ~DenormalGuard() {
#if defined(__x86_64__) || defined(_M_X64)
        _mm_setcsr(saved_);
#endif
    }
    DenormalGuard(const DenormalGuard&) = delete;
    DenormalGuard& operator=(const DenormalGuard&) = delete;

private:
    unsigned saved_ = 0;
};

class ThreadPool {
public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_.store(true);
            job_.fetch_add(std::uint64_t(1) << 8);
        }
        cv_.notify_all();
        for (std::thread& t : workers_) t.join();
    }

    template <class F>
    void run(int threads, int n_tasks, F&& fn) {
        if (n_tasks <= 0) return;
        DenormalGuard denormals;
        threads = std::max(1, std::min({threads, n_tasks, 256}));
        if (threads == 1) {
            for (int t = 0; t < n_tasks; ++t) fn(t, 0);
            return;
        }
        std::lock_guard<std::mutex> job_lock(job_mutex_);
        ensure_workers(threads - 1);
        using Fn = typename std::remove_reference<F>::type;
        call_ = [](void* ctx, int task, int thread) { (*static_cast<Fn*>(ctx))(task, thread); };
        ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
        n_tasks_ = n_tasks;
        next_.store(0, std::memory_order_relaxed);
        pending_.store(threads - 1, std::memory_order_relaxed);
        // publishes the job (seq_cst): a new generation and, in the same word, how many workers
        // take part, so a worker never pairs one job's generation with another's participants
        const std::uint64_t generation = (job_.load() >> 8) + 1;
        job_.store((generation << 8) | std::uint64_t(threads - 1));
        if (sleepers_.load() > 0) {
            std::lock_guard<std::mutex> lock(mutex_);
            cv_.notify_all();
        }
        work(0);
        // wait for the helpers
        for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
            if (spin < 4096)
                MFS_CPU_RELAX();
            else
                std::this_thread::yield();
        }
    }

    int workers() const { return static_cast<int>(workers_.size()); }

private:
    void work(int thread) {
        for (int t; (t = next_.fetch_add(1, std::memory_order_relaxed)) < n_tasks_;) call_(ctx_, t, thread);
    }

    void ensure_workers(int n) {
#if defined(__unix__) || defined(__APPLE__)
        // after fork() the child has none of the parent's workers: forget them (never join or
        // destroy those std::thread objects) and start new ones
        if (!workers_.empty() && owner_ != getpid()) {
            new std::vector<std::thread>(std::move(workers_));  // deliberately leaked
            workers_.clear();
            job_.store(0);
            sleepers_.store(0);
        }
        owner_ = getpid();
#endif
        while (static_cast<int>(workers_.size()) < n) {
            const int index = static_cast<int>(workers_.size());
            const std::uint64_t start = job_.load() >> 8;
            workers_.emplace_back([this, index, start] { loop(index, start); });
        }
    }

    void loop(int index, std::uint64_t seen) {
        DenormalGuard denormals;
        using clock = std::chrono::steady_clock;
        for (;;) {
            std::uint64_t job = job_.load();
            if ((job >> 8) == seen) {  // spin a little: the next layer's job usually follows at once
                const auto until = clock::now() + std::chrono::microseconds(300);
                for (int spin = 0; ((job = job_.load()) >> 8) == seen; ++spin) {
                    MFS_CPU_RELAX();
                    if ((spin & 255) == 255 && clock::now() > until) break;
                }
            }
            if ((job >> 8) == seen) {
                std::unique_lock<std::mutex> lock(mutex_);
                sleepers_.fetch_add(1);
                cv_.wait(lock, [&] { return stop_.load() || (job_.load() >> 8) != seen; });
                sleepers_.fetch_sub(1);
                job = job_.load();
            }
            if (stop_.load()) return;
            seen = job >> 8;
            if (index < static_cast<int>(job & 255)) {
                work(index + 1);
                pending_.fetch_sub(1, std::memory_order_release);
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex job_mutex_;  // one job at a time
    std::mutex mutex_;      // sleeping workers
    std::condition_variable cv_;
    std::atomic<std::uint64_t> job_{0};  // generation << 8 | number of workers taking part
    std::atomic<int> sleepers_{0};
    std::atomic<int> next_{0};
    std::atomic<int> pending_{0};
    void (*call_)(void*, int, int) = nullptr;
    void* ctx_ = nullptr;
    int n_tasks_ = 0;
    std::atomic<bool> stop_{false};
#if defined(__unix__) || defined(__APPLE__)
    pid_t owner_ = 0;
#endif
};

// The process-wide pool shared by every FusedIDN and block function.
inline ThreadPool& global_pool() {
    static ThreadPool pool;
    return pool;
}

}  // namespace mfs
