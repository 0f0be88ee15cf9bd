// The stronger training augmentation one piece at a time, for inspection and tests: the epoch loop applies the
// same core functions (native/core/data/{resized_crop,rand_augment,mixup}.h, peft/cross_entropy.h).
#include <napi.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <memory>
#include <vector>

#include "async.h"
#include "bindings.h"
#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"
#include "tensor_handle.h"

namespace pace::addon {

namespace {

at::Generator generatorFromJs(const Napi::Value& value) {
  return at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(value.ToNumber().Int64Value()));
}

std::array<uint8_t, 3> fillFromJs(const Napi::Value& value) {
  if (!value.IsArray() || value.As<Napi::Array>().Length() != 3)
    throw jsError(value.Env(), ErrorCode::InvalidOption, "fill must be three integers in [0, 255]");
  std::array<uint8_t, 3> fill{};
  for (uint32_t i = 0; i < 3; ++i) {
    const double v = value.As<Napi::Array>().Get(i).ToNumber().DoubleValue();
    if (!(v >= 0 && v <= 255) || std::floor(v) != v)
      throw jsError(value.Env(), ErrorCode::InvalidOption, "fill must be three integers in [0, 255]");
    fill[i] = static_cast<uint8_t>(v);
  }
  return fill;
}

// randAugmentConfig(text) -> { numLayers, magnitude, magnitudeStd, magnitudeMax, probability, increasing, ops }
Napi::Value randAugmentConfig(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const data::RandAugmentConfig config = data::parseRandAugment(stringFromJs(info[0], "randAugment"));
    Napi::Object out = Napi::Object::New(env);
    out.Set("numLayers", static_cast<double>(config.numLayers));
    out.Set("magnitude", config.magnitude);
    out.Set("magnitudeStd", config.magnitudeStd);
    out.Set("magnitudeMax", config.magnitudeMax);
    out.Set("probability", config.probability);
    out.Set("increasing", config.increasing);
    Napi::Array ops = Napi::Array::New(env, config.ops.size());
    for (uint32_t i = 0; i < config.ops.size(); ++i) ops.Set(i, config.ops[i]);
    out.Set("ops", ops);
    return out;
  });
}

// randAugmentOp(image [H, W, C], op, magnitude, negate, fill, interpolation?: 'bilinear' | 'bicubic')
//   -> Promise<uint8 Tensor [H, W, C]>
Napi::Value randAugmentOp(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor image = TensorHandle::unwrap(info[0], "image");
    const std::string op = stringFromJs(info[1], "op");
    const double magnitude = info[2].ToNumber().DoubleValue();
    const bool negate = info[3].ToBoolean().Value();
    const auto fill = fillFromJs(info[4]);
    const data::Interpolation interpolation = interpolationFromJs(info[5], "interpolation");
    if (interpolation == data::Interpolation::Random)
      throw jsError(env, ErrorCode::InvalidOption, "interpolation of one operation must be 'bilinear' or 'bicubic'");
    const data::PillowFilter filter = data::filterFor(interpolation, 0.0);
    return runAsync(
        env, "pace.randAugmentOp", [=] { return data::applyRandAugmentOp(image, op, magnitude, negate, fill, filter); },
        [](Napi::Env env, at::Tensor& result) -> Napi::Value { return TensorHandle::wrap(env, std::move(result)); });
  });
}

// randAugmentImages(images [N, H, W, C], config, fill, seed, interpolation?) -> Promise<uint8 Tensor [N, H, W, C]>
Napi::Value randAugmentImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    data::RandAugmentConfig config = data::parseRandAugment(stringFromJs(info[1], "randAugment"));
    config.interpolation = interpolationFromJs(info[4], "interpolation");
    const auto fill = fillFromJs(info[2]);
    const at::Generator generator = generatorFromJs(info[3]);
    return runAsync(
        env, "pace.randAugmentImages", [=] { return data::randAugment(images, config, fill, generator); },
        [](Napi::Env env, at::Tensor& result) -> Napi::Value { return TensorHandle::wrap(env, std::move(result)); });
  });
}

// resizedCropImages(images [N, H, W, C], size, { scale?, ratio?, interpolation? }, flip, seed)
//   -> Promise<{ images: uint8 [N, size, size, C], boxes: int64 [N, 4] (top, left, height, width), flipped: bool [N] }>
Napi::Value resizedCropImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const int64_t size = info[1].ToNumber().Int64Value();
    const data::ResizedCropConfig config =
        resizedCropFromJs(info[2].IsUndefined() ? Napi::Object::New(env) : info[2]).value();
    const bool flip = info[3].ToBoolean().Value();
    const at::Generator generator = generatorFromJs(info[4]);
    return runAsync(
        env, "pace.resizedCropImages",
        [=] { return data::randomResizedCropFlip(images, size, config, flip, generator); },
        [](Napi::Env env, data::ResizedCropResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("images", TensorHandle::wrap(env, std::move(result.images)));
          out.Set("boxes", TensorHandle::wrap(env, std::move(result.boxes)));
          out.Set("flipped", TensorHandle::wrap(env, std::move(result.flipped)));
          return out;
        });
  });
}

