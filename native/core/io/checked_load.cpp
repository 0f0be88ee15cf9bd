#include "io/checked_load.h"

#include <algorithm>

#include "errors.h"

namespace pace {

SafetensorsContents loadSafetensorsAsChecked(const std::string& path, const TensorMetadata& checked) {
  SafetensorsContents contents = loadSafetensors(path);
  TensorMetadata found = contents.metadata.value_or(TensorMetadata{});
  TensorMetadata expected = checked;
  std::sort(found.begin(), found.end());
  std::sort(expected.begin(), expected.end());
  if (found != expected) {
    throw FileError("'" + path +
                    "' changed while it was being loaded: its metadata is no longer what was read and checked "
                    "(was it rewritten meanwhile?); load it again once it is complete");
  }
  return contents;
}

}  // namespace pace
