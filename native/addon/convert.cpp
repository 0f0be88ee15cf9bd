#include "convert.h"

#include <cmath>

#include "js_errors.h"

#include "pace_core.h"

namespace pace::addon {

ViewBytes viewBytes(Napi::Env env, const Napi::TypedArray& view) {
  void* data = nullptr;
  size_t elements = 0;
  napi_typedarray_type type;
  NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, view, &type, &elements, &data, nullptr, nullptr),
                       ViewBytes{});
  return {static_cast<const char*>(data), elements * view.ElementSize()};
}

std::vector<int64_t> shapeFromJs(const Napi::Value& value, const std::string& what) {
  const Napi::Env env = value.Env();
  if (!value.IsArray()) throw jsError(env, ErrorCode::InvalidOption, what + " must be an array of dimensions");
  const auto array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  shape.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value dim = array.Get(i);
    const double number = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : -1;
    if (!dim.IsNumber() || !(number >= 0) || std::floor(number) != number || number > 9007199254740991.0) {
      throw jsError(
          env, ErrorCode::ShapeMismatch,
          what + "[" + std::to_string(i) + "] must be a non-negative integer, got " + dim.ToString().Utf8Value());
    }
    shape.push_back(static_cast<int64_t>(number));
  }
  return shape;
}

Napi::Array shapeToJs(Napi::Env env, at::IntArrayRef shape) {
  Napi::Array array = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) array.Set(static_cast<uint32_t>(i), static_cast<double>(shape[i]));
  return array;
}

std::string stringFromJs(const Napi::Value& value, const std::string& what) {
  if (!value.IsString()) throw jsError(value.Env(), ErrorCode::InvalidOption, what + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

std::string pathFromJs(const Napi::Value& value, const std::string& what) {
  const std::string path = stringFromJs(value, what);
  // C's file calls end a name at its first NUL: "a.safetensors\0.bak" would open a.safetensors.
  if (path.find('\0') != std::string::npos)
    throw jsError(value.Env(), ErrorCode::InvalidOption, what + " must not contain a NUL byte (no file is named so)");
  return path;
}

at::Device deviceFromJs(const Napi::Value& value, const std::string& what) {
  return deviceNamed(stringFromJs(value, what), what);
}

at::ScalarType dtypeFromJs(const Napi::Value& value, const std::string& what) {
  const std::string name = stringFromJs(value, what);
  const auto dtype = dtypeFromName(name);
  if (!dtype) {
    if (const auto version = libtorchVersionNeededFor(name))
      throw jsError(value.Env(), ErrorCode::Unsupported,
                    what + " \"" + name + "\" needs libtorch " + *version + " or newer; this one is " +
                        libtorchVersion() + " (give another dtype, e.g. \"int64\" for unsigned integers)");
    std::string known;
    for (const auto& info : supportedDtypes()) known += std::string(known.empty() ? "" : ", ") + info.name;
    throw jsError(value.Env(), ErrorCode::InvalidOption,
                  what + " \"" + name + "\" is not a dtype (expected one of " + known + ")");
  }
  return *dtype;
}

TensorMetadata metadataFromJs(const Napi::Value& value) {
  const Napi::Env env = value.Env();
  if (!value.IsObject()) throw jsError(env, ErrorCode::InvalidOption, "metadata must be an object of strings");
  const auto object = value.As<Napi::Object>();
  const Napi::Array keys = object.GetPropertyNames();
  TensorMetadata metadata;
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const Napi::Value name = keys.Get(i);
    const std::string key = name.ToString().Utf8Value();
    const Napi::Value item = object.Get(name);  // by the key's value: a C string would end at a NUL in it
    if (!item.IsString()) throw jsError(env, ErrorCode::InvalidOption, "metadata." + key + " must be a string");
    metadata.emplace_back(key, item.As<Napi::String>().Utf8Value());
  }
  return metadata;
}

Napi::Value metadataToJs(Napi::Env env, const std::optional<TensorMetadata>& metadata) {
  if (!metadata) return env.Null();
  Napi::Object object = Napi::Object::New(env);
  // Defined, not assigned: an assignment to "__proto__" would call the prototype's setter and keep nothing, and a
  // name passed as a C string would end at a NUL in it. Either would lose a key the file holds.
  constexpr auto kPlain = static_cast<napi_property_attributes>(napi_enumerable | napi_writable | napi_configurable);
  for (const auto& [key, value] : *metadata)
    object.DefineProperty(
        Napi::PropertyDescriptor::Value(Napi::String::New(env, key), Napi::String::New(env, value), kPlain));
  return object;
}

std::optional<data::Normalization> normalizationFromJs(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  const Napi::Env env = value.Env();
  if (!value.IsObject()) throw jsError(env, ErrorCode::InvalidOption, "normalization must be { mean, std }");
  const auto object = value.As<Napi::Object>();
  data::Normalization result;
  for (const auto& [name, target] : {std::pair<const char*, std::array<double, 3>*>{"mean", &result.mean},
                                     std::pair<const char*, std::array<double, 3>*>{"std", &result.std}}) {
    const Napi::Value list = object.Get(name);
    if (!list.IsArray() || list.As<Napi::Array>().Length() != 3)
      throw jsError(env, ErrorCode::InvalidOption, std::string("normalization.") + name + " must be three numbers");
    for (uint32_t i = 0; i < 3; ++i) (*target)[i] = list.As<Napi::Array>().Get(i).ToNumber().DoubleValue();
  }
  return result;
}

double numberOr(const Napi::Object& object, const char* name, double fallback) {
  const Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return fallback;
  const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(number))
    throw jsError(object.Env(), ErrorCode::InvalidOption, std::string(name) + " must be a finite number");
  return number;
}

