#pragma once
// bfloat16 storage for the CPU loops, laid out as c10::BFloat16 and __nv_bfloat16 (the top 16 bits of a float32),
// converting the way they do: exact widening, narrowing rounded to nearest even, NaN kept NaN.
#include <cstdint>
#include <cstring>

namespace pace::kernels {

struct Bfloat16 {
  uint16_t bits;

  Bfloat16() = default;
  explicit Bfloat16(float value) {
    uint32_t u;
    std::memcpy(&u, &value, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<uint16_t>((u >> 16) | 0x0040u);  // a quiet NaN of the same sign
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<uint16_t>(u >> 16);
  }
  explicit operator float() const {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &u, sizeof value);
    return value;
  }
};

static_assert(sizeof(Bfloat16) == 2, "bfloat16 storage must be two bytes");

}  // namespace pace::kernels
