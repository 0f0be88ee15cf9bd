#include "type_tags.h"

#include <string>

namespace pace::addon {

namespace {

// Random 128-bit values, one per class; they only need to differ from other addons' tags.
constexpr napi_type_tag kTags[] = {
    {0x7a1c5e0b93d24f61ULL, 0xb5e8a2c4d6f01937ULL},  // Tensor
    {0x2d9f4b7e61a8c305ULL, 0x8c3e5f1a9b0d7264ULL},  // Model
    {0xe40b6d2a5c97f318ULL, 0x1f7a3c9e5b2d8046ULL},  // Trainer
    {0x93c1e7f5a0b4d628ULL, 0x6e2f8a4c1d9b7053ULL},  // StopFlag
};
constexpr const char* kNames[] = {"NativeTensor", "NativeModel", "NativeTrainer", "NativeStopFlag"};

const napi_type_tag& tagOf(Wrapped kind) { return kTags[static_cast<int>(kind)]; }

}  // namespace

void tagWrapped(const Napi::CallbackInfo& info, Wrapped kind) {
  NAPI_THROW_IF_FAILED_VOID(info.Env(), napi_type_tag_object(info.Env(), info.This(), &tagOf(kind)));
}

bool isWrapped(const Napi::Value& value, Wrapped kind) {
  if (!value.IsObject()) return false;
  bool tagged = false;
  const napi_status status = napi_check_object_type_tag(value.Env(), value, &tagOf(kind), &tagged);
  return status == napi_ok && tagged;
}

void requireReceiver(const Napi::CallbackInfo& info, Wrapped kind) {
  if (!isWrapped(info.This(), kind)) {
    throw Napi::TypeError::New(
        info.Env(), std::string("Illegal invocation: the receiver is not a ") + kNames[static_cast<int>(kind)]);
  }
}

}  // namespace pace::addon
