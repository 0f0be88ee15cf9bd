// Which backend a group's ranks agree on (distributed/backend_choice.h): one choice for all ranks, whatever each
// rank's own GPUs, or an error naming the ranks that cannot agree.
#include "check.h"
#include "distributed/backend_choice.h"
#include "errors.h"

namespace pace::tests {
namespace {

using distributed::agreedBackend;
using distributed::BackendRequest;

// The error agreedBackend throws for these requests, or "" when it chose one.
std::string refusal(const std::vector<BackendRequest>& requests) {
  try {
    agreedBackend(requests);
    return "";
  } catch (const DistributedError& error) {
    return error.what();
  }
}

void autoIsNcclOnlyWhenEveryRankHasItsGpu() {
  check(agreedBackend({{"auto", true}, {"auto", true}}) == "nccl", "two ranks with a GPU each did not choose nccl");
  // Two ranks on a machine with one GPU: rank 0 alone could run nccl, and rank 1 would be left on gloo.
  check(agreedBackend({{"auto", true}, {"auto", false}}) == "gloo", "a rank without a GPU did not make auto gloo");
  check(agreedBackend({{"auto", false}, {"auto", true}}) == "gloo", "rank 0 without a GPU did not make auto gloo");
  check(agreedBackend({{"auto", false}}) == "gloo", "a CPU-only world of one did not choose gloo");
}

void aNamedBackendDecidesForTheAutoRanks() {
  check(agreedBackend({{"gloo", true}, {"auto", true}}) == "gloo", "auto did not follow rank 0's gloo");
  check(agreedBackend({{"auto", true}, {"nccl", true}}) == "nccl", "auto did not follow rank 1's nccl");
  const std::string noGpu = refusal({{"nccl", true}, {"auto", true}, {"auto", false}});
  check(noGpu.find("rank 2 has no GPU") != std::string::npos &&
            noGpu.find("nccl backend rank 0 was started with") != std::string::npos,
        "a rank without a GPU under another's nccl was not named: '" + noGpu + "'");
}

// An NCCL-only build (no gloo) beside a rank without a GPU: no backend serves both (bug: gloo was chosen, and the
// NCCL-only rank failed after the verdict while the other waited in Gloo's connect until the timeout).
void aRankThatCannotRunTheChoiceIsNamed() {
  check(agreedBackend({{"auto", true, false}, {"auto", true, true}}) == "nccl", "two GPU ranks did not choose nccl");
  const std::string neither = refusal({{"auto", true, false}, {"auto", false, true}});
  check(neither.find("no backend every rank can run: rank 1 has no GPU") != std::string::npos &&
            neither.find("rank 0's pace-peft was built without gloo") != std::string::npos,
        "ranks with no backend in common were not named: '" + neither + "'");
  const std::string noGloo = refusal({{"gloo", false, true}, {"auto", true, false}});
  check(noGloo.find("rank 1's pace-peft was built without gloo, so it cannot join the gloo backend rank 0") !=
            std::string::npos,
        "a rank without gloo under another's gloo was not named: '" + noGloo + "'");
}

void ranksNamingDifferentBackendsAreRefused() {
  const std::string differ = refusal({{"auto", true}, {"nccl", true}, {"gloo", true}});
  check(differ.find("rank 2 was started with the gloo backend, rank 1 with nccl") != std::string::npos,
        "ranks on different backends were not named: '" + differ + "'");
}

void requestsSurviveTheStore() {
  for (const BackendRequest& request : std::vector<BackendRequest>{
           {"auto", true, true}, {"gloo", false, true}, {"nccl", true, false}, {"auto", false, false}}) {
    const BackendRequest back = distributed::decodeRequest(distributed::encodeRequest(request));
    check(back.backend == request.backend && back.ncclReady == request.ncclReady && back.glooReady == request.glooReady,
          "the request '" + distributed::encodeRequest(request) + "' did not read back as written");
  }
  bool refused = false;
  try {
    distributed::decodeRequest("auto nccl-ready");
  } catch (const DistributedError& error) {
    refused = std::string(error.what()).find("'auto nccl-ready'") != std::string::npos;
  }
  check(refused, "a request of another form (an older rank's) was not refused by name");
}

}  // namespace

TestList backendChoiceTests() {
  return {{"auto is nccl only when every rank has its GPU", autoIsNcclOnlyWhenEveryRankHasItsGpu},
          {"a backend a rank names decides for the auto ranks", aNamedBackendDecidesForTheAutoRanks},
          {"ranks naming different backends are refused by name", ranksNamingDifferentBackendsAreRefused},
          {"a rank that cannot run the backend chosen is named", aRankThatCannotRunTheChoiceIsNamed},
          {"backend requests read back as written", requestsSurviveTheStore}};
}

}  // namespace pace::tests
