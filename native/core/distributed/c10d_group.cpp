// The group on libtorch's c10d: a TCPStore for the rendezvous and ProcessGroupGloo for the collectives. Built
// only where libtorch ships the Gloo group and Debian's (or PyTorch's) gloo headers are present (PACE_WITH_GLOO);
// elsewhere creating a group says what is missing.
#include <cstdlib>
#include <stdexcept>

#include "distributed/group.h"
#include "errors.h"

#ifdef PACE_WITH_GLOO
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace pace::distributed {

#ifdef PACE_WITH_GLOO
namespace {

std::string reason(const std::exception& error) {
  if (const auto* torchError = dynamic_cast<const c10::Error*>(&error)) return torchError->what_without_backtrace();
  return error.what();
}

bool isLoopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

// Which network device Gloo binds: GLOO_SOCKET_IFNAME as torch.distributed reads it, the loopback device when the
// master is on this machine's loopback, and otherwise the address this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> glooDevice(const GroupOptions& options) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (isLoopback(options.masterAddr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

class GlooGroup final : public Group {
 public:
  GlooGroup(const GroupOptions& options, c10::intrusive_ptr<c10d::Store> store,
            c10::intrusive_ptr<c10d::ProcessGroupGloo> group)
      : Group(options.rank, options.worldSize, "gloo", options.timeout),
        store_(std::move(store)),
        group_(std::move(group)) {}

  void allReduceSum(std::vector<at::Tensor>& tensors, const std::string& what) override {
    run(what, [&] {
      std::vector<c10::intrusive_ptr<c10d::Work>> pending;
      for (auto& tensor : tensors) {
        std::vector<at::Tensor> one{tensor};
        pending.push_back(group_->allreduce(one));
      }
      for (auto& work : pending) wait(work);
    });
  }

  void broadcast(std::vector<at::Tensor>& tensors, int root, const std::string& what) override {
    run(what, [&] {
      std::vector<c10::intrusive_ptr<c10d::Work>> pending;
      for (auto& tensor : tensors) {
        std::vector<at::Tensor> one{tensor};
        c10d::BroadcastOptions options;
        options.rootRank = root;
        pending.push_back(group_->broadcast(one, options));
      }
      for (auto& work : pending) wait(work);
    });
  }

  std::vector<at::Tensor> allGather(const at::Tensor& tensor, const std::string& what) override {
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < worldSize(); ++r) outputs[0].push_back(at::empty_like(tensor));
    run(what, [&] {
      std::vector<at::Tensor> input{tensor.contiguous()};
      wait(group_->allgather(outputs, input));
    });
    return outputs[0];
  }

  void barrier(const std::string& what) override {
    run(what, [&] { wait(group_->barrier()); });
  }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;

  void wait(const c10::intrusive_ptr<c10d::Work>& work) const {
    if (!work->wait(timeout())) throw std::runtime_error("it did not complete in time");
  }

  template <typename Body>
  void run(const std::string& what, Body&& body) const {
    try {
      body();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& error) {
      fail(what, reason(error));
    }
  }
};

}  // namespace

std::vector<std::string> availableBackends() { return {"gloo"}; }

std::shared_ptr<Group> connect(const GroupOptions& options) {
  if (options.backend == "nccl")
    throw UnsupportedError(
        "the nccl backend needs a libtorch built with CUDA and NCCL; this build of pace-peft has only gloo");
  const std::string where = options.masterAddr + ":" + std::to_string(options.masterPort);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions storeOptions;
    storeOptions.port = static_cast<std::uint16_t>(options.masterPort);
    storeOptions.isServer = options.rank == 0;
    storeOptions.numWorkers = static_cast<std::size_t>(options.worldSize);
    storeOptions.waitWorkers = true;
    storeOptions.timeout = options.timeout;
    store = c10::make_intrusive<c10d::TCPStore>(options.masterAddr, storeOptions);
  } catch (const std::exception& error) {
    throw DistributedError("rank " + std::to_string(options.rank) + " of " + std::to_string(options.worldSize) +
                           ": the rendezvous at " + where + " failed (" +
                           (options.rank == 0 ? "is the port in use, or did every rank start?"
                                              : "is rank 0 running and MASTER_ADDR/MASTER_PORT right?") +
                           "): " + reason(error));
  }
  try {
    auto glooOptions = c10d::ProcessGroupGloo::Options::create(options.timeout);
    glooOptions->devices.push_back(glooDevice(options));
    glooOptions->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.worldSize, glooOptions);
    return std::make_shared<GlooGroup>(options, store, group);
  } catch (const std::exception& error) {
    throw DistributedError("rank " + std::to_string(options.rank) + " of " + std::to_string(options.worldSize) +
                           ": connecting the Gloo group through " + where + " failed: " + reason(error));
  }
}

#else

std::vector<std::string> availableBackends() { return {}; }

std::shared_ptr<Group> connect(const GroupOptions&) {
  throw UnsupportedError(
      "this build of pace-peft has no distributed backend: it needs a libtorch with c10d's Gloo group and the gloo "
      "headers (Debian: apt-get install libgloo-dev), then a rebuild (npm run build:native)");
}

#endif

}  // namespace pace::distributed
