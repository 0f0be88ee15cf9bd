#pragma once
// A model moved to another device after its trainer stepped: libtorch's Module::to moves the parameters (in place:
// the same tensors, new storage) but not the AdamW moments kept for them nor their gradients, so the next update
// would mix devices. This moves both along, as PyTorch's Optimizer.load_state_dict places loaded state.
#include <torch/optim/adamw.h>

namespace pace::train {

// Moves each parameter's AdamW moments to the parameter's device, and drops a gradient left on another device.
void followParameterDevices(torch::optim::AdamW& optimizer);

}  // namespace pace::train