train::CosineSchedule scheduleFromJs(const Napi::Object& options) {
  train::CosineSchedule schedule;
  schedule.lr = numberOr(options, "lr", schedule.lr);
  schedule.epochs = numberOr(options, "epochs", schedule.epochs);
  schedule.warmupEpochs = numberOr(options, "warmupEpochs", schedule.warmupEpochs);
  schedule.minLr = numberOr(options, "minLr", schedule.minLr);
  schedule.warmupLr = numberOr(options, "warmupLr", schedule.warmupLr);
  schedule.validate();
  return schedule;
}

namespace {

// object[name] as [min, max] (two finite numbers), or `fallback` when it is undefined.
std::array<double, 2> rangeOr(const Napi::Object& object, const char* name, std::array<double, 2> fallback,
                              const std::string& what) {
  const Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return fallback;
  const auto fail = [&]() {
    return jsError(object.Env(), ErrorCode::InvalidOption, what + "." + name + " must be two numbers [min, max]");
  };
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 2) throw fail();
  std::array<double, 2> range{};
  for (uint32_t i = 0; i < 2; ++i) {
    const Napi::Value item = value.As<Napi::Array>().Get(i);
    range[i] = item.IsNumber() ? item.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(range[i])) throw fail();
  }
  return range;
}

}  // namespace

std::optional<data::ResizedCropConfig> resizedCropFromJs(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsObject())
    throw jsError(value.Env(), ErrorCode::InvalidOption,
                  "resizedCrop must be an object { scale?, ratio?, interpolation? }");
  const auto object = value.As<Napi::Object>();
  data::ResizedCropConfig config;
  config.scale = rangeOr(object, "scale", config.scale, "resizedCrop");
  config.ratio = rangeOr(object, "ratio", config.ratio, "resizedCrop");
  config.interpolation = interpolationFromJs(object.Get("interpolation"), "resizedCrop.interpolation");
  return config;
}

data::Interpolation interpolationFromJs(const Napi::Value& value, const std::string& field) {
  if (value.IsUndefined()) return data::Interpolation::Bilinear;
  return data::parseInterpolation(stringFromJs(value, field), field);
}

std::optional<data::RandAugmentConfig> randAugmentFromJs(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  return data::parseRandAugment(stringFromJs(value, "randAugment"));
}

std::optional<data::RandomErasingConfig> randomErasingFromJs(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsObject()) throw jsError(value.Env(), ErrorCode::InvalidOption, "randomErasing must be an object");
  const auto object = value.As<Napi::Object>();
  data::RandomErasingConfig config;
  config.prob = numberOr(object, "prob", config.prob);
  config.count = static_cast<int64_t>(numberOr(object, "count", static_cast<double>(config.count)));
  const Napi::Value fill = object.Get("fill");
  if (!fill.IsUndefined()) {
    const std::string name = stringFromJs(fill, "randomErasing.fill");
    if (name == "const")
      config.fill = data::ErasingFill::Const;
    else if (name == "rand")
      config.fill = data::ErasingFill::Rand;
    else if (name == "pixel")
      config.fill = data::ErasingFill::Pixel;
    else
      throw jsError(value.Env(), ErrorCode::InvalidOption, "randomErasing.fill must be 'const', 'rand' or 'pixel'");
  }
  config.validate();
  return config;
}

std::optional<data::MixupConfig> mixupFromJs(const Napi::Value& value) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsObject()) throw jsError(value.Env(), ErrorCode::InvalidOption, "mixup must be an object");
  const auto object = value.As<Napi::Object>();
  data::MixupConfig config;
  config.mixupAlpha = numberOr(object, "mixupAlpha", config.mixupAlpha);
  config.cutmixAlpha = numberOr(object, "cutmixAlpha", config.cutmixAlpha);
  config.prob = numberOr(object, "prob", config.prob);
  config.switchProb = numberOr(object, "switchProb", config.switchProb);
  config.labelSmoothing = numberOr(object, "labelSmoothing", config.labelSmoothing);
  if (!object.Get("correctLambda").IsUndefined()) config.correctLambda = object.Get("correctLambda").ToBoolean();
  return config;
}

}  // namespace pace::addon
