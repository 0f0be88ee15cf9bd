#include "stop_flag.h"

#include "addon_data.h"
#include "bindings.h"
#include "js_errors.h"
#include "type_tags.h"

namespace pace::addon {

Napi::Function StopFlag::define(Napi::Env env) {
  return DefineClass(env, "NativeStopFlag",
                     {
                         InstanceMethod<&StopFlag::stop>("stop"),
                         InstanceAccessor<&StopFlag::stopped>("stopped"),
                     });
}

std::shared_ptr<std::atomic<bool>> StopFlag::unwrap(const Napi::Value& value, const std::string& what) {
  const Napi::Env env = value.Env();
  if (!isWrapped(value, Wrapped::StopFlag))
    throw jsError(env, ErrorCode::InvalidOption, what + " is not a NativeStopFlag");
  return Unwrap(value.As<Napi::Object>())->flag_;
}

StopFlag::StopFlag(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StopFlag>(info) {
  tagWrapped(info, Wrapped::StopFlag);
}

Napi::Value StopFlag::stop(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value StopFlag::stopped(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::StopFlag);
  return Napi::Boolean::New(info.Env(), flag_->load());
}

void registerStopFlagBindings(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = StopFlag::define(env);
  AddonData::of(env).stopFlagConstructor = Napi::Persistent(constructor);
  exports.Set("NativeStopFlag", constructor);
}

}  // namespace pace::addon
