#include "distributed/backend_choice.h"

#include "errors.h"

namespace pace::distributed {

std::string encodeRequest(const BackendRequest& request) {
  return request.backend + (request.ncclReady ? " nccl-ready" : " gloo-only");
}

BackendRequest decodeRequest(const std::string& text) {
  const auto space = text.find(' ');
  const std::string readiness = space == std::string::npos ? "" : text.substr(space + 1);
  if (readiness != "nccl-ready" && readiness != "gloo-only")
    throw DistributedError("the rendezvous store holds a backend request this version does not read: '" + text +
                           "' (is every rank running the same pace-peft?)");
  return {text.substr(0, space), readiness == "nccl-ready"};
}

std::string agreedBackend(const std::vector<BackendRequest>& requests) {
  int named = -1;  // the first rank that named a backend
  for (int rank = 0; rank < static_cast<int>(requests.size()); ++rank) {
    const std::string& backend = requests[rank].backend;
    if (backend == "auto") continue;
    if (named < 0) {
      named = rank;
    } else if (backend != requests[named].backend) {
      throw DistributedError("rank " + std::to_string(rank) + " was started with the " + backend + " backend, rank " +
                             std::to_string(named) + " with " + requests[named].backend +
                             ": start every rank with the same backend (or 'auto')");
    }
  }
  const std::string backend = named >= 0 ? requests[named].backend : "auto";
  if (backend == "gloo") return backend;
  for (int rank = 0; rank < static_cast<int>(requests.size()); ++rank) {
    if (requests[rank].ncclReady) continue;
    if (backend == "auto") return "gloo";
    throw DistributedError("rank " + std::to_string(rank) + " has no GPU for its local rank (or no NCCL), so it " +
                           "cannot join the nccl backend rank " + std::to_string(named) +
                           " was started with: give each local rank a GPU, or start every rank with gloo");
  }
  return "nccl";
}

}  // namespace pace::distributed
