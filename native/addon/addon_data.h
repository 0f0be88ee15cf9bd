#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>

namespace pace::addon {

// Per-environment state (one per main thread or worker_thread that loads the addon): nothing is shared
// between JavaScript environments.
// Live tensor handles and the bytes they hold, for leak checks. Shared with each handle, so a finalizer that
// runs after the environment's data is gone still has somewhere to count.
struct MemoryCounters {
  int64_t liveTensors = 0;
  int64_t tensorBytes = 0;
};

struct AddonData {
  std::shared_ptr<MemoryCounters> memory = std::make_shared<MemoryCounters>();
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;
  Napi::FunctionReference errorFactory;  // (code, message) => PaceError, from lib/errors.ts

  static AddonData& of(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace pace::addon
