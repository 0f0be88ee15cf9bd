#include "train/graph_capture.h"

#include <torch/version.h>

#include <map>
#include <mutex>

#include "errors.h"

#if defined(PACE_WITH_CUDA_KERNELS) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
#define PACE_HAS_STEP_GRAPHS 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pace::train {

#ifdef PACE_HAS_STEP_GRAPHS

namespace {

// One side stream per device for warm-ups and captures (capturing on the default stream is not allowed).
c10::cuda::CUDAStream captureStream(c10::DeviceIndex device) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = streams.find(device);
  if (found == streams.end()) found = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
  return found->second;
}

// Runs `body` on the side stream, ordered after the work queued on the current stream and before what is
// queued there next (as torch.cuda.graph does with wait_stream on both sides).
void onSideStream(c10::DeviceIndex device, const std::function<void()>& body) {
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device);
  const c10::cuda::CUDAStream side = captureStream(device);
  at::cuda::CUDAEvent queued;
  queued.record(current);
  queued.block(side);
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    body();
  }
  at::cuda::CUDAEvent done;
  done.record(side);
  done.block(current);
}

class CudaGraph final : public CapturedGraph {
 public:
  at::cuda::CUDAGraph graph;
  void replay() override { graph.replay(); }
};

}  // namespace

std::string graphCaptureUnavailable(const c10::Device& device) {
  if (!device.is_cuda()) return "the model is on the " + device.str() + ", not a CUDA device";
  return "";
}

std::unique_ptr<CapturedGraph> captureGraph(const std::function<void()>& body,
                                            const std::vector<at::Generator>& generators) {
  auto captured = std::make_unique<CudaGraph>();
  for (const auto& generator : generators) captured->graph.register_generator_state(generator);
  const c10::DeviceIndex device = c10::cuda::current_device();
  onSideStream(device, [&] {
    // Thread-local: the host process may run CUDA work on other threads (a Node server evaluating while a fit
    // captures); in the default global mode their allocations would fail while this capture lasts.
    captured->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      body();
    } catch (...) {
      try {
        captured->graph.capture_end();  // ends the (now invalid) capture so the stream can run eagerly again
      } catch (...) {
      }
      (void)cudaGetLastError();  // the invalidated capture's error is not sticky: clear it for the eager step
      throw;
    }
    captured->graph.capture_end();
  });
  return captured;
}

void onCaptureStream(const c10::Device& device, const std::function<void()>& body) {
  if (!device.is_cuda()) return body();
  onSideStream(device.index() < 0 ? c10::cuda::current_device() : device.index(), body);
}

#else

std::string graphCaptureUnavailable(const c10::Device& device) {
  if (!device.is_cuda()) return "the model is on the " + device.str() + ", not a CUDA device";
#ifndef PACE_WITH_CUDA_KERNELS
  return "this build of pace-peft has no CUDA";
#else
  return std::string("libtorch ") + TORCH_VERSION +
         " cannot capture the trainer's generators in a graph (needs >= 2.4)";
#endif
}

std::unique_ptr<CapturedGraph> captureGraph(const std::function<void()>&, const std::vector<at::Generator>&) {
  throw StateError("CUDA graphs are not available in this build");
}

void onCaptureStream(const c10::Device&, const std::function<void()>& body) { body(); }

#endif

}  // namespace pace::train
