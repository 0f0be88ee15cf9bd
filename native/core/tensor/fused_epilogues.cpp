#include "tensor/fused_epilogues.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace pace {

namespace {

bool fromEnvironment() {
  const char* value = std::getenv("PACE_FUSED_EPILOGUES");
  return value == nullptr || std::strcmp(value, "0") != 0;
}

std::atomic<bool> fused{fromEnvironment()};

}  // namespace

void setFusedEpilogues(bool on) { fused.store(on); }
bool fusedEpilogues() { return fused.load(); }

}  // namespace pace
