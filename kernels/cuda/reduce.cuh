// Fixed-order warp and block reductions (no atomics, so results repeat bit for
// bit): warp shuffles, then the warps' partials summed by warp 0. Block sizes
// must be multiples of 32 (at most 1024). Every thread gets the result.
#pragma once
#include <cmath>

namespace dofpose::cuda_kernels {
namespace {

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

__device__ double block_sum(double v) {
  __shared__ double warp_part[32];
  __shared__ double total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double t = lane < warps ? warp_part[lane] : 0.0;
    t = warp_sum(t);
    if (lane == 0) total = t;
  }
  __syncthreads();
  const double r = total;
  __syncthreads();  // everyone has read `total` before a later call rewrites it
  return r;
}

__device__ float block_max(float v) {
  __shared__ float warp_part[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? warp_part[lane] : -INFINITY;
    t = warp_max(t);
    if (lane == 0) total = t;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();
  return r;
}

}  // namespace
}  // namespace dofpose::cuda_kernels
