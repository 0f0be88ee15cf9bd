#pragma once
// The trainable parameters' gradients: their norm (a diagnostic) and clipping.
#include <vector>

#include "io/safetensors.h"

namespace pace::train {

// The L2 norm of all gradients together (waits for the device).
double gradientNorm(const std::vector<NamedTensor>& parameters);

// Scales the gradients so their total L2 norm is at most maxNorm. The norm stays on the device (libtorch's
// clip_grad_norm_ returns it as a double, which waits for the device every step).
void clipGradientNorm(const std::vector<NamedTensor>& parameters, double maxNorm);

}  // namespace pace::train
