#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "pace_core.h"
#include "work_queue.h"

namespace pace::addon {

// A backbone shared between its JS handle and any native work in flight; the mutex serialises that work
// (libtorch modules are not safe to mutate and run at once), and `work` queues it so that only the job holding the
// mutex occupies a libuv thread.
struct ModelState {
  std::shared_ptr<models::Backbone> model;
  std::mutex mutex;
  std::shared_ptr<WorkQueue> work = std::make_shared<WorkQueue>();
  // Read without the mutex, so that a fit's callbacks can read them while its epoch holds it.
  std::atomic<bool> disposed{false};             // the JS handle was disposed: trainers made on it refuse
  std::atomic<uint64_t> trainableGeneration{0};  // bumped when the trainable parameters are replaced
  std::atomic<bool> training{false};             // the mode set from JS (steps and epochs restore it)
  std::string device;                            // written only on the JS thread, under the mutex
};

// For calls on the JS thread: the lock if the model is free, else an error. The JS thread never waits for a
// forward, load or fit running on a worker (that would freeze the event loop for its whole duration).
std::unique_lock<std::mutex> lockFromJs(Napi::Env env, ModelState& state);

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, std::shared_ptr<models::Backbone> model);
  // The shared state behind a live NativeModel, or a TypeError naming `what`.
  static std::shared_ptr<ModelState> stateOf(const Napi::Value& value, const std::string& what);
  explicit ModelHandle(const Napi::CallbackInfo& info);
  ~ModelHandle() override;

 private:
  std::shared_ptr<ModelState> live(Napi::Env env) const;
  // Re-reports the parameters' memory to V8 after it changed (adapters added, device moved, merged copy).
  void reportMemory(Napi::Env env);

  Napi::Value loadWeights(const Napi::CallbackInfo& info);
  Napi::Value saveWeights(const Napi::CallbackInfo& info);
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value forwardFeatures(const Napi::CallbackInfo& info);
  Napi::Value setTraining(const Napi::CallbackInfo& info);
  Napi::Value training(const Napi::CallbackInfo& info);
  Napi::Value parameters(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value addAdapters(const Napi::CallbackInfo& info);
  Napi::Value loadAdapters(const Napi::CallbackInfo& info);
  Napi::Value saveAdapters(const Napi::CallbackInfo& info);
  Napi::Value trainableParameters(const Napi::CallbackInfo& info);
  Napi::Value weightsFingerprint(const Napi::CallbackInfo& info);
  Napi::Value merged(const Napi::CallbackInfo& info);
  Napi::Value gradients(const Napi::CallbackInfo& info);
  Napi::Value stateDict(const Napi::CallbackInfo& info);
  Napi::Value evaluate(const Napi::CallbackInfo& info);
  Napi::Value resetHead(const Napi::CallbackInfo& info);
  Napi::Value runForward(const Napi::CallbackInfo& info, bool featuresOnly);

  std::shared_ptr<ModelState> state_;
  int64_t reportedBytes_ = 0;  // parameter memory reported to V8
  napi_env env_ = nullptr;
};

}  // namespace pace::addon
