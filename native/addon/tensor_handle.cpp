#include "tensor_handle.h"

#include <cstring>
#include <optional>

#include <ATen/CPUGeneratorImpl.h>

#include "addon_data.h"
#include "async.h"
#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"
#include "type_tags.h"

namespace pace::addon {

namespace {

const void* storageOf(const at::Tensor& tensor) {
  return tensor.has_storage() ? tensor.storage().unsafeGetStorageImpl() : nullptr;
}

}  // namespace

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceAccessor<&TensorHandle::shape>("shape"),
                         InstanceAccessor<&TensorHandle::dtype>("dtype"),
                         InstanceAccessor<&TensorHandle::device>("device"),
                         InstanceAccessor<&TensorHandle::numel>("numel"),
                         InstanceAccessor<&TensorHandle::byteLength>("byteLength"),
                         InstanceAccessor<&TensorHandle::disposed>("disposed"),
                         InstanceMethod<&TensorHandle::copyInto>("copyInto"),
                         InstanceMethod<&TensorHandle::viewData>("viewData"),
                         InstanceMethod<&TensorHandle::fingerprint>("fingerprint"),
                         InstanceMethod<&TensorHandle::to>("to"),
                         InstanceMethod<&TensorHandle::cast>("cast"),
                         InstanceMethod<&TensorHandle::clone>("clone"),
                         InstanceMethod<&TensorHandle::dispose>("dispose"),
                     });
}

Napi::Object TensorHandle::wrap(Napi::Env env, at::Tensor tensor) {
  // The constructor copies the tensor out of this External before New() returns.
  return AddonData::of(env).tensorConstructor.New({Napi::External<at::Tensor>::New(env, &tensor)});
}

const at::Tensor& TensorHandle::unwrap(const Napi::Value& value, const std::string& what) {
  const Napi::Env env = value.Env();
  if (!isWrapped(value, Wrapped::Tensor)) throw jsError(env, ErrorCode::InvalidOption, what + " is not a Tensor");
  return Unwrap(value.As<Napi::Object>())->live(env);
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info), env_(info.Env()) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw jsError(info.Env(), ErrorCode::InvalidOption, "NativeTensor cannot be constructed directly; use tensor()");
  }
  tagWrapped(info, Wrapped::Tensor);
  tensor_ = *info[0].As<Napi::External<at::Tensor>>().Data();
  storage_ = storageOf(*tensor_);
  counters_ = AddonData::of(info.Env()).memory;
  const int64_t bytes = tensor_->has_storage() ? static_cast<int64_t>(tensor_->storage().nbytes()) : 0;
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), counters_->add(storage_, bytes));
}

TensorHandle::~TensorHandle() {
  if (tensor_ && env_) Napi::MemoryManagement::AdjustExternalMemory(env_, -counters_->remove(storage_));
}

void TensorHandle::release(Napi::Env env) {
  if (!tensor_) return;
  tensor_.reset();
  Napi::MemoryManagement::AdjustExternalMemory(env, -counters_->remove(storage_));
  storage_ = nullptr;
}

const at::Tensor& TensorHandle::live(Napi::Env env) const {
  if (!tensor_) throw jsError(env, ErrorCode::InvalidState, "Tensor was disposed; it cannot be used any more");
  return *tensor_;
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(), [&] { return shapeToJs(info.Env(), live(info.Env()).sizes()); });
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(), [&] { return Napi::String::New(info.Env(), dtypeName(live(info.Env()).scalar_type())); });
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(), [&] { return Napi::String::New(info.Env(), live(info.Env()).device().str()); });
}

Napi::Value TensorHandle::numel(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(),
               [&] { return Napi::Number::New(info.Env(), static_cast<double>(live(info.Env()).numel())); });
}

Napi::Value TensorHandle::byteLength(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(),
               [&] { return Napi::Number::New(info.Env(), static_cast<double>(live(info.Env()).nbytes())); });
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return Napi::Boolean::New(info.Env(), !tensor_.has_value());
}

constexpr size_t kMaxViewBytes = (size_t{1} << 32) - 1;

// fingerprint(whole): a cheap identity of the contents (tensor/fingerprint.h).
Napi::Value TensorHandle::fingerprint(const Napi::CallbackInfo& info) {
  requireReceiver(info, Wrapped::Tensor);
  return guard(info.Env(), [&] {
    const bool whole = info.Length() > 0 && info[0].ToBoolean().Value();
    return Napi::String::New(info.Env(), contentFingerprint(live(info.Env()), whole));
  });
}

