#pragma once
// Loading and saving backbone weights with timm's rules: safetensors state dicts (timm names, old Swin
// layouts remapped) and Google's ViT .npz files (Flax names and layouts), tensors of another geometry resampled
// (models/checkpoint_resampling.h), a head of another class count re-initialised.
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "models/backbone.h"

namespace pace::models {

struct LoadReport {
  std::vector<std::string> loaded;         // model parameters set from the checkpoint
  std::vector<std::string> missing;        // model parameters the checkpoint lacks (kept as initialised)
  std::vector<std::string> unexpected;     // checkpoint tensors the model has no place for
  std::vector<std::string> resized;        // loaded after resampling (see checkpoint_resampling.h)
  std::vector<std::string> reinitialized;  // head parameters left freshly initialised (class count differs)
  std::vector<std::string> ignored;        // checkpoint tensors dropped on purpose (pre_logits, Swin buffers)
};

// Loads `path` (.safetensors or .npz) into the model. With `strict`, missing or unexpected tensors are an
// error (except the head, which is re-initialised when absent or of another class count); a shape mismatch
// is always an error naming the tensor and both shapes. Nothing is changed unless the whole load succeeds.
// With `checkedMetadata` (what the caller read of a safetensors file before), a file whose metadata is no longer
// that is refused (io/checked_load.h).
LoadReport loadWeights(Backbone& model, const std::string& path, bool strict,
                       const std::optional<TensorMetadata>& checkedMetadata = std::nullopt);

// Maps Google's Flax ViT checkpoint names and layouts to timm's, as timm's `_load_weights` does.
std::vector<NamedTensor> googleVitToTimm(const std::vector<NamedTensor>& arrays, int64_t depth,
                                         std::vector<std::string>& ignored);

}  // namespace pace::models
