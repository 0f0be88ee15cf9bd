#pragma once
// What a trainer does beyond a single process's when a distributed group is current: every rank starts from rank
// 0's trainable tensors, and after each backward one all-reduce per bucket averages the trainable gradients
// together with the step's loss scalars, so clipping and AdamW then run identically on every rank. PACE's two
// copies of a sample stay on one rank: the consistency loss needs no communication.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "distributed/group.h"
#include "io/safetensors.h"

namespace pace::train {

class DataParallel {
 public:
  // Null: a single process. A world of one takes the same path as more ranks (the all-reduce of one rank changes
  // nothing), so a one-GPU machine checks it end to end.
  explicit DataParallel(std::shared_ptr<distributed::Group> group);
  bool active() const { return group_ != nullptr; }
  int rank() const { return group_ ? group_->rank() : 0; }
  int worldSize() const { return group_ ? group_->worldSize() : 1; }
  distributed::Group& group() const { return *group_; }

  // One setting every rank must share, as text: its name ("trainable parameters", "fit.epochs") and value.
  struct Setting {
    std::string name;
    std::string value;
  };
  // Collective: throws the same DistributedError on every rank unless every rank gave the same settings (by name
  // and value, in order), naming the first that differs and the ranks that differ from rank 0. Run before any
  // collective whose shapes the settings decide, which would otherwise abort inside the backend or diverge.
  void agree(const std::vector<Setting>& settings, const std::string& what) const;
  void broadcastParameters(const std::vector<NamedTensor>& trainable) const;
  // Replaces every trainable gradient (a missing one counts as zeros) and the float32 scalars by their means over
  // the ranks. The returned scalars are on the CPU; `what` names the step for errors.
  at::Tensor averageGradients(const std::vector<NamedTensor>& trainable, const at::Tensor& scalars,
                              const std::string& what);
  // Sums a CPU tensor over the ranks, in place.
  void sum(at::Tensor& values, const std::string& what) const;
  // Seconds spent in gradient all-reduces since the last call (the benchmark's communication share).
  double takeCommunicationSeconds();

 private:
  std::shared_ptr<distributed::Group> group_;
  double communicationSeconds_ = 0;
};

}  // namespace pace::train