namespace {

// An ArrayBuffer over a CPU tensor's memory, which the buffer keeps alive; undefined where the runtime forbids
// external buffers (Electron's V8 sandbox) or past what one buffer may hold on Node 20 (4 GiB: there the call
// fails after its finalizer has already freed the keep-alive, so deleting it again aborted the process).
Napi::Value externalBufferOver(Napi::Env env, const at::Tensor& tensor) {
  if (tensor.nbytes() > kMaxViewBytes) return env.Undefined();
  auto* keepAlive = new at::Tensor(tensor);
  napi_value result = nullptr;
  const napi_status status = napi_create_external_arraybuffer(
      env, keepAlive->data_ptr(), keepAlive->nbytes(),
      [](napi_env, void*, void* hint) { delete static_cast<at::Tensor*>(hint); }, keepAlive, &result);
  if (status != napi_ok) {
    delete keepAlive;
    return env.Undefined();
  }
  return Napi::Value(env, result);
}

}  // namespace

// copyInto(dtype, typedArray): the elements converted to `dtype`, in row-major order, written into a typed array
// of exactly their size. JavaScript allocates it: an ArrayBuffer made here over libtorch's memory (external) cannot
// be transferred to another thread, and V8's ArrayBuffer::New ends the process when memory runs out.
Napi::Value TensorHandle::copyInto(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const at::ScalarType target = dtypeFromJs(info[0], "dtype");
    if (!info[1].IsTypedArray()) throw jsError(info.Env(), ErrorCode::InvalidOption, "copyInto needs a typed array");
    const Napi::TypedArray into = info[1].As<Napi::TypedArray>();
    const at::Tensor& source = live(info.Env());
    const size_t bytes = static_cast<size_t>(source.numel()) * c10::elementSize(target);
    if (into.ByteLength() != bytes)
      throw jsError(info.Env(), ErrorCode::InvalidOption,
                    "copyInto: the typed array holds " + std::to_string(into.ByteLength()) + " bytes, the tensor's " +
                        std::to_string(bytes) + " as " + std::string(c10::toString(target)));
    if (bytes == 0) return info.Env().Undefined();
    char* data = static_cast<char*>(into.ArrayBuffer().Data()) + into.ByteOffset();
    at::from_blob(data, source.sizes(), at::TensorOptions().dtype(target)).copy_(source);
    return info.Env().Undefined();
  });
}

// viewData(): an ArrayBuffer over the tensor's own memory (no copy), kept alive by the buffer itself.
// Only for contiguous CPU tensors; returns undefined where that is impossible or where the runtime
// forbids external buffers (Electron's V8 sandbox), so the caller falls back to a copy.
Napi::Value TensorHandle::viewData(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const at::Tensor& tensor = live(info.Env());
    if (!tensor.device().is_cpu() || !tensor.is_contiguous() || tensor.nbytes() == 0) return info.Env().Undefined();
    return externalBufferOver(info.Env(), tensor);
  });
}

Napi::Value TensorHandle::to(const Napi::CallbackInfo& info) {
  return guard(info.Env(),
               [&]() -> Napi::Value { return wrap(info.Env(), live(info.Env()).to(deviceFromJs(info[0], "device"))); });
}

Napi::Value TensorHandle::cast(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    // A copy also to its own type (to() alone would hand back the same tensor, shared).
    return wrap(info.Env(), live(info.Env())
                                .to(dtypeFromJs(info[0], "dtype"), /*non_blocking=*/false,
                                    /*copy=*/true));
  });
}

Napi::Value TensorHandle::clone(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value { return wrap(info.Env(), live(info.Env()).clone()); });
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

// prepareImages(uint8Images, size, { mean, std }) -> Promise<float Tensor [N, 3, size, size]>
Napi::Value prepareImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const int64_t size = info[1].ToNumber().Int64Value();
    const auto normalization = normalizationFromJs(info[2]);
    if (!normalization) throw jsError(env, ErrorCode::InvalidOption, "normalization is required");
    return runAsync(
        env, "pace.prepareImages", [=] { return data::toModelInput(images, size, *normalization); },
        [](Napi::Env env, at::Tensor& result) -> Napi::Value { return TensorHandle::wrap(env, std::move(result)); });
  });
}

// augmentImages(uint8Images, crop, flip, seed, extents?) -> Promise<uint8 Tensor [N, crop, crop, C]>; with extents,
// the images are of their own sizes, packed [P, C] (data/packed_images.h).
Napi::Value augmentImages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const at::Tensor images = TensorHandle::unwrap(info[0], "images");
    const int64_t crop = info[1].ToNumber().Int64Value();
    const bool flip = info[2].ToBoolean().Value();
    const uint64_t seed = static_cast<uint64_t>(info[3].ToNumber().Int64Value());
    const at::Tensor extents = info[4].IsUndefined() ? at::Tensor() : TensorHandle::unwrap(info[4], "extents");
    return runAsync(
        env, "pace.augmentImages",
        [=] {
          const at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
          if (!extents.defined()) return data::randomCropFlip(images, crop, flip, generator);
          const data::PackedImages packed(images, extents);
          return data::randomCropFlip(packed.select(at::arange(packed.count(), at::kLong)), crop, flip, generator);
        },
        [](Napi::Env env, at::Tensor& result) -> Napi::Value { return TensorHandle::wrap(env, std::move(result)); });
  });
}

