#pragma once
#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

namespace pace {

struct BlasInfo {
  std::string kind;       // "openblas", "mkl", "blis", "atlas", "reference" (netlib, slow) or "unknown"
  std::string library;    // resolved path of the BLAS shared library in this process, when one is loaded
  std::string detail;     // e.g. OpenBLAS's own configuration string
  std::string threading;  // "openmp", "pthreads", "sequential" or ""
};

// bfloat16 on the CPU: whether it has bf16 arithmetic units and which path libtorch's bf16 GEMMs take.
struct CpuBf16Info {
  bool units = false;        // AVX-512 BF16 (avx512_bf16) or AMX-BF16 (amx_bf16) in /proc/cpuinfo
  bool amx = false;          // AMX tiles (Sapphire Rapids and later)
  std::string gemm;          // "onednn" (bf16 products through oneDNN) or "aten" (libtorch's own slow loops)
  std::string reason;        // why that path, in words
  bool sumsInFloat = false;  // its products sum in float32 (tensor/cpu_bf16.h); precision 'bf16' is refused if not
};

struct DoctorReport {
  std::string torchVersion;
  bool cudaBuilt = false;  // this libtorch can run CUDA (its CUDA library is loaded)
  int cudaDeviceCount = 0;
  BlasInfo blas;
  int intraOpThreads = 0;
  int interOpThreads = 0;
  int hardwareThreads = 0;
  int availableCpus = 0;             // CPUs this process may use (affinity, cgroup quota)
  int coreLoopThreads = 0;           // threads the core's own parallel loops (weight builds, CPU attention) really get
  bool cpuAttentionKernels = false;  // the AVX2 attention kernels run here (models/cpu_attention.h)
  std::string onednn;                // oneDNN (MKL-DNN) version libtorch was built with, "" when none
  CpuBf16Info cpuBf16;
  std::string parallelInfo;
  std::string buildConfig;
  std::vector<std::string> warnings;
};

DoctorReport collectDoctorReport();

struct GemmMeasurement {
  int size = 0;
  int iterations = 0;
  double seconds = 0;
  double gflops = 0;
  std::string device;
  std::string dtype;  // "float32" or "bfloat16"
  int threads = 0;    // intra-op threads it ran with
};

// Multiplies two size×size matrices of `dtype` (float32 or bfloat16) repeatedly for at least `minSeconds`: the
// number that tells a fast BLAS from the reference one (and the CPU's bf16 path from a slow one), and a long
// computation to prove work runs off the JS thread. threads > 0: with that many intra-op threads on the
// measuring thread (the setting is restored afterwards).
GemmMeasurement measureGemm(int size, double minSeconds, const std::string& device, int threads = 0,
                            at::ScalarType dtype = at::kFloat);

}  // namespace pace
