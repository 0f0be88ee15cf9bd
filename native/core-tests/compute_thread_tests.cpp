// Where native work runs (system/compute_thread.h): every job on one long-lived thread with the process's intra-op
// threads, whichever thread asks; a job asked while that thread is busy runs at once on the asking thread with
// one; what a job throws reaches its caller.
#include <ATen/Parallel.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "check.h"
#include "system/compute_thread.h"
#include "system/threads.h"

namespace pace::tests {
namespace {

void jobsFromManyThreadsRunOnOne() {
  std::set<std::thread::id> ranOn, askedFrom;
  int threadsSeen = 0;
  for (int i = 0; i < 4; ++i) {
    std::thread asker([&] {
      askedFrom.insert(std::this_thread::get_id());
      runOnComputeThread([&] {
        ranOn.insert(std::this_thread::get_id());
        threadsSeen = at::get_num_threads();
      });
    });
    asker.join();
  }
  check(ranOn.size() == 1, "jobs asked from 4 threads ran on " + std::to_string(ranOn.size()));
  check(askedFrom.count(*ranOn.begin()) == 0, "a job ran on the thread that asked while the compute thread was free");
  check(threadsSeen == configuredThreads(), "a job ran with " + std::to_string(threadsSeen) +
                                                " intra-op threads, not " + std::to_string(configuredThreads()));
}

void aJobAskedWhileItIsBusyRunsAtOnceWhereAsked() {
  std::mutex mutex;
  std::condition_variable changed;
  bool longStarted = false, shortDone = false;
  std::thread longJob([&] {
    runOnComputeThread([&] {
      std::unique_lock<std::mutex> lock(mutex);
      longStarted = true;
      changed.notify_all();
      changed.wait(lock, [&] { return shortDone; });  // holds the compute thread until the other job has ended
    });
  });
  {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return longStarted; });
  }
  std::thread::id ranOn;
  int threadsSeen = 0;
  runOnComputeThread([&] {
    ranOn = std::this_thread::get_id();
    threadsSeen = at::get_num_threads();
  });
  {
    std::lock_guard<std::mutex> lock(mutex);
    shortDone = true;
  }
  changed.notify_all();
  longJob.join();
  check(ranOn == std::this_thread::get_id(), "the job asked while the compute thread was busy ran elsewhere");
  check(threadsSeen == 1, "it ran with " + std::to_string(threadsSeen) + " intra-op threads, not 1");
}

void whatAJobThrowsReachesItsCaller() {
  bool caught = false;
  try {
    runOnComputeThread([] { throw std::runtime_error("job failed"); });
  } catch (const std::runtime_error& error) {
    caught = std::string(error.what()) == "job failed";
  }
  check(caught, "the job's exception did not reach its caller");
  bool ran = false;
  runOnComputeThread([&] { ran = true; });
  check(ran, "the compute thread did not take a job after one failed");
}

}  // namespace

TestList computeThreadTests() {
  return {{"jobs asked from many threads run on the one compute thread, with the process's threads",
           jobsFromManyThreadsRunOnOne},
          {"a job asked while the compute thread is busy runs at once where it was asked, on one thread",
           aJobAskedWhileItIsBusyRunsAtOnceWhereAsked},
          {"what a job on the compute thread throws reaches its caller", whatAJobThrowsReachesItsCaller}};
}

}  // namespace pace::tests
