#include "distributed/group.h"

#include <mutex>
#include <sstream>

#include "errors.h"
#include "system/devices.h"

namespace pace::distributed {

void GroupOptions::validate() const {
  if (backend != "gloo" && backend != "nccl" && backend != "auto")
    throw OptionError("distributed backend must be 'gloo', 'nccl' or 'auto'; got '" + backend + "'");
  if (worldSize < 1) throw OptionError("the world size must be >= 1; got " + std::to_string(worldSize));
  if (rank < 0 || rank >= worldSize)
    throw OptionError("the rank must lie in [0, " + std::to_string(worldSize) + "); got " + std::to_string(rank));
  if (masterPort < 1 || masterPort > 65535)
    throw OptionError("the master port must lie in [1, 65535]; got " + std::to_string(masterPort));
  if (masterAddr.empty()) throw OptionError("the master address is empty");
  if (localRank < 0) throw OptionError("the local rank must be >= 0; got " + std::to_string(localRank));
  if (timeout.count() < 1) throw OptionError("the distributed timeout must be positive");
}

void Group::fail(const std::string& what, const std::string& why) const {
  std::string peer = "another rank";
  if (worldSize_ == 2) peer = "rank " + std::to_string(1 - rank_);
  std::ostringstream seconds;
  seconds << static_cast<double>(timeout_.count()) / 1000.0;
  throw DistributedError("rank " + std::to_string(rank_) + " of " + std::to_string(worldSize_) + ": " + what +
                         " failed (" + peer + " exited, crashed or did not answer within " + seconds.str() +
                         " s, the group's timeout: PACE_DISTRIBUTED_TIMEOUT or pace launch --timeout): " + why);
}

namespace {

std::mutex currentMutex;
std::shared_ptr<Group> currentGroup;
bool connecting = false;  // a group is being joined (the connection takes seconds, outside the mutex)

}  // namespace

// Defined by the backend file (c10d_group.cpp): the group itself.
std::shared_ptr<Group> connect(const GroupOptions& options);

std::shared_ptr<Group> initialize(const GroupOptions& options) {
  options.validate();
  {
    std::lock_guard<std::mutex> lock(currentMutex);
    if (currentGroup)
      throw StateError("this process is already part of a distributed group (rank " +
                       std::to_string(currentGroup->rank()) + " of " + std::to_string(currentGroup->worldSize()) +
                       "); call destroyDistributed() first");
    if (connecting) throw StateError("this process is already joining a distributed group; await that first");
    connecting = true;
  }
  std::shared_ptr<Group> group;
  try {
    group = connect(options);
  } catch (...) {
    std::lock_guard<std::mutex> lock(currentMutex);
    connecting = false;
    throw;
  }
  std::lock_guard<std::mutex> lock(currentMutex);
  connecting = false;
  currentGroup = group;
  // One GPU per local rank: 'cuda' names this rank's from now on, on every thread (models, tensors, moves).
  if (group->device().is_cuda()) setDefaultCudaIndex(group->device().index());
  return group;
}

std::shared_ptr<Group> current() {
  std::lock_guard<std::mutex> lock(currentMutex);
  return currentGroup;
}

void shutdown() {
  std::lock_guard<std::mutex> lock(currentMutex);
  if (currentGroup && currentGroup->device().is_cuda()) setDefaultCudaIndex(std::nullopt);
  currentGroup.reset();
}

}  // namespace pace::distributed
