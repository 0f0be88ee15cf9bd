#pragma once
// Training checkpoints: safetensors files whose metadata carries a digest of everything else in the file (every
// tensor's bytes and every other metadata entry), checked before anything is restored, so a flipped byte or an
// edited field is refused by name instead of resuming to a different result.
#include <string>

#include "io/safetensors.h"

namespace pace {

// The metadata key of the digest; its value is "crc32:" and eight hex digits.
inline constexpr const char* kCheckpointDigestKey = "pace.digest";

// Writes the tensors and metadata atomically, with the digest added to the metadata.
void saveCheckpoint(const std::string& path, const std::vector<NamedTensor>& tensors, TensorMetadata metadata);

// Loads a checkpoint and checks its digest; throws pace::Error naming the file when it is missing or wrong.
// The digest is not part of the returned metadata.
SafetensorsContents loadCheckpoint(const std::string& path);

}  // namespace pace
