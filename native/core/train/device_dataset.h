#pragma once
// A uint8 dataset on the CPU, kept on the model's device between epochs (decoded images are small).
#include <ATen/ATen.h>

namespace pace::train {

class DeviceDataset {
 public:
  // `images` on `device`: copied once and reused while the CPU tensor is unchanged; returned as it is when
  // already there, not on the CPU, or above the size limit.
  at::Tensor on(const at::Tensor& images, const c10::Device& device);
  // Drops the copy: the next on() copies again.
  void forget();

 private:
  at::Tensor source_, onDevice_;
  int64_t version_ = -1;
};

}  // namespace pace::train