Napi::Value createTensor(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsArrayBuffer()) throw jsError(env, ErrorCode::InvalidOption, "data must be an ArrayBuffer");
    const double offset = info[1].ToNumber().DoubleValue();
    const double length = info[2].ToNumber().DoubleValue();
    const at::ScalarType dtype = dtypeFromJs(info[3], "dtype");
    const std::vector<int64_t> shape = shapeFromJs(info[4], "shape");
    const std::optional<uint64_t> bytes = byteSizeOf(shape, dtype);
    const uint64_t itemSize = c10::elementSize(dtype);
    if (!bytes || !(length >= 0) || *bytes != static_cast<uint64_t>(length)) {
      throw jsError(env, ErrorCode::ShapeMismatch,
                    "data holds " + std::to_string(static_cast<uint64_t>(length) / itemSize) + " " + dtypeName(dtype) +
                        " elements but shape " + shapeToString(shape) + " needs " +
                        (bytes ? std::to_string(*bytes / itemSize) : std::string("more than 2^64")));
    }
    // The buffer is read only now, after every conversion above (which could run user code) is done.
    auto buffer = info[0].As<Napi::ArrayBuffer>();
    if (!(offset >= 0) || offset + length > static_cast<double>(buffer.ByteLength())) {
      throw jsError(env, ErrorCode::InvalidOption, "byte range lies outside the ArrayBuffer");
    }
    at::Tensor tensor = emptyHostTensor(shape, dtype);
    if (*bytes > 0) {
      std::memcpy(tensor.data_ptr(), static_cast<const char*>(buffer.Data()) + static_cast<size_t>(offset),
                  static_cast<size_t>(*bytes));
    }
    return TensorHandle::wrap(env, std::move(tensor));
  });
}

// createTensorFromPieces(pieces, dtype, shape): the typed arrays' bytes one after another in a new CPU tensor, for
// data larger than one JavaScript buffer may be (a decoded dataset), without first joining it in one.
Napi::Value createTensorFromPieces(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw jsError(env, ErrorCode::InvalidOption, "pieces must be an array of typed arrays");
    const auto pieces = info[0].As<Napi::Array>();
    const at::ScalarType dtype = dtypeFromJs(info[1], "dtype");
    const std::vector<int64_t> shape = shapeFromJs(info[2], "shape");
    const std::optional<uint64_t> bytes = byteSizeOf(shape, dtype);
    std::vector<Napi::TypedArray> views;
    for (uint32_t i = 0; i < pieces.Length(); ++i) {
      const Napi::Value piece = pieces.Get(i);  // may run a getter, which may detach or shrink earlier pieces
      if (!piece.IsTypedArray())
        throw jsError(env, ErrorCode::InvalidOption, "pieces[" + std::to_string(i) + "] is not a typed array");
      views.push_back(piece.As<Napi::TypedArray>());
    }
    // The pieces' bytes as they are now, once no more JavaScript can run (shared buffers included).
    std::vector<ViewBytes> contents;
    uint64_t given = 0;
    for (const Napi::TypedArray& view : views) {
      const ViewBytes bytes = viewBytes(env, view);
      if (bytes.length > 0 && bytes.data == nullptr)
        throw jsError(env, ErrorCode::InvalidOption, "a piece's buffer was detached while the pieces were read");
      contents.push_back(bytes);
      given += bytes.length;
    }
    if (!bytes || given != *bytes)
      throw jsError(env, ErrorCode::ShapeMismatch,
                    "the pieces hold " + std::to_string(given) + " bytes but shape " + shapeToString(shape) + " of " +
                        dtypeName(dtype) + " needs " +
                        (bytes ? std::to_string(*bytes) : std::string("more than 2^64")));
    at::Tensor tensor = emptyHostTensor(shape, dtype);
    auto* out = static_cast<char*>(tensor.data_ptr());
    for (const ViewBytes& piece : contents) {
      if (piece.length == 0) continue;
      std::memcpy(out, piece.data, piece.length);
      out += piece.length;
    }
    return TensorHandle::wrap(env, std::move(tensor));
  });
}

}  // namespace pace::addon
