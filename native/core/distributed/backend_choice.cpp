#include "distributed/backend_choice.h"

#include "errors.h"

namespace pace::distributed {

namespace {

const std::string kNccl = "nccl", kGloo = "gloo";

bool ready(const BackendRequest& request, const std::string& backend) {
  return backend == kNccl ? request.ncclReady : request.glooReady;
}

}  // namespace

std::string encodeRequest(const BackendRequest& request) {
  std::string readiness = request.glooReady ? kGloo : "";
  if (request.ncclReady) readiness += readiness.empty() ? kNccl : "," + kNccl;
  return request.backend + " " + (readiness.empty() ? "none" : readiness);
}

BackendRequest decodeRequest(const std::string& text) {
  const auto space = text.find(' ');
  const std::string readiness = space == std::string::npos ? "" : text.substr(space + 1);
  BackendRequest request{text.substr(0, space), readiness.find(kNccl) != std::string::npos,
                         readiness.find(kGloo) != std::string::npos};
  const bool known =
      readiness == "none" || readiness == kGloo || readiness == kNccl || readiness == kGloo + "," + kNccl;
  const std::string& backend = request.backend;
  if (!known || (backend != "auto" && backend != kGloo && backend != kNccl))
    throw DistributedError("the rendezvous store holds a backend request this version does not read: '" + text +
                           "' (is every rank running the same pace-peft?)");
  return request;
}

std::string agreedBackend(const std::vector<BackendRequest>& requests) {
  const int ranks = static_cast<int>(requests.size());
  int named = -1;  // the first rank that named a backend
  for (int rank = 0; rank < ranks; ++rank) {
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
  // The first rank that cannot run `backend`, or -1.
  const auto unready = [&](const std::string& backend) {
    for (int rank = 0; rank < ranks; ++rank)
      if (!ready(requests[rank], backend)) return rank;
    return -1;
  };
  const auto cannot = [](int rank, const std::string& backend) {
    return "rank " + std::to_string(rank) +
           (backend == kNccl ? " has no GPU for its local rank (or no NCCL)" : "'s pace-peft was built without gloo");
  };
  if (named >= 0) {
    const std::string& backend = requests[named].backend;
    if (const int rank = unready(backend); rank >= 0)
      throw DistributedError(cannot(rank, backend) + ", so it cannot join the " + backend + " backend rank " +
                             std::to_string(named) + " was started with: start every rank with a backend each can run");
    return backend;
  }
  const int noNccl = unready(kNccl);
  if (noNccl < 0) return kNccl;
  const int noGloo = unready(kGloo);
  if (noGloo < 0) return kGloo;
  throw DistributedError("no backend every rank can run: " + cannot(noNccl, kNccl) + ", and " + cannot(noGloo, kGloo));
}

}  // namespace pace::distributed
