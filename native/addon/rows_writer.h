#pragma once
#include <napi.h>

#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace pace::addon {

// new RowsWriter(rows, rowShape, dtype): a CPU tensor [rows, ...rowShape] filled one row at a time (a dataset
// decoded in parallel, each image written as it arrives), so the rows never all live in JavaScript buffers as well.
// The tensor is not seen from JavaScript until finish(keptRows), which moves the kept rows down in place, in order,
// and hands over the tensor of those rows; the writer is spent then, or by dispose().
class RowsWriter : public Napi::ObjectWrap<RowsWriter> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit RowsWriter(const Napi::CallbackInfo& info);

 private:
  at::Tensor& live(Napi::Env env);
  // put(row, typedArray): the row's bytes, exactly one row's worth.
  Napi::Value put(const Napi::CallbackInfo& info);
  // finish(keptRows: increasing row numbers, each written) -> NativeTensor [keptRows.length, ...rowShape]
  Napi::Value finish(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  std::optional<at::Tensor> tensor_;
  std::vector<bool> written_;
  size_t rowBytes_ = 0;
};

}  // namespace pace::addon
