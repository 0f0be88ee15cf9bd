#include "collective_claim.h"

#include <mutex>
#include <optional>

#include "js_errors.h"

namespace pace::addon {

namespace {

// Process-wide, as the group is (worker threads' environments share it).
std::mutex claimMutex;
std::optional<std::string> claimedBy;

[[noreturn]] void refuse(Napi::Env env, const std::string& what, const std::string& holder) {
  throw jsError(env, ErrorCode::Busy,
                what + " cannot start while " + holder +
                    " is running: both make collectives on the process group, which every rank must make in the "
                    "same order; await it first");
}

}  // namespace

CollectiveClaim::~CollectiveClaim() {
  std::lock_guard<std::mutex> lock(claimMutex);
  claimedBy.reset();
}

std::shared_ptr<CollectiveClaim> claimCollectives(Napi::Env env, const std::string& what) {
  std::lock_guard<std::mutex> lock(claimMutex);
  if (claimedBy) refuse(env, what, *claimedBy);
  claimedBy = what;
  return std::shared_ptr<CollectiveClaim>(new CollectiveClaim());
}

}  // namespace pace::addon
