#include <napi.h>

#include "addon_data.h"
#include "bindings.h"
#include "js_errors.h"
#include "rows_writer.h"
#include "tensor_handle.h"

namespace pace::addon {

void registerTensorBindings(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = TensorHandle::define(env);
  AddonData::of(env).tensorConstructor = Napi::Persistent(constructor);
  exports.Set("NativeTensor", constructor);
  exports.Set("createTensor", Napi::Function::New(env, createTensor, "createTensor"));
  exports.Set("createTensorFromPieces", Napi::Function::New(env, createTensorFromPieces, "createTensorFromPieces"));
  exports.Set("RowsWriter", RowsWriter::define(env));
  exports.Set("prepareImages", Napi::Function::New(env, prepareImages, "prepareImages"));
  exports.Set("augmentImages", Napi::Function::New(env, augmentImages, "augmentImages"));
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorFactory", Napi::Function::New(env, setErrorFactory, "setErrorFactory"));
  registerTensorBindings(env, exports);
  registerSafetensorsBindings(env, exports);
  registerSystemBindings(env, exports);
  registerModelBindings(env, exports);
  registerTrainerBindings(env, exports);
  registerDistributedBindings(env, exports);
  registerAugmentBindings(env, exports);
  registerStopFlagBindings(env, exports);
  return exports;
}

}  // namespace pace::addon

// NODE_API_MODULE pastes the function name into an identifier, so it needs an unqualified one.
static Napi::Object InitPacePeft(Napi::Env env, Napi::Object exports) { return pace::addon::init(env, exports); }
NODE_API_MODULE(pace_peft, InitPacePeft)
