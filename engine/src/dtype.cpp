// IEEE binary16 (half) and bfloat16 <-> float32 conversions, bit exact:
// round to nearest, ties to even; infinities, NaNs (quiet, sign and top
// payload bits kept) and subnormals handled. Done on the bits so the result
// does not depend on the compiler's or the CPU's float16 support.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "dofpose/dtype.h"

namespace dofpose {

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Shifts `value` right by `shift` (1..31) rounding to nearest, ties to even.
uint32_t shift_right_rne(uint32_t value, int shift) {
  uint32_t kept = value >> shift;
  uint32_t rest = value & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1u))) ++kept;
  return kept;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F)  // infinity or NaN (payload kept in the top mantissa bits)
    return bits_float(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float32.
    float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t x = float_bits(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u)  // NaN: stays a quiet NaN with its sign
    return uint16_t(sign | 0x7E00u | ((magnitude >> 13) & 0x3FFu));
  // 65520 = halfway between the largest half (65504) and 2^16: ties to even
  // rounds it up, so everything from there on (and infinity) becomes infinity.
  if (magnitude >= 0x477FF000u) return uint16_t(sign | 0x7C00u);
  if (magnitude < 0x38800000u) {
    // Below the smallest normal half (2^-14): a subnormal half, counted in
    // units of 2^-24. With the implicit bit, value = m * 2^(e-150), so
    // value / 2^-24 = m >> (126 - e). The shift is at least 14 here.
    const int e = int(magnitude >> 23);
    const int shift = 126 - e;
    if (e == 0 || shift > 24) return sign;  // below 2^-25 (or a float subnormal): zero
    const uint32_t m = (magnitude & 0x7FFFFFu) | 0x800000u;
    // Rounding up to 0x400 yields the smallest normal, which is the right bits.
    return uint16_t(sign | shift_right_rne(m, shift));
  }
  // Normal: rebias the exponent (127 -> 15) and round the mantissa from 23 to
  // 10 bits; a carry out of the mantissa correctly bumps the exponent.
  return uint16_t(sign | shift_right_rne(magnitude - (112u << 23), 13));
}

float bf16_to_f32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

uint16_t f32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: keep sign and payload top, force quiet
    return uint16_t((x >> 16) | 0x0040u);
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even;
  // the largest finite values correctly overflow to infinity.
  return uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

double float_as_shortest_double(float f) {
  if (!std::isfinite(f)) return double(f);
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf - 1, f);
  if (r.ec != std::errc()) return double(f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

}  // namespace dofpose
