// Precision scopes (tensor/precision.h): TF32 is one switch for the process, so scopes on other threads wanting
// the other setting wait, and those wanting the same one run together.
#include <atomic>
#include <chrono>
#include <thread>

#include "check.h"
#include "tensor/precision.h"

namespace pace::tests {
namespace {

bool tf32On() { return at::globalContext().allowTF32CuBLAS() && at::globalContext().allowTF32CuDNN(); }

void pause() { std::this_thread::sleep_for(std::chrono::milliseconds(150)); }

void aScopeOfTheOtherTf32SettingWaits() {
  std::atomic<bool> entered{false}, sawTf32{true};
  std::thread other;
  {
    const PrecisionScope tf32(Precision::Tf32, c10::DeviceType::CPU);
    check(tf32On(), "a tf32 scope did not turn TF32 on");
    other = std::thread([&] {
      const PrecisionScope fp32(Precision::Fp32, c10::DeviceType::CPU);
      entered = true;
      sawTf32 = tf32On();
    });
    pause();
    check(!entered, "an fp32 scope on another thread ran while a tf32 scope ran");
    check(tf32On(), "an fp32 scope on another thread turned TF32 off under a running tf32 scope");
  }
  other.join();
  check(entered && !sawTf32, "the waiting fp32 scope did not run with TF32 off once the tf32 scope ended");
  check(!tf32On(), "TF32 is not back off after the scopes");
}

void scopesOfTheSameSettingRunTogether() {
  std::atomic<bool> entered{false}, release{false};
  const PrecisionScope fp32(Precision::Fp32, c10::DeviceType::CPU);
  std::thread other([&] {
    const PrecisionScope alsoFp32(Precision::Fp32, c10::DeviceType::CPU);
    entered = true;
    while (!release) std::this_thread::yield();
  });
  for (int i = 0; i < 200 && !entered; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  release = true;
  other.join();
  check(entered, "an fp32 scope on another thread waited for a running fp32 scope");
  {
    const PrecisionScope nested(Precision::Fp32, c10::DeviceType::CPU);  // the same thread: passes
    check(!tf32On(), "a nested fp32 scope turned TF32 on");
  }
}

}  // namespace

TestList precisionTests() {
  return {
      {"a precision scope wanting the other TF32 setting waits for the running ones", aScopeOfTheOtherTf32SettingWaits},
      {"precision scopes of one TF32 setting run together on several threads", scopesOfTheSameSettingRunTogether},
  };
}

}  // namespace pace::tests
