#include "addon_data.h"
#include "async.h"
#include "bindings.h"
#include "convert.h"
#include "pace_core.h"

#include <stdexcept>

namespace pace::addon {

namespace {

Napi::Value doctorJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    // On a compute thread: the JS thread keeps one thread (below), and the report is of those that compute.
    DoctorReport report;
    runOnComputeThread([&report] { report = collectDoctorReport(); });
    Napi::Object blas = Napi::Object::New(env);
    blas.Set("kind", report.blas.kind);
    blas.Set("library", report.blas.library);
    blas.Set("detail", report.blas.detail);
    blas.Set("threading", report.blas.threading);
    blas.Set("onednn", report.onednn);
    Napi::Object threads = Napi::Object::New(env);
    threads.Set("intraOp", report.intraOpThreads);
    threads.Set("interOp", report.interOpThreads);
    threads.Set("hardware", report.hardwareThreads);
    threads.Set("available", report.availableCpus);
    threads.Set("coreLoops", report.coreLoopThreads);
    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("built", report.cudaBuilt);
    cuda.Set("deviceCount", report.cudaDeviceCount);
    Napi::Array warnings = Napi::Array::New(env, report.warnings.size());
    for (uint32_t i = 0; i < report.warnings.size(); ++i) warnings.Set(i, report.warnings[i]);
    Napi::Object result = Napi::Object::New(env);
    result.Set("torchVersion", report.torchVersion);
    result.Set("cuda", cuda);
    result.Set("blas", blas);
    result.Set("threads", threads);
    result.Set("parallelInfo", report.parallelInfo);
    result.Set("cpuAttentionKernels", report.cpuAttentionKernels);
    Napi::Object cpuBf16 = Napi::Object::New(env);
    cpuBf16.Set("units", report.cpuBf16.units);
    cpuBf16.Set("amx", report.cpuBf16.amx);
    cpuBf16.Set("gemm", report.cpuBf16.gemm);
    cpuBf16.Set("reason", report.cpuBf16.reason);
    cpuBf16.Set("sumsInFloat", report.cpuBf16.sumsInFloat);
    result.Set("cpuBf16", cpuBf16);
    result.Set("buildConfig", report.buildConfig);
    result.Set("warnings", warnings);
    return result;
  });
}

// measureGemm(size, seconds, device, threads?, dtype?) -> Promise<{ size, iterations, seconds, gflops, device,
// dtype, threads }>, off the JS thread.
Napi::Value measureGemmJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const int size = info[0].ToNumber().Int32Value();
    const double seconds = info[1].ToNumber().DoubleValue();
    const std::string device = stringFromJs(info[2], "device");
    const int threads = info[3].IsUndefined() ? 0 : info[3].ToNumber().Int32Value();
    const at::ScalarType dtype = info[4].IsUndefined() ? at::kFloat : dtypeFromJs(info[4], "dtype");
    return runAsync(
        env, "pace.measureGemm", [=] { return measureGemm(size, seconds, device, threads, dtype); },
        [](Napi::Env env, GemmMeasurement& m) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("size", m.size);
          result.Set("iterations", m.iterations);
          result.Set("seconds", m.seconds);
          result.Set("gflops", m.gflops);
          result.Set("device", m.device);
          result.Set("dtype", m.dtype);
          result.Set("threads", m.threads);
          return result;
        });
  });
}

// memoryStats() -> { liveTensors, tensorBytes }: tensor handles alive in this environment and their bytes.
Napi::Value memoryStatsJs(const Napi::CallbackInfo& info) {
  const auto& counters = *AddonData::of(info.Env()).memory;
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("liveTensors", static_cast<double>(counters.liveTensors));
  result.Set("tensorBytes", static_cast<double>(counters.tensorBytes));
  const CpuCacheStats cache = cpuCacheStats();
  result.Set("cpuCacheBytes", static_cast<double>(cache.cachedBytes));
  result.Set("cpuCacheHits", static_cast<double>(cache.hits));
  result.Set("cpuCacheMisses", static_cast<double>(cache.misses));
  return result;
}

// cudaMemory(device, resetPeak) -> { allocatedBytes, peakAllocatedBytes, reservedBytes } | undefined (no CUDA).
Napi::Value cudaMemoryJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const auto memory = cudaMemory(info[0].ToNumber().Int32Value(), info[1].ToBoolean().Value());
    if (!memory) return env.Undefined();
    Napi::Object result = Napi::Object::New(env);
    result.Set("allocatedBytes", static_cast<double>(memory->allocatedBytes));
    result.Set("peakAllocatedBytes", static_cast<double>(memory->peakAllocatedBytes));
    result.Set("reservedBytes", static_cast<double>(memory->reservedBytes));
    return result;
  });
}

// externalMemory() -> the bytes of native memory this environment has reported to V8 (tensors held by handles).
Napi::Value externalMemoryJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

