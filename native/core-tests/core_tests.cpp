// Tests of the core alone (no Node): run by `npm test` through test/native/core.test.ts, or directly as
// build/Release/pace_core_tests. Prints a line per test ("ok", "FAIL" or "skip" with the reason), then
// "core: N passed, M failed, K skipped", and exits non-zero on any failure.
#include <ATen/ATen.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "crash_report.h"
#include "errors.h"
#include "io/safetensors.h"
#include "system/threads.h"
#include "tensor/cpu_cache.h"
#include "tensor/dtype.h"
#include "tensor/host_memory.h"

namespace {

using pace::tests::check;
using pace::tests::Failure;

// The test running now, for the crash report (crash_report.h).
const char* runningTest = "(before the first test)";

// One private folder for the whole run, removed when the process exits (a run must not leave files behind).
class ScratchFolder {
 public:
  ScratchFolder() {
    const char* base = std::getenv("TMPDIR");
    // The process id in the name lets a caller find this run's folder among other runs' on a shared machine.
    std::string pattern =
        std::string(base && *base ? base : "/tmp") + "/pace-core-tests-" + std::to_string(getpid()) + "-XXXXXX";
    if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot make a scratch folder from " + pattern);
    path_ = pattern;
  }
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string tempDir() {
  static const ScratchFolder folder;
  return folder.path();
}

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string safetensorsBytes(const std::string& header, size_t dataBytes) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes + header + std::string(dataBytes, '\x01');
}

void expectError(const std::string& name, const std::string& bytes, const std::string& expected) {
  const std::string path = tempDir() + "/" + name + ".safetensors";
  writeBytes(path, bytes);
  try {
    pace::loadSafetensors(path);
  } catch (const pace::Error& error) {
    const std::string message = error.what();
    check(message.find(path) != std::string::npos, name + ": message does not name the file: " + message);
    check(message.find(expected) != std::string::npos, name + ": expected '" + expected + "' in: " + message);
    return;
  }
  throw Failure{name + ": no error raised"};
}

void roundTripKeepsValuesDtypesAndMetadata() {
  const std::string path = tempDir() + "/roundtrip.safetensors";
  std::vector<pace::NamedTensor> tensors = {
      {"b.weight", at::randn({3, 4})},
      {"a.ids", at::arange(5, at::kLong)},
      {"c.half", at::randn({2, 2}).to(at::kHalf)},
      {"d.bf16", at::randn({7}).to(at::kBFloat16)},
      {"e.transposed", at::randn({4, 3}).t()},  // non-contiguous: written in row-major order of its view
      {"f.bytes", at::randint(0, 255, {6}, at::kByte)},
      {"g.flags", at::randn({5}) > 0},
      {"h.empty", at::empty({0, 3})},
      {"i.scalar", at::scalar_tensor(2.5)},
  };
  const pace::TensorMetadata metadata = {{"format", "pt"}, {"adapter", "{\"rank\":4}"}, {"ünïcode", "✓"}};
  pace::saveSafetensors(path, tensors, metadata);
  const auto loaded = pace::loadSafetensors(path);
  check(loaded.metadata.has_value() && *loaded.metadata == metadata, "metadata differs after a round trip");
  check(loaded.tensors.size() == tensors.size(), "tensor count differs");
  for (size_t i = 0; i + 1 < loaded.tensors.size(); ++i) {
    check(loaded.tensors[i].name < loaded.tensors[i + 1].name, "tensors are not stored in name order");
  }
  for (const auto& original : tensors) {
    const auto found = std::find_if(loaded.tensors.begin(), loaded.tensors.end(),
                                    [&](const pace::NamedTensor& t) { return t.name == original.name; });
    check(found != loaded.tensors.end(), original.name + " missing");
    check(found->tensor.scalar_type() == original.tensor.scalar_type(), original.name + ": dtype differs");
    check(found->tensor.sizes() == original.tensor.sizes(), original.name + ": shape differs");
    check(at::equal(found->tensor, original.tensor), original.name + ": values differ");
  }
  const auto header = pace::readSafetensorsHeader(path);
  check(header.dataStart % 8 == 0, "header is not padded to a multiple of 8 bytes");
}

void rejectsMalformedFiles() {
  const std::string good = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expectError("short", std::string(5, '\0'), "8-byte header length");
  std::string pastEnd = safetensorsBytes(good, 8);
  pastEnd[0] = static_cast<char>(0xff);
  pastEnd[3] = static_cast<char>(0x7f);
  expectError("past-end", pastEnd, "runs past the end of the file");
  expectError("bad-json", safetensorsBytes(R"({"x":{"dtype":"F32",)", 8), "not valid JSON");
  expectError("not-object", safetensorsBytes("[1,2]", 0), "must be a JSON object");
  expectError("unknown-dtype", safetensorsBytes(R"({"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8),
              "unknown dtype \"F33\"");
  expectError("shape-mismatch", safetensorsBytes(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
              "needs 12 bytes but data_offsets span 8");
  expectError("negative-dim", safetensorsBytes(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
              "shape[0] must be a non-negative integer");
  expectError("out-of-range", safetensorsBytes(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
              "run past the end of the data section");
  expectError(
      "overlap",
      safetensorsBytes(
          R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
          12),
      "overlapping data_offsets");
  expectError("overflow",
              safetensorsBytes(R"({"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
              "more elements than a tensor can count");
  expectError("bytes-overflow",
              safetensorsBytes(R"({"x":{"dtype":"F64","shape":[2147483648,2147483648],"data_offsets":[0,8]}})", 8),
              "more than 2^64 bytes");
  expectError(
      "twice",
      safetensorsBytes(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "names 'a' twice");
  expectError("metadata", safetensorsBytes(R"({"__metadata__":{"k":1}})", 0), "must be a string");
}

void failedWriteLeavesNoFile() {
  const std::string path = tempDir() + "/never.safetensors";
  try {
    pace::saveSafetensors(path, {{"__metadata__", at::zeros({1})}}, std::nullopt);
    throw Failure{"reserved name accepted"};
  } catch (const pace::Error&) {
  }
  check(access(path.c_str(), F_OK) != 0, "a failed save left a file behind");
}

void hostTensorsAreAlignedAndWritable() {
  for (int64_t n : {0, 1, 3, 16384, 100003}) {
    at::Tensor t = pace::emptyHostTensor({n}, at::kFloat);
    check(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64 == 0, "host tensor memory is not 64-byte aligned");
    t.fill_(2.0);
    check(t.sum().item<double>() == 2.0 * static_cast<double>(n), "host tensor does not hold what was written");
  }
}

void dtypeTableIsConsistent() {
  for (const auto& info : pace::supportedDtypes()) {
    check(pace::dtypeFromName(info.name) == info.scalarType, std::string("name lookup of ") + info.name);
    check(pace::dtypeFromSafetensorsCode(info.safetensorsCode) == info.scalarType,
          std::string("code lookup of ") + info.safetensorsCode);
  }
}

}  // namespace

int main() {
  std::cout << std::unitbuf;  // each line reaches the log before whatever comes next
  pace::tests::installCrashReport(&runningTest);
  pace::installCpuCache();  // as the addon does: the fused-linear tests then run on it too
  pace::applyThreads();     // every CPU, as the addon: the parallel paths (rows, heads) are what gets tested
  pace::tests::TestList tests = {
      {"round trip keeps values, dtypes and metadata", roundTripKeepsValuesDtypesAndMetadata},
      {"malformed files are rejected with the file and the problem named", rejectsMalformedFiles},
      {"a failed write leaves no file", failedWriteLeavesNoFile},
      {"the dtype table is consistent", dtypeTableIsConsistent},
      {"host tensors are 64-byte aligned and writable", hostTensorsAreAlignedAndWritable},
  };
  for (auto& test : pace::tests::paceLinearTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::cpuAttentionTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::paceLinearCudaTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::paceEpilogueTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::paceEpilogueCudaTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::layerNormTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::layerNormCudaTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::fusedAdamWTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::augmentTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::dropPathTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::profilerTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::checkpointResamplingTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::precisionTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::devicesTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::windowOrderTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::stepGraphsTests()) tests.push_back(std::move(test));
  for (auto& test : pace::tests::backendChoiceTests()) tests.push_back(std::move(test));
  int passed = 0;
  int failed = 0;
  int skipped = 0;
  for (const auto& [name, body] : tests) {
    runningTest = name;
    try {
      body();
      ++passed;
      std::cout << "ok   " << name << "\n";
    } catch (const pace::tests::Skip& skip) {
      ++skipped;
      std::cout << "skip " << name << ": " << skip.reason << "\n";
    } catch (const Failure& failure) {
      ++failed;
      std::cout << "FAIL " << name << ": " << failure.message << "\n";
    } catch (const std::exception& error) {
      ++failed;
      std::cout << "FAIL " << name << ": unexpected exception: " << error.what() << "\n";
    }
  }
  runningTest = "(none: after the last test, in the process's exit)";
  std::cout << "core: " << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed == 0 ? 0 : 1;
}
