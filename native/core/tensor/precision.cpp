#include "tensor/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <condition_variable>
#include <mutex>
#include <utility>

#include "errors.h"
#include "tensor/cpu_bf16.h"

// libtorch 2.4 gave autocast one set of functions taking the device type; 1.13 has one set per device.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define PACE_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace pace {

namespace {

bool autocastEnabled(c10::DeviceType device) {
#ifdef PACE_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device);
#else
  if (device == c10::DeviceType::CUDA) return at::autocast::is_enabled();
  if (device == c10::DeviceType::CPU) return at::autocast::is_cpu_enabled();
  return false;
#endif
}

void setAutocastEnabled(c10::DeviceType device, bool enabled) {
#ifdef PACE_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == c10::DeviceType::CUDA) at::autocast::set_enabled(enabled);
  if (device == c10::DeviceType::CPU) at::autocast::set_cpu_enabled(enabled);
#endif
}

at::ScalarType autocastTarget(c10::DeviceType device) {
#ifdef PACE_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                         : at::autocast::get_autocast_cpu_dtype();
#endif
}

void setAutocastTarget(c10::DeviceType device, at::ScalarType dtype) {
#ifdef PACE_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  if (device == c10::DeviceType::CPU) at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

// TF32 is a switch of the whole process (libtorch's global context), not of a thread: while scopes of one setting
// run, a scope of the other waits for them to end, so that jobs on different models (an fp32 server's forward, a
// tf32 fit) overlap only when they want the same arithmetic. Once one of the other setting waits, no more join the
// running ones, so neither starves. A thread's nested scopes pass without waiting.
class Tf32Gate {
 public:
  void enter(bool tf32) {
    if (depth_++ > 0) return setTf32(tf32);  // nested: none in the core; sets it as asked, as before the gate
    std::unique_lock<std::mutex> lock(mutex_);
    ++waiting_[tf32];
    changed_.wait(lock, [&] { return holders_ == 0 || (on_ == tf32 && waiting_[!tf32] == 0); });
    --waiting_[tf32];
    if (holders_++ == 0) {
      resting_ = {at::globalContext().allowTF32CuBLAS(), at::globalContext().allowTF32CuDNN()};
      on_ = tf32;
      setTf32(tf32);
    }
  }

  void leave() {
    if (--depth_ > 0) return setTf32(on_);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--holders_ == 0) {
      at::globalContext().setAllowTF32CuBLAS(resting_.first);
      at::globalContext().setAllowTF32CuDNN(resting_.second);
    }
    changed_.notify_all();
  }

 private:
  static void setTf32(bool tf32) {
    at::globalContext().setAllowTF32CuBLAS(tf32);
    at::globalContext().setAllowTF32CuDNN(tf32);
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  int holders_ = 0;
  int waiting_[2] = {0, 0};
  bool on_ = false;
  std::pair<bool, bool> resting_{false, false};  // the settings before the first holder, put back after the last
  static thread_local int depth_;
};

thread_local int Tf32Gate::depth_ = 0;

Tf32Gate& tf32Gate() {
  static Tf32Gate gate;
  return gate;
}

}  // namespace

Precision precisionFromName(const std::string& name) {
  if (name == "fp32") return Precision::Fp32;
  if (name == "tf32") return Precision::Tf32;
  if (name == "bf16") return Precision::Bf16;
  throw OptionError("precision must be 'fp32', 'tf32' or 'bf16'; got '" + name + "'");
}

PrecisionScope::PrecisionScope(Precision precision, c10::DeviceType device) : device_(device) {
  if (precision == Precision::Bf16 && device == c10::DeviceType::CPU) requireCpuBf16ProductsSumInFloat();
  if (precision == Precision::Bf16 && device != c10::DeviceType::CUDA && device != c10::DeviceType::CPU)
    throw UnsupportedError("precision 'bf16' runs on CUDA or the CPU");
  tf32Gate().enter(precision == Precision::Tf32);
  if (precision == Precision::Bf16) {
    previousAutocast_ = autocastEnabled(device);
    previousAutocastDtype_ = autocastTarget(device);
    setAutocastTarget(device, at::kBFloat16);
    setAutocastEnabled(device, true);
    at::autocast::increment_nesting();
    autocastSet_ = true;
  }
}

PrecisionScope::~PrecisionScope() {
  if (autocastSet_) {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    setAutocastEnabled(device_, previousAutocast_);
    setAutocastTarget(device_, previousAutocastDtype_);
  }
  tf32Gate().leave();
}

std::optional<at::ScalarType> autocastDtype(c10::DeviceType device) {
  if (!autocastEnabled(device)) return std::nullopt;
  return autocastTarget(device);
}

AutocastOff::AutocastOff(c10::DeviceType device) : device_(device), previous_(autocastEnabled(device)) {
  if (previous_) setAutocastEnabled(device, false);
}

AutocastOff::~AutocastOff() {
  if (previous_) setAutocastEnabled(device_, true);
}

}  // namespace pace
