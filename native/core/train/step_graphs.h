#pragma once
// The epoch loop's whole-step graphs (graph_capture.h): one per kind of step (input shapes and types, and
// whether it is a lazy consistency step), each with the static buffers its replays read and write. A kind
// runs a few eager warm-up steps through the same buffers, is captured at the next, then replayed; anything a
// graph cannot hold (replayed noise, diagnostics, data-parallel all-reduces, SAM, the fast variant's host
// history) runs eagerly, and the epoch reports why.
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "train/graph_capture.h"

namespace pace::train {

// `Auto`: capture where the build and device can (CUDA, libtorch ≥ 2.4), eager elsewhere. `Rehearse`: the
// same static-buffer steps and bookkeeping with the "graph" replaying the recorded step function eagerly, on
// any device: what tests use to check the graph path where no GPU is.
enum class StepGraphMode { Off, Auto, Rehearse };
StepGraphMode stepGraphModeFromName(const std::string& name);

// What an epoch's steps ran as.
struct StepGraphCounts {
  int64_t captured = 0;     // steps run eagerly on the capturing thread, then captured into a graph
  int64_t replayed = 0;     // steps replayed from an earlier capture
  int64_t warmups = 0;      // eager steps through a graph's buffers before its capture
  int64_t eager = 0;        // steps that could not use a graph
  std::string eagerReason;  // why (the first reason met); empty when every step could
};

class StepGraphs {
 public:
  struct Entry {
    at::Tensor images, targets;  // static inputs: each step's batch is copied in before the replay
    // Static outputs, written by every replay (read them before the next one).
    at::Tensor cls, pace, total, correct;
    int64_t counted = 0;
    std::vector<at::Tensor> launched;  // the parameters the fused AdamW updates
    int warmups = 0;
    std::unique_ptr<CapturedGraph> graph;
  };

  // The entry for steps like this one (made, with its buffers, at the first).
  Entry& entryFor(const at::Tensor& images, const at::Tensor& targets, bool lazyPaceStep);
  // Drops every graph: the tensors they were captured with were replaced (restored state, re-made bf16 copies,
  // a model moved to another device). Steps warm up and capture again.
  void invalidate() { entries_.clear(); }
  // Drops every graph unless the parameters' storage is what they were captured with: a model moved to another
  // device and back (Module::to swaps each parameter's storage in place) is on its device again, elsewhere in it.
  void keepOnlyFor(std::vector<const void*> parameterStorage);
  // After a failed capture: steps run eagerly from now on, for `reason`.
  void disable(std::string reason) { disabled_ = std::move(reason); }
  CaptureStreams& streams() { return streams_; }
  const std::string& disabledReason() const { return disabled_; }

  void countCaptured() { ++counts_.captured; }
  void countReplayed() { ++counts_.replayed; }
  void countWarmup() { ++counts_.warmups; }
  void countEager(const std::string& reason);
  StepGraphCounts takeCounts();

 private:
  using Key = std::tuple<std::vector<int64_t>, at::ScalarType, std::vector<int64_t>, at::ScalarType, bool>;
  CaptureStreams streams_;                         // before the entries: destroyed after the graphs captured on it
  std::map<Key, std::unique_ptr<Entry>> entries_;  // stable addresses: captured steps refer to their entry
  std::string disabled_;
  StepGraphCounts counts_;
  std::vector<const void*> parameterStorage_;
};

// A stand-in for a captured graph whose replay calls the recorded step function (StepGraphMode::Rehearse).
std::unique_ptr<CapturedGraph> rehearsedGraph(std::function<void()> step);

}  // namespace pace::train
