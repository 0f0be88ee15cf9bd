#pragma once
// A process group for data-parallel training: torch.distributed's c10d (Gloo on any network, NCCL across CUDA
// GPUs) behind the few collectives the trainer needs. Every call is collective (each rank makes it, in the same
// order) and waits at most the group's timeout; a failure becomes a DistributedError naming this rank and the
// operation. A process has at most one group, the current one (as torch.distributed's default group).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace pace::distributed {

struct GroupOptions {
  std::string backend = "gloo";  // "gloo", "nccl", or "auto" (see backend_choice.h)
  int rank = 0;
  int worldSize = 1;
  int localRank = 0;  // this process's index on its machine: its GPU under nccl
  std::string masterAddr = "127.0.0.1";
  int masterPort = 29500;
  // When set, the ranks (all on one machine) meet in this file instead of at masterAddr:masterPort, so that no
  // port is opened to the network for the rendezvous (`pace launch` on one machine gives a fresh private one).
  std::string rendezvousFile;
  // When set, a launcher already hosts the store at masterAddr:masterPort (torchrun's agent store,
  // TORCHELASTIC_USE_AGENT_STORE): every rank, rank 0 included, connects to it and keeps its keys under this prefix
  // (`/worker/attempt_<restart count>`, as PyTorch's ranks do), so a restarted attempt starts from a clean slate.
  std::string agentStorePrefix;
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  void validate() const;
};

class Group {
 public:
  virtual ~Group() = default;
  int rank() const { return rank_; }
  int worldSize() const { return worldSize_; }
  const std::string& backend() const { return backend_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // Where the collectives' tensors must be: the CPU for gloo, this rank's GPU for nccl.
  const c10::Device& device() const { return device_; }

  // Sums each tensor across the ranks, in place: one collective per tensor, all started before any is waited on.
  virtual void allReduceSum(std::vector<at::Tensor>& tensors, const std::string& what) = 0;
  // Overwrites each tensor with the root rank's.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) = 0;
  // Every rank's copy of a tensor of the same shape on every rank, in rank order.
  virtual std::vector<at::Tensor> allGather(const at::Tensor& tensor, const std::string& what) = 0;
  virtual void barrier(const std::string& what) = 0;

 protected:
  Group(int rank, int worldSize, std::string backend, std::chrono::milliseconds timeout, c10::Device device)
      : rank_(rank), worldSize_(worldSize), backend_(std::move(backend)), timeout_(timeout), device_(device) {}
  // The error for a failed collective: which rank saw it, what it was doing, why.
  [[noreturn]] void fail(const std::string& what, const std::string& why) const;

 private:
  int rank_, worldSize_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  c10::Device device_;
};

// The backends this build can create ("gloo", "nccl").
std::vector<std::string> availableBackends();

// Connects to the other ranks (rank 0 hosts the rendezvous store at masterAddr:masterPort) and makes the group
// current; blocks until every rank has joined or the timeout passes.
std::shared_ptr<Group> initialize(const GroupOptions& options);
// The current group, or null in a single process.
std::shared_ptr<Group> current();
// Forgets the current group (its connections close once nothing else holds it).
void shutdown();

}  // namespace pace::distributed
