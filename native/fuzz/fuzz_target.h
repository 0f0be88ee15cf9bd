#pragma once
// Shared by the fuzz targets: the readers take paths, so each input is written to a private temporary file.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace pace::fuzz {

// In $TMPDIR, which scripts/fuzz.sh points at a folder it removes afterwards.
inline const std::string& scratchPath() {
  static const std::string path = [] {
    const char* base = std::getenv("TMPDIR");
    return std::string(base && *base ? base : "/tmp") + "/pace-fuzz-" + std::to_string(getpid()) + ".bin";
  }();
  return path;
}

// Writes the input and runs `read` on it. Any exception is an accepted outcome (bad input must be refused);
// a crash, a sanitizer report or a hang is a bug.
template <typename Read>
void runOnFile(const uint8_t* data, size_t size, Read read) {
  FILE* file = std::fopen(scratchPath().c_str(), "wb");
  if (!file) return;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    read(scratchPath());
  } catch (const std::exception&) {
  }
}

}  // namespace pace::fuzz
