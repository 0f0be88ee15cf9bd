#include "system/threads.h"

#include <ATen/Parallel.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "errors.h"

namespace pace {

namespace {

std::atomic<int> processThreads{0};  // 0: not chosen yet
// Bumped whenever a thread changes libtorch's process-wide thread state (MKL's count, new threads' default), so
// that compute threads set theirs again even where their own count did not change.
std::atomic<uint64_t> settingGeneration{1};
thread_local uint64_t appliedGeneration = 0;

// cgroup v2 "cpu.max" ("max 100000" or "200000 100000") or v1 cfs quota/period: the CPUs' worth of time allowed.
int cgroupCpuLimit() {
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (v2 >> quota >> period && quota != "max" && period > 0) {
    return std::max(1, static_cast<int>(std::ceil(std::stod(quota) / static_cast<double>(period))));
  }
  std::ifstream v1Quota("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), v1Period("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  long long q = 0, p = 0;
  if (v1Quota >> q && v1Period >> p && q > 0 && p > 0) {
    return std::max(1, static_cast<int>(std::ceil(static_cast<double>(q) / static_cast<double>(p))));
  }
  return 0;
}

int positiveFromEnvironment(const char* name) {
  const char* value = std::getenv(name);
  if (!value || !*value) return 0;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  return (*end == '\0' && parsed > 0 && parsed <= 1024) ? static_cast<int>(parsed) : 0;
}

}  // namespace

int availableCpus() {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  const int limit = cgroupCpuLimit();
  if (limit > 0) cpus = std::min(cpus, limit);
  return std::max(1, cpus);
}

int defaultThreads() {
  if (const int fromPace = positiveFromEnvironment("PACE_NUM_THREADS")) return fromPace;
  if (const int fromOmp = positiveFromEnvironment("OMP_NUM_THREADS")) return fromOmp;
  return availableCpus();
}

void setThreads(int intraOp) {
  if (intraOp < 1 || intraOp > 1024)
    throw OptionError("threads must be between 1 and 1024, got " + std::to_string(intraOp));
  processThreads.store(intraOp);
  settingGeneration.fetch_add(1);
}

int configuredThreads() {
  int threads = processThreads.load();
  if (threads == 0) {
    int expected = 0;
    processThreads.compare_exchange_strong(expected, defaultThreads());
    threads = processThreads.load();
  }
  return threads;
}

void applyThreads() {
  const int threads = configuredThreads();
  const uint64_t generation = settingGeneration.load();
  if (appliedGeneration == generation && at::get_num_threads() == threads) return;
  at::set_num_threads(threads);
  appliedGeneration = generation;
}

void useOneThread() {
  // at::get_num_threads() runs libtorch's lazy per-thread set-up first, which would otherwise restore the
  // process-wide count at this thread's first parallel operation.
  if (at::get_num_threads() == 1) return;
  at::set_num_threads(1);
  settingGeneration.fetch_add(1);
}

}  // namespace pace
