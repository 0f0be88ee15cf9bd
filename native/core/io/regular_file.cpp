#include "io/regular_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"

namespace pace {

namespace {

[[noreturn]] void failWithErrno(int error, const std::string& what,
                                const std::function<std::string(const std::string&)>& describe) {
  const std::string message = describe(what + ": " + std::strerror(error));
  if (error == ENOENT) throw NotFoundError(message);
  throw FileError(message);
}

}  // namespace

RegularFile openRegularFile(const std::string& path, const std::function<std::string(const std::string&)>& describe) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) failWithErrno(errno, "cannot open", describe);
  struct stat info = {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    failWithErrno(error, "cannot stat", describe);
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw FileError(describe("is not a regular file"));
  }
  return {fd, static_cast<uint64_t>(info.st_size)};
}

std::string readRegularFile(const std::string& path, const std::function<std::string(const std::string&)>& describe) {
  const RegularFile file = openRegularFile(path, describe);
  std::string data(file.size, '\0');
  uint64_t done = 0;
  while (done < file.size) {
    const ssize_t got = ::pread(file.fd, data.data() + done, file.size - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const int error = errno;
      ::close(file.fd);
      if (got < 0) failWithErrno(error, "read failed", describe);
      throw FileError(describe("file ended early (was it truncated while being read?)"));
    }
    done += static_cast<uint64_t>(got);
  }
  ::close(file.fd);
  return data;
}

}  // namespace pace
