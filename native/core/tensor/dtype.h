#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

namespace pace {

// One table maps every dtype we support between its libtorch type, the name used in TypeScript
// ("float32", "bfloat16", ...) and its safetensors code ("F32", "BF16", ...).
struct DtypeInfo {
  at::ScalarType scalarType;
  const char* name;
  const char* safetensorsCode;
};

const std::vector<DtypeInfo>& supportedDtypes();
std::optional<at::ScalarType> dtypeFromName(const std::string& name);
std::optional<at::ScalarType> dtypeFromSafetensorsCode(const std::string& code);
std::string dtypeName(at::ScalarType type);
std::string safetensorsCode(at::ScalarType type);
// Safetensors codes this build cannot represent (they need a newer libtorch); used for clearer errors.
bool isKnownButUnsupportedSafetensorsCode(const std::string& code);
// The libtorch version ("2.3") a dtype name this build lacks needs, or nothing for names no version has.
std::optional<std::string> libtorchVersionNeededFor(const std::string& name);
// This build's libtorch version, as "1.13.1".
std::string libtorchVersion();
std::string shapeToString(const std::vector<int64_t>& shape);
// The bytes a tensor of `shape` (non-negative sizes) holds, or nothing past 2^64; a zero size makes it 0 however
// large the others are.
std::optional<uint64_t> byteSizeOf(const std::vector<int64_t>& shape, at::ScalarType dtype);
// float32 for the half-width floats (bfloat16, float16), `type` otherwise: the dtype a value that must not be
// rounded to a half-width float (a loss's logits, PACE's noise) takes.
at::ScalarType atLeastFloat32(at::ScalarType type);

}  // namespace pace
