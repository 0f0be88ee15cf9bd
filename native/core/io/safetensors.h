#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pace {

// The `__metadata__` of a safetensors file: string keys and values, in file order.
using TensorMetadata = std::vector<std::pair<std::string, std::string>>;

struct SafetensorsEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section, as in the header's data_offsets
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in header order
  std::optional<TensorMetadata> metadata;
  uint64_t dataStart = 0;  // absolute file offset of the data section
  uint64_t fileSize = 0;
};

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};

struct SafetensorsContents {
  std::vector<NamedTensor> tensors;  // in header order
  std::optional<TensorMetadata> metadata;
};

// Reads and fully validates the header (dtypes, shapes, offsets against the file size); reads no tensor data.
SafetensorsHeader readSafetensorsHeader(const std::string& path);

// Loads every tensor onto the CPU. Throws pace::Error naming the file and the problem for any malformed input.
SafetensorsContents loadSafetensors(const std::string& path);

// Writes tensors (any device, any layout) as a safetensors file, atomically. Tensors are stored in name order,
// the header is compact JSON padded with spaces to a multiple of 8 bytes, `__metadata__` first when given.
void saveSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                     const std::optional<TensorMetadata>& metadata);

}  // namespace pace
