#pragma once
// Turning stored images into model input, natively and per batch: datasets keep decoded uint8 pixels at
// their working size (a quarter of the memory of float32) and each batch is converted when it is used.
#include <ATen/ATen.h>

#include <array>
#include <vector>

namespace pace::data {

struct Normalization {
  std::array<double, 3> mean{0.5, 0.5, 0.5};
  std::array<double, 3> std{0.5, 0.5, 0.5};
};

// uint8 images [N, H, W] or [N, H, W, C] (C = 1, 3 or 4) -> float32 [N, 3, size, size]: scaled to [0, 1],
// grey replicated to RGB, alpha dropped, resized with antialiased bicubic interpolation when H or W differs
// from `size` (as PIL's bicubic resize), then (x - mean) / std per channel. Throws pace::Error on other shapes.
// The largest side an image is resized to (a model input of 16384² is 3 GiB per image in float32).
constexpr int64_t kMaxImageSize = 16384;

at::Tensor toModelInput(const at::Tensor& images, int64_t size, const Normalization& normalization);

// Training augmentation on stored uint8 pixels [N, H, W, C]: a crop × crop window at a uniformly random
// position in each image and, with `flip`, a horizontal flip with probability 1/2 (torchvision's RandomCrop and
// RandomHorizontalFlip), drawn from `generator` so a seeded run repeats them.
at::Tensor randomCropFlip(const at::Tensor& images, int64_t crop, bool flip, at::Generator generator);
// The same over images of their own sizes [H_i, W_i, C] (data/packed_images.h), each window within its own image.
at::Tensor randomCropFlip(const std::vector<at::Tensor>& images, int64_t crop, bool flip, at::Generator generator);
// RandomHorizontalFlip alone: each whole image [N, H, W, C] flipped with probability 1/2 (one draw an image, as
// randomCropFlip's flips draw).
at::Tensor randomFlip(const at::Tensor& images, at::Generator generator);

// Which of n images a horizontal flip takes: one uniform draw each, below 1/2 (torchvision's torch.rand(1) < p).
// Not bernoulli_: with MKL on an Intel CPU it takes one draw to seed MKL's own stream, elsewhere one an element,
// so the same seed flipped other images there and moved every later draw from the generator.
std::vector<bool> horizontalFlips(int64_t n, const at::Generator& generator);

}  // namespace pace::data
