// mfs_fast._cuda: the devices (count, names, versions, why there is none) and CudaError. Never
// raises for a missing GPU or driver: the CUDA runtime is linked statically and loads the driver
// only when first used.
#include <stdexcept>
#include <string>

#include "../cuda_compat.hpp"
#include "bind.hpp"

namespace mfs_cuda_py {
namespace mc = mfs::cuda;

std::string unavailable_reason() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        int driver = 0;
        const bool no_driver = cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0;
        cudaGetLastError();
        return std::string(no_driver ? "no CUDA GPU: no NVIDIA driver is installed (libcuda.so.1 not found); "
                                     : "no CUDA GPU usable: ") +
               "cudaGetDeviceCount failed (" + mc::error_text(e) + ")";
    }
    if (n == 0) return "no CUDA GPU: cudaGetDeviceCount found 0 devices";
    return "";
}

void require_device() {
    const std::string reason = unavailable_reason();
    if (!reason.empty()) throw std::runtime_error(reason);
}

namespace {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

std::string device_name(int device) {
    const std::string reason = unavailable_reason();
    if (!reason.empty()) return reason;
    const int n = device_count();
    if (device < 0 || device >= n)
        return "no CUDA device " + std::to_string(device) + " (" + std::to_string(n) + " visible)";
    cudaDeviceProp prop{};
    const cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return "cudaGetDeviceProperties failed (" + mc::error_text(e) + ")";
    }
    return prop.name;
}

int version(cudaError_t (*get)(int*)) {
    int v = 0;
    if (get(&v) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return v;
}

}  // namespace

void bind_devices(py::module_& m) {
    py::register_exception<mc::CudaError>(m, "CudaError", PyExc_RuntimeError);
    m.def("device_count", &device_count, "Number of CUDA GPUs visible (0, never an exception, without a GPU or driver)");
    m.def("device_name", &device_name, py::arg("device") = 0,
          "The GPU's name, or why there is none (never raises)");
    m.def("unavailable_reason", &unavailable_reason, "'' when a CUDA GPU is usable, else why not");
    m.def("runtime_version", [] { return version(&cudaRuntimeGetVersion); }, "CUDA runtime version (e.g. 13000)");
    m.def("driver_version", [] { return version(&cudaDriverGetVersion); }, "CUDA driver version, 0 without a driver");
}

}  // namespace mfs_cuda_py
