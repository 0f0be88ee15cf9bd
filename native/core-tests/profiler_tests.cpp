// The profiler (system/profiler.h): a trace naming the profiled work's operators, through Kineto or (Debian's
// libtorch) the legacy profiler, and a clear refusal, before the work runs, of what neither can record.
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
  // Kineto writes {"traceEvents": [...]}, the legacy profiler the bare array of events.
  const bool chrome = text.str().find("\"traceEvents\"") != std::string::npos || text.str().rfind("[", 0) == 0;
  check(chrome, "a Chrome trace was written");
  check(text.str().find("aten::mm") != std::string::npos || text.str().find("aten::matmul") != std::string::npos,
        "the trace names the profiled operator");
  std::filesystem::remove(path);
}

// Without Kineto nothing records a GPU's kernels: a CUDA step is refused before it runs, not traced in part.
void gpuWorkWithoutKinetoIsRefusedBeforeItRuns() {
  const std::string path = (std::filesystem::temp_directory_path() / "pace-profiler-gpu-test.json").string();
  bool ran = false;
  try {
    profileToTrace(path, /*cuda=*/true, [&] { ran = true; });
  } catch (const UnsupportedError& error) {
    check(std::string(error.what()).find("GPU work") != std::string::npos, "the refusal names GPU work");
    check(!ran, "the work ran although no trace could be recorded");
    check(!std::filesystem::exists(path) && !std::filesystem::exists(path + ".partial"),
          "a refused profile left a file");
    return;
  }
  std::filesystem::remove(path);
  throw Skip{"this libtorch records GPU work through Kineto"};
}

}  // namespace

TestList profilerTests() {
  return {
      {"a profiled run's trace names its operators (or is refused before it runs)", traceNamesTheWorkOrRefusesBeforeIt},
      {"without Kineto a profile of GPU work is refused before it runs", gpuWorkWithoutKinetoIsRefusedBeforeItRuns}};
}

}  // namespace pace::tests
