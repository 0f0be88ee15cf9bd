#pragma once
// Which backend a group's ranks use. Each rank reaches its own view of 'auto' (a rank whose local rank has no GPU
// cannot run nccl), and ranks on different backends wait on each other until the timeout: rank 0 gathers every
// rank's request at the rendezvous and decides once for all.
#include <string>
#include <vector>

namespace pace::distributed {

struct BackendRequest {
  std::string backend;     // as the rank was started: "gloo", "nccl" or "auto"
  bool ncclReady = false;  // a build with NCCL and a GPU for this rank's local rank
  bool glooReady = true;   // a build with Gloo
};

// How a request travels through the rendezvous store, and back.
std::string encodeRequest(const BackendRequest& request);
BackendRequest decodeRequest(const std::string& text);

// The backend for every rank, given each rank's request in rank order: the one the ranks that named a backend
// agree on, else nccl when every rank can run it, else gloo. Throws DistributedError naming two ranks that named
// different backends, or a rank that cannot run the backend chosen.
std::string agreedBackend(const std::vector<BackendRequest>& requests);

}  // namespace pace::distributed
