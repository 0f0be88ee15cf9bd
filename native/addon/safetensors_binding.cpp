#include "async.h"
#include "bindings.h"
#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"
#include "tensor_handle.h"

namespace pace::addon {

namespace {

// loadSafetensors(path) -> Promise<{ names, tensors, metadata }>, tensors in file order.
Napi::Value loadSafetensorsJs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    return runAsync(
        info.Env(), "pace.loadSafetensors", [path] { return loadSafetensors(path); },
        [](Napi::Env env, SafetensorsContents& contents) -> Napi::Value {
          Napi::Array names = Napi::Array::New(env, contents.tensors.size());
          Napi::Array tensors = Napi::Array::New(env, contents.tensors.size());
          for (uint32_t i = 0; i < contents.tensors.size(); ++i) {
            names.Set(i, contents.tensors[i].name);
            tensors.Set(i, TensorHandle::wrap(env, std::move(contents.tensors[i].tensor)));
          }
          Napi::Object result = Napi::Object::New(env);
          result.Set("names", names);
          result.Set("tensors", tensors);
          result.Set("metadata", metadataToJs(env, contents.metadata));
          return result;
        });
  });
}

Napi::Value headerToJs(Napi::Env env, const SafetensorsHeader& header) {
  Napi::Array entries = Napi::Array::New(env, header.entries.size());
  for (uint32_t i = 0; i < header.entries.size(); ++i) {
    const auto& entry = header.entries[i];
    Napi::Object item = Napi::Object::New(env);
    item.Set("name", entry.name);
    item.Set("dtype", dtypeName(entry.dtype));
    item.Set("shape", shapeToJs(env, entry.shape));
    item.Set("dataOffsets", shapeToJs(env, {static_cast<int64_t>(entry.begin), static_cast<int64_t>(entry.end)}));
    entries.Set(i, item);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("entries", entries);
  result.Set("metadata", metadataToJs(env, header.metadata));
  result.Set("dataStart", static_cast<double>(header.dataStart));
  result.Set("fileSize", static_cast<double>(header.fileSize));
  return result;
}

// readSafetensorsHeader(path) -> Promise<{ entries, metadata, dataStart, fileSize }>; reads no tensor data.
Napi::Value readSafetensorsHeaderJs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    return runAsync(
        info.Env(), "pace.readSafetensorsHeader", [path] { return readSafetensorsHeader(path); },
        [](Napi::Env env, SafetensorsHeader& header) -> Napi::Value { return headerToJs(env, header); });
  });
}

// readSafetensorsHeaderSync(path) -> { entries, metadata, dataStart, fileSize }: on the calling thread, for the
// checks a model makes of a file before it queues the job that loads it (jobs run in the order they were asked).
Napi::Value readSafetensorsHeaderSyncJs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    return headerToJs(info.Env(), readSafetensorsHeader(pathFromJs(info[0], "path")));
  });
}

// checkCheckpoint(path) -> Promise<void>: reads a training checkpoint whole and checks its digest, restoring nothing;
// rejects as loadState would.
Napi::Value checkCheckpointJs(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    return runAsync(
        info.Env(), "pace.checkCheckpoint",
        [path] {
          loadCheckpoint(path);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

// saveSafetensors(path, names, tensors, metadata | null) -> Promise<void>.
Napi::Value saveSafetensorsJs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::string path = pathFromJs(info[0], "path");
    if (!info[1].IsArray() || !info[2].IsArray())
      throw jsError(env, ErrorCode::InvalidOption, "names and tensors must be arrays");
    const auto names = info[1].As<Napi::Array>();
    const auto handles = info[2].As<Napi::Array>();
    if (names.Length() != handles.Length())
      throw jsError(env, ErrorCode::InvalidOption, "names and tensors differ in length");
    std::vector<NamedTensor> tensors;
    tensors.reserve(names.Length());
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = stringFromJs(names.Get(i), "tensor name");
      // Each worker holds its own reference: disposing a handle while the write runs is safe.
      tensors.push_back({name, TensorHandle::unwrap(handles.Get(i), "tensors['" + name + "']")});
    }
    std::optional<TensorMetadata> metadata;
    if (!info[3].IsNull() && !info[3].IsUndefined()) metadata = metadataFromJs(info[3]);
    return runAsync(
        env, "pace.saveSafetensors",
        [path, tensors = std::move(tensors), metadata = std::move(metadata)] {
          saveSafetensors(path, tensors, metadata);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

}  // namespace

void registerSafetensorsBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("loadSafetensors", Napi::Function::New(env, loadSafetensorsJs, "loadSafetensors"));
  exports.Set("readSafetensorsHeader", Napi::Function::New(env, readSafetensorsHeaderJs, "readSafetensorsHeader"));
  // The metadata key that marks a training checkpoint (io/checkpoint.h), for TypeScript to recognise one by.
  exports.Set("checkpointDigestKey", Napi::String::New(env, kCheckpointDigestKey));
  exports.Set("checkCheckpoint", Napi::Function::New(env, checkCheckpointJs, "checkCheckpoint"));
  exports.Set("readSafetensorsHeaderSync",
              Napi::Function::New(env, readSafetensorsHeaderSyncJs, "readSafetensorsHeaderSync"));
  exports.Set("saveSafetensors", Napi::Function::New(env, saveSafetensorsJs, "saveSafetensors"));
}

}  // namespace pace::addon
