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
  // next one starts. `environmentGone`: its result could not be delivered, as JavaScript can no longer run here
  // (worker.terminate(), the process's exit); Node lets the environment go only once queued work has ended, so
  // starting the jobs that wait would run them all (whole forwards and epochs) for nobody: they are dropped.
  void ended(bool environmentGone = false) noexcept {
    if (environmentGone) {
      std::deque<Napi::AsyncWorker*> dropped;
      dropped.swap(waiting_);
      running_ = false;
      for (Napi::AsyncWorker* worker : dropped) delete worker;  // each one's own ended() finds nothing left
      return;
    }
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
