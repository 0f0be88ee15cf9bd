#include "io/npz.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

#include "errors.h"
#include "io/file_limits.h"
#include "io/regular_file.h"
#include "tensor/dtype.h"
#include "tensor/host_memory.h"
#include "text.h"

namespace pace {

namespace {

constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndLocator = 0x07064b50;
constexpr uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint64_t kMaxNpyHeaderBytes = 64 * 1024;

class Bytes {
 public:
  Bytes(const std::string& data, std::string context) : data_(data), context_(std::move(context)) {}

  [[noreturn]] void fail(const std::string& problem) const { throw FileError(context_ + ": " + problem); }

  void need(uint64_t offset, uint64_t count) const {
    if (offset > data_.size() || count > data_.size() - offset) fail("truncated or corrupt (read past the end)");
  }
  uint16_t u16(uint64_t offset) const {
    need(offset, 2);
    return static_cast<uint16_t>(byte(offset) | byte(offset + 1) << 8);
  }
  uint32_t u32(uint64_t offset) const {
    need(offset, 4);
    return static_cast<uint32_t>(u16(offset)) | static_cast<uint32_t>(u16(offset + 2)) << 16;
  }
  uint64_t u64(uint64_t offset) const {
    return static_cast<uint64_t>(u32(offset)) | static_cast<uint64_t>(u32(offset + 4)) << 32;
  }
  std::string text(uint64_t offset, uint64_t count) const {
    need(offset, count);
    return data_.substr(offset, count);
  }
  const char* at(uint64_t offset, uint64_t count) const {
    need(offset, count);
    return data_.data() + offset;
  }
  uint64_t size() const { return data_.size(); }

