#include "io/safetensors.h"

#include <unistd.h>

#include <torch/version.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_set>

#include "errors.h"
#include "io/atomic_file.h"
#include "io/file_limits.h"
#include "io/regular_file.h"
#include "tensor/dtype.h"
#include "tensor/host_memory.h"
#include "text.h"

namespace pace {

namespace {

// Headers are written in the order given, and read without a tree of the whole header (see HeaderReader).
using Json = nlohmann::ordered_json;
using ReadJson = nlohmann::json;

// The same bound as the reference implementation: no real header comes near it, and it keeps a
// hostile length field from making us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;
// The parser's depth of a header's deepest values: {name: {shape: [n, ...]}}.
constexpr int kMaxHeaderDepth = 3;
// The longest list a header holds (a shape; libtorch's kernels take at most 25 dimensions).
constexpr std::size_t kMaxListLength = 64;
// The most metadata entries a file may hold (its tensors: kMaxTensorsPerFile): each costs a JavaScript object, so
// a header of tiny entries is refused before it costs many times its size.
constexpr std::size_t kMaxMetadataEntries = 10'000;
constexpr uint64_t kMaxExactDimension = (1ull << 53) - 1;

class FileProblem {
 public:
  explicit FileProblem(std::string path) : path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& problem) const { throw FileError(describe(problem)); }
  [[noreturn]] void failErrno(const std::string& what) const {
    const int error = errno;
    const std::string problem = describe(what + ": " + std::strerror(error));
    if (error == ENOENT) throw NotFoundError(problem);
    throw FileError(problem);
  }
  // For tensors a caller asked to save: the file is fine, the request is not.
  [[noreturn]] void failRequest(const std::string& problem) const { throw OptionError(describe(problem)); }
  std::string describe(const std::string& problem) const { return "safetensors file '" + path_ + "': " + problem; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class ReadOnlyFile {
 public:
  ReadOnlyFile(const std::string& path, const FileProblem& err) : err_(err) {
    const RegularFile file =
        openRegularFile(path, [&err](const std::string& problem) { return err.describe(problem); });
    fd_ = file.fd;
    size_ = file.size;
  }
  ~ReadOnlyFile() { ::close(fd_); }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  uint64_t size() const { return size_; }

  void readExactly(uint64_t offset, void* out, uint64_t count) const {
    char* dst = static_cast<char*>(out);
    while (count > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(count, 1u << 30));
      const ssize_t got = ::pread(fd_, dst, chunk, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        err_.failErrno("read failed");
      }
      if (got == 0) err_.fail("file ended early (was it truncated while being read?)");
      dst += got;
      offset += static_cast<uint64_t>(got);
      count -= static_cast<uint64_t>(got);
    }
  }

 private:
  const FileProblem& err_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

uint64_t readLittleEndian64(const unsigned char* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// A short description of a JSON value for messages: numbers as they are, anything else by its type only
// (dumping a hostile, deeply nested value would recurse without bound).
std::string describeJson(const ReadJson& value) {
  if (value.is_number() || value.is_boolean() || value.is_null()) return value.dump();
  return std::string("a JSON ") + value.type_name();
}

uint64_t nonNegativeInteger(const ReadJson& value, const FileProblem& err, const std::string& what) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return static_cast<uint64_t>(value.get<int64_t>());
  err.fail(what + " must be a non-negative integer, got " + describeJson(value));
}

SafetensorsEntry parseEntry(const std::string& name, const ReadJson& info, uint64_t dataSize, const FileProblem& err) {
  const std::string where = "tensor '" + shownFromFile(name) + "'";
  if (!info.is_object()) err.fail(where + ": expected an object with dtype, shape and data_offsets");
  const auto dtypeIt = info.find("dtype");
  const auto shapeIt = info.find("shape");
  const auto offsetsIt = info.find("data_offsets");
  if (dtypeIt == info.end() || !dtypeIt->is_string()) err.fail(where + ": missing or non-string \"dtype\"");
  if (shapeIt == info.end() || !shapeIt->is_array()) err.fail(where + ": missing or non-array \"shape\"");
  if (offsetsIt == info.end() || !offsetsIt->is_array() || offsetsIt->size() != 2)
    err.fail(where + ": \"data_offsets\" must be an array [begin, end]");

  SafetensorsEntry entry;
  entry.name = name;
  const std::string code = dtypeIt->get<std::string>();
  const auto dtype = dtypeFromSafetensorsCode(code);
  if (!dtype) {
    if (isKnownButUnsupportedSafetensorsCode(code))
      err.fail(where + ": dtype " + code + " needs a newer libtorch than " + TORCH_VERSION);
    err.fail(where + ": unknown dtype \"" + shownFromFile(code) + "\"");
  }
  entry.dtype = *dtype;

  // libtorch refuses a shape whose dimensions overflow int64 as they are multiplied, even with a zero among them.
  uint64_t nonZeroProduct = 1;
  bool overflow = false, empty = false;
  for (size_t i = 0; i < shapeIt->size(); ++i) {
    const uint64_t dim = nonNegativeInteger((*shapeIt)[i], err, where + ": shape[" + std::to_string(i) + "]");
    // Shapes reach JavaScript as numbers, exact only up to 2^53.
    if (dim > kMaxExactDimension)
      err.fail(where + ": shape[" + std::to_string(i) + "] = " + std::to_string(dim) + " is larger than 2^53 - 1");
    entry.shape.push_back(static_cast<int64_t>(dim));
    empty = empty || dim == 0;
    if (dim != 0) overflow = overflow || __builtin_mul_overflow(nonZeroProduct, dim, &nonZeroProduct);
  }
  if (overflow || nonZeroProduct > static_cast<uint64_t>(INT64_MAX))
    err.fail(where + ": shape " + shapeToString(entry.shape) + " has more elements than a tensor can count (2^63 - 1)");
  const uint64_t numel = empty ? 0 : nonZeroProduct;
  entry.begin = nonNegativeInteger((*offsetsIt)[0], err, where + ": data_offsets[0]");
  entry.end = nonNegativeInteger((*offsetsIt)[1], err, where + ": data_offsets[1]");
  if (entry.end < entry.begin)
    err.fail(where + ": data_offsets [" + std::to_string(entry.begin) + "," + std::to_string(entry.end) +
             "] end before they begin");
  if (entry.end > dataSize)
    err.fail(where + ": data_offsets [" + std::to_string(entry.begin) + "," + std::to_string(entry.end) +
             "] run past the end of the data section (" + std::to_string(dataSize) + " bytes)");

  uint64_t expectedBytes = 0;
  overflow = __builtin_mul_overflow(numel, static_cast<uint64_t>(c10::elementSize(entry.dtype)), &expectedBytes);
  if (overflow || expectedBytes != entry.end - entry.begin)
    err.fail(where + ": shape " + shapeToString(entry.shape) + " of " + code + " needs " +
             (overflow ? std::string("more than 2^64") : std::to_string(expectedBytes)) +
             " bytes but data_offsets span " + std::to_string(entry.end - entry.begin));
  return entry;
}

// Reads a header's entries and metadata as its JSON is parsed, one entry at a time, keeping no tree of the whole
// header: an ordered tree made a header of many small entries quadratic (a 4 MB one took 7 s), and any tree costs
// many times the header's size. Nesting deeper than {name: {shape: [n]}} and lists longer than a shape's are
// refused as they come; an entry's fields other than dtype, shape and data_offsets are read past, unkept.
class HeaderReader final : public nlohmann::json_sax<ReadJson> {
 public:
  HeaderReader(uint64_t dataSize, const FileProblem& err) : dataSize_(dataSize), err_(err) {}

  std::vector<SafetensorsEntry> entries;  // in header order
  std::optional<TensorMetadata> metadata;

  bool null() override { return scalar(ReadJson(nullptr)); }
  bool boolean(bool value) override { return scalar(ReadJson(value)); }
  bool number_integer(number_integer_t value) override { return scalar(ReadJson(value)); }
  bool number_unsigned(number_unsigned_t value) override { return scalar(ReadJson(value)); }
  bool number_float(number_float_t value, const string_t&) override { return scalar(ReadJson(value)); }
  bool string(string_t& value) override { return scalar(ReadJson(std::move(value))); }
  bool binary(binary_t&) override { return scalar(ReadJson::binary({})); }  // the text parser makes none
  bool start_object(std::size_t) override { return open(ReadJson::object()); }
  bool start_array(std::size_t) override { return open(ReadJson::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& name) override {
    if (depth_ == 1) {
      if (!names_.insert(name).second) err_.fail("the header names '" + shownFromFile(name) + "' twice");
      if (names_.size() - names_.count("__metadata__") > kMaxTensorsPerFile)
        err_.fail("header names more than " + std::to_string(kMaxTensorsPerFile) +
                  " tensors, more than a checkpoint holds");
      name_ = name;
      field_.clear();  // the last entry's field is not this one's (an entry that is a list has none)
      entryFields_.clear();
    } else if (depth_ == 2) {
      if (inMetadata()) {
        if (!metadataKeys_.insert(name).second) err_.fail("\"__metadata__\" names '" + shownFromFile(name) + "' twice");
        if (metadataKeys_.size() > kMaxMetadataEntries)
          err_.fail("\"__metadata__\" holds more than " + std::to_string(kMaxMetadataEntries) + " entries");
      }
      field_ = name;
      // As the reference reader (serde) refuses it: a repeated field would mean one thing here and another there.
      if (!inMetadata() && keptField() && !entryFields_.insert(name).second)
        err_.fail("tensor '" + shownFromFile(name_) + "' names \"" + shownFromFile(name) + "\" twice");
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& error) override {
    err_.fail(std::string("header is not valid JSON (") + error.what() + ")");
  }

 private:
  bool inMetadata() const { return name_ == "__metadata__"; }
  bool keptField() const { return field_ == "dtype" || field_ == "shape" || field_ == "data_offsets"; }

  [[noreturn]] void notMetadata(const ReadJson& value) const {
    if (depth_ == 1) err_.fail("\"__metadata__\" must be an object of strings");
    err_.fail("\"__metadata__\".\"" + field_ + "\" must be a string, got " + describeJson(value));
  }

  bool scalar(ReadJson value) {
    if (depth_ == 0) err_.fail("header must be a JSON object");
    if (depth_ == 1) {
      if (inMetadata()) notMetadata(value);
      entries.push_back(parseEntry(name_, value, dataSize_, err_));
    } else if (inMetadata()) {
      if (!value.is_string()) notMetadata(value);
      metadata->emplace_back(field_, value.get<std::string>());
    } else if (depth_ == 2) {
      if (keptField()) entry_[field_] = std::move(value);
    } else {
      if (++listLength_ > kMaxListLength)
        err_.fail("header holds a list of more than " + std::to_string(kMaxListLength) +
                  " values; a tensor's shape has at most that many dimensions");
      if (keepList_) entry_[field_].push_back(std::move(value));
    }
    return true;
  }

  bool open(ReadJson container) {
    if (depth_ == 0 && !container.is_object()) err_.fail("header must be a JSON object");
    if (depth_ >= kMaxHeaderDepth)
      err_.fail("header nests JSON more than " + std::to_string(kMaxHeaderDepth) +
                " levels deep; a safetensors header has names, entries and their lists");
    if (depth_ == 1 && inMetadata()) {
      if (!container.is_object()) notMetadata(container);
      metadata.emplace();
    } else if (depth_ >= 2 && inMetadata()) {
      notMetadata(container);
    } else if (depth_ == 1) {
      entry_ = std::move(container);
    } else if (depth_ == 2) {
      listLength_ = 0;
      keepList_ = keptField() && container.is_array();
      if (keptField()) entry_[field_] = std::move(container);
    }
    ++depth_;
    return true;
  }

  bool close() {
    --depth_;
    if (depth_ == 1 && !inMetadata()) {
      entries.push_back(parseEntry(name_, entry_, dataSize_, err_));
      entry_ = ReadJson();
    }
    return true;
  }

  const uint64_t dataSize_;
  const FileProblem& err_;
  int depth_ = 0;  // containers open: 1 inside the header, 2 inside an entry or the metadata, 3 inside a list
  std::unordered_set<std::string> names_, metadataKeys_, entryFields_;
  std::string name_;   // the entry (or "__metadata__") being read
  std::string field_;  // the entry's field or the metadata's key being read
  ReadJson entry_;
  std::size_t listLength_ = 0;
  bool keepList_ = false;  // whether the list being read is a field parseEntry reads
};

// Every byte of the data section belongs to exactly one tensor, as the format requires.
void checkCoverage(std::vector<SafetensorsEntry> entries, uint64_t dataSize, const FileProblem& err) {
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& entry : entries) {
    if (entry.begin < cursor)
      err.fail("tensors '" + shownFromFile(previous->name) + "' and '" + shownFromFile(entry.name) +
               "' have overlapping data_offsets");
    if (entry.begin > cursor)
      err.fail("bytes " + std::to_string(cursor) + ".." + std::to_string(entry.begin) +
               " of the data section belong to no tensor (gap before '" + shownFromFile(entry.name) + "')");
    cursor = entry.end;
    previous = &entry;
  }
  if (cursor != dataSize)
    err.fail("the data section has " + std::to_string(dataSize - cursor) + " trailing bytes that belong to no tensor");
}

// A file whose first 8 bytes are no valid header length may be a checkpoint in another format: say which, and
// how to convert this very file. Pickles are never opened.
void rejectOtherFormats(const unsigned char* start, const FileProblem& err) {
  const std::string convert =
      "convert it once with `python3 -c \"import torch, safetensors.torch as s; s.save_file(torch.load('" + err.path() +
      "', map_location='cpu', weights_only=True), 'model.safetensors')\"`";
  if (start[0] == 'P' && start[1] == 'K' && start[2] == 3 && start[3] == 4)
    err.fail(
        "is a ZIP archive (a torch.save checkpoint or a NumPy .npz), not safetensors. pace-peft never unpickles; " +
        convert);
  if (start[0] == 0x80 && start[1] >= 2 && start[1] <= 5)
    err.fail("is a Python pickle (a legacy torch.save checkpoint), not safetensors. pace-peft never unpickles; " +
             convert);
}

SafetensorsHeader parseHeader(const ReadOnlyFile& file, const FileProblem& err) {
  SafetensorsHeader header;
  header.fileSize = file.size();
  if (file.size() < 8)
    err.fail("file is " + std::to_string(file.size()) +
             " bytes; a safetensors file starts with an 8-byte header length");
  unsigned char lengthBytes[8];
  file.readExactly(0, lengthBytes, 8);
  const uint64_t headerLength = readLittleEndian64(lengthBytes);
  if (headerLength > file.size() - 8) rejectOtherFormats(lengthBytes, err);
  if (headerLength > file.size() - 8)
    err.fail("header length " + std::to_string(headerLength) + " runs past the end of the file (" +
             std::to_string(file.size()) + " bytes); the file is truncated or not safetensors");
  if (headerLength > kMaxHeaderBytes)
    err.fail("header length " + std::to_string(headerLength) + " exceeds the limit of " +
             std::to_string(kMaxHeaderBytes) + " bytes");
  std::string text(static_cast<size_t>(headerLength), '\0');
  file.readExactly(8, text.data(), headerLength);
  // As the reference implementation: the JSON opens at once (no byte-order mark, no leading whitespace).
  if (text.empty() || text[0] != '{')
    err.fail("header must be a JSON object whose '{' is its first byte, as the reference implementation requires; " +
             (text.empty() ? std::string("the header is empty")
                           : "its first byte is " + std::to_string(static_cast<unsigned char>(text[0]))));

  header.dataStart = 8 + headerLength;
  const uint64_t dataSize = file.size() - header.dataStart;
  HeaderReader reader(dataSize, err);
  if (!ReadJson::sax_parse(text, &reader)) err.fail("header is not valid JSON");
  header.entries = std::move(reader.entries);
  header.metadata = std::move(reader.metadata);
  checkCoverage(header.entries, dataSize, err);
  return header;
}

}  // namespace

SafetensorsHeader readSafetensorsHeader(const std::string& path) {
  const FileProblem err(path);
  const ReadOnlyFile file(path, err);
  return parseHeader(file, err);
}

SafetensorsContents loadSafetensors(const std::string& path) {
  const FileProblem err(path);
  const ReadOnlyFile file(path, err);
  SafetensorsHeader header = parseHeader(file, err);
  SafetensorsContents contents;
  contents.metadata = std::move(header.metadata);
  contents.tensors.reserve(header.entries.size());
  for (const auto& entry : header.entries) {
    at::Tensor tensor = emptyHostTensor(entry.shape, entry.dtype);
    if (entry.end > entry.begin)
      file.readExactly(header.dataStart + entry.begin, tensor.data_ptr(), entry.end - entry.begin);
    contents.tensors.push_back({entry.name, std::move(tensor)});
  }
  return contents;
}

void saveSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                     const std::optional<TensorMetadata>& metadata) {
  const FileProblem err(path);
  std::vector<NamedTensor> ordered;
  ordered.reserve(tensors.size());
  for (const auto& named : tensors) {
    if (named.name == "__metadata__") err.failRequest("\"__metadata__\" is reserved and cannot name a tensor");
    if (!named.tensor.defined()) err.failRequest("tensor '" + named.name + "' is undefined");
    // Validates the dtype before any byte is written.
    safetensorsCode(named.tensor.scalar_type());
    ordered.push_back({named.name, named.tensor.to(at::kCPU).contiguous()});
  }
  std::sort(ordered.begin(), ordered.end(), [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  for (size_t i = 1; i < ordered.size(); ++i) {
    if (ordered[i].name == ordered[i - 1].name) err.failRequest("tensor name '" + ordered[i].name + "' appears twice");
  }

  Json header = Json::object();
  if (metadata) {
    Json meta = Json::object();
    for (const auto& [key, value] : *metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& named : ordered) {
    const uint64_t bytes = named.tensor.nbytes();
    Json info = Json::object();
    info["dtype"] = safetensorsCode(named.tensor.scalar_type());
    info["shape"] = named.tensor.sizes().vec();
    info["data_offsets"] = {offset, offset + bytes};
    header[named.name] = std::move(info);
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {
    err.fail(std::string("cannot encode the header (") + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  unsigned char lengthBytes[8];
  for (int i = 0; i < 8; ++i) lengthBytes[i] = static_cast<unsigned char>((text.size() >> (8 * i)) & 0xff);
  AtomicFileWriter writer(path);
  writer.write(lengthBytes, 8);
  writer.write(text.data(), text.size());
  for (const auto& named : ordered) writer.write(named.tensor.data_ptr(), named.tensor.nbytes());
  writer.commit();
}

}  // namespace pace
