#include "js_errors.h"

#include "addon_data.h"

#include <new>

namespace pace::addon {

Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message) {
  const Napi::FunctionReference& factory = AddonData::of(env).errorFactory;
  if (!factory.IsEmpty()) {
    const Napi::Value made =
        factory.Call({Napi::String::New(env, errorCodeName(code)), Napi::String::New(env, message)});
    if (made.IsObject()) return Napi::Error(env, made);
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, errorCodeName(code)));
  return error;
}

Failure describe(const std::exception& error) {
  if (const auto* paceError = dynamic_cast<const Error*>(&error)) return {paceError->code(), paceError->what()};
  // Out of memory is a limit of the machine, not a bug: PACE_UNSUPPORTED, as for a model larger than the memory.
  if (const auto* memoryError = dynamic_cast<const c10::OutOfMemoryError*>(&error))
    return {ErrorCode::Unsupported, memoryError->what_without_backtrace()};
  if (dynamic_cast<const std::bad_alloc*>(&error))
    return {ErrorCode::Unsupported, std::string("out of host memory (") + error.what() + ")"};
  if (const auto* torchError = dynamic_cast<const c10::Error*>(&error))
    return {ErrorCode::Internal, torchError->what_without_backtrace()};
  return {ErrorCode::Internal, error.what()};
}

Napi::Value setErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorFactory needs a function");
  AddonData::of(info.Env()).errorFactory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

}  // namespace pace::addon