 private:
  unsigned byte(uint64_t offset) const { return static_cast<unsigned char>(data_[offset]); }
  const std::string& data_;
  std::string context_;
};

struct ZipEntry {
  std::string name;
  uint16_t method = 0;
  uint32_t crc32 = 0;  // of the uncompressed bytes, from the central directory (a local header may defer it)
  uint64_t compressedSize = 0;
  uint64_t uncompressedSize = 0;
  uint64_t localHeaderOffset = 0;
};

// Sizes and offsets that do not fit 32 bits live in the zip64 "extended information" extra field.
void applyZip64Extra(const Bytes& bytes, uint64_t extra, uint16_t extraLength, ZipEntry& entry) {
  uint64_t cursor = extra;
  while (cursor + 4 <= extra + extraLength) {
    const uint16_t id = bytes.u16(cursor), size = bytes.u16(cursor + 2);
    uint64_t field = cursor + 4;
    if (id == 0x0001) {
      if (entry.uncompressedSize == 0xffffffff) entry.uncompressedSize = bytes.u64(field), field += 8;
      if (entry.compressedSize == 0xffffffff) entry.compressedSize = bytes.u64(field), field += 8;
      if (entry.localHeaderOffset == 0xffffffff) entry.localHeaderOffset = bytes.u64(field);
      return;
    }
    cursor += 4 + size;
  }
}

std::vector<ZipEntry> readCentralDirectory(const Bytes& bytes) {
  if (bytes.size() < 22) bytes.fail("is not a zip archive (too short)");
  uint64_t end = bytes.size() - 22;
  const uint64_t searchLimit = bytes.size() > 22 + 65535 ? bytes.size() - 22 - 65535 : 0;
  while (bytes.u32(end) != kEndOfCentralDirectory) {
    if (end == searchLimit) bytes.fail("is not a zip archive (no end-of-central-directory record)");
    --end;
  }
  uint64_t count = bytes.u16(end + 10);
  uint64_t directoryOffset = bytes.u32(end + 16);
  if (end >= 20 && bytes.u32(end - 20) == kZip64EndLocator) {
    const uint64_t zip64End = bytes.u64(end - 20 + 8);
    if (bytes.u32(zip64End) != kZip64EndOfCentralDirectory) bytes.fail("corrupt zip64 end record");
    count = bytes.u64(zip64End + 32);
    directoryOffset = bytes.u64(zip64End + 48);
  }
  // Each record takes at least 46 bytes; past the cap (safetensors' too) the directory is refused before it is
  // read, not after a vector of millions of entries has been built from a crafted file.
  if (count > kMaxTensorsPerFile)
    bytes.fail("its directory lists " + std::to_string(count) + " entries, more than the " +
               std::to_string(kMaxTensorsPerFile) + " arrays a weights file may hold");
  if (count * 46 > bytes.size()) bytes.fail("corrupt central directory (more entries than the file can hold)");
  std::vector<ZipEntry> entries;
  uint64_t cursor = directoryOffset;
  for (uint64_t i = 0; i < count; ++i) {
    if (bytes.u32(cursor) != kCentralHeader) bytes.fail("corrupt central directory");
    ZipEntry entry;
    entry.method = bytes.u16(cursor + 10);
    entry.crc32 = bytes.u32(cursor + 16);
    entry.compressedSize = bytes.u32(cursor + 20);
    entry.uncompressedSize = bytes.u32(cursor + 24);
    const uint16_t nameLength = bytes.u16(cursor + 28), extraLength = bytes.u16(cursor + 30),
                   commentLength = bytes.u16(cursor + 32);
    entry.localHeaderOffset = bytes.u32(cursor + 42);
    entry.name = bytes.text(cursor + 46, nameLength);
    applyZip64Extra(bytes, cursor + 46 + nameLength, extraLength, entry);
    entries.push_back(entry);
    cursor += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// An entry's array name: its file name less ".npy".
std::string arrayName(std::string name) {
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
  return name;
}

// Where an entry's compressed data starts: after its local header, name and extra field.
uint64_t dataStartOf(const Bytes& bytes, const ZipEntry& entry) {
  const uint64_t local = entry.localHeaderOffset;
  return local + 30 + bytes.u16(local + 26) + bytes.u16(local + 28);
}

// Every entry's name used once and its bytes (local header and data) apart from every other's: entries sharing
// data would each inflate it again, so a file of kilobytes could decode to gigabytes.
void checkEntriesApart(const Bytes& bytes, const std::vector<ZipEntry>& entries) {
  std::set<std::string> names;
  for (const auto& entry : entries) {
    if (!names.insert(arrayName(entry.name)).second)
      bytes.fail("names the array '" + shownFromFile(arrayName(entry.name)) + "' twice");
  }
  std::vector<const ZipEntry*> byOffset;
  byOffset.reserve(entries.size());
  for (const auto& entry : entries) byOffset.push_back(&entry);
  std::stable_sort(byOffset.begin(), byOffset.end(),
                   [](const ZipEntry* a, const ZipEntry* b) { return a->localHeaderOffset < b->localHeaderOffset; });
  uint64_t previousEnd = 0;
  const ZipEntry* previous = nullptr;
  for (const ZipEntry* next : byOffset) {
    const ZipEntry& entry = *next;
    if (previous && entry.localHeaderOffset < previousEnd)
      bytes.fail("entries '" + shownFromFile(previous->name) + "' and '" + shownFromFile(entry.name) +
                 "' overlap (a zip's entries share no bytes)");
    uint64_t end = 0;
    if (__builtin_add_overflow(dataStartOf(bytes, entry), entry.compressedSize, &end) || end > bytes.size())
      bytes.fail("entry '" + shownFromFile(entry.name) + "' runs past the end of the file");
    previousEnd = end;
    previous = &entry;
  }
}

// Each entry inflates to no more than its size claims, and its bytes to no more than deflate's 1032:1; all of them
// together, to no more than 64 times their bytes and 64 MiB: weights hardly compress (a ViT's deflate to 93 %),
// and a few kilobytes of a crafted file inflating to gigabytes is a zip bomb, refused before anything inflates.
void checkTotalExpansion(const Bytes& bytes, const std::vector<ZipEntry>& entries) {
  constexpr uint64_t kRatio = 64, kSlack = uint64_t{64} << 20;
  uint64_t compressed = 0, uncompressed = 0;
  for (const auto& entry : entries) {
    compressed += entry.compressedSize;  // the entries lie apart within the file: no overflow
    if (__builtin_add_overflow(uncompressed, entry.uncompressedSize, &uncompressed)) uncompressed = UINT64_MAX;
  }
  if (uncompressed > compressed * kRatio + kSlack)
    bytes.fail("its arrays would inflate to " + std::to_string(uncompressed) + " bytes from " +
               std::to_string(compressed) + ": more than 64 times as many (and 64 MiB) as NumPy's weights ever " +
               "take; is it a zip bomb?");
}

// The entry's bytes against its CRC-32, as NumPy's zipfile checks them: a flipped bit in a stored array (whose
// values would still parse) or in deflated data (which may still inflate) is refused.
std::string checked(std::string data, const ZipEntry& entry, const std::string& where) {
  const uint32_t actual = static_cast<uint32_t>(
      crc32_z(crc32_z(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data.data()), static_cast<z_size_t>(data.size())));
  if (actual != entry.crc32) {
    char text[64];
    std::snprintf(text, sizeof text, "%08x, its bytes give %08x", entry.crc32, actual);
    throw FileError(where + ": damaged: the zip records CRC-32 " + text);
  }
  return data;
}

std::string extract(const Bytes& bytes, const ZipEntry& entry, const std::string& where) {
  if (bytes.u32(entry.localHeaderOffset) != kLocalHeader) throw FileError(where + ": corrupt local header");
  const uint64_t dataStart = dataStartOf(bytes, entry);
  const char* compressed = bytes.at(dataStart, entry.compressedSize);
  if (entry.method == 0) {
    if (entry.compressedSize != entry.uncompressedSize)
      throw FileError(where + ": stored entry with inconsistent sizes");
    return checked(std::string(compressed, entry.compressedSize), entry, where);
  }
  if (entry.method != 8)
    throw FileError(where + ": unsupported zip compression method " + std::to_string(entry.method));
  // Inflate in chunks: memory grows only as real data comes out, never to a size a header merely claims. The
  // reservation ahead of it is at most what the entry's bytes can inflate to (deflate packs at most 1032:1).
  constexpr uint64_t kMaxDeflateRatio = 1032;
  const uint64_t canInflateTo = entry.compressedSize * kMaxDeflateRatio + sizeof(uint64_t);
  std::string out;
  out.reserve(static_cast<size_t>(std::min({entry.uncompressedSize, canInflateTo, uint64_t{64} << 20})));
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) throw FileError(where + ": cannot start inflating");
  uint64_t consumed = 0;
  int status = Z_OK;
  char chunk[1 << 16];
  while (status != Z_STREAM_END) {
    if (stream.avail_in == 0 && consumed < entry.compressedSize) {
      const uint64_t take = std::min<uint64_t>(entry.compressedSize - consumed, 1u << 30);
      stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed + consumed));
      stream.avail_in = static_cast<uInt>(take);
      consumed += take;
    }
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof(chunk);
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) break;
    out.append(chunk, sizeof(chunk) - stream.avail_out);
    if (out.size() > entry.uncompressedSize) break;
    if (status == Z_OK && stream.avail_in == 0 && consumed == entry.compressedSize && stream.avail_out != 0) break;
  }
  inflateEnd(&stream);
  if (status != Z_STREAM_END || out.size() != entry.uncompressedSize) throw FileError(where + ": corrupt deflate data");
  return checked(std::move(out), entry, where);
}

