#include "distributed/gathered_values.h"

#include <ATen/ATen.h>

namespace pace::distributed {

std::vector<int64_t> gatherValues(Group& group, int64_t value, const std::string& what) {
  const auto onGroup = at::TensorOptions().dtype(at::kLong).device(group.device());
  std::vector<int64_t> values;
  for (const at::Tensor& one : group.allGather(at::full({1}, value, onGroup), what))
    values.push_back(one.cpu().item<int64_t>());
  return values;
}

}  // namespace pace::distributed
