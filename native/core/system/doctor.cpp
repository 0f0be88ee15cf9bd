#include "system/doctor.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "cpu/small_gemm.h"
#include "errors.h"
#include "system/devices.h"
#include "system/threads.h"
#include "tensor/cpu_bf16.h"

namespace pace {

namespace {

std::vector<std::string> loadedLibraries() {
  std::vector<std::string> paths;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (std::find(paths.begin(), paths.end(), path) == paths.end()) paths.push_back(path);
  }
  return paths;
}

bool contains(const std::string& text, const char* needle) { return text.find(needle) != std::string::npos; }

std::string resolvedPath(const std::string& path) {
  char buffer[PATH_MAX];
  return realpath(path.c_str(), buffer) ? std::string(buffer) : path;
}

std::string loadedLibraryMatching(const char* needle) {
  for (const auto& path : loadedLibraries()) {
    const std::string base = path.substr(path.find_last_of('/') + 1);
    if (contains(base, needle)) return path;
  }
  return "";
}

// The library that provides `sgemm_` to libtorch, as the dynamic linker resolves it: that is the BLAS
// every float32 GEMM runs on. (Debian's libtorch links libblas.so.3, which the alternatives system points
// at OpenBLAS, BLIS or the reference BLAS; PyTorch's own builds carry MKL inside libtorch_cpu.)
std::string sgemmProvider() {
  std::string torch = loadedLibraryMatching("libtorch_cpu.so");
  if (torch.empty()) torch = loadedLibraryMatching("libtorch.so");
  if (torch.empty()) return "";
  void* handle = dlopen(torch.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (!handle) return "";
  std::string provider;
  Dl_info info{};
  if (void* symbol = dlsym(handle, "sgemm_"); symbol && dladdr(symbol, &info) && info.dli_fname) {
    provider = resolvedPath(info.dli_fname);
  }
  dlclose(handle);
  return provider;
}

BlasInfo detectBlas(const std::string& buildConfig) {
  BlasInfo info;
  info.kind = "unknown";
  info.library = sgemmProvider();
  if (info.library.empty()) {
    if (contains(buildConfig, "BLAS_INFO=mkl")) info.kind = "mkl";
    return info;
  }
  if (void* handle = dlopen(info.library.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    using ConfigFn = char* (*)();
    using ParallelFn = int (*)();
    if (auto config = reinterpret_cast<ConfigFn>(dlsym(handle, "openblas_get_config"))) {
      info.kind = "openblas";
      info.detail = config();
      if (auto parallel = reinterpret_cast<ParallelFn>(dlsym(handle, "openblas_get_parallel"))) {
        const int mode = parallel();
        info.threading = mode == 0 ? "sequential" : mode == 1 ? "pthreads" : "openmp";
      }
    } else if (dlsym(handle, "mkl_get_version_string") || dlsym(handle, "MKL_Get_Version_String")) {
      info.kind = "mkl";
    }
    dlclose(handle);
  }
  if (info.kind == "unknown") {
    if (contains(info.library, "blis")) {
      info.kind = "blis";
    } else if (contains(info.library, "atlas")) {
      info.kind = "atlas";
    } else if (contains(info.library, "/blas/libblas") || contains(info.library, "refblas")) {
      info.kind = "reference";  // Debian's netlib BLAS lives in .../blas/libblas.so.3
    } else if (contains(info.library, "libtorch") && contains(buildConfig, "BLAS_INFO=mkl")) {
      info.kind = "mkl";
    }
  }
  return info;
}

int countCudaDevices() {
  try {
    return static_cast<int>(torch::cuda::device_count());  // 0 when libtorch has no CUDA
  } catch (const std::exception&) {
    return 0;
  }
}

// Runs one of the core's parallel loops and counts the threads it got: 1 when the core was compiled without
// the OpenMP libtorch parallelises with (cmake/PaceOpenMP.cmake), whatever the intra-op setting says.
std::set<std::string> cpuFlags() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  std::set<std::string> flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string flag; words >> flag;) flags.insert(flag);
    break;
  }
  return flags;
}

// libtorch 1.13-2.x send bf16 CPU matrix products to oneDNN when it is built in and the CPU has AVX-512 (BW, VL,
// DQ: mkldnn_bf16_device_check); otherwise to ATen's own loops, which are many times slower than float32.
CpuBf16Info cpuBf16Info() {
  const std::set<std::string> flags = cpuFlags();
  const auto has = [&](const char* flag) { return flags.count(flag) > 0; };
  CpuBf16Info info;
  info.amx = has("amx_bf16");
  info.units = has("avx512_bf16") || info.amx;
  const bool avx512 = has("avx512bw") && has("avx512vl") && has("avx512dq");
  if (at::hasMKLDNN() && avx512) {
    info.gemm = "onednn";
    info.reason = info.amx     ? "oneDNN on the CPU's AMX-BF16 tiles"
                  : info.units ? "oneDNN on the CPU's AVX-512 BF16 units"
                               : "oneDNN with AVX-512, converting bf16 in software (no bf16 units)";
  } else {
    info.gemm = "aten";
    info.reason = at::hasMKLDNN() ? "libtorch's own loops: this CPU lacks AVX-512 (BW/VL/DQ); prefer fp32"
                                  : "libtorch's own loops: libtorch was built without oneDNN; prefer fp32";
  }
  info.sumsInFloat = cpuBf16ProductsSumInFloat();
  if (!info.sumsInFloat) info.reason += " (they sum in bf16 here: precision 'bf16' is refused on this CPU)";
  return info;
}