// cosineLr(schedule, { t } | { epoch } | { step, stepsPerEpoch }) -> timm's cosine schedule: its value at t
// epochs, the rate of an epoch when stepped per epoch, or of a step when stepped per step.
Napi::Value cosineLrJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject() || !info[1].IsObject()) throw OptionError("cosineLr(schedule, at) needs two objects");
    const train::CosineSchedule schedule = scheduleFromJs(info[0].As<Napi::Object>());
    const auto at = info[1].As<Napi::Object>();
    if (!at.Get("epoch").IsUndefined())
      return Napi::Number::New(env, schedule.forEpoch(static_cast<int64_t>(numberOr(at, "epoch", 0))));
    if (!at.Get("step").IsUndefined())
      return Napi::Number::New(env, schedule.forStep(static_cast<int64_t>(numberOr(at, "step", 0)),
                                                     static_cast<int64_t>(numberOr(at, "stepsPerEpoch", 1))));
    return Napi::Number::New(env, schedule.valueAt(numberOr(at, "t", 0)));
  });
}

// releaseCachedMemory(cuda) -> boolean: frees the CPU blocks kept for reuse and, with `cuda`, the CUDA caching
// allocator's unused blocks, unless a step graph is busy on another thread (then false: the CUDA part skipped).
Napi::Value releaseCachedMemoryJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    releaseCpuCache();
    const bool cuda = info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
    return Napi::Boolean::New(env, !cuda || train::unlessGraphsBusy(releaseCudaCache));
  });
}

// setThreads(n): the intra-op threads of every tensor job from now on (compute_threads.h).
Napi::Value setThreadsJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    setThreads(info[0].ToNumber().Int32Value());
    return env.Undefined();
  });
}

// threads() -> { intraOp, available }: the process-wide setting and the CPUs this process may use.
Napi::Value threadsJs(const Napi::CallbackInfo& info) {
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("intraOp", configuredThreads());
  result.Set("available", availableCpus());
  return result;
}

const std::vector<std::pair<std::string, peft::PaceLinearStrategy>>& strategyNames() {
  static const std::vector<std::pair<std::string, peft::PaceLinearStrategy>> names = {
      {"auto", peft::PaceLinearStrategy::Auto},
      {"per-row", peft::PaceLinearStrategy::PerRowWeight},
      {"stacked", peft::PaceLinearStrategy::StackedWeight},
      {"unfused", peft::PaceLinearStrategy::Unfused},
  };
  return names;
}

// setPaceLinearStrategy(name) / paceLinearStrategy(): how noisy adapted linears are computed, process-wide.
Napi::Value setPaceLinearStrategyJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::string name = stringFromJs(info[0], "strategy");
    for (const auto& [known, strategy] : strategyNames()) {
      if (known == name) {
        peft::setPaceLinearStrategy(strategy);
        return env.Undefined();
      }
    }
    throw std::invalid_argument("unknown PACE linear strategy '" + name +
                                "' (expected auto, per-row, stacked or unfused)");
  });
}

Napi::Value paceLinearStrategyJs(const Napi::CallbackInfo& info) {
  for (const auto& [name, strategy] : strategyNames()) {
    if (strategy == peft::paceLinearStrategy()) return Napi::String::New(info.Env(), name);
  }
  return Napi::String::New(info.Env(), "auto");
}

// setFusedEpilogues(on) / fusedEpilogues(): whether element-wise work is folded into the kernel before it.
Napi::Value setFusedEpiloguesJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsBoolean()) throw std::invalid_argument("fused: expected true or false");
    setFusedEpilogues(info[0].As<Napi::Boolean>().Value());
    return env.Undefined();
  });
}

Napi::Value fusedEpiloguesJs(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fusedEpilogues());
}

}  // namespace

void registerSystemBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("doctor", Napi::Function::New(env, doctorJs, "doctor"));
  exports.Set("memoryStats", Napi::Function::New(env, memoryStatsJs, "memoryStats"));
  exports.Set("cosineLr", Napi::Function::New(env, cosineLrJs, "cosineLr"));
  exports.Set("cudaMemory", Napi::Function::New(env, cudaMemoryJs, "cudaMemory"));
  exports.Set("externalMemory", Napi::Function::New(env, externalMemoryJs, "externalMemory"));
  exports.Set("measureGemm", Napi::Function::New(env, measureGemmJs, "measureGemm"));
  exports.Set("setThreads", Napi::Function::New(env, setThreadsJs, "setThreads"));
  exports.Set("threads", Napi::Function::New(env, threadsJs, "threads"));
  exports.Set("setPaceLinearStrategy", Napi::Function::New(env, setPaceLinearStrategyJs, "setPaceLinearStrategy"));
  exports.Set("paceLinearStrategy", Napi::Function::New(env, paceLinearStrategyJs, "paceLinearStrategy"));
  exports.Set("setFusedEpilogues", Napi::Function::New(env, setFusedEpiloguesJs, "setFusedEpilogues"));
  exports.Set("fusedEpilogues", Napi::Function::New(env, fusedEpiloguesJs, "fusedEpilogues"));
  exports.Set("releaseCachedMemory", Napi::Function::New(env, releaseCachedMemoryJs, "releaseCachedMemory"));
  installCpuCache();
  // float32 means IEEE float32 unless a trainer asks for 'tf32' (libtorch lets cuDNN's convolutions use TF32
  // by default, cuBLAS not); training steps set both for their precision and restore this afterwards.
  at::globalContext().setAllowTF32CuDNN(false);
  useOneThread();  // the JS thread only copies; tensor work with a team of threads runs on compute threads
}

}  // namespace pace::addon