// The Uint8Array `value` as a uint8 tensor of `shape`, read in place on a worker thread: `held` keeps it alive until
// the work is done, and is released with the work on this thread once the result is delivered. A photo's tens of
// megabytes are not copied on the JavaScript thread first. Read it after every other argument's conversion (which
// could run user code).
struct PixelsInPlace {
  at::Tensor pixels;
  std::shared_ptr<Napi::Reference<Napi::Uint8Array>> held;
};

PixelsInPlace pixelsInPlace(Napi::Env env, const Napi::Value& value, const std::vector<int64_t>& shape,
                            const std::string& what, int64_t channels = 0) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw jsError(env, ErrorCode::InvalidOption, "pixels must be a Uint8Array");
  const Napi::Uint8Array array = value.As<Napi::Uint8Array>();
  if (channels > 0 && (shape.size() != 3 || shape[2] != channels))
    throw jsError(env, ErrorCode::ShapeMismatch,
                  what + " has " + std::to_string(channels) + " channels: its shape must be [H, W, " +
                      std::to_string(channels) + "], not " + shapeToString(shape));
  const std::optional<uint64_t> bytes = byteSizeOf(shape, at::kByte);
  if (shape.size() != 3 || !bytes || *bytes != array.ByteLength())
    throw jsError(env, ErrorCode::ShapeMismatch,
                  "pixels hold " + std::to_string(array.ByteLength()) + " bytes, not " + what + " of shape " +
                      shapeToString(shape));
  // from_blob takes a mutable pointer; the work only reads it.
  uint8_t* data = const_cast<uint8_t*>(array.Data());
  return {at::from_blob(data, shape, at::kByte),
          std::make_shared<Napi::Reference<Napi::Uint8Array>>(Napi::Persistent(array))};
}

Napi::Value wrapTensor(Napi::Env env, at::Tensor& result) { return TensorHandle::wrap(env, std::move(result)); }

// resizeImagePillow(pixels Uint8Array, [H, W, C], height, width, 'bilinear' | 'bicubic', window?: { top, left,
// height, width }) -> Promise<uint8 Tensor [height, width, C]> (the window's part only, when given), as Pillow
// resizes.
Napi::Value resizeImagePillow(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::vector<int64_t> shape = shapeFromJs(info[1], "shape");
    const int64_t height = info[2].ToNumber().Int64Value();
    const int64_t width = info[3].ToNumber().Int64Value();
    const std::string filterName = stringFromJs(info[4], "filter");
    if (filterName != "bilinear" && filterName != "bicubic")
      throw jsError(env, ErrorCode::InvalidOption, "filter must be 'bilinear' or 'bicubic', got '" + filterName + "'");
    const data::PillowFilter filter =
        filterName == "bicubic" ? data::PillowFilter::Bicubic : data::PillowFilter::Bilinear;
    std::optional<data::PillowWindow> window;
    if (info.Length() > 5 && info[5].IsObject()) {
      const Napi::Object box = info[5].As<Napi::Object>();
      window = data::PillowWindow{box.Get("top").ToNumber().Int64Value(), box.Get("left").ToNumber().Int64Value(),
                                  box.Get("height").ToNumber().Int64Value(), box.Get("width").ToNumber().Int64Value()};
    }
    const PixelsInPlace image = pixelsInPlace(env, info[0], shape, "an image");
    return runAsync(
        env, "pace.resizeImagePillow",
        [=] { return data::resizeAsPillow(image.pixels, height, width, filter, window); },
        [held = image.held](Napi::Env env, at::Tensor& result) { return wrapTensor(env, result); });
  });
}

// cmykToRgbPillow(pixels Uint8Array, [H, W, 4]) -> Promise<uint8 Tensor [H, W, 3]>, as Pillow's convert('RGB').
Napi::Value cmykToRgbPillow(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::vector<int64_t> shape = shapeFromJs(info[1], "shape");
    const PixelsInPlace image = pixelsInPlace(env, info[0], shape, "a CMYK image", 4);
    return runAsync(
        env, "pace.cmykToRgbPillow", [pixels = image.pixels] { return data::cmykToRgbAsPillow(pixels); },
        [held = image.held](Napi::Env env, at::Tensor& result) { return wrapTensor(env, result); });
  });
}

