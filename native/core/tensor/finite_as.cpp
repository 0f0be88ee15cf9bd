#include "tensor/finite_as.h"

#include "tensor/dtype.h"

namespace pace {

at::Tensor finiteAs(const at::Tensor& value, at::ScalarType dtype, std::string& problem) {
  at::Tensor converted = value.to(dtype);
  if (at::isfinite(converted).all().item<bool>()) return converted;
  problem = "holds NaN or infinite values" + (value.scalar_type() == dtype ? std::string() : " in " + dtypeName(dtype));
  return {};
}

}  // namespace pace