struct NpyDtype {
  const char* descr;
  at::ScalarType type;
};

at::Tensor parseNpy(const std::string& npy, const std::string& where) {
  const Bytes bytes(npy, where);
  if (npy.size() < 10 || npy.compare(0, 6, "\x93NUMPY") != 0) bytes.fail("is not a .npy array (bad magic)");
  const unsigned major = static_cast<unsigned char>(npy[6]);
  uint64_t headerLength = 0, headerStart = 0;
  if (major == 1) {
    headerLength = bytes.u16(8), headerStart = 10;
  } else if (major == 2 || major == 3) {
    headerLength = bytes.u32(8), headerStart = 12;
  } else {
    bytes.fail(".npy format version " + std::to_string(major) + " is not supported");
  }
  // numpy writes headers of a few hundred bytes; the bound keeps a hostile one from costing anything.
  if (headerLength > kMaxNpyHeaderBytes)
    bytes.fail("the .npy header claims " + std::to_string(headerLength) + " bytes");
  const std::string header = bytes.text(headerStart, headerLength);
  const auto field = [&](const char* key) -> std::string {
    const std::string quoted = std::string("'") + key + "'";
    const auto at = header.find(quoted);
    if (at == std::string::npos) bytes.fail("malformed .npy header (no " + quoted + "): " + shownFromFile(header));
    auto colon = header.find(':', at + quoted.size());
    if (colon == std::string::npos) bytes.fail("malformed .npy header: " + shownFromFile(header));
    ++colon;
    while (colon < header.size() && header[colon] == ' ') ++colon;
    return header.substr(colon);
  };
  const std::string descrText = field("descr");
  const auto descrEnd = descrText.find('\'', 1);
  if (descrText.empty() || descrText[0] != '\'' || descrEnd == std::string::npos)
    bytes.fail("malformed .npy header ('descr'): " + shownFromFile(header));
  const std::string code = descrText.substr(1, descrEnd - 1);
  const std::string orderText = field("fortran_order");
  if (orderText.rfind("True", 0) != 0 && orderText.rfind("False", 0) != 0)
    bytes.fail("malformed .npy header ('fortran_order'): " + shownFromFile(header));
  const bool fortran = orderText.rfind("True", 0) == 0;
  const std::string shapeText = field("shape");
  const auto shapeEnd = shapeText.find(')');
  if (shapeText.empty() || shapeText[0] != '(' || shapeEnd == std::string::npos)
    bytes.fail("malformed .npy header ('shape'): " + shownFromFile(header));
  const std::string dims = shapeText.substr(1, shapeEnd - 1);

  static const NpyDtype dtypes[] = {{"<f4", at::kFloat}, {"<f8", at::kDouble}, {"<f2", at::kHalf},
                                    {"<i8", at::kLong},  {"<i4", at::kInt},    {"<i2", at::kShort},
                                    {"|i1", at::kChar},  {"|u1", at::kByte},   {"|b1", at::kBool}};
  std::optional<at::ScalarType> type;
  for (const auto& candidate : dtypes) {
    if (code == candidate.descr) type = candidate.type;
  }
  if (!type) {
    if (code.find('O') != std::string::npos) bytes.fail("holds Python objects (a pickle); refused");
    bytes.fail("unsupported dtype '" + shownFromFile(code) + "'");
  }

  std::vector<int64_t> shape;
  // The product of the dimensions other than 0, as libtorch multiplies them for the strides even when one is 0.
  uint64_t nonZeroProduct = 1;
  bool empty = false;
  for (size_t i = 0; i < dims.size();) {
    if (dims[i] == ' ' || dims[i] == ',') {
      ++i;
      continue;
    }
    if (dims[i] < '0' || dims[i] > '9') bytes.fail("malformed shape (" + shownFromFile(dims) + ")");
    uint64_t dim = 0;
    for (; i < dims.size() && dims[i] >= '0' && dims[i] <= '9'; ++i) {
      dim = dim * 10 + static_cast<uint64_t>(dims[i] - '0');
      if (dim > (1ull << 40)) bytes.fail("absurd shape (" + shownFromFile(dims) + ")");
    }
    empty = empty || dim == 0;
    if (dim != 0 && (__builtin_mul_overflow(nonZeroProduct, dim, &nonZeroProduct) ||
                     nonZeroProduct > static_cast<uint64_t>(INT64_MAX)))
      bytes.fail("absurd shape (" + shownFromFile(dims) + ")");
    shape.push_back(static_cast<int64_t>(dim));
  }
  const uint64_t numel = empty ? 0 : nonZeroProduct;
  const uint64_t dataStart = headerStart + headerLength;
  uint64_t expected = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(c10::elementSize(*type)), &expected))
    bytes.fail("absurd shape (" + shownFromFile(dims) + ")");
  if (npy.size() - std::min<uint64_t>(npy.size(), dataStart) != expected)
    bytes.fail("shape (" + shownFromFile(dims) + ") of " + code + " needs " + std::to_string(expected) +
               " bytes, the entry has " + std::to_string(npy.size() - std::min<uint64_t>(npy.size(), dataStart)));

  std::vector<int64_t> stored(shape);
  if (fortran) std::reverse(stored.begin(), stored.end());
  at::Tensor tensor = emptyHostTensor(stored, *type);
  if (expected > 0) std::memcpy(tensor.data_ptr(), npy.data() + dataStart, expected);
  if (fortran && tensor.dim() > 1) {
    std::vector<int64_t> reverse(tensor.dim());
    for (int64_t i = 0; i < tensor.dim(); ++i) reverse[i] = tensor.dim() - 1 - i;
    tensor = tensor.permute(reverse).contiguous();
  }
  return tensor;
}

}  // namespace

std::vector<NamedTensor> loadNpz(const std::string& path) {
  const std::string data =
      readRegularFile(path, [&path](const std::string& problem) { return "npz file '" + path + "': " + problem; });
  const Bytes bytes(data, "npz file '" + path + "'");
  std::vector<NamedTensor> arrays;
  const std::vector<ZipEntry> entries = readCentralDirectory(bytes);
  checkEntriesApart(bytes, entries);
  checkTotalExpansion(bytes, entries);
  for (const auto& entry : entries) {
    const std::string where = "npz file '" + path + "': entry '" + shownFromFile(entry.name) + "'";
    arrays.push_back({arrayName(entry.name), parseNpy(extract(bytes, entry, where), where)});
  }
  return arrays;
}

}  // namespace pace
