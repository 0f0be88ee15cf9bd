#pragma once
#include <napi.h>

#include <c10/util/Exception.h>

#include <exception>
#include <string>

#include "pace_core.h"

namespace pace::addon {

// The JavaScript error for a failure of kind `code`: an instance of the matching PaceError subclass
// (lib/errors.ts, registered at load through setErrorFactory), or a plain Error carrying `code` before that.
Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message);

// A classified failure caught on a worker thread, to be turned into a JavaScript error on the JS thread.
struct Failure {
  ErrorCode code = ErrorCode::Internal;
  std::string message;
};

// The code and message of any exception, without libtorch's C++ backtrace (users need the reason, not our
// frames). Exceptions the core did not classify are PACE_INTERNAL.
Failure describe(const std::exception& error);

// node-addon-api turns only Napi::Error into a JavaScript exception; anything else thrown through a
// callback would terminate the process. Every binding runs its body through guard().
template <typename Body>
auto guard(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& error) {
    const Failure failure = describe(error);
    throw jsError(env, failure.code, failure.message);
  }
}

// Registers the function that builds the JavaScript errors: (code, message) => PaceError.
Napi::Value setErrorFactory(const Napi::CallbackInfo& info);

}  // namespace pace::addon
