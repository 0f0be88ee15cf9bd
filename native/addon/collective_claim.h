#pragma once
#include <napi.h>

#include <memory>
#include <string>

namespace pace::addon {

// The process group's collectives must come in the same order on every rank (distributed/group.h). Two calls that
// each make collectives, in flight at once (a barrier from a callback during a data-parallel epoch, fits of two
// models in one group), would interleave in whatever order each rank's threads took them: gradients averaged
// across the two models, or a hang until the group's timeout. So one such call at a time: the claim is taken on
// the JS thread as the call is made and released when its job has ended; another call meanwhile is refused.
class CollectiveClaim {
 public:
  ~CollectiveClaim();
  CollectiveClaim(const CollectiveClaim&) = delete;
  CollectiveClaim& operator=(const CollectiveClaim&) = delete;

 private:
  CollectiveClaim() = default;
  friend std::shared_ptr<CollectiveClaim> claimCollectives(Napi::Env env, const std::string& what);
};

// The claim for a call named `what`, or a busy error naming the call in flight.
std::shared_ptr<CollectiveClaim> claimCollectives(Napi::Env env, const std::string& what);

}  // namespace pace::addon
