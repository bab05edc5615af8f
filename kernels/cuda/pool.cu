// 2x2 / stride 2 max pooling on CUDA, the twin of cpu/pool.cpp. The argmax
// rule is PyTorch's: scan the window in row-major order and replace on strictly
// greater OR on NaN, so ties go to the first maximum and a NaN wins.
//
// The backward pass is a gather: one thread per INPUT pixel asks whether it is
// its window's argmax. That writes every dx element exactly once (zeros included,
// also the row/column dropped by the floor), with no atomics and no zero pass.
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
template <class T>
bool pair_rows(int W, const T* x) {
  return W % 2 == 0 && reinterpret_cast<uintptr_t>(x) % (2 * sizeof(T)) == 0;
}

// Index 0..3 (row-major in the window) of the winning element, and its value.
// `pairs` (host-checked: W even, x aligned to two elements): each window row
// is one access (a float2; one 4-byte word of two 16-bit values), so a warp's
// request covers its 256 bytes in 8 sectors, where two scalar loads took 16.
template <class T>
__device__ __forceinline__ int window_argmax(const T* top_left, int W, bool pairs,
                                             float& best_val) {
  float v[4];
  if (pairs) {
    const float2 r0 = load2(top_left), r1 = load2(top_left + W);
    v[0] = r0.x, v[1] = r0.y, v[2] = r1.x, v[3] = r1.y;
  } else {
    v[0] = to_f32(top_left[0]), v[1] = to_f32(top_left[1]), v[2] = to_f32(top_left[W]),
    v[3] = to_f32(top_left[W + 1]);
  }
  int best = 0;
  best_val = v[0];
#pragma unroll
  for (int k = 1; k < 4; ++k)
    if (v[k] > best_val || isnan(v[k])) {
      best_val = v[k];
      best = k;
    }
  return best;
}

// T: float, or a 16-bit activation type (the maximum is one of the inputs, so
// the 16-bit result is exact; a NaN stays a NaN, storage.cuh).
template <class T>
__global__ void maxpool_forward_kernel(int64_t total, int H, int W, int OH, int OW, bool pairs,
                                       const T* x, T* y) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t pl = i / (int64_t(OH) * OW);
    const int rem = int(i - pl * OH * OW);
    const int oh = rem / OW, ow = rem - oh * OW;
    float best;
    window_argmax(x + (pl * H + 2 * oh) * W + 2 * ow, W, pairs, best);
    y[i] = from_f32<T>(best);
  }
}

__global__ void maxpool_backward_kernel(int64_t total, int H, int W, int OH, int OW, bool pairs,
                                        const float* x, const float* dy, float* dx,
                                        const float* dx_add) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t pl = i / (int64_t(H) * W);
    const int rem = int(i - pl * H * W);
    const int h = rem / W, w = rem - h * W;
    const int oh = h >> 1, ow = w >> 1;
    float g = 0.f;
    if (oh < OH && ow < OW) {  // else: the floor dropped this pixel
      const float* tl = x + (pl * H + 2 * oh) * W + 2 * ow;
      float best;
      if (window_argmax(tl, W, pairs, best) == ((h & 1) << 1 | (w & 1))) g = dy[(pl * OH + oh) * OW + ow];
    }
    dx[i] = dx_add ? g + dx_add[i] : g;  // accumulate's sum (no product: no FMA to avoid)
  }
}
}  // namespace

void maxpool2x2_forward(int N, int C, int H, int W, const float* x, float* y, void* stream) {
  const int OH = H / 2, OW = W / 2;
  const int64_t total = int64_t(N) * C * OH * OW;
  if (total <= 0) return;
  maxpool_forward_kernel<float><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, H, W, OH, OW, pair_rows(W, x), x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("maxpool2x2_forward");
}

void maxpool2x2_forward16(int N, int C, int H, int W, DType t, const void* x, void* y,
                          void* stream) {
  const int OH = H / 2, OW = W / 2;
  const int64_t total = int64_t(N) * C * OH * OW;
  if (total <= 0) return;
  with_storage16(t, [&](auto zero) {
    using T = decltype(zero);
    const T* xt = static_cast<const T*>(x);
    maxpool_forward_kernel<T><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
        total, H, W, OH, OW, pair_rows(W, xt), xt, static_cast<T*>(y));
  });
  DOFPOSE_CUDA_LAUNCH_CHECK("maxpool2x2_forward (16-bit)");
}

void maxpool2x2_backward(int N, int C, int H, int W, const float* x, const float* dy, float* dx,
                         const float* dx_add, void* stream) {
  if (!dx) return;
  const int64_t total = int64_t(N) * C * H * W;
  if (total <= 0) return;
  maxpool_backward_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, H, W, H / 2, W / 2, pair_rows(W, x), x, dy, dx, dx_add);
  DOFPOSE_CUDA_LAUNCH_CHECK("maxpool2x2_backward");
}

}  // namespace dofpose::cuda_kernels
