// The group on libtorch's c10d: a TCPStore (or, for ranks on one machine given a file, a FileStore) for the
// rendezvous, and ProcessGroupGloo (PACE_WITH_GLOO: where libtorch ships the Gloo group and Debian's or PyTorch's
// gloo headers are present) or ProcessGroupNCCL (PACE_WITH_NCCL: CUDA builds whose NCCL group compiled in CMake's
// check) for the collectives. Elsewhere creating a group says what is missing.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "distributed/backend_choice.h"
#include "distributed/group.h"
#include "errors.h"

#if defined(PACE_WITH_GLOO) || defined(PACE_WITH_NCCL)
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef PACE_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef PACE_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace pace::distributed {

#if defined(PACE_WITH_GLOO) || defined(PACE_WITH_NCCL)
namespace {

std::string reason(const std::exception& error) {
  if (const auto* torchError = dynamic_cast<const c10::Error*>(&error)) return torchError->what_without_backtrace();
  return error.what();
}

std::string whoAmI(const GroupOptions& options) {
  return "rank " + std::to_string(options.rank) + " of " + std::to_string(options.worldSize);
}

// Where the ranks meet, for errors.
std::string meetingPlace(const GroupOptions& options) {
  if (!options.rendezvousFile.empty()) return "in " + options.rendezvousFile;
  return "at " + options.masterAddr + ":" + std::to_string(options.masterPort);
}

// The collectives on one c10d group type (both take and return the same Work objects).
template <typename ProcessGroup>
class C10dGroup final : public Group {
 public:
  C10dGroup(const GroupOptions& options, std::string backend, c10::Device device, c10::intrusive_ptr<c10d::Store> store,
            c10::intrusive_ptr<ProcessGroup> group)
      : Group(options.rank, options.worldSize, std::move(backend), options.timeout, device),
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
  c10::intrusive_ptr<ProcessGroup> group_;

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

// libtorch >= 2.4 asks for TCPStore's libuv backend by default and refuses to start where it was built without
// libuv (Debian's 2.6); the classic backend serves a handful of ranks as well. Older TCPStoreOptions have no field.
template <typename StoreOptions>
auto withoutLibUV(StoreOptions options, int) -> decltype(options.useLibUV = false, StoreOptions()) {
  options.useLibUV = false;
  return options;
}
template <typename StoreOptions>
StoreOptions withoutLibUV(StoreOptions options, long) {
  return options;
}

// TCPStore's server listens on every interface (libtorch has no address to bind it to): on one machine a file in
// a private folder serves instead, and no other host can reach the rendezvous.
c10::intrusive_ptr<c10d::Store> rendezvousInFile(const GroupOptions& options) {
  // FileStore would retry opening a file it cannot create until the timeout.
  const std::filesystem::path folder = std::filesystem::path(options.rendezvousFile).parent_path();
  if (::access(folder.empty() ? "." : folder.c_str(), W_OK | X_OK) != 0)
    throw DistributedError(whoAmI(options) + ": the rendezvous " + meetingPlace(options) + " failed: its folder " +
                           (folder.empty() ? std::string(".") : folder.string()) + " " +
                           (errno == ENOENT ? "does not exist" : "is not writable by this process"));
  try {
    auto store = c10::make_intrusive<c10d::FileStore>(options.rendezvousFile, options.worldSize);
    store->setTimeout(options.timeout);
    return store;
  } catch (const std::exception& error) {
    throw DistributedError(whoAmI(options) + ": the rendezvous " + meetingPlace(options) +
                           " failed (can every rank write that folder?): " + reason(error));
  }
}

c10::intrusive_ptr<c10d::Store> rendezvous(const GroupOptions& options) {
  if (!options.rendezvousFile.empty()) return rendezvousInFile(options);
  const bool agentStore = !options.agentStorePrefix.empty();
  try {
    c10d::TCPStoreOptions storeOptions;
    storeOptions.port = static_cast<std::uint16_t>(options.masterPort);
    storeOptions.isServer = options.rank == 0 && !agentStore;
    storeOptions.numWorkers = static_cast<std::size_t>(options.worldSize);
    // The ranks meet in agreeOnGroup instead: waiting here for `worldSize` connections would hang rank 0 when
    // the others were started with a smaller world.
    storeOptions.waitWorkers = false;
    storeOptions.timeout = options.timeout;
    c10::intrusive_ptr<c10d::Store> store;
    try {
      store = c10::make_intrusive<c10d::TCPStore>(options.masterAddr, storeOptions);
    } catch (const std::exception& error) {
      // (The check comes before the store binds or connects, so asking again is safe.)
      if (std::string(error.what()).find("without libuv") == std::string::npos) throw;
      store = c10::make_intrusive<c10d::TCPStore>(options.masterAddr, withoutLibUV(storeOptions, 0));
    }
    if (agentStore) return c10::make_intrusive<c10d::PrefixStore>(options.agentStorePrefix, store);
    return store;
  } catch (const std::exception& error) {
    throw DistributedError(whoAmI(options) + ": the rendezvous " + meetingPlace(options) + " failed (" +
                           (agentStore          ? "is the launcher's store at MASTER_ADDR/MASTER_PORT running?"
                            : options.rank == 0 ? "is the port in use, or did every rank start?"
                                                : "is rank 0 running and MASTER_ADDR/MASTER_PORT right?") +
                           "): " + reason(error));
  }
}

std::string textOf(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::vector<uint8_t> bytesOf(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

// Every rank publishes the world size and the backend request it was started with; rank 0 compares the others'
// world sizes in rank order, chooses the backend (agreedBackend) and publishes its verdict, which each rank waits
// for before it connects the backend. A rank started with another WORLD_SIZE would otherwise fail inside the
// backend with a message about address lengths, or wait out the timeout, as would ranks on different backends.
// Rank 0 keeps the store (which it hosts) open until each rank it heard from has read the verdict.
std::string agreeOnGroup(c10d::Store& store, const GroupOptions& options, const BackendRequest& request) {
  const auto sizeKey = [](int rank) { return "pace/world_size/" + std::to_string(rank); };
  const auto requestKey = [](int rank) { return "pace/backend_request/" + std::to_string(rank); };
  const auto readKey = [](int rank) { return "pace/world_size_read/" + std::to_string(rank); };
  const std::string verdictKey = "pace/world_size_verdict";
  const std::string agreed = "ok ";
  const std::string mine = std::to_string(options.worldSize);
  const auto differ = [&](int other, const std::string& theirs) {
    return whoAmI(options) + ": rank " + std::to_string(other) + " was started with WORLD_SIZE " + theirs +
           ", this rank with " + mine + ": start every rank with the same world size";
  };
  const auto fetch = [&](const std::string& key, const std::string& what) {
    try {
      return textOf(store.get(key));
    } catch (const std::exception& error) {
      throw DistributedError(whoAmI(options) + ": the rendezvous " + meetingPlace(options) + " failed: " + what + ": " +
                             reason(error));
    }
  };
  try {
    store.set(requestKey(options.rank), bytesOf(encodeRequest(request)));
    store.set(sizeKey(options.rank), bytesOf(mine));
  } catch (const std::exception& error) {
    throw DistributedError(whoAmI(options) + ": the rendezvous " + meetingPlace(options) +
                           " failed: this rank could not say its world size: " + reason(error));
  }
  if (options.rank != 0) {
    const std::string theirs = fetch(sizeKey(0), "rank 0 did not say its world size");
    const std::string verdict = theirs == mine ? fetch(verdictKey, "rank 0 did not compare the world sizes") : "";
    store.set(readKey(options.rank), bytesOf("1"));
    if (theirs != mine) throw DistributedError(differ(0, theirs));
    if (verdict == "ok")  // an older rank 0's verdict, which chose no backend
      throw DistributedError(whoAmI(options) + ": rank 0 runs another version of pace-peft: run the same " +
                             "pace-peft on every rank");
    if (verdict.rfind(agreed, 0) != 0) throw DistributedError(whoAmI(options) + ": rank 0 found: " + verdict);
    return verdict.substr(agreed.size());
  }
  // In rank order, stopping at the first difference: a larger world of rank 0's has ranks that never come.
  std::string verdict;
  std::vector<BackendRequest> requests{request};
  int heard = 0;
  for (int other = 1; other < options.worldSize && verdict.empty(); ++other) {
    const std::string theirs =
        fetch(sizeKey(other), "rank " + std::to_string(other) + " did not join (did every rank start?)");
    heard = other;
    if (theirs != mine) verdict = differ(other, theirs);
  }
  if (verdict.empty()) {
    try {
      for (int other = 1; other < options.worldSize; ++other) {
        // (said before the world size: there by now, unless the rank's pace-peft predates the requests)
        if (!store.check({requestKey(other)}))
          throw DistributedError("rank " + std::to_string(other) + " runs another version of pace-peft (it made " +
                                 "no backend request): run the same pace-peft on every rank");
        requests.push_back(
            decodeRequest(fetch(requestKey(other), "no backend request from rank " + std::to_string(other))));
      }
      verdict = agreed + agreedBackend(requests);
    } catch (const DistributedError& error) {
      verdict = whoAmI(options) + ": " + error.what();
    }
  }
  store.set(verdictKey, bytesOf(verdict));
  std::vector<std::string> read;
  for (int other = 1; other <= heard; ++other) read.push_back(readKey(other));
  try {
    if (!read.empty()) store.wait(read);
  } catch (const std::exception&) {
    // a rank that left without reading the verdict: it learns of the failure from the backend instead
  }
  if (verdict.rfind(agreed, 0) != 0) throw DistributedError(verdict);
  return verdict.substr(agreed.size());
}

#ifdef PACE_WITH_GLOO
bool isLoopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

// Which network device Gloo binds: GLOO_SOCKET_IFNAME as torch.distributed reads it, the loopback device when the
// ranks meet in a file or the master is on this machine's loopback, and otherwise the address this machine's
// hostname resolves to.
std::shared_ptr<::gloo::transport::Device> glooDevice(const GroupOptions& options) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  if (!options.rendezvousFile.empty() || isLoopback(options.masterAddr))
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::shared_ptr<Group> connectGloo(const GroupOptions& options, const c10::intrusive_ptr<c10d::Store>& store) {
  try {
    auto glooOptions = c10d::ProcessGroupGloo::Options::create(options.timeout);
    glooOptions->devices.push_back(glooDevice(options));
    glooOptions->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, options.rank, options.worldSize, glooOptions);
    return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(options, "gloo", c10::Device(c10::kCPU), store, group);
  } catch (const std::exception& error) {
    throw DistributedError(whoAmI(options) + ": connecting the Gloo group (rendezvous " + meetingPlace(options) +
                           ") failed: " + reason(error));
  }
}
#endif

#ifdef PACE_WITH_NCCL
bool hasGpuFor(int localRank) { return localRank < static_cast<int>(c10::cuda::device_count()); }

// One GPU per local rank: the collectives run on cuda:localRank, which becomes this process's current device.
std::shared_ptr<Group> connectNccl(const GroupOptions& options, const c10::intrusive_ptr<c10d::Store>& store) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(options.localRank));
  try {
    auto ncclOptions = c10d::ProcessGroupNCCL::Options::create();
    ncclOptions->timeout = options.timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, options.rank, options.worldSize, ncclOptions);
    const c10::Device device(c10::kCUDA, static_cast<c10::DeviceIndex>(options.localRank));
    return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(options, "nccl", device, store, group);
  } catch (const std::exception& error) {
    throw DistributedError(whoAmI(options) + ": connecting the NCCL group failed: " + reason(error));
  }
}
#endif

// What this rank asks for, refused here when this build cannot serve it whatever the others ask.
BackendRequest requestOf(const GroupOptions& options) {
  BackendRequest request{options.backend, false, false};
#ifdef PACE_WITH_GLOO
  request.glooReady = true;
#endif
#ifdef PACE_WITH_NCCL
  request.ncclReady = hasGpuFor(options.localRank);
  if (options.backend == "nccl" && !request.ncclReady)
    throw UnsupportedError(whoAmI(options) + ": nccl needs one GPU per local rank; local rank " +
                           std::to_string(options.localRank) + " has none (this machine has " +
                           std::to_string(c10::cuda::device_count()) + ")");
#else
  if (options.backend == "nccl")
    throw UnsupportedError(
        "the nccl backend needs a CUDA libtorch with NCCL (and NCCL's headers when pace-peft was built); this build "
        "of pace-peft has only gloo");
#endif
#ifndef PACE_WITH_GLOO
  if (options.backend == "gloo" || (options.backend == "auto" && !request.ncclReady))
    throw UnsupportedError(
        "the gloo backend needs a libtorch with c10d's Gloo group and the gloo headers when "
        "pace-peft was built; this build has only nccl");
#endif
  return request;
}

}  // namespace
#endif

std::vector<std::string> availableBackends() {
  std::vector<std::string> names;
#ifdef PACE_WITH_GLOO
  names.push_back("gloo");
#endif
#ifdef PACE_WITH_NCCL
  names.push_back("nccl");
#endif
  return names;
}

std::shared_ptr<Group> connect(const GroupOptions& options) {
#if defined(PACE_WITH_GLOO) || defined(PACE_WITH_NCCL)
  const BackendRequest request = requestOf(options);
  const auto store = rendezvous(options);
  const std::string backend = agreeOnGroup(*store, options, request);
#ifdef PACE_WITH_NCCL
  if (backend == "nccl") return connectNccl(options, store);
#endif
#ifdef PACE_WITH_GLOO
  if (backend == "gloo") return connectGloo(options, store);
#endif
  throw UnsupportedError(whoAmI(options) + ": the ranks agreed on the " + backend +
                         " backend, which this build of pace-peft does not have");
#else
  (void)options;
  throw UnsupportedError(
      "this build of pace-peft has no distributed backend: it needs a libtorch with c10d's Gloo group and the gloo "
      "headers (Debian: apt-get install libgloo-dev), then a rebuild (npm run build:native)");
#endif
}

}  // namespace pace::distributed
