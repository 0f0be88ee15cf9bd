#pragma once
#include <napi.h>

namespace pace::addon {

// Each binding file adds its functions to the module's exports.
void registerTensorBindings(Napi::Env env, Napi::Object exports);
void registerSafetensorsBindings(Napi::Env env, Napi::Object exports);
void registerSystemBindings(Napi::Env env, Napi::Object exports);
void registerModelBindings(Napi::Env env, Napi::Object exports);
void registerTrainerBindings(Napi::Env env, Napi::Object exports);
void registerDistributedBindings(Napi::Env env, Napi::Object exports);
void registerAugmentBindings(Napi::Env env, Napi::Object exports);
void registerStopFlagBindings(Napi::Env env, Napi::Object exports);

}  // namespace pace::addon
