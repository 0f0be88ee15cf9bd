#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <optional>

namespace pace::addon {

// The opaque JS handle of one at::Tensor. The tensor's memory is reported to V8 so the garbage collector
// sees its weight; dispose() releases it at once, the finalizer otherwise.
class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, at::Tensor tensor);
  // The tensor behind a JS value, or a TypeError naming `what` if it is not a live handle.
  static const at::Tensor& unwrap(const Napi::Value& value, const std::string& what);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  const at::Tensor& live(Napi::Env env) const;
  void release(Napi::Env env);

  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value numel(const Napi::CallbackInfo& info);
  Napi::Value byteLength(const Napi::CallbackInfo& info);
  Napi::Value fingerprint(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value copyInto(const Napi::CallbackInfo& info);
  Napi::Value viewData(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);
  Napi::Value cast(const Napi::CallbackInfo& info);
  Napi::Value clone(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::optional<at::Tensor> tensor_;
  const void* storage_ = nullptr;  // the tensor's storage, as MemoryCounters keys it
  napi_env env_ = nullptr;
  std::shared_ptr<struct MemoryCounters> counters_;
};

// createTensor(arrayBuffer, byteOffset, byteLength, dtype, shape): copies the bytes into a new CPU tensor.
Napi::Value createTensor(const Napi::CallbackInfo& info);
// createTensorFromPieces(typedArrays[], dtype, shape): the pieces' bytes, in order, in a new CPU tensor.
Napi::Value createTensorFromPieces(const Napi::CallbackInfo& info);
Napi::Value prepareImages(const Napi::CallbackInfo& info);
Napi::Value augmentImages(const Napi::CallbackInfo& info);

}  // namespace pace::addon
