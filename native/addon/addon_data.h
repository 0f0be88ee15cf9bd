#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace pace::addon {

// Per-environment state (one per main thread or worker_thread that loads the addon): nothing is shared
// between JavaScript environments.
// Live tensor handles and the bytes they hold, for leak checks. Shared with each handle, so a finalizer that
// runs after the environment's data is gone still has somewhere to count. Handles that share one storage (a
// view, a `to()` that had nothing to do) count its bytes once.
struct MemoryCounters {
  int64_t liveTensors = 0;
  int64_t tensorBytes = 0;

  // Counts a new handle holding `storage` of `bytes`; returns the bytes newly held (0 when already counted).
  int64_t add(const void* storage, int64_t bytes) {
    liveTensors += 1;
    if (!storage) return 0;
    Holders& holders = storages_[storage];
    if (holders.handles++ > 0) return 0;
    holders.bytes = bytes;
    tensorBytes += bytes;
    return bytes;
  }
  // Counts a handle gone; returns the bytes no longer held (0 while another handle keeps the storage).
  int64_t remove(const void* storage) {
    liveTensors -= 1;
    const auto found = storages_.find(storage);
    if (found == storages_.end() || --found->second.handles > 0) return 0;
    const int64_t bytes = found->second.bytes;
    storages_.erase(found);
    tensorBytes -= bytes;
    return bytes;
  }

 private:
  struct Holders {
    int64_t handles = 0;
    int64_t bytes = 0;
  };
  std::unordered_map<const void*, Holders> storages_;
};

struct AddonData {
  std::shared_ptr<MemoryCounters> memory = std::make_shared<MemoryCounters>();
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;
  Napi::FunctionReference stopFlagConstructor;
  Napi::FunctionReference errorFactory;  // (code, message) => PaceError, from lib/errors.ts

  static AddonData& of(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace pace::addon
