#pragma once
// CUDA graphs for whole training steps: the step's kernels are recorded once and replayed with one launch, so
// the host's per-operator dispatch (hundreds of launches per step) leaves the critical path. Needs a CUDA
// libtorch >= 2.4: its graphs take the trainer's own generators (graph-safe Philox offsets, so replayed draws
// are the draws an eager step would make) and its fused AdamW reads the learning rate from a device tensor.
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pace::train {

class CapturedGraph {
 public:
  virtual ~CapturedGraph() = default;
  // Runs the recorded kernels on the current stream, after the work already queued there.
  virtual void replay() = 0;
};

// The side streams one owner's warm-ups and captures run on (a capture cannot use the default stream), one per
// device, made at first use and destroyed with the owner, which must outlive its graphs. Owners do not share
// them: libtorch keeps a cuBLAS workspace per stream, captured graphs write into it at every replay, and
// destroying a graph frees its capture stream's workspace, under any other graph captured on that stream.
class CaptureStreams {
 public:
  CaptureStreams();
  ~CaptureStreams();
  CaptureStreams(const CaptureStreams&) = delete;
  CaptureStreams& operator=(const CaptureStreams&) = delete;

  struct Made;  // the streams themselves (CUDA builds)
  Made& made() { return *made_; }

 private:
  std::unique_ptr<Made> made_;
};

// Empty when this build can capture steps on `device`; otherwise why it cannot, for the user.
std::string graphCaptureUnavailable(const c10::Device& device);

// Records `body` (which must not read device values on the host) as a graph on `streams`' side stream of
// `device`, with `generators` advancing by their draws at every replay. Throws when the capture fails; the body's
// kernels have not run then and the generators are where they were, so the caller can run the step eagerly.
std::unique_ptr<CapturedGraph> captureGraph(CaptureStreams& streams, const c10::Device& device,
                                            const std::function<void()>& body,
                                            const std::vector<at::Generator>& generators);

// Runs `body` eagerly on the side stream captures use (warm-up steps: cuBLAS workspaces and the caching allocator
// meet the stream before the capture); a plain call where graphs are unavailable.
void onCaptureStream(CaptureStreams& streams, const c10::Device& device, const std::function<void()>& body);

// Runs `body` unless a step graph is being captured, replayed or destroyed on another thread at this moment (then
// returns false without running it): returning the CUDA allocator's cache to the driver meanwhile is refused by
// some libtorch releases (an assertion while any capture is under way) and skipped by others.
bool unlessGraphsBusy(const std::function<void()>& body);

}  // namespace pace::train
