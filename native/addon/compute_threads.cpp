#include "compute_threads.h"

#include <pthread.h>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pace_core.h"

namespace pace::addon {

namespace {

// An extra thread (not the first) ends after this long without work.
constexpr auto kIdleLifetime = std::chrono::seconds(5);

struct ComputeThread {
  std::mutex mutex;
  std::condition_variable wake;      // a task was handed over
  std::condition_variable finished;  // the task has ended
  const std::function<void()>* task = nullptr;
  std::exception_ptr failure;
  bool done = false;
  bool busy = false;  // guarded by the pool's mutex: handed out to a caller
};

class ComputePool {
 public:
  void run(const std::function<void()>& task) {
    const std::shared_ptr<ComputeThread> thread = acquire();
    struct Release {
      ComputePool* pool;
      ComputeThread* thread;
      ~Release() { pool->release(*thread); }
    } release{this, thread.get()};

    std::unique_lock<std::mutex> lock(thread->mutex);
    thread->task = &task;
    thread->failure = nullptr;
    thread->done = false;
    thread->wake.notify_one();
    thread->finished.wait(lock, [&] { return thread->done; });
    if (thread->failure) std::rethrow_exception(thread->failure);
  }

 private:
  std::shared_ptr<ComputeThread> acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& thread : threads_) {
      if (!thread->busy) {
        thread->busy = true;
        return thread;
      }
    }
    auto thread = std::make_shared<ComputeThread>();
    thread->busy = true;
    const bool first = threads_.empty();
    threads_.push_back(thread);
    try {
      std::thread([this, thread, first] { loop(thread, first); }).detach();
    } catch (...) {
      threads_.pop_back();
      throw;
    }
    return thread;
  }

  void release(ComputeThread& thread) {
    std::lock_guard<std::mutex> lock(mutex_);
    thread.busy = false;
  }

  // Leaves the pool if the thread is still idle; false if a caller took it meanwhile.
  bool retire(const std::shared_ptr<ComputeThread>& thread) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (thread->busy) return false;
    threads_.erase(std::remove(threads_.begin(), threads_.end(), thread), threads_.end());
    return true;
  }

  void loop(const std::shared_ptr<ComputeThread>& thread, bool first) {
    // Named for `top -H` and the tests; the OpenMP team it starts inherits the name.
    pthread_setname_np(pthread_self(), "pace-compute");
    std::unique_lock<std::mutex> lock(thread->mutex);
    for (;;) {
      const auto hasTask = [&] { return thread->task != nullptr; };
      if (first) {
        thread->wake.wait(lock, hasTask);
      } else if (!thread->wake.wait_for(lock, kIdleLifetime, hasTask)) {
        lock.unlock();
        if (retire(thread)) return;  // libgomp frees this thread's team as it exits
        lock.lock();
        continue;
      }
      const std::function<void()>* task = thread->task;
      thread->task = nullptr;
      lock.unlock();
      std::exception_ptr failure;
      try {
        applyThreads();
        (*task)();
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      thread->failure = failure;
      thread->done = true;
      thread->finished.notify_one();
    }
  }

  std::mutex mutex_;
  std::vector<std::shared_ptr<ComputeThread>> threads_;  // the first never ends
};

// Never destroyed: its threads may still wait for work while the process exits.
ComputePool& pool() {
  static ComputePool* instance = new ComputePool();
  return *instance;
}

}  // namespace

void runOnComputeThread(const std::function<void()>& task) { pool().run(task); }

}  // namespace pace::addon
