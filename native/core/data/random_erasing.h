#pragma once
// timm's RandomErasing (Zhong et al.), as its training transform applies it: to each normalised image on its own,
// after the normalisation and before mixup. An image is erased with probability `prob` (0: off, nothing drawn), in 1 to
// `count` boxes (each of area uniform in [minArea, maxArea] of the image / boxes, aspect ratio log-uniform in
// [minAspect, 1/minAspect], 10 tries for one that fits), filled with normal noise per pixel, per box or zeros.
#include <ATen/ATen.h>

#include <vector>

namespace pace::data {

enum class ErasingFill { Const, Rand, Pixel };

// Defaults: DeiT's recipe as timm's train.py takes it (--reprob 0.25 --remode pixel --recount 1).
struct RandomErasingConfig {
  double prob = 0.25;
  ErasingFill fill = ErasingFill::Pixel;
  int64_t count = 1;  // at most this many boxes an image (1 to count, uniform, when above 1)
  double minArea = 0.02;
  double maxArea = 1.0 / 3.0;
  double minAspect = 0.3;
  void validate() const;
};

// One erased box: rows [top, top + height) and columns [left, left + width) of image `image`.
struct ErasedBox {
  int64_t image, top, left, height, width;
};

struct RandomErasingResult {
  at::Tensor images;  // a copy of the batch with the boxes erased (the batch itself when none was)
  std::vector<ErasedBox> boxes;
};

// Erases boxes of images [B, C, H, W] (floating point, on any device); every draw from `generator` (a CPU one),
// in timm's order: the image's uniform, the box count, then each try's area, aspect and, once a box fits, its top
// and left, then its noise.
RandomErasingResult randomErasing(const at::Tensor& images, const RandomErasingConfig& config, at::Generator generator);

}  // namespace pace::data
