#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>

namespace pace::addon {

// `new NativeStopFlag()`: a flag JavaScript sets (stop()) and a native call running on a worker thread reads, so an
// AbortSignal can end work that is one native call (an evaluation) between two of its batches.
class StopFlag : public Napi::ObjectWrap<StopFlag> {
 public:
  static Napi::Function define(Napi::Env env);
  // The flag behind a JS value, or an option error naming `what` if it is not a NativeStopFlag.
  static std::shared_ptr<std::atomic<bool>> unwrap(const Napi::Value& value, const std::string& what);

  explicit StopFlag(const Napi::CallbackInfo& info);

 private:
  Napi::Value stop(const Napi::CallbackInfo& info);
  Napi::Value stopped(const Napi::CallbackInfo& info);

  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace pace::addon
