#include "train/step_graphs.h"

#include "errors.h"

namespace pace::train {

StepGraphMode stepGraphModeFromName(const std::string& name) {
  if (name == "auto") return StepGraphMode::Auto;
  if (name == "off") return StepGraphMode::Off;
  if (name == "rehearse") return StepGraphMode::Rehearse;
  throw OptionError("stepGraphs must be 'auto', 'off' or 'rehearse', not '" + name + "'");
}

StepGraphs::Entry& StepGraphs::entryFor(const at::Tensor& images, const at::Tensor& targets, bool lazyPaceStep) {
  const Key key{images.sizes().vec(), images.scalar_type(), targets.sizes().vec(), targets.scalar_type(), lazyPaceStep};
  auto& entry = entries_[key];
  if (!entry) {
    entry = std::make_unique<Entry>();
    entry->images = at::empty_like(images, at::MemoryFormat::Contiguous);
    entry->targets = at::empty_like(targets, at::MemoryFormat::Contiguous);
  }
  return *entry;
}

void StepGraphs::keepOnlyFor(std::vector<const void*> parameterStorage) {
  if (parameterStorage == parameterStorage_) return;
  entries_.clear();
  parameterStorage_ = std::move(parameterStorage);
}

void StepGraphs::countEager(const std::string& reason) {
  ++counts_.eager;
  if (counts_.eagerReason.empty()) counts_.eagerReason = reason;
}

StepGraphCounts StepGraphs::takeCounts() {
  StepGraphCounts taken = std::move(counts_);
  counts_ = {};
  return taken;
}

namespace {

class RehearsedGraph final : public CapturedGraph {
 public:
  explicit RehearsedGraph(std::function<void()> step) : step_(std::move(step)) {}
  void replay() override { step_(); }

 private:
  std::function<void()> step_;
};

}  // namespace

std::unique_ptr<CapturedGraph> rehearsedGraph(std::function<void()> step) {
  return std::make_unique<RehearsedGraph>(std::move(step));
}

}  // namespace pace::train
