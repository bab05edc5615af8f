// CUDA host emulator: __half and the conversions kernels/cuda/ uses (round to nearest even).
#pragma once
#include <cstdint>

#include "dofpose/dtype.h"

namespace emu {  // the engine's bit-exact conversions (engine/src/dtype.cpp)
inline uint16_t float_to_half_bits(float f) { return dofpose::f32_to_f16(f); }
inline float half_bits_to_float(uint16_t h) { return dofpose::f16_to_f32(h); }
}  // namespace emu

struct __half {
  uint16_t __x = 0;
  __half() = default;
  __half(float f) : __x(emu::float_to_half_bits(f)) {}
  operator float() const { return emu::half_bits_to_float(__x); }
};
struct __half2 {
  __half x, y;
};
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline __half2 __floats2half2_rn(float a, float b) { return {__half(a), __half(b)}; }
