#pragma once
#include <napi.h>

#include <deque>

namespace pace::addon {

// Native work on one model runs one job at a time, in the order it was asked for. A job waiting its turn is not
// handed to libuv at all: blocked on the model's mutex it would hold one of libuv's few worker threads, which fs,
// sharp, zlib and crypto share, for as long as the job ahead of it runs (a forward, a load, a whole epoch).
// A model's handles live in one JavaScript environment, so every call comes from its JS thread.
class WorkQueue {
 public:
  // Hands `worker` to libuv now if no job of this queue is running, else once those before it have ended.
  void submit(Napi::AsyncWorker* worker) {
    if (running_) {
      waiting_.push_back(worker);
      return;
    }
    running_ = true;
    try {
      worker->Queue();
    } catch (...) {
      running_ = false;
      throw;
    }
  }

  // A job of this queue has ended (its worker is being destroyed, whether it ran, failed or was cancelled): the
  // next one starts.
  void ended() noexcept {
    while (!waiting_.empty()) {
      Napi::AsyncWorker* next = waiting_.front();
      waiting_.pop_front();
      try {
        next->Queue();
        return;
      } catch (...) {
        // Only where the environment is being torn down: nobody is left to await its promise.
      }
    }
    running_ = false;
  }

  // Whether a job runs or waits: synchronous calls that change the model must not slip in between two jobs.
  bool busy() const { return running_; }

 private:
  std::deque<Napi::AsyncWorker*> waiting_;
  bool running_ = false;
};

}  // namespace pace::addon
