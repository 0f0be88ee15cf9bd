#include "train/graph_capture.h"

#include <torch/version.h>

#include <map>
#include <mutex>

#include "errors.h"

#if defined(PACE_WITH_CUDA_KERNELS) && \
    (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))
#define PACE_HAS_STEP_GRAPHS 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pace::train {

#ifdef PACE_HAS_STEP_GRAPHS

namespace {

// Held for all work on the side streams: two trainers of one process (a fit on a thread of its own, say) share
// a device's side stream, and kernels one of them queues there while the other captures would be recorded into
// the other's graph.
std::mutex& sideStreamMutex() {
  static std::mutex mutex;
  return mutex;
}

// One side stream per device for warm-ups and captures (capturing on the default stream is not allowed).
c10::cuda::CUDAStream captureStream(c10::DeviceIndex device) {
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  auto found = streams.find(device);
  if (found == streams.end()) found = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
  return found->second;
}

// Runs `body` on the side stream, ordered after the work queued on the current stream and before what is
// queued there next (as torch.cuda.graph does with wait_stream on both sides), also when `body` throws: what it
// queued before throwing must not race with the eager steps after it. The caller holds sideStreamMutex().
void onSideStream(c10::DeviceIndex device, const std::function<void()>& body) {
  struct JoinBack {
    c10::cuda::CUDAStream side, current;
    ~JoinBack() {
      try {
        at::cuda::CUDAEvent done;
        done.record(side);
        done.block(current);
      } catch (...) {  // a destructor must not throw; the next CUDA call reports a broken device
      }
    }
  };
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device);
  const c10::cuda::CUDAStream side = captureStream(device);
  at::cuda::CUDAEvent queued;
  queued.record(current);
  queued.block(side);
  const JoinBack joinBack{side, current};
  const c10::cuda::CUDAStreamGuard guard(side);
  body();
}

// A capture that fails leaves libtorch's state as if it were still under way: the registered generators (the
// device's default one among them) refuse eager draws ("Offset increment outside graph capture"), and where
// cudaStreamEndCapture failed the caching allocator still routes to the graph's pool and defers its frees. This
// undoes both through public API: each generator gets a fresh state with its seed and offset (the capture's
// draws were not counted there, so the next eager step draws what it would have), and the pool is closed.
void recoverFromFailedCapture(c10::DeviceIndex device, at::cuda::MempoolId_t pool,
                              const std::vector<at::Generator>& generators) {
  (void)cudaGetLastError();  // an invalidated capture's error is not sticky: clear it for the eager step
  std::vector<at::Generator> registered = generators;
  registered.push_back(at::cuda::detail::getDefaultCUDAGenerator(device));
  for (auto& generator : registered) {
    const std::lock_guard<std::mutex> lock(generator.mutex());
    generator.graphsafe_set_state(generator.clone());
  }
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(device, pool);
  } catch (...) {  // capture_end had closed it before failing
  }
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

std::unique_ptr<CapturedGraph> captureGraph(const c10::Device& device, const std::function<void()>& body,
                                            const std::vector<at::Generator>& generators) {
  const std::lock_guard<std::mutex> serialised(sideStreamMutex());
  // The step's device, not the thread's current one: the generators' graph-side seed and offset tensors, the
  // side stream and the capture all belong there.
  const c10::cuda::CUDAGuard onDevice(device);
  const c10::DeviceIndex index = c10::cuda::current_device();
  auto captured = std::make_unique<CudaGraph>();
  for (const auto& generator : generators) captured->graph.register_generator_state(generator);
  const at::cuda::MempoolId_t pool = at::cuda::graph_pool_handle();  // known here, to close it on failure
  try {
    onSideStream(index, [&] {
      // Thread-local: the host process may run CUDA work on other threads (a Node server evaluating while a fit
      // captures); in the default global mode their allocations would fail while this capture lasts. Their
      // draws from this device's default generator would still fail (libtorch marks it as capturing).
      captured->graph.capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      try {
        body();
      } catch (...) {
        try {
          captured->graph.capture_end();  // ends the (now invalid) capture so the stream can run eagerly again
        } catch (...) {
        }
        throw;
      }
      captured->graph.capture_end();
    });
  } catch (...) {
    recoverFromFailedCapture(index, pool, generators);
    throw;
  }
  return captured;
}

void onCaptureStream(const c10::Device& device, const std::function<void()>& body) {
  if (!device.is_cuda()) return body();
  const std::lock_guard<std::mutex> serialised(sideStreamMutex());
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

std::unique_ptr<CapturedGraph> captureGraph(const c10::Device&, const std::function<void()>&,
                                            const std::vector<at::Generator>&) {
  throw StateError("CUDA graphs are not available in this build");
}

void onCaptureStream(const c10::Device&, const std::function<void()>& body) { body(); }

#endif

}  // namespace pace::train
