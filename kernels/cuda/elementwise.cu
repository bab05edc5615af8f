// Element-wise CUDA kernels (relu, add, accumulate): grid-stride loops.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"

namespace dofpose::cuda_kernels {

namespace {
constexpr int kThreads = 256;
int blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > 0.f ? x[i] : 0.f;
}
__global__ void relu_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = x[i] > 0.f ? dy[i] : 0.f;
}
__global__ void add_kernel(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}
__global__ void accumulate_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}
}  // namespace

void relu_forward(int64_t n, const float* x, float* y, void* stream) {
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu_forward");
}
void relu_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream) {
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu_backward");
}
void add_forward(int64_t n, const float* a, const float* b, float* y, void* stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, a, b, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("add_forward");
}
void accumulate(int64_t n, const float* x, float* y, void* stream) {
  accumulate_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("accumulate");
}

}  // namespace dofpose::cuda_kernels
