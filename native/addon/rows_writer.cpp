#include "rows_writer.h"

#include <cstring>
#include <string>

#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"
#include "tensor_handle.h"

namespace pace::addon {

Napi::Function RowsWriter::define(Napi::Env env) {
  return DefineClass(env, "RowsWriter",
                     {
                         InstanceMethod<&RowsWriter::put>("put"),
                         InstanceMethod<&RowsWriter::finish>("finish"),
                         InstanceMethod<&RowsWriter::dispose>("dispose"),
                     });
}

RowsWriter::RowsWriter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RowsWriter>(info) {
  const Napi::Env env = info.Env();
  guard(env, [&]() -> Napi::Value {
    const double rows = info[0].ToNumber().DoubleValue();
    if (!(rows >= 0) || rows != static_cast<double>(static_cast<int64_t>(rows))) {
      throw jsError(env, ErrorCode::InvalidOption, "rows must be a whole number >= 0");
    }
    std::vector<int64_t> shape = shapeFromJs(info[1], "rowShape");
    const at::ScalarType dtype = dtypeFromJs(info[2], "dtype");
    const std::optional<uint64_t> rowBytes = byteSizeOf(shape, dtype);
    shape.insert(shape.begin(), static_cast<int64_t>(rows));
    if (!rowBytes || !byteSizeOf(shape, dtype)) {
      throw jsError(env, ErrorCode::ShapeMismatch, "shape " + shapeToString(shape) + " holds more than 2^64 bytes");
    }
    rowBytes_ = static_cast<size_t>(*rowBytes);
    tensor_ = emptyHostTensor(shape, dtype);
    written_.assign(static_cast<size_t>(rows), false);
    return env.Undefined();
  });
}

at::Tensor& RowsWriter::live(Napi::Env env) {
  if (!tensor_) throw jsError(env, ErrorCode::InvalidState, "the rows writer was finished or disposed");
  return *tensor_;
}

Napi::Value RowsWriter::put(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& tensor = live(env);
    const double row = info[0].ToNumber().DoubleValue();
    if (!(row >= 0) || row >= static_cast<double>(written_.size()) ||
        row != static_cast<double>(static_cast<int64_t>(row))) {
      throw jsError(
          env, ErrorCode::InvalidOption,
          "row " + info[0].ToString().Utf8Value() + " is not a row of the " + std::to_string(written_.size()));
    }
    if (!info[1].IsTypedArray()) throw jsError(env, ErrorCode::InvalidOption, "a row's data must be a typed array");
    // Read after every conversion above, which may run user code (a detached or shrunk buffer then reads as such).
    const auto [data, length] = viewBytes(env, info[1].As<Napi::TypedArray>());
    if (length != rowBytes_ || (length > 0 && data == nullptr)) {
      throw jsError(env, ErrorCode::ShapeMismatch,
                    "row " + std::to_string(static_cast<int64_t>(row)) + " holds " + std::to_string(length) +
                        " bytes where a row is " + std::to_string(rowBytes_));
    }
    const auto index = static_cast<size_t>(row);
    if (length > 0) std::memcpy(static_cast<char*>(tensor.data_ptr()) + index * rowBytes_, data, length);
    written_[index] = true;
    return env.Undefined();
  });
}

Napi::Value RowsWriter::finish(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& tensor = live(env);
    if (!info[0].IsArray()) throw jsError(env, ErrorCode::InvalidOption, "keptRows must be an array of row numbers");
    const auto given = info[0].As<Napi::Array>();
    std::vector<size_t> kept;
    for (uint32_t i = 0; i < given.Length(); ++i) {
      const double row = given.Get(i).ToNumber().DoubleValue();
      const bool increasing = kept.empty() || row > static_cast<double>(kept.back());
      if (!(row >= 0) || row >= static_cast<double>(written_.size()) || !increasing ||
          row != static_cast<double>(static_cast<int64_t>(row))) {
        throw jsError(env, ErrorCode::InvalidOption,
                      "keptRows[" + std::to_string(i) + "] is not an increasing row number below " +
                          std::to_string(written_.size()));
      }
      kept.push_back(static_cast<size_t>(row));
    }
    for (const size_t row : kept) {
      if (!written_[row]) throw jsError(env, ErrorCode::InvalidOption, "row " + std::to_string(row) + " was never put");
    }
    // Row kept[j] >= j, so moving them down in order never overwrites a row still to be moved.
    auto* base = static_cast<char*>(tensor.data_ptr());
    for (size_t j = 0; j < kept.size(); ++j) {
      if (kept[j] != j) std::memcpy(base + j * rowBytes_, base + kept[j] * rowBytes_, rowBytes_);
    }
    // Many rows left out (skipped images) are given back, at the cost of a copy of the kept ones: a view would keep
    // every row's memory for the dataset's life. A few are left, as the copy would double the peak for them.
    at::Tensor rows = tensor.narrow(0, 0, static_cast<int64_t>(kept.size()));
    if ((written_.size() - kept.size()) * 8 > written_.size()) rows = rows.clone();
    tensor_.reset();
    written_.clear();
    return TensorHandle::wrap(env, std::move(rows));
  });
}

Napi::Value RowsWriter::dispose(const Napi::CallbackInfo& info) {
  tensor_.reset();
  written_.clear();
  return info.Env().Undefined();
}

}  // namespace pace::addon
