#pragma once
// Images of their own sizes in one tensor, as few-shot and FGVC training store torchvision's Resize(256) (the
// shorter side at 256, the longer as it falls) for RandomCrop(224) to range over: pixels [P, C] uint8, each image's
// rows in turn (P = Σ height·width), and extents [N, 2] int64 (height, width).
#include <ATen/ATen.h>

#include <vector>

namespace pace::data {

class PackedImages {
 public:
  // Throws ShapeError naming what does not fit (dtypes, shapes, an extent below 1, P against the extents).
  PackedImages(at::Tensor pixels, const at::Tensor& extents);

  int64_t count() const { return static_cast<int64_t>(heights_.size()); }
  // The smallest height or width of any image (what a random crop must fit in).
  int64_t smallestSide() const;
  // The same images over other pixels of the same shape (the dataset's copy on the model's device).
  PackedImages withPixels(at::Tensor pixels) const;
  // Image i as a view [height, width, C].
  at::Tensor image(int64_t i) const;
  // The images at `indices` (int64, on the CPU), as views.
  std::vector<at::Tensor> select(const at::Tensor& indices) const;
  // torchvision's CenterCrop(size) of images [begin, end): [end − begin, size, size, C], offsets rounded half to
  // even; an image smaller than the crop is padded with zeros around it first, as torchvision pads.
  at::Tensor centerCrops(int64_t begin, int64_t end, int64_t size) const;

 private:
  PackedImages() = default;
  at::Tensor pixels_;
  std::vector<int64_t> offsets_, heights_, widths_;
};

}  // namespace pace::data
