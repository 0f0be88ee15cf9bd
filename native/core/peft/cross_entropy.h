#pragma once
// The classification loss of a training step, for hard or soft targets: int64 class indices [B] take the usual
// cross-entropy; float rows [B, classes] (mixup/CutMix with label smoothing, data/mixup.h) take timm's
// SoftTargetCrossEntropy, mean over the batch of −Σ_c t_c · log_softmax(logits)_c.
#include <ATen/ATen.h>

namespace pace::peft {

at::Tensor crossEntropy(const at::Tensor& logits, const at::Tensor& targets);

// The class each target names: hard targets as they are, soft ones their largest entry (the dominant label: with
// mixup, the image's own label when λ > ½). Training accuracy counts argmax(logits) against these.
at::Tensor targetClasses(const at::Tensor& targets);

}  // namespace pace::peft
