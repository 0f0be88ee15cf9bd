#pragma once
#include <cstddef>
#include <string>

namespace pace {

// Writes a file so that a reader never sees it half-written: the bytes go to a temporary file beside
// the target, which is fsynced and then renamed over the target (and the directory fsynced).
// If anything fails, or the writer is destroyed before commit(), the temporary file is removed.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string targetPath);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t size);
  void commit();

 private:
  std::string targetPath_;
  std::string tempPath_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace pace
