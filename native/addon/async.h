#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include "compute_threads.h"
#include "js_errors.h"
#include "pace_core.h"
#include "work_queue.h"

namespace pace::addon {

// Where a job's work runs: tensor work on a compute thread (compute_threads.h), which the libuv thread waits
// for; a job that only waits for other processes (a collective of a few values) on the libuv thread itself,
// keeping the compute threads free.
enum class Runs { OnComputeThread, Waiting };

// Runs `compute` off the JS thread and settles a Promise on the JS thread with `toJs(result)`.
// compute must not touch JavaScript values; toJs runs on the JS thread.
template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Compute = std::function<Result()>;
  using ToJs = std::function<Napi::Value(Napi::Env, Result&)>;

  PromiseWorker(Napi::Env env, const char* name, Compute compute, ToJs toJs, std::shared_ptr<WorkQueue> queue = nullptr,
                Runs runs = Runs::OnComputeThread)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        compute_(std::move(compute)),
        toJs_(std::move(toJs)),
        queue_(std::move(queue)),
        runs_(runs) {}

  ~PromiseWorker() override {
    if (queue_) queue_->ended(undeliverable_);
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      if (runs_ == Runs::Waiting) {
        result_.emplace(compute_());  // no parallel region, so no OpenMP team on this thread
      } else {
        runOnComputeThread([this] { result_.emplace(compute_()); });
      }
    } catch (const std::exception& error) {
      failure_ = describe(error);
      // node-addon-api takes an empty error for success, and would resolve with no result.
      if (failure_.message.empty()) failure_.message = "native work failed without a message";
      SetError(failure_.message);
    } catch (...) {
      // Anything else would unwind into libuv's thread and std::terminate the process, the promise never settled.
      failure_ = Failure{ErrorCode::Internal, "native work failed with an exception that is not a std::exception"};
      SetError(failure_.message);
    }
  }
  void OnOK() override {
    settle([&] {
      try {
        if (!result_) throw std::logic_error("native work ended without a result");
        deferred_.Resolve(toJs_(Env(), *result_));
      } catch (const Napi::Error& error) {
        deferred_.Reject(error.Value());
      } catch (const std::exception& error) {
        const Failure failure = describe(error);
        deferred_.Reject(jsError(Env(), failure.code, failure.message).Value());
      }
    });
  }
  void OnError(const Napi::Error&) override {
    settle([&] { deferred_.Reject(jsError(Env(), failure_.code, failure_.message).Value()); });
  }

 private:
  // Settling fails where JavaScript can no longer run: a worker thread's environment being torn down
  // (worker.terminate() with this work in flight), where nobody is left to see the promise. An exception escaping
  // here would reach node-addon-api's completion callback and std::terminate the whole process. Anywhere else
  // (the error factory itself throwing, say) the promise is still rejected, with a plain message.
  template <typename Settle>
  void settle(Settle&& body) noexcept {
    try {
      body();
    } catch (...) {
      try {
        deferred_.Reject(
            Napi::Error::New(Env(), "pace-peft: the result of native work could not be delivered").Value());
      } catch (...) {
        undeliverable_ = true;
      }
    }
  }

  Napi::Promise::Deferred deferred_;
  Compute compute_;
  ToJs toJs_;
  std::optional<Result> result_;
  Failure failure_;
  std::shared_ptr<WorkQueue> queue_;
  Runs runs_;
  bool undeliverable_ = false;  // not even a rejection could be delivered: the environment is being torn down
};

template <typename Compute, typename ToJs>
Napi::Promise runAsync(Napi::Env env, const char* name, Compute compute, ToJs toJs, Runs runs = Runs::OnComputeThread) {
  using Result = decltype(compute());
  auto* worker = new PromiseWorker<Result>(env, name, std::move(compute), std::move(toJs), nullptr, runs);
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself once the promise is settled
  return promise;
}

// runAsync for work on one model (or anything else a WorkQueue serialises): it starts after the queue's earlier
// jobs have settled.
template <typename Compute, typename ToJs>
Napi::Promise runInTurn(Napi::Env env, const std::shared_ptr<WorkQueue>& queue, const char* name, Compute compute,
                        ToJs toJs) {
  using Result = decltype(compute());
  auto* worker = new PromiseWorker<Result>(env, name, std::move(compute), std::move(toJs), queue);
  Napi::Promise promise = worker->promise();
  queue->submit(worker);
  return promise;
}

}  // namespace pace::addon