int measureCoreLoopThreads() {
  std::atomic<int> seen{0};
  at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) {
    const int thread = at::get_thread_num() + 1;
    int highest = seen.load();
    while (thread > highest && !seen.compare_exchange_weak(highest, thread)) {
    }
  });
  return seen.load();
}

}  // namespace

DoctorReport collectDoctorReport() {
  DoctorReport report;
  report.torchVersion = TORCH_VERSION;
  report.cudaBuilt = at::hasCUDA();
  report.cudaDeviceCount = countCudaDevices();
  report.buildConfig = at::show_config();
  report.blas = detectBlas(report.buildConfig);
  report.intraOpThreads = at::get_num_threads();
  report.interOpThreads = at::get_num_interop_threads();
  report.hardwareThreads = static_cast<int>(std::thread::hardware_concurrency());
  report.parallelInfo = at::get_parallel_info();
  report.availableCpus = availableCpus();
  report.coreLoopThreads = measureCoreLoopThreads();
  report.cpuAttentionKernels = kernels::avx2KernelsAvailable();
  report.cpuBf16 = cpuBf16Info();
  if (at::hasMKLDNN()) {
    const auto at = report.buildConfig.find("MKL-DNN v");
    report.onednn = at == std::string::npos
                        ? "yes"
                        : report.buildConfig.substr(at + 8, report.buildConfig.find(' ', at + 8) - at - 8);
  }
  if (report.blas.kind == "reference") {
    report.warnings.push_back(
        "BLAS is the slow reference implementation (" + report.blas.library +
        "): every GEMM runs 30-90x slower. Install OpenBLAS (`apt-get install libopenblas0-openmp`) and make "
        "libblas.so.3 point at it (`update-alternatives --config libblas.so.3-$(gcc -dumpmachine)`).");
  } else if (report.blas.kind == "unknown") {
    report.warnings.push_back("could not tell which BLAS libtorch uses; run `pace doctor --gemm` to measure it");
  }
  if (report.intraOpThreads < report.availableCpus) {
    report.warnings.push_back("libtorch uses " + std::to_string(report.intraOpThreads) + " of the " +
                              std::to_string(report.availableCpus) +
                              " CPUs this process may use: GEMMs run slower (setThreads() or PACE_NUM_THREADS)");
  }
  if (report.coreLoopThreads < report.intraOpThreads) {
    report.warnings.push_back("the addon's own CPU loops run on " + std::to_string(report.coreLoopThreads) + " of " +
                              std::to_string(report.intraOpThreads) +
                              " threads: it was built without the OpenMP runtime libtorch uses (CPU training is "
                              "slower; see cmake/PaceOpenMP.cmake)");
  }
  if (report.cudaBuilt && report.cudaDeviceCount == 0) {
    report.warnings.push_back("libtorch has CUDA but no GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)");
  }
  return report;
}

GemmMeasurement measureGemm(int size, double minSeconds, const std::string& device, int threads, at::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kBFloat16)
    throw OptionError("measureGemm: dtype must be float32 or bfloat16");
  if (size < 1 || size > 16384)
    throw OptionError("measureGemm: size must be between 1 and 16384, got " + std::to_string(size));
  if (!(minSeconds >= 0 && minSeconds <= 600))
    throw OptionError("measureGemm: seconds must be between 0 and 600, got " + std::to_string(minSeconds));
  if (threads < 0 || threads > 1024)
    throw OptionError("measureGemm: threads must be between 0 (the current setting) and 1024, got " +
                      std::to_string(threads));
  struct ThreadsOverride {
    int previous = at::get_num_threads();
    explicit ThreadsOverride(int wanted) {
      if (wanted > 0) at::set_num_threads(wanted);
    }
    ~ThreadsOverride() { at::set_num_threads(previous); }
  } override(threads);
  const at::Device target = deviceNamed(device, "device");
  const auto options = at::TensorOptions().dtype(dtype).device(target);
  const at::Tensor a = at::randn({size, size}, options);
  const at::Tensor b = at::randn({size, size}, options);
  at::Tensor c = at::matmul(a, b);  // warm-up: first call pays for thread pools and BLAS initialisation
  c.sum().item<float>();

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  GemmMeasurement result;
  result.size = size;
  result.device = target.str();
  result.dtype = dtype == at::kBFloat16 ? "bfloat16" : "float32";
  result.threads = at::get_num_threads();
  double elapsed = 0;
  do {
    at::matmul_out(c, a, b);
    ++result.iterations;
    if (target.is_cuda()) c.sum().item<float>();  // waits for the device so the clock measures real work
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < minSeconds);
  result.seconds = elapsed;
  result.gflops = 2.0 * size * static_cast<double>(size) * size * result.iterations / elapsed / 1e9;
  return result;
}

}  // namespace pace
