// The profiler (system/profiler.h): a trace naming the profiled work's operators where libtorch records traces,
// and a clear refusal, before the work runs, where it cannot (Debian's libtorch has no Kineto).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "check.h"
#include "errors.h"
#include "system/profiler.h"

namespace pace::tests {
namespace {

void traceNamesTheWorkOrRefusesBeforeIt() {
  const std::string path = (std::filesystem::temp_directory_path() / "pace-profiler-test.json").string();
  std::filesystem::remove(path);
  bool ran = false;
  try {
    profileToTrace(path, /*cuda=*/false, [&] {
      ran = true;
      at::matmul(at::ones({8, 8}), at::ones({8, 8}));
    });
  } catch (const UnsupportedError& error) {
    check(!ran, "the work ran although no trace could be recorded");
    check(std::string(error.what()).find("Kineto") != std::string::npos, "the refusal names Kineto");
    check(!std::filesystem::exists(path), "a refused profile left a file");
    throw Skip{"this libtorch records no traces: " + std::string(error.what())};
  }
  check(ran, "the work ran");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  check(text.str().find("\"traceEvents\"") != std::string::npos, "a Chrome trace was written");
  check(text.str().find("aten::mm") != std::string::npos || text.str().find("aten::matmul") != std::string::npos,
        "the trace names the profiled operator");
  std::filesystem::remove(path);
}

}  // namespace

TestList profilerTests() {
  return {{"a profiled run's trace names its operators (or is refused before it runs)",
           traceNamesTheWorkOrRefusesBeforeIt}};
}

}  // namespace pace::tests
