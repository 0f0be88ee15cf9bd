#pragma once
// timm's Mixup in 'batch' mode: one λ per batch, each image mixed with the batch's reverse (x.flip(0)), either
// blended (mixup) or with a box pasted in (CutMix, λ corrected to the box's clipped area); the targets become
// smoothed one-hot rows mixed with the same λ (soft targets [B, classes] for SoftTargetCrossEntropy).
#include <ATen/ATen.h>

#include <array>

namespace pace::data {

// Defaults: DeiT's recipe as timm's train.py takes it (--mixup 0.8 --cutmix 1.0 --smoothing 0.1).
struct MixupConfig {
  double mixupAlpha = 0.8;      // Beta(α, α) for mixup's λ; 0: no mixup
  double cutmixAlpha = 1.0;     // Beta(α, α) for CutMix's λ; 0: no CutMix
  double prob = 1.0;            // of mixing a batch at all
  double switchProb = 0.5;      // of CutMix rather than mixup when both are on
  double labelSmoothing = 0.1;  // off = ε / classes, on = 1 − ε + off
  bool correctLambda = true;    // CutMix's λ from the clipped box's area
  void validate() const;
};

struct MixupResult {
  at::Tensor images;   // the mixed batch (same dtype, shape and device)
  at::Tensor targets;  // float32 [B, classes]: λ·y + (1 − λ)·y.flip(0), y smoothed one-hot
  double lambda = 1;   // the λ used (corrected for CutMix)
  bool cutmix = false;
  std::array<int64_t, 4> box{0, 0, 0, 0};  // CutMix's rows [box[0], box[1]) and columns [box[2], box[3])
};

// timm's mixup_target: smoothed one-hot rows of `labels` (int64 [B]) mixed with those of the reversed batch.
at::Tensor mixupTargets(const at::Tensor& labels, int64_t numClasses, double lambda, double smoothing);

// Mixes images [B, C, H, W] (floating point) and labels (int64 [B]); every draw from `generator` (four uniforms and
// four gamma variates per batch, whatever is used).
MixupResult mixupBatch(const at::Tensor& images, const at::Tensor& labels, int64_t numClasses,
                       const MixupConfig& config, at::Generator generator);

}  // namespace pace::data
