#pragma once
// A parallel loop whose threads take the next undone item instead of a fixed share: on a machine whose cores
// are shared (a VM), a core slowed by someone else then does fewer items instead of making the others wait
// for its share. For items of a few milliseconds or less (a head's attention, a sample's product).
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace pace {

// Calls body(i) once for every i in [0, count) on the intra-op threads. Grad mode is off inside (it is per
// thread, and the pool's threads do not inherit the caller's), so `body` may call ATen on tensors that
// require gradients without recording anything.
template <typename Body>
void forEachDynamic(int64_t count, const Body& body) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    const at::NoGradGuard noGrad;
    for (int64_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) body(i);
  });
}

}  // namespace pace
