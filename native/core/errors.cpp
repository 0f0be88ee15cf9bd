#include "errors.h"

namespace pace {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidOption:
      return "PACE_INVALID_OPTION";
    case ErrorCode::InvalidInput:
      return "PACE_INVALID_INPUT";
    case ErrorCode::ShapeMismatch:
      return "PACE_SHAPE_MISMATCH";
    case ErrorCode::InvalidFile:
      return "PACE_INVALID_FILE";
    case ErrorCode::NotFound:
      return "PACE_NOT_FOUND";
    case ErrorCode::InvalidState:
      return "PACE_INVALID_STATE";
    case ErrorCode::Busy:
      return "PACE_BUSY";
    case ErrorCode::Diverged:
      return "PACE_DIVERGED";
    case ErrorCode::Unsupported:
      return "PACE_UNSUPPORTED";
    case ErrorCode::Distributed:
      return "PACE_DISTRIBUTED";
    case ErrorCode::WriteFailed:
      return "PACE_WRITE_FAILED";
    case ErrorCode::Internal:
      break;
  }
  return "PACE_INTERNAL";
}

}  // namespace pace
