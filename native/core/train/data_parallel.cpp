#include "train/data_parallel.h"

#include <ATen/ATen.h>

#include <chrono>
#include <string>

#include "errors.h"

namespace pace::train {

namespace {

// Elements per all-reduce: the gradients of adapters and a head fit in one; full fine-tuning of ViT-B takes a
// few, so no single buffer doubles the model's memory.
constexpr int64_t kBucketElements = int64_t{1} << 24;

// FNV-1a: the same on every machine and build, unlike std::hash.
int64_t digestOf(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (const unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  return static_cast<int64_t>(hash);
}

std::string shortened(const std::string& text) { return text.size() <= 160 ? text : text.substr(0, 157) + "..."; }

// The ranks (other than 0) whose row of `gathered` differs from rank 0's at `column`, as "1, 3".
std::string ranksDiffering(const std::vector<at::Tensor>& gathered, int64_t column) {
  std::string ranks;
  for (size_t r = 1; r < gathered.size(); ++r) {
    if (gathered[r][column].item<int64_t>() != gathered[0][column].item<int64_t>())
      ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  }
  return ranks;
}

}  // namespace

DataParallel::DataParallel(std::shared_ptr<distributed::Group> group) : group_(std::move(group)) {}

void DataParallel::agree(const std::vector<Setting>& settings, const std::string& what) const {
  if (!group_) return;
  const auto onGroup = at::TensorOptions().dtype(at::kLong).device(group_->device());
  // First how many settings and a digest of all: equal-sized tensors, whatever each rank was given.
  std::string all;
  std::vector<int64_t> digests;
  for (const auto& setting : settings) {
    const std::string line = setting.name + "=" + setting.value + "\n";
    all += line;
    digests.push_back(digestOf(line));
  }
  const auto summary = at::tensor({static_cast<int64_t>(settings.size()), digestOf(all)}, at::kLong).to(onGroup);
  std::vector<at::Tensor> gathered = group_->allGather(summary, "comparing " + what + " across the ranks");
  for (auto& row : gathered) row = row.cpu();
  const std::string rank = "rank " + std::to_string(group_->rank()) + " of " + std::to_string(group_->worldSize());
  if (!ranksDiffering(gathered, 0).empty())
    throw DistributedError(rank + ": the ranks were given different " + what + ": rank(s) " +
                           ranksDiffering(gathered, 0) + " have another number of settings than rank 0");
  if (ranksDiffering(gathered, 1).empty()) return;
  gathered = group_->allGather(at::tensor(digests, at::kLong).to(onGroup), "comparing " + what + " setting by setting");
  for (auto& row : gathered) row = row.cpu();
  for (size_t i = 0; i < settings.size(); ++i) {
    const std::string ranks = ranksDiffering(gathered, static_cast<int64_t>(i));
    if (ranks.empty()) continue;
    throw DistributedError(rank + ": the ranks were given different " + what + ": rank(s) " + ranks +
                           " differ from rank 0 in " + settings[i].name + " (here: " + shortened(settings[i].value) +
                           ")");
  }
  throw DistributedError(rank + ": the ranks were given different " + what + " (the settings' names differ)");
}

void DataParallel::broadcastParameters(const std::vector<NamedTensor>& trainable) const {
  if (!group_) return;
  at::NoGradGuard noGrad;
  std::vector<at::Tensor> copies;
  for (const auto& named : trainable) copies.push_back(named.tensor.detach().to(group_->device()).contiguous().clone());
  group_->broadcast(copies, 0, "broadcasting rank 0's trainable parameters");
  for (size_t i = 0; i < trainable.size(); ++i) trainable[i].tensor.detach().copy_(copies[i]);
}

at::Tensor DataParallel::averageGradients(const std::vector<NamedTensor>& trainable, const at::Tensor& scalars,
                                          const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard noGrad;
  // The buckets sit where the backend reduces: host memory for Gloo (torch.distributed's Gloo stages CUDA tensors
  // through the host the same way), the GPU for NCCL.
  const auto bucketOptions = at::TensorOptions().dtype(at::kFloat).device(group_->device());
  std::vector<std::vector<size_t>> members(1);
  std::vector<at::Tensor> buckets;
  std::vector<at::Tensor> pieces;
  int64_t filled = 0;
  const auto close = [&] {
    buckets.push_back(at::cat(pieces));
    pieces.clear();
    filled = 0;
  };
  for (size_t i = 0; i < trainable.size(); ++i) {
    const at::Tensor& parameter = trainable[i].tensor;
    const at::Tensor gradient = parameter.grad().defined() ? parameter.grad() : at::zeros_like(parameter);
    if (filled > 0 && filled + parameter.numel() > kBucketElements) {
      close();
      members.emplace_back();
    }
    pieces.push_back(gradient.detach().reshape(-1).to(bucketOptions));
    members.back().push_back(i);
    filled += parameter.numel();
  }
  pieces.push_back(scalars.detach().reshape(-1).to(bucketOptions));
  close();
  group_->allReduceSum(buckets, "the gradient all-reduce " + what);
  const double share = 1.0 / static_cast<double>(group_->worldSize());
  for (size_t b = 0; b < buckets.size(); ++b) {
    buckets[b].mul_(share);
    int64_t offset = 0;
    for (size_t i : members[b]) {
      const at::Tensor& parameter = trainable[i].tensor;
      const at::Tensor averaged = buckets[b].narrow(0, offset, parameter.numel()).view(parameter.sizes());
      offset += parameter.numel();
      if (parameter.grad().defined()) {
        parameter.mutable_grad().copy_(averaged);
      } else {
        parameter.mutable_grad() = averaged.to(parameter.options()).clone();
      }
    }
  }
  at::Tensor averagedScalars = buckets.back().narrow(0, buckets.back().numel() - scalars.numel(), scalars.numel());
  communicationSeconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return averagedScalars.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
}

void DataParallel::sum(at::Tensor& values, const std::string& what) const {
  if (!group_) return;
  std::vector<at::Tensor> one{values.to(group_->device())};
  group_->allReduceSum(one, what);
  values.copy_(one[0]);
}

double DataParallel::takeCommunicationSeconds() {
  const double seconds = communicationSeconds_;
  communicationSeconds_ = 0;
  return seconds;
}

}  // namespace pace::train
