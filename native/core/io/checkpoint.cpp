#include "io/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

#include "errors.h"

namespace pace {

namespace {

uLong crcOf(uLong crc, const std::string& text) {
  // Length first, so that moving bytes between neighbouring fields changes the digest.
  const uint64_t size = text.size();
  crc = crc32(crc, reinterpret_cast<const Bytef*>(&size), sizeof(size));
  return crc32(crc, reinterpret_cast<const Bytef*>(text.data()), static_cast<uInt>(text.size()));
}

// CRC-32 (zlib's) over the metadata entries in key order and the tensors in name order: name, dtype, shape, bytes.
std::string digestOf(std::vector<NamedTensor> tensors, TensorMetadata metadata) {
  std::sort(metadata.begin(), metadata.end());
  std::sort(tensors.begin(), tensors.end(), [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [key, value] : metadata) {
    if (key == kCheckpointDigestKey) continue;
    crc = crcOf(crcOf(crc, key), value);
  }
  for (const auto& named : tensors) {
    const at::Tensor bytes = named.tensor.to(at::kCPU).contiguous();
    std::string shape;
    for (const int64_t size : bytes.sizes()) shape += std::to_string(size) + ",";
    crc = crcOf(crcOf(crcOf(crc, named.name), std::string(at::toString(bytes.scalar_type()))), shape);
    const auto* data = static_cast<const Bytef*>(bytes.data_ptr());
    for (size_t done = 0, total = bytes.nbytes(); done < total;) {
      const auto chunk = static_cast<uInt>(std::min<size_t>(total - done, 1u << 30));
      crc = crc32(crc, data + done, chunk);
      done += chunk;
    }
  }
  char text[16];
  std::snprintf(text, sizeof(text), "%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return std::string("crc32:") + text;
}

}  // namespace

void saveCheckpoint(const std::string& path, const std::vector<NamedTensor>& tensors, TensorMetadata metadata) {
  metadata.erase(std::remove_if(metadata.begin(), metadata.end(),
                                [](const auto& entry) { return entry.first == kCheckpointDigestKey; }),
                 metadata.end());
  metadata.emplace_back(kCheckpointDigestKey, digestOf(tensors, metadata));
  saveSafetensors(path, tensors, metadata);
}

SafetensorsContents loadCheckpoint(const std::string& path) {
  SafetensorsContents contents = loadSafetensors(path);
  TensorMetadata metadata = contents.metadata.value_or(TensorMetadata{});
  const auto recorded = std::find_if(metadata.begin(), metadata.end(),
                                     [](const auto& entry) { return entry.first == kCheckpointDigestKey; });
  if (recorded == metadata.end()) {
    throw FileError("training checkpoint '" + path + "' has no '" + kCheckpointDigestKey +
                    "' (not written by this version of pace-peft, or edited): its integrity cannot be checked");
  }
  const std::string expected = recorded->second;
  metadata.erase(recorded);
  const std::string actual = digestOf(contents.tensors, metadata);
  if (actual != expected) {
    throw FileError("training checkpoint '" + path + "' is corrupt or was edited: its contents give " + actual +
                    ", its metadata records " + expected);
  }
  contents.metadata = std::move(metadata);
  return contents;
}

}  // namespace pace
