#pragma once
#include <ATen/ATen.h>

#include <string>

namespace pace {

// A float tensor converted to `dtype`, a parameter's, when its values are all finite there (a float64 1e300 is
// finite in a file, infinite in float32). Otherwise an undefined tensor, with `problem` set to "holds NaN or
// infinite values", and " in <dtype>" when the conversion made them so.
at::Tensor finiteAs(const at::Tensor& value, at::ScalarType dtype, std::string& problem);

}  // namespace pace
