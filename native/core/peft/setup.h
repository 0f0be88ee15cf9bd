#pragma once
// Turning a pretrained backbone into a parameter-efficient one: which parameters train, where adapters go,
// and folding them back into a plain backbone.
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/backbone.h"
#include "peft/adapter.h"

namespace pace::peft {

struct AdapterSetup {
  // "loramul_vptadd", "loramul", "loraadd", "vptadd"; or the baselines "linear" (head only) and "full".
  std::string type = "loramul_vptadd";
  int64_t rank = 10;
  // Linear paths (or path suffixes such as "attn.qkv") to adapt; empty: every Linear except the head.
  std::vector<std::string> targets;
};

// Attaches adapters and freezes everything but them and the head (all trainable for "full").
// Returns the trainable parameters' names. Throws pace::Error for a bad type, rank or target.
std::vector<std::string> addAdapters(models::Backbone& model, const AdapterSetup& setup);

using models::isAdapterParameter;

// Trainable parameters (requires_grad), by name, in registration order.
std::vector<NamedTensor> trainableParameters(models::Backbone& model);

// A fingerprint of the frozen parameters ("crc32:" and eight hex digits): CRC-32 over each one's name, shape and
// first and last 4,096 values, in registration order. Cheap at any size; it tells one backbone's weights from
// another's (what a resumed run must keep), not a tampered middle.
std::string frozenWeightsFingerprint(models::Backbone& model);

// A plain backbone of the same configuration whose Linear weights and biases have the adapters folded in.
std::shared_ptr<models::Backbone> mergedCopy(models::Backbone& model);

// The backbone's timm state dict, adapters folded in (what `saveWeights` writes).
std::vector<NamedTensor> mergedStateDict(models::Backbone& model);

// The adapter parameters a file (of adapters, or a training checkpoint) may hold or lack on this model without
// meaning anything: the reference's unused ones, and ones earlier versions did not create (peft/adapter.h).
struct AdapterFileLeeway {
  std::set<std::string> mayHold, mayLack;
};
AdapterFileLeeway adapterFileLeeway(models::Backbone& model);

// Loads trainable parameters saved by saveAdapters (or the reference's adapter files): every trainable
// parameter must be present with its shape; extra tensors are an error. Nothing changes on error. With
// `checkedMetadata` (what the caller read of the file before), a file whose metadata is no longer that is refused.
void loadAdapters(models::Backbone& model, const std::string& path,
                  const std::optional<TensorMetadata>& checkedMetadata = std::nullopt);

}  // namespace pace::peft
