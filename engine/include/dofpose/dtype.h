// Element types and devices. Kernels compute in float32; F16/BF16 exist so that
// weights can be stored compactly and converted on load.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dofpose {

enum class DType : uint8_t { F32, F16, BF16, I32, U8 };

// The double nearest the float's shortest decimal text (std::to_chars): what a
// JSON writer should store for a float setting, so that 1e-3f is written as
// 0.001, not as its exact binary value 0.0010000000474974513, and reads back
// as the same float. Non-finite values are returned as they are.
double float_as_shortest_double(float f);
enum class Device : uint8_t { CPU, CUDA };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::U8: return 1;
  }
  return 0;
}

// Names as the safetensors header spells them.
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

// IEEE half and bfloat16 <-> float conversions (round to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

}  // namespace dofpose
