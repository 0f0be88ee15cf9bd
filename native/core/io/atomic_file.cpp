#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "errors.h"

namespace pace {

namespace {

// A failed write (errno set): a folder that is not there is not found; a full disk, a read-only file system or a
// refused permission is a write failure, not a damaged file.
Error writeFailure(const std::string& what, const std::string& path) {
  const int code = errno;
  const std::string message = what + " '" + path + "': " + std::strerror(code);
  if (code == ENOENT || code == ENOTDIR) return NotFoundError(message + " (its folder does not exist)");
  return WriteError(message);
}

std::string directoryOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string targetPath) : targetPath_(std::move(targetPath)) {
  static std::atomic<unsigned> counter{0};
  // A name taken already is a killed writer's that had this process id (a container's process 1 after a restart),
  // or a live one's in another process namespace: either way the next number is tried, and the file left alone.
  for (int tries = 0;; ++tries) {
    tempPath_ = targetPath_ + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    fd_ = ::open(tempPath_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) return;
    if (errno != EEXIST || tries == 1000) throw writeFailure("cannot create", tempPath_);
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tempPath_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd_, bytes, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      throw writeFailure("cannot write", tempPath_);
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

void AtomicFileWriter::commit() {
  struct stat existing = {};
  if (::stat(targetPath_.c_str(), &existing) == 0 && ::fchmod(fd_, existing.st_mode & 07777) != 0)
    throw writeFailure("cannot give the permissions of the file it replaces to", tempPath_);
  if (::fsync(fd_) != 0) throw writeFailure("cannot fsync", tempPath_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw writeFailure("cannot close", tempPath_);
  }
  fd_ = -1;
  if (::rename(tempPath_.c_str(), targetPath_.c_str()) != 0) throw writeFailure("cannot rename onto", targetPath_);
  committed_ = true;
  // The rename is durable once the folder is synced; filesystems that cannot sync a folder (EINVAL, ENOTSUP)
  // have nothing more to give.
  const std::string folder = directoryOf(targetPath_);
  const int dirFd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd < 0) throw writeFailure("wrote '" + targetPath_ + "' but cannot open its folder to sync it:", folder);
  const bool synced = ::fsync(dirFd) == 0 || errno == EINVAL || errno == ENOTSUP;
  const int syncErrno = errno;
  ::close(dirFd);
  errno = syncErrno;
  if (!synced) throw writeFailure("wrote '" + targetPath_ + "' but cannot sync its folder", folder);
}

}  // namespace pace
