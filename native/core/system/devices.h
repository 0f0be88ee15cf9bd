#pragma once
// Devices by name, as a user writes them: parsed, and checked against what this process can use.
#include <c10/core/Device.h>

#include <string>

namespace pace {

// 'cpu', 'cuda', 'cuda:1': an OptionError for a name that is not a device or an index past the visible GPUs, an
// UnsupportedError for CUDA without a CUDA libtorch or GPU. Errors start with `what` and the name.
c10::Device deviceNamed(const std::string& name, const std::string& what);

}  // namespace pace
