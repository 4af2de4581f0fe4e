// Run-time choice of the kernel set: the best the CPU runs, unless MFS_FAST_ISA or the
// caller's `isa` argument names another one (tests force "scalar" to check the portable path).
#include <stdexcept>

#include "common.hpp"

namespace mfs {

bool cpu_has_avx2_fma() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return ok;
#else
    return false;
#endif
}

bool cpu_has_avx512() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    static const bool ok = [] {
        __builtin_cpu_init();
        return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
    }();
    return ok;
#else
    return false;
#endif
}

bool cpu_has_avx512bf16() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    static const bool ok = [] {
        __builtin_cpu_init();
        return cpu_has_avx512() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
    }();
    return ok;
#else
    return false;
#endif
}

std::vector<std::string> available_isas() {
    std::vector<std::string> names;
    if (kernels_avx512() && cpu_has_avx512()) names.push_back("avx512");
    if (kernels_avx2() && cpu_has_avx2_fma()) names.push_back("avx2");
    if (kernels_neon()) names.push_back("neon");
    names.push_back("scalar");
    return names;
}

const KernelTable* select_kernels(const std::string& isa_in) {
    std::string isa = isa_in.empty() ? "auto" : isa_in;
    if (isa == "auto") {
        const char* env = std::getenv("MFS_FAST_ISA");
        if (env && *env) isa = env;
    }
    if (isa == "auto") isa = available_isas().front();
    if (isa == "scalar") return kernels_scalar();
    if (isa == "avx2") {
        if (!kernels_avx2()) throw std::invalid_argument("isa 'avx2': not built for this architecture");
        if (!cpu_has_avx2_fma()) throw std::invalid_argument("isa 'avx2': this CPU lacks AVX2 or FMA");
        return kernels_avx2();
    }
    if (isa == "avx512") {
        if (!kernels_avx512()) throw std::invalid_argument("isa 'avx512': not built for this architecture");
        if (!cpu_has_avx512()) throw std::invalid_argument("isa 'avx512': this CPU lacks AVX-512 F/VL/DQ");
        return kernels_avx512();
    }
    if (isa == "avx512bf16") {  // opt-in: bf16 GEMMs (never "auto", not in available_isas)
        if (!kernels_avx512bf16()) throw std::invalid_argument("isa 'avx512bf16': not built for this architecture");
        if (!cpu_has_avx512bf16()) throw std::invalid_argument("isa 'avx512bf16': this CPU lacks AVX512-BF16");
        return kernels_avx512bf16();
    }
    if (isa == "neon") {
        if (!kernels_neon()) throw std::invalid_argument("isa 'neon': not built for this architecture");
        return kernels_neon();
    }
    throw std::invalid_argument("unknown isa '" + isa + "' (expected auto, avx512, avx512bf16, avx2, neon or scalar)");
}

}  // namespace mfs
