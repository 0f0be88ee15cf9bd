#pragma once
#include <stdexcept>
#include <string>

namespace pace {

// What kind of failure an error is. The addon gives JavaScript the same classification as a stable code
// (errorCodeName) and the matching PaceError subclass (lib/errors.ts).
enum class ErrorCode {
  InvalidOption,  // an option or argument outside what is accepted
  InvalidInput,   // data of the right shape with wrong values (labels out of range, an empty dataset)
  ShapeMismatch,  // a tensor or checkpoint entry whose shape or dtype does not fit
  InvalidFile,    // a corrupt, truncated or foreign file
  NotFound,       // a file, name or entry that does not exist
  InvalidState,   // a call the object's state does not allow (not adapted yet, adapted already)
  Busy,           // the model is in use by another operation
  Diverged,       // training produced a non-finite loss
  Unsupported,    // what this build, CPU or device cannot do
  Distributed,    // a collective across processes failed: another rank died, hung or disagreed
  WriteFailed,    // a file that could not be written: the disk full, a read-only file system, no permission
  Internal,       // anything else
};

// "PACE_INVALID_OPTION", ...
const char* errorCodeName(ErrorCode code);

// Every error the core raises for bad input: the message names the file, key or field and what was expected.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <ErrorCode Code>
class CodedError : public Error {
 public:
  explicit CodedError(const std::string& message) : Error(Code, message) {}
};

using OptionError = CodedError<ErrorCode::InvalidOption>;
using InputError = CodedError<ErrorCode::InvalidInput>;
using ShapeError = CodedError<ErrorCode::ShapeMismatch>;
using FileError = CodedError<ErrorCode::InvalidFile>;
using NotFoundError = CodedError<ErrorCode::NotFound>;
using StateError = CodedError<ErrorCode::InvalidState>;
using DivergedError = CodedError<ErrorCode::Diverged>;
using UnsupportedError = CodedError<ErrorCode::Unsupported>;
using DistributedError = CodedError<ErrorCode::Distributed>;
using WriteError = CodedError<ErrorCode::WriteFailed>;

}  // namespace pace
