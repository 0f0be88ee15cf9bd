// Compiled (not linked) by cmake/PaceDistributed.cmake: does c10d's NCCL group build with this libtorch and NCCL?
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

c10::intrusive_ptr<c10d::ProcessGroupNCCL> paceNcclCheck(const c10::intrusive_ptr<c10d::Store>& store) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = std::chrono::milliseconds(1000);
  c10::cuda::set_device(0);
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, 0, 1, options);
  std::vector<at::Tensor> tensors{at::ones({1})};
  group->allreduce(tensors)->wait(std::chrono::milliseconds(1000));
  return group;
}
