// libFuzzer target: the safetensors reader on arbitrary bytes.
#include "fuzz_target.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pace::fuzz::runOnFile(data, size, [](const std::string& path) { pace::loadSafetensors(path); });
  return 0;
}
