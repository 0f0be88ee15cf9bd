#pragma once
// What the core test suites share: a failing check throws, main() (core_tests.cpp) counts and reports.
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pace::tests {

struct Failure {
  std::string message;
};

inline void check(bool condition, const std::string& message) {
  if (!condition) throw Failure{message};
}

using TestList = std::vector<std::pair<const char*, std::function<void()>>>;

TestList paceLinearTests();      // pace_linear_tests.cpp
TestList paceLinearCudaTests();  // pace_linear_tests.cpp: empty without a visible GPU
TestList fusedAdamWTests();      // adamw_tests.cpp: empty without a GPU and libtorch >= 2.1

}  // namespace pace::tests
