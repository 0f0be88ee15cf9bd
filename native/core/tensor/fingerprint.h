#pragma once
// A cheap identity of a tensor's contents, for telling one dataset from another of the same shape (a resumed run
// must train on the set it started on): CRC-32 over its dtype, shape and bytes, all of them up to 1 MiB (or
// always, `whole`), past that 64 evenly spaced 16 KiB windows: about 1 MiB of a CPU tensor of any size is read.
// Labels are hashed whole (8 bytes a sample); images by windows.
#include <ATen/ATen.h>

#include <string>

namespace pace {

// "crc32:xxxxxxxx". A tensor off the CPU or not contiguous is read through a contiguous CPU copy.
std::string contentFingerprint(const at::Tensor& tensor, bool whole = false);

}  // namespace pace
