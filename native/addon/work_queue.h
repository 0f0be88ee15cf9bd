#pragma once
#include <napi.h>

#include <deque>
#include <mutex>

namespace pace::addon {

// Native work on one model runs one job at a time, in the order it was asked for. A job waiting its turn is not
// handed to libuv at all: blocked on the model's mutex it would hold one of libuv's few worker threads, which fs,
// sharp, zlib and crypto share, for as long as the job ahead of it runs (a forward, a load, a whole epoch).
// Used on the JS thread only; the mutex covers a model reached from two threads through a trainer's handle.
class WorkQueue {
 public:
  // Hands `worker` to libuv now if no job of this queue is running, else once those before it have settled.
  void submit(Napi::AsyncWorker* worker) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (running_) {
        waiting_.push_back(worker);
        return;
      }
      running_ = true;
    }
    worker->Queue();
  }

  // A job of this queue has settled (on the JS thread): the next one starts.
  void settled() noexcept {
    Napi::AsyncWorker* next = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (waiting_.empty()) {
        running_ = false;
        return;
      }
      next = waiting_.front();
      waiting_.pop_front();
    }
    try {
      next->Queue();
    } catch (...) {
      // Only where the environment is being torn down: nobody is left to await its promise.
    }
  }

 private:
  std::mutex mutex_;
  std::deque<Napi::AsyncWorker*> waiting_;
  bool running_ = false;
};

}  // namespace pace::addon
