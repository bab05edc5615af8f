// Activation storage types on the GPU: float32, IEEE half, bfloat16. Kernels
// that take 16-bit activation tensors read every element as float, compute in
// float32 and round once, to nearest even, as they store (the CPU reference:
// kernels/cpu/cast.cpp and ops.cpp's widen / narrow). One difference: the
// GPU's conversions make every NaN the canonical one (sign and payload go),
// the CPU's keep the sign and the top payload bits; any NaN stays a NaN.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "dofpose/dtype.h"
#include "dofpose/error.h"

namespace dofpose::cuda_kernels {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Two / four consecutive elements as one access: float2 / float4 for float,
// a 4-byte / 8-byte integer carrying the bits for 16-bit types (a vector type,
// not a struct of elements, so the compiler cannot split the access). The
// caller checks the alignment (storage_aligned4 for four). The memcpy moves
// bits between registers (void*: the emulator's vector types are classes).
template <class T>
__device__ __forceinline__ float2 load2(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *reinterpret_cast<const float2*>(p);
  } else {
    const unsigned raw = *reinterpret_cast<const unsigned*>(p);
    T h[2];
    memcpy(static_cast<void*>(h), &raw, sizeof raw);
    return make_float2(to_f32(h[0]), to_f32(h[1]));
  }
}
template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const int2 raw = *reinterpret_cast<const int2*>(p);
    T h[4];
    memcpy(static_cast<void*>(h), &raw, sizeof raw);
    return make_float4(to_f32(h[0]), to_f32(h[1]), to_f32(h[2]), to_f32(h[3]));
  }
}
template <class T>
__device__ __forceinline__ void store4(T* p, float4 v) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = v;
  } else {
    const T h[4] = {from_f32<T>(v.x), from_f32<T>(v.y), from_f32<T>(v.z), from_f32<T>(v.w)};
    int2 raw;
    memcpy(static_cast<void*>(&raw), h, sizeof raw);
    *reinterpret_cast<int2*>(p) = raw;
  }
}
template <class T>
inline bool storage_aligned4(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

// Runs f(T{}) with T the element type of a 16-bit activation dtype.
template <class F>
void with_storage16(DType t, F&& f) {
  DOFPOSE_CHECK(t == DType::F16 || t == DType::BF16, "with_storage16: ", dtype_name(t),
                " is not a 16-bit activation dtype");
  if (t == DType::F16)
    f(__half{});
  else
    f(__nv_bfloat16{});
}

}  // namespace dofpose::cuda_kernels
