#pragma once
// Small integers every rank contributes, for decisions every rank must take alike (which ranks' callbacks failed or
// asked to stop).
#include <cstdint>
#include <string>
#include <vector>

#include "distributed/group.h"

namespace pace::distributed {

// Collective: every rank's `value`, in rank order; `what` names the point of the work in a timeout's error.
std::vector<int64_t> gatherValues(Group& group, int64_t value, const std::string& what);

}  // namespace pace::distributed
