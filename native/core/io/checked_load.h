#pragma once
// A file's metadata is read and acted on (checked, its class names taken) before the job that loads the file runs:
// these loads refuse a file whose metadata is no longer what was read, one replaced in between.
#include <string>

#include "io/safetensors.h"

namespace pace {

// Loads `path`; throws FileError naming it when its metadata is not `checked` (order aside).
SafetensorsContents loadSafetensorsAsChecked(const std::string& path, const TensorMetadata& checked);

}  // namespace pace
