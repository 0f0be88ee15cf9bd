#include "models/backbone.h"

#include "errors.h"
#include "models/layers.h"
#include "tensor/dtype.h"

namespace pace::models {

Backbone::Backbone() {
  const std::optional<at::Generator> scoped = scopedInitGenerator();
  initGenerator_ = scoped ? *scoped : newInitGenerator(std::nullopt);
}

void Backbone::resetHead() {
  InitRandomScope scope(initGenerator_);
  initialiseHead();
}

torch::Tensor Backbone::forward(const torch::Tensor& images, ForwardContext& context) {
  return forwardHead(context.duplicateBatch(forwardFeatures(images, context)), context);
}

torch::Tensor Backbone::forward(const torch::Tensor& images) {
  ForwardContext inference;
  return forward(images, inference);
}

torch::Tensor Backbone::forwardFeatures(const torch::Tensor& images) {
  ForwardContext inference;
  return forwardFeatures(images, inference);
}

void Backbone::checkImages(const torch::Tensor& images) const {
  const int64_t size = imageSize();
  const std::string expected = "images must be a float tensor [batch, 3, " + std::to_string(size) + ", " +
                               std::to_string(size) + "] for this " + family() + " model";
  if (!images.defined()) throw ShapeError(expected + "; got nothing");
  const std::string got = "; got " + dtypeName(images.scalar_type()) + " " + shapeToString(images.sizes().vec());
  if (images.dim() != 4 || images.size(1) != 3 || images.size(2) != size || images.size(3) != size)
    throw ShapeError(expected + got);
  if (images.size(0) < 1) throw ShapeError(expected + got + ": the batch is empty");
  // The weights are float32 (bf16 runs through autocast, which takes float32 inputs).
  if (images.scalar_type() != at::kFloat)
    throw ShapeError(expected + got + ": images must be float32 (cast them with .cast('float32'))");
}

std::vector<std::pair<std::string, LinearImpl*>> Backbone::linears() {
  std::vector<std::pair<std::string, LinearImpl*>> result;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* linear = dynamic_cast<LinearImpl*>(item.value().get())) {
      linear->path = item.key();
      result.emplace_back(item.key(), linear);
    }
  }
  return result;
}

}  // namespace pace::models
