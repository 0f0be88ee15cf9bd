// libFuzzer target: the .npz (zip + .npy) reader on arbitrary bytes.
#include "fuzz_target.h"
#include "io/npz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pace::fuzz::runOnFile(data, size, [](const std::string& path) { pace::loadNpz(path); });
  return 0;
}
