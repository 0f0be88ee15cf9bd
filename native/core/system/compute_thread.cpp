#include "system/compute_thread.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "system/threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pace {

namespace {

class ComputeThread {
 public:
  ComputeThread() {
    std::thread([this] { serve(); }).detach();
  }

  // Runs `work` there and true, or false at once when a job is running there already.
  bool tryRun(const std::function<void()>& work) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (job_ != nullptr) return false;
    job_ = &work;
    finished_ = false;
    wake_.notify_one();
    done_.wait(lock, [&] { return finished_; });
    const std::exception_ptr thrown = thrown_;
    thrown_ = nullptr;
    job_ = nullptr;
    lock.unlock();
    if (thrown) std::rethrow_exception(thrown);
    return true;
  }

 private:
  void serve() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return job_ != nullptr && !finished_; });
      const std::function<void()>* work = job_;
      lock.unlock();
      std::exception_ptr thrown;
      try {
        applyThreads();
        (*work)();
      } catch (...) {
        thrown = std::current_exception();
      }
      lock.lock();
      thrown_ = thrown;
      finished_ = true;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;  // the job handed over, until its caller has taken the outcome
  bool finished_ = false;
  std::exception_ptr thrown_;
};

ComputeThread& computeThread() {
  static auto* thread = new ComputeThread();  // never destroyed: it serves until the process ends
  return *thread;
}

}  // namespace

void runOnComputeThread(const std::function<void()>& work) {
  if (computeThread().tryRun(work)) return;
#ifdef _OPENMP
  if (omp_get_max_threads() != 1) omp_set_num_threads(1);
#else
  applyThreads();
#endif
  work();
}

}  // namespace pace
