// Dropout on CUDA, the twin of cpu/dropout.cpp. The mask comes from the same
// counter-based hash of (seed, element index), so it is bit-identical to the
// CPU's whatever the launch shape: keep element i iff uniform(seed, i) >= p.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/dropout_hash.cuh"

namespace dofpose::cuda_kernels {

namespace {
using grid::as_stream;
using grid::blocks_for;
using grid::kThreads;

void check_p(const char* op, float p) {
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, op, ": drop probability p must be in [0, 1), got ", p);
}

__global__ void dropout_forward_kernel(int64_t n, float p, float keep_scale, uint64_t seed,
                                       const float* x, float* y, uint8_t* mask) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const bool keep = dropout_uniform(seed, uint64_t(i)) >= p;  // p == 0 keeps all
    y[i] = keep ? x[i] * keep_scale : 0.f;
    if (mask) mask[i] = keep ? 1 : 0;
  }
}

__global__ void dropout_backward_kernel(int64_t n, float keep_scale, const uint8_t* mask,
                                        const float* dy, float* dx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = mask[i] ? dy[i] * keep_scale : 0.f;
}
}  // namespace

void dropout_forward(int64_t n, float p, uint64_t seed, const float* x, float* y, uint8_t* mask,
                     void* stream) {
  check_p("dropout_forward", p);
  if (n <= 0) return;
  const float keep_scale = 1.f / (1.f - p);  // on the host, as the CPU forms it
  dropout_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, p, keep_scale,
                                                                            seed, x, y, mask);
  DOFPOSE_CUDA_LAUNCH_CHECK("dropout_forward");
}

void dropout_backward(int64_t n, float p, const uint8_t* mask, const float* dy, float* dx,
                      void* stream) {
  check_p("dropout_backward", p);
  if (!dx || n <= 0) return;
  const float keep_scale = 1.f / (1.f - p);
  dropout_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, keep_scale, mask,
                                                                             dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("dropout_backward");
}

}  // namespace dofpose::cuda_kernels
