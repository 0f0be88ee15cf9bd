#pragma once
// Opening a file the loaders read: a FIFO must not block the open, and anything but a regular file (a directory,
// a device) is refused by name before a byte is read.
#include <cstdint>
#include <functional>
#include <string>

namespace pace {

struct RegularFile {
  int fd = -1;  // the caller closes it
  uint64_t size = 0;
};

// `describe` turns a problem into the message (naming the file); a missing file throws NotFoundError, any other
// problem FileError.
RegularFile openRegularFile(const std::string& path, const std::function<std::string(const std::string&)>& describe);

// The whole of a regular file, read through openRegularFile.
std::string readRegularFile(const std::string& path, const std::function<std::string(const std::string&)>& describe);

}  // namespace pace
