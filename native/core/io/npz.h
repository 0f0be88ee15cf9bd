#pragma once
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace pace {

// Reads every array of a NumPy .npz archive (stored or deflated, zip64 aware) into CPU tensors, named
// without the ".npy" suffix, in archive order. Fortran-ordered arrays come back in C order. Object
// arrays (pickles) and big-endian data are refused. Throws pace::Error naming the file, entry and problem.
std::vector<NamedTensor> loadNpz(const std::string& path);

}  // namespace pace
