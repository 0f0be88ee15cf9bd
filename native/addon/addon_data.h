#pragma once
#include <napi.h>

namespace pace::addon {

// Per-environment state (one per main thread or worker_thread that loads the addon): nothing is shared
// between JavaScript environments.
struct AddonData {
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference modelConstructor;

  static AddonData& of(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace pace::addon
