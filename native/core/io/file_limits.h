#pragma once
#include <cstdint>

namespace pace {

// The most tensors one weights file (safetensors, npz) may name: a checkpoint holds hundreds to a few thousand, and
// a crafted file naming millions is refused as it is read, before its entries are built.
constexpr std::uint64_t kMaxTensorsPerFile = 100'000;

}  // namespace pace
