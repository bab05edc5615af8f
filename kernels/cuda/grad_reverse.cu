// Gradient reversal layer on CUDA (domain-adversarial training), the twin of
// cpu/grad_reverse.cpp: the forward pass is the identity (a device-to-device
// copy queued on the stream), the backward pass is dx = -lambda * dy.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/grid.cuh"

namespace dofpose::cuda_kernels {

namespace {
using grid::as_stream;
using grid::blocks_for;
using grid::kThreads;

__global__ void grad_reverse_backward_kernel(int64_t n, float k, const float* dy, float* dx) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = k * dy[i];
}
}  // namespace

void grad_reverse_forward(int64_t n, const float* x, float* y, void* stream) {
  if (n <= 0 || x == y) return;
  // Asynchronous with respect to the host for device-to-device copies.
  DOFPOSE_CUDA_CHECK(cudaMemcpyAsync(y, x, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                     as_stream(stream)));
}

void grad_reverse_backward(int64_t n, float lambda, const float* dy, float* dx, void* stream) {
  if (!dx || n <= 0) return;
  const float k = -lambda;
  grad_reverse_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, k, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("grad_reverse_backward");
}

}  // namespace dofpose::cuda_kernels
