#pragma once
// Numeric precision of a training step: 'fp32' (IEEE float32 everywhere, TF32 off), 'tf32' (float32 storage,
// the matrix units' TF32 mode for cuBLAS/cuDNN products), 'bf16' (autocast to bfloat16: products and most
// element-wise work in bf16, reductions and normalisations in float32; trainable parameters stay float32).
#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace pace {

enum class Precision { Fp32, Tf32, Bf16 };

Precision precisionFromName(const std::string& name);  // throws pace::Error naming the accepted values

// For its lifetime: TF32 allowed or not on cuBLAS/cuDNN as `precision` asks, and for Bf16 autocast to
// bfloat16 on `device` (CUDA or CPU). The previous settings come back at the end; the autocast cache is
// cleared on leaving the outermost scope, so casts of parameters never outlive an optimizer step. TF32 being
// one switch for the process, a scope waits while scopes on other threads run with the other TF32 setting.
class PrecisionScope {
 public:
  PrecisionScope(Precision precision, c10::DeviceType device);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  c10::DeviceType device_;
  bool previousAutocast_ = false;
  at::ScalarType previousAutocastDtype_ = at::kFloat;
  bool autocastSet_ = false;
};

// The dtype floating inputs are cast to on `device` now, if autocast is on there.
std::optional<at::ScalarType> autocastDtype(c10::DeviceType device);

// For its lifetime autocast is off on `device` (inside fused ops whose inputs are already cast).
class AutocastOff {
 public:
  explicit AutocastOff(c10::DeviceType device);
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  c10::DeviceType device_;
  bool previous_;
};

}  // namespace pace