// mixupImages(images [B, C, H, W], labels [B], numClasses, options, seed)
//   -> Promise<{ images, targets: float [B, numClasses], lambda, cutmix, box: [top, bottom, left, right] }>
Napi::Value mixupImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const at::Tensor labels = TensorHandle::unwrap(info[1], "labels");
    const int64_t numClasses = info[2].ToNumber().Int64Value();
    const data::MixupConfig config = mixupFromJs(info[3].IsUndefined() ? Napi::Object::New(env) : info[3]).value();
    const at::Generator generator = generatorFromJs(info[4]);
    return runAsync(
        env, "pace.mixupImages", [=] { return data::mixupBatch(images, labels, numClasses, config, generator); },
        [](Napi::Env env, data::MixupResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("images", TensorHandle::wrap(env, std::move(result.images)));
          out.Set("targets", TensorHandle::wrap(env, std::move(result.targets)));
          out.Set("lambda", result.lambda);
          out.Set("cutmix", result.cutmix);
          Napi::Array box = Napi::Array::New(env, 4);
          for (uint32_t i = 0; i < 4; ++i) box.Set(i, static_cast<double>(result.box[i]));
          out.Set("box", box);
          return out;
        });
  });
}

// randomErasingImages(images [B, C, H, W] float, options, seed) -> Promise<{ images, boxes: [image, top, left, h, w][]
// }>
Napi::Value randomErasingImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const data::RandomErasingConfig config =
        randomErasingFromJs(info[1].IsUndefined() ? Napi::Object::New(env) : info[1]).value();
    const at::Generator generator = generatorFromJs(info[2]);
    return runAsync(
        env, "pace.randomErasingImages", [=] { return data::randomErasing(images, config, generator); },
        [](Napi::Env env, data::RandomErasingResult& result) -> Napi::Value {
          Napi::Object out = Napi::Object::New(env);
          out.Set("images", TensorHandle::wrap(env, std::move(result.images)));
          Napi::Array boxes = Napi::Array::New(env, result.boxes.size());
          for (uint32_t i = 0; i < result.boxes.size(); ++i) {
            const data::ErasedBox& box = result.boxes[i];
            Napi::Array row = Napi::Array::New(env, 5);
            const int64_t values[5] = {box.image, box.top, box.left, box.height, box.width};
            for (uint32_t k = 0; k < 5; ++k) row.Set(k, static_cast<double>(values[k]));
            boxes.Set(i, row);
          }
          out.Set("boxes", boxes);
          return out;
        });
  });
}

// crossEntropy(logits [B, C], targets: int64 [B] or float [B, C]) -> Promise<float scalar Tensor>
Napi::Value crossEntropy(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor logits = TensorHandle::unwrap(info[0], "logits");
    const at::Tensor targets = TensorHandle::unwrap(info[1], "targets");
    if (logits.dim() != 2 || !at::isFloatingType(logits.scalar_type()))
      throw jsError(env, ErrorCode::ShapeMismatch, "logits must be a floating-point tensor [B, C]");
    return runAsync(
        env, "pace.crossEntropy",
        [=] {
          train::checkTrainingTargets(targets, logits.size(0), logits.size(1));
          return peft::crossEntropy(logits, targets);
        },
        [](Napi::Env env, at::Tensor& result) -> Napi::Value { return TensorHandle::wrap(env, std::move(result)); });
  });
}

}  // namespace

void registerAugmentBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("randAugmentConfig", Napi::Function::New(env, randAugmentConfig, "randAugmentConfig"));
  exports.Set("randomErasingImages", Napi::Function::New(env, randomErasingImages, "randomErasingImages"));
  exports.Set("randAugmentOp", Napi::Function::New(env, randAugmentOp, "randAugmentOp"));
  exports.Set("randAugmentImages", Napi::Function::New(env, randAugmentImages, "randAugmentImages"));
  exports.Set("resizedCropImages", Napi::Function::New(env, resizedCropImages, "resizedCropImages"));
  exports.Set("mixupImages", Napi::Function::New(env, mixupImages, "mixupImages"));
  exports.Set("resizeImagePillow", Napi::Function::New(env, resizeImagePillow, "resizeImagePillow"));
  exports.Set("cmykToRgbPillow", Napi::Function::New(env, cmykToRgbPillow, "cmykToRgbPillow"));
  exports.Set("crossEntropy", Napi::Function::New(env, crossEntropy, "crossEntropy"));
}

}  // namespace pace::addon
