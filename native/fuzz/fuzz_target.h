#pragma once
// Shared by the fuzz targets: the readers take paths, so each input is written to a private temporary file.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "errors.h"

namespace pace::fuzz {

// In $TMPDIR, which scripts/fuzz.sh points at a folder it removes afterwards.
inline const std::string& scratchPath() {
  static const std::string path = [] {
    const char* base = std::getenv("TMPDIR");
    return std::string(base && *base ? base : "/tmp") + "/pace-fuzz-" + std::to_string(getpid()) + ".bin";
  }();
  return path;
}

// Writes the input and runs `read` on it. A pace::Error is the accepted outcome (bad input must be refused, by
// name); any other exception (libtorch's c10::Error, a parser's, bad_alloc) would reach users as an internal error
// naming nothing, and is reported as a crash, as are a sanitizer report and a hang.
template <typename Read>
void runOnFile(const uint8_t* data, size_t size, Read read) {
  FILE* file = std::fopen(scratchPath().c_str(), "wb");
  if (!file) return;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    read(scratchPath());
  } catch (const pace::Error&) {
  } catch (const std::exception& error) {
    std::fprintf(stderr, "fuzz: an exception other than pace::Error escaped: %s\n", error.what());
    std::abort();
  }
}

}  // namespace pace::fuzz
