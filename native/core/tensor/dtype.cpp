#include "tensor/dtype.h"

#include <torch/version.h>

#include <sstream>

#include "errors.h"

namespace pace {

#define PACE_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

const std::vector<DtypeInfo>& supportedDtypes() {
  static const std::vector<DtypeInfo> table = [] {
    std::vector<DtypeInfo> known = {
        {at::kFloat, "float32", "F32"},      {at::kDouble, "float64", "F64"}, {at::kHalf, "float16", "F16"},
        {at::kBFloat16, "bfloat16", "BF16"}, {at::kLong, "int64", "I64"},     {at::kInt, "int32", "I32"},
        {at::kShort, "int16", "I16"},        {at::kChar, "int8", "I8"},       {at::kByte, "uint8", "U8"},
        {at::kBool, "bool", "BOOL"},
    };
#if PACE_TORCH_AT_LEAST(2, 1)
    known.push_back({at::kFloat8_e4m3fn, "float8_e4m3fn", "F8_E4M3"});
    known.push_back({at::kFloat8_e5m2, "float8_e5m2", "F8_E5M2"});
#endif
#if PACE_TORCH_AT_LEAST(2, 3)
    known.push_back({at::kUInt16, "uint16", "U16"});
    known.push_back({at::kUInt32, "uint32", "U32"});
    known.push_back({at::kUInt64, "uint64", "U64"});
#endif
    return known;
  }();
  return table;
}

std::optional<at::ScalarType> dtypeFromName(const std::string& name) {
  for (const auto& info : supportedDtypes()) {
    if (name == info.name) return info.scalarType;
  }
  return std::nullopt;
}

std::optional<at::ScalarType> dtypeFromSafetensorsCode(const std::string& code) {
  for (const auto& info : supportedDtypes()) {
    if (code == info.safetensorsCode) return info.scalarType;
  }
  return std::nullopt;
}

std::optional<std::string> libtorchVersionNeededFor(const std::string& name) {
  static const std::pair<const char*, const char*> later[] = {
      {"float8_e4m3fn", "2.1"}, {"float8_e5m2", "2.1"}, {"uint16", "2.3"}, {"uint32", "2.3"}, {"uint64", "2.3"}};
  for (const auto& [dtype, version] : later) {
    if (name == dtype && !dtypeFromName(name)) return std::string(version);
  }
  return std::nullopt;
}

std::string libtorchVersion() { return TORCH_VERSION; }

bool isKnownButUnsupportedSafetensorsCode(const std::string& code) {
  static const char* const all[] = {"F8_E4M3", "F8_E5M2", "U16", "U32", "U64"};
  for (const char* known : all) {
    if (code == known) return !dtypeFromSafetensorsCode(code).has_value();
  }
  return false;
}

static const DtypeInfo& infoFor(at::ScalarType type) {
  for (const auto& info : supportedDtypes()) {
    if (info.scalarType == type) return info;
  }
  throw UnsupportedError(std::string("dtype ") + c10::toString(type) + " is not supported by pace-peft");
}

std::string dtypeName(at::ScalarType type) { return infoFor(type).name; }
std::string safetensorsCode(at::ScalarType type) { return infoFor(type).safetensorsCode; }

std::optional<uint64_t> byteSizeOf(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  for (const int64_t size : shape)
    if (size == 0) return 0;
  uint64_t bytes = c10::elementSize(dtype);
  for (const int64_t size : shape)
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(size), &bytes)) return std::nullopt;
  return bytes;
}

std::string shapeToString(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  out << ']';
  return out.str();
}

at::ScalarType atLeastFloat32(at::ScalarType type) {
  return type == at::kBFloat16 || type == at::kHalf ? at::kFloat : type;
}

}  // namespace pace
