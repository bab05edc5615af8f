// Element-wise CUDA kernels (activations, add, accumulate, scale, fill and the
// per-column helpers of the lifter): grid-stride loops over int64 indices.
// Each expression is written exactly as its CPU twin (activation.cpp,
// elementwise.cpp), including the NaN behaviour of the selects.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/grid.cuh"

namespace dofpose::cuda_kernels {

namespace {
using grid::as_stream;
using grid::blocks_for;
using grid::kThreads;

// First index and stride of a grid-stride loop, in 64 bits so n > 2^31 works.
__device__ __forceinline__ int64_t first_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

// The selects match the CPU's: x < 0 ? 0 : x lets NaN through (as PyTorch's clamp).
__global__ void relu_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = x[i] < 0.f ? 0.f : x[i];
}
// PyTorch threshold_backward: the gradient is cut where x <= 0 (NaN x passes dy).
__global__ void relu_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dx[i] = x[i] <= 0.f ? 0.f : dy[i];
}
__global__ void relu6_forward_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = x[i] < 0.f ? 0.f : (x[i] > 6.f ? 6.f : x[i]);
}
// PyTorch hardtanh_backward: zero at and beyond both clip points.
__global__ void relu6_backward_kernel(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = first_index(); i < n; i += grid_stride())
    dx[i] = (x[i] <= 0.f || x[i] >= 6.f) ? 0.f : dy[i];
}
__global__ void add_kernel(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = a[i] + b[i];
}
__global__ void accumulate_kernel(int64_t n, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] += x[i];
}
__global__ void scale_kernel(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = alpha * x[i];
}
__global__ void fill_kernel(int64_t n, float value, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) y[i] = value;
}
// One thread per element of the [rows, width] block; consecutive threads walk a
// row's contiguous columns, so both sides are read and written coalesced.
__global__ void copy_columns_kernel(int64_t total, int width, const float* src, int src_cols,
                                    int src_col, float* dst, int dst_cols, int dst_col,
                                    bool accumulate) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int64_t r = i / width;
    const int c = int(i - r * width);
    const float v = src[r * src_cols + src_col + c];
    float* d = dst + r * dst_cols + dst_col + c;
    if (accumulate)
      *d += v;
    else
      *d = v;
  }
}
__global__ void affine_columns_kernel(int64_t total, int cols, const float* x, const float* mul,
                                      const float* add, float* y) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int c = int(i % cols);
    y[i] = x[i] * mul[c] + add[c];
  }
}

__global__ void standardize_columns_kernel(int64_t total, int cols, int count, const float* x,
                                           const float* mean, const float* std, float* y) {
  for (int64_t i = first_index(); i < total; i += grid_stride()) {
    const int c = int(i % cols);
    // __fdiv_rn / __fsub_rn: no contraction or approximation, the CPU's bits.
    y[i] = c < count ? __fdiv_rn(__fsub_rn(x[i], mean[c]), std[c]) : x[i];
  }
}
}  // namespace

void relu_forward(int64_t n, const float* x, float* y, void* stream) {
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu_forward");
}
void relu_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream) {
  if (!dx) return;
  relu_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu_backward");
}
void relu6_forward(int64_t n, const float* x, float* y, void* stream) {
  relu6_forward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu6_forward");
}
void relu6_backward(int64_t n, const float* x, const float* dy, float* dx, void* stream) {
  if (!dx) return;
  relu6_backward_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("relu6_backward");
}
void add_forward(int64_t n, const float* a, const float* b, float* y, void* stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, a, b, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("add_forward");
}
void accumulate(int64_t n, const float* x, float* y, void* stream) {
  accumulate_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("accumulate");
}
void scale(int64_t n, float alpha, const float* x, float* y, void* stream) {
  scale_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, alpha, x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("scale");
}
void fill(int64_t n, float value, float* y, void* stream) {
  fill_kernel<<<blocks_for(n), kThreads, 0, as_stream(stream)>>>(n, value, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("fill");
}
void copy_columns(int rows, int width, const float* src, int src_cols, int src_col, float* dst,
                  int dst_cols, int dst_col, bool accumulate, void* stream) {
  const int64_t total = int64_t(rows) * width;
  if (total <= 0) return;  // also keeps width == 0 from dividing by zero
  copy_columns_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, width, src, src_cols, src_col, dst, dst_cols, dst_col, accumulate);
  DOFPOSE_CUDA_LAUNCH_CHECK("copy_columns");
}
void affine_columns(int rows, int cols, const float* x, const float* mul, const float* add,
                    float* y, void* stream) {
  const int64_t total = int64_t(rows) * cols;
  if (total <= 0) return;
  affine_columns_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(total, cols, x,
                                                                               mul, add, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("affine_columns");
}

void standardize_columns(int rows, int cols, int count, const float* x, const float* mean,
                         const float* std, float* y, void* stream) {
  const int64_t total = int64_t(rows) * cols;
  if (total <= 0) return;
  standardize_columns_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, cols, count, x, mean, std, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("standardize_columns");
}

}  // namespace dofpose::cuda_kernels
