#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "pace_core.h"

namespace pace::addon {

// A typed array's bytes as they are now (no JavaScript may run between this and their use). A null `data` with a
// non-zero length is a buffer detached meanwhile: the caller refuses it.
struct ViewBytes {
  const char* data;
  size_t length;
};
ViewBytes viewBytes(Napi::Env env, const Napi::TypedArray& view);
std::vector<int64_t> shapeFromJs(const Napi::Value& value, const std::string& what);
Napi::Array shapeToJs(Napi::Env env, at::IntArrayRef shape);
at::ScalarType dtypeFromJs(const Napi::Value& value, const std::string& what);
std::string stringFromJs(const Napi::Value& value, const std::string& what);
// A file path: a string without a NUL byte, or an InvalidOption error naming `what`.
std::string pathFromJs(const Napi::Value& value, const std::string& what);
// A device name ('cpu', 'cuda', 'cuda:1') this process can use; errors name `what`.
at::Device deviceFromJs(const Napi::Value& value, const std::string& what);
TensorMetadata metadataFromJs(const Napi::Value& value);
Napi::Value metadataToJs(Napi::Env env, const std::optional<TensorMetadata>& metadata);
// { mean: [r, g, b], std: [r, g, b] } or undefined/null.
std::optional<data::Normalization> normalizationFromJs(const Napi::Value& value);
// object[name] as a finite number, or `fallback` (the core's default) when it is undefined.
double numberOr(const Napi::Object& object, const char* name, double fallback);
// { lr, epochs, warmupEpochs?, minLr?, warmupLr? } over the core's defaults (train/schedule.h).
train::CosineSchedule scheduleFromJs(const Napi::Object& options);
// The stronger augmentation's options over the core's defaults (timm's), each absent when undefined:
// { scale?: [min, max], ratio?: [min, max], interpolation? } (data/resized_crop.h), a RandAugment config string
// (data/rand_augment.h), { mixupAlpha?, cutmixAlpha?, prob?, switchProb?, labelSmoothing?, correctLambda? }
// (data/mixup.h).
std::optional<data::ResizedCropConfig> resizedCropFromJs(const Napi::Value& value);
std::optional<data::RandAugmentConfig> randAugmentFromJs(const Napi::Value& value);
// 'bilinear' | 'bicubic' | 'random' (data/interpolation.h); undefined: bilinear, timm's default.
data::Interpolation interpolationFromJs(const Napi::Value& value, const std::string& field);
// {prob?, fill?: 'const' | 'rand' | 'pixel', count?} -> RandomErasingConfig (defaults DeiT's); undefined: none.
std::optional<data::RandomErasingConfig> randomErasingFromJs(const Napi::Value& value);
std::optional<data::MixupConfig> mixupFromJs(const Napi::Value& value);

}  // namespace pace::addon
