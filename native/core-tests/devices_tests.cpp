// Devices by name (system/devices.h): a bare 'cuda' takes the process's default GPU once one is set (a NCCL
// rank's own), on whatever thread names it; an explicit index and the CPU are left as they are.
#include "check.h"
#include "system/devices.h"

namespace pace::tests {
namespace {

void aBareCudaTakesTheDefaultIndex() {
  const c10::Device bare(c10::kCUDA), second(c10::kCUDA, 1), cpu(c10::kCPU);
  check(withDefaultCudaIndex(bare) == bare, "'cuda' gained an index before any default was set");
  setDefaultCudaIndex(3);
  const bool took = withDefaultCudaIndex(bare) == c10::Device(c10::kCUDA, 3);
  const bool keptIndex = withDefaultCudaIndex(second) == second;
  const bool keptCpu = withDefaultCudaIndex(cpu) == cpu;
  setDefaultCudaIndex(std::nullopt);
  check(took, "'cuda' did not become cuda:3 with the default set to 3");
  check(keptIndex, "'cuda:1' did not stay cuda:1 with a default set");
  check(keptCpu, "'cpu' changed with a default CUDA index set");
  check(withDefaultCudaIndex(bare) == bare, "'cuda' kept the default after it was cleared");
}

}  // namespace

TestList devicesTests() {
  return {{"a bare 'cuda' names the default GPU once one is set", aBareCudaTakesTheDefaultIndex}};
}

}  // namespace pace::tests
