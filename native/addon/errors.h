#pragma once
#include <napi.h>

#include <c10/util/Exception.h>

#include <exception>
#include <string>

namespace pace::addon {

// The message of any exception, without libtorch's C++ backtrace (users need the reason, not our frames).
inline std::string describe(const std::exception& error) {
  if (const auto* torchError = dynamic_cast<const c10::Error*>(&error)) return torchError->what_without_backtrace();
  return error.what();
}

// node-addon-api turns only Napi::Error into a JavaScript exception; anything else thrown through a
// callback would terminate the process. Every binding runs its body through guard().
template <typename Body>
auto guard(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, describe(error));
  }
}

}  // namespace pace::addon
