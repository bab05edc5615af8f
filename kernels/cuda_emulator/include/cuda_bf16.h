// CUDA host emulator: __nv_bfloat16 and the conversions kernels/cuda/ uses (round to nearest even).
#pragma once
#include <cstdint>

#include "dofpose/dtype.h"

namespace emu {  // the engine's bit-exact conversions (engine/src/dtype.cpp)
inline uint16_t float_to_bf16_bits(float f) { return dofpose::f32_to_bf16(f); }
inline float bf16_bits_to_float(uint16_t h) { return dofpose::bf16_to_f32(h); }
}  // namespace emu

struct __nv_bfloat16 {
  uint16_t __x = 0;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(emu::float_to_bf16_bits(f)) {}
  operator float() const { return emu::bf16_bits_to_float(__x); }
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__nv_bfloat16(a), __nv_bfloat16(b)};
}
