#pragma once
#include <napi.h>

namespace pace::addon {

// The wrapped classes, told apart by N-API type tags. InstanceOf follows prototypes, which JavaScript can swap,
// and node-addon-api's accessors carry no V8 signature: either way another class's object would be cast to this
// one's and read as it (a crash, or garbage).
enum class Wrapped { Tensor, Model, Trainer, StopFlag };

// Tags a constructor's new object as `kind`.
void tagWrapped(const Napi::CallbackInfo& info, Wrapped kind);

// Whether `value` is an object tagged as `kind`.
bool isWrapped(const Napi::Value& value, Wrapped kind);

// A TypeError unless the receiver is an object tagged as `kind`: the first statement of every accessor, before
// any member is read.
void requireReceiver(const Napi::CallbackInfo& info, Wrapped kind);

}  // namespace pace::addon
