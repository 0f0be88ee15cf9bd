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
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pace::train {

#ifdef PACE_HAS_STEP_GRAPHS

namespace {

// Held for captures, warm-ups, replays and the destruction of graphs, by every trainer of the process: a capture
// marks the device's default generator (which every graph registers) as capturing, and another thread's replay
// or graph destruction meanwhile would touch its state (a replay's offset update is refused then). Recursive: a
// failed capture's graph is destroyed while it is held.
std::recursive_mutex& graphMutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

// Runs `body` on `side`, ordered after the work queued on the current stream and before what is queued there
// next (as torch.cuda.graph does with wait_stream on both sides), also when `body` throws: what it queued before
// throwing must not race with the eager steps after it. The caller holds graphMutex().
void onSideStream(c10::cuda::CUDAStream side, c10::DeviceIndex device, const std::function<void()>& body) {
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
  at::cuda::CUDAEvent queued;
  queued.record(current);
  queued.block(side);
  const JoinBack joinBack{side, current};
  const c10::cuda::CUDAStreamGuard guard(side);
  body();
}

class CudaGraph final : public CapturedGraph {
 public:
  std::unique_ptr<at::cuda::CUDAGraph> graph = std::make_unique<at::cuda::CUDAGraph>();
  void replay() override {
    const std::lock_guard<std::recursive_mutex> lock(graphMutex());
    graph->replay();
  }
  ~CudaGraph() override {
    const std::lock_guard<std::recursive_mutex> lock(graphMutex());
    graph.reset();  // unregisters from the generators and releases its pool and its stream's cuBLAS workspace
  }
};

// Whether `graph`'s capture ended (then the graph releases its pool itself when destroyed).
bool captureEnded(at::cuda::CUDAGraph& graph) {
  try {
    (void)graph.pool();
    return true;
  } catch (const c10::Error&) {
    return false;
  }
}

// A capture that fails leaves libtorch's state as if it were still under way: the registered generators (the
// device's default one among them) refuse eager draws ("Offset increment outside graph capture"), and where
// cudaStreamEndCapture failed the caching allocator still routes to the graph's pool and defers its frees, and
// the graph, its capture not ended, never releases that pool (a forward and backward's worth of memory the eager
// steps after it would go without). This undoes them through public API: each generator gets a fresh state with
// its seed and offset (the capture's draws were not counted there, so the next eager step draws what it would
// have), and the pool is closed and released.
void recoverFromFailedCapture(at::cuda::CUDAGraph& graph, c10::DeviceIndex device, at::cuda::MempoolId_t pool,
                              const std::vector<at::Generator>& generators) {
  (void)cudaGetLastError();  // an invalidated capture's error is not sticky: clear it for the eager step
  std::vector<at::Generator> registered = generators;
  registered.push_back(at::cuda::detail::getDefaultCUDAGenerator(device));
  for (auto& generator : registered) {
    const std::lock_guard<std::mutex> lock(generator.mutex());
    generator.graphsafe_set_state(generator.clone());
  }
  if (captureEnded(graph)) return;  // only its instantiation failed: the graph's reset releases the pool
  try {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(device, pool);
  } catch (...) {  // capture_end had closed it before failing
  }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  // Where pool() answers whether reset() will release the pool (its capture_ended_, libtorch's graphs since
  // keep_graph); before, reset() also released it after a failed instantiation, which pool() does not tell
  // apart, and a second release there would end the process from a destructor.
  try {
    c10::cuda::CUDACachingAllocator::releasePool(device, pool);
  } catch (...) {  // the capture failed before the pool was made
  }
#endif
}

}  // namespace

struct CaptureStreams::Made {
  std::map<c10::DeviceIndex, cudaStream_t> streams;  // used under graphMutex()

  c10::cuda::CUDAStream on(c10::DeviceIndex device) {
    auto found = streams.find(device);
    if (found == streams.end()) {
      const c10::cuda::CUDAGuard onDevice(device);
      cudaStream_t stream = nullptr;
      C10_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      found = streams.emplace(device, stream).first;
    }
    return c10::cuda::getStreamFromExternal(found->second, device);
  }

  ~Made() {
    // Work still queued on a stream runs to its end; CUDA frees the stream after it.
    for (const auto& [device, stream] : streams) (void)cudaStreamDestroy(stream);
  }
};

std::string graphCaptureUnavailable(const c10::Device& device) {
  if (!device.is_cuda()) return "the model is on the " + device.str() + ", not a CUDA device";
  return "";
}

std::unique_ptr<CapturedGraph> captureGraph(CaptureStreams& streams, const c10::Device& device,
                                            const std::function<void()>& body,
                                            const std::vector<at::Generator>& generators) {
  const std::lock_guard<std::recursive_mutex> serialised(graphMutex());
  // The step's device, not the thread's current one: the generators' graph-side seed and offset tensors, the
  // side stream and the capture all belong there.
  const c10::cuda::CUDAGuard onDevice(device);
  const c10::DeviceIndex index = c10::cuda::current_device();
  auto captured = std::make_unique<CudaGraph>();
  for (const auto& generator : generators) captured->graph->register_generator_state(generator);
  const at::cuda::MempoolId_t pool = at::cuda::graph_pool_handle();  // known here, to release it on failure
  try {
    onSideStream(streams.made().on(index), index, [&] {
      // Thread-local: the host process may run CUDA work on other threads (a Node server evaluating while a fit
      // captures); in the default global mode their allocations would fail while this capture lasts. Their
      // draws from this device's default generator would still fail (libtorch marks it as capturing).
      captured->graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      try {
        body();
      } catch (...) {
        try {
          captured->graph->capture_end();  // ends the (now invalid) capture so the stream can run eagerly again
        } catch (...) {
        }
        throw;
      }
      captured->graph->capture_end();
    });
  } catch (...) {
    recoverFromFailedCapture(*captured->graph, index, pool, generators);
    throw;
  }
  return captured;
}

void onCaptureStream(CaptureStreams& streams, const c10::Device& device, const std::function<void()>& body) {
  if (!device.is_cuda()) return body();
  const std::lock_guard<std::recursive_mutex> serialised(graphMutex());
  const c10::DeviceIndex index = device.index() < 0 ? c10::cuda::current_device() : device.index();
  onSideStream(streams.made().on(index), index, body);
}

bool unlessGraphsBusy(const std::function<void()>& body) {
  const std::unique_lock<std::recursive_mutex> idle(graphMutex(), std::try_to_lock);
  if (!idle.owns_lock()) return false;
  body();
  return true;
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

std::unique_ptr<CapturedGraph> captureGraph(CaptureStreams&, const c10::Device&, const std::function<void()>&,
                                            const std::vector<at::Generator>&) {
  throw StateError("CUDA graphs are not available in this build");
}

void onCaptureStream(CaptureStreams&, const c10::Device&, const std::function<void()>& body) { body(); }

bool unlessGraphsBusy(const std::function<void()>& body) {
  body();
  return true;
}

struct CaptureStreams::Made {};

#endif

CaptureStreams::CaptureStreams() : made_(std::make_unique<Made>()) {}
CaptureStreams::~CaptureStreams() = default;

}  // namespace pace::train
