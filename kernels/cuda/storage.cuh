// Activation storage types on the GPU: float32, IEEE half, bfloat16. Kernels
// that take 16-bit activation tensors read every element as float, compute in
// float32 and round once, to nearest even, as they store (the CPU reference:
// kernels/cpu/cast.cpp and ops.cpp's widen / narrow).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dofpose/dtype.h"

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

// Four consecutive elements as one access (16 bytes for float, 8 for 16-bit;
// the caller checks the alignment, storage_aligned4).
template <class T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};
template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  const Pack4<T> k = *reinterpret_cast<const Pack4<T>*>(p);
  return make_float4(to_f32(k.v[0]), to_f32(k.v[1]), to_f32(k.v[2]), to_f32(k.v[3]));
}
template <class T>
__device__ __forceinline__ void store4(T* p, float4 v) {
  Pack4<T> k;
  k.v[0] = from_f32<T>(v.x);
  k.v[1] = from_f32<T>(v.y);
  k.v[2] = from_f32<T>(v.z);
  k.v[3] = from_f32<T>(v.w);
  *reinterpret_cast<Pack4<T>*>(p) = k;
}
template <class T>
inline bool storage_aligned4(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

// Runs f(T{}) with T the element type of a 16-bit activation dtype.
template <class F>
void with_storage16(DType t, F&& f) {
  if (t == DType::F16)
    f(__half{});
  else
    f(__nv_bfloat16{});
}

}  // namespace dofpose::cuda_kernels
