// Conversions between the activation storage types (float32, half, bfloat16)
// on the GPU, the twin of cpu/cast.cpp: round to nearest even, one thread per
// element (the hourglass converts at its ends only: the image in, the
// features out to the heads).
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/storage.cuh"

namespace dofpose::cuda_kernels {

namespace {
using grid::as_stream;
using grid::blocks_for;
using grid::kThreads;

template <class X, class Y>
__global__ void cast_kernel(int64_t n, const X* x, Y* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = from_f32<Y>(to_f32(x[i]));
}

template <class X>
void launch_cast(int64_t n, const X* x, void* y, DType yt, cudaStream_t st) {
  if (yt == DType::F32)
    cast_kernel<X, float><<<blocks_for(n), kThreads, 0, st>>>(n, x, static_cast<float*>(y));
  else if (yt == DType::F16)
    cast_kernel<X, __half><<<blocks_for(n), kThreads, 0, st>>>(n, x, static_cast<__half*>(y));
  else
    cast_kernel<X, __nv_bfloat16><<<blocks_for(n), kThreads, 0, st>>>(
        n, x, static_cast<__nv_bfloat16*>(y));
}
}  // namespace

void cast(int64_t n, const void* x, DType xt, void* y, DType yt, void* stream) {
  if (n <= 0) return;
  const cudaStream_t st = as_stream(stream);
  if (xt == yt) {
    if (x == y) return;
    DOFPOSE_CUDA_CHECK(
        cudaMemcpyAsync(y, x, size_t(n) * dtype_size(xt), cudaMemcpyDeviceToDevice, st));
    return;
  }
  if (xt == DType::F32)
    launch_cast(n, static_cast<const float*>(x), y, yt, st);
  else if (xt == DType::F16)
    launch_cast(n, static_cast<const __half*>(x), y, yt, st);
  else
    launch_cast(n, static_cast<const __nv_bfloat16*>(x), y, yt, st);
  DOFPOSE_CUDA_LAUNCH_CHECK("cast");
}

}  // namespace dofpose::cuda_kernels
