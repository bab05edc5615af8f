// The optimizer steps on CUDA: the element-wise RMSprop and Adam updates of
// engine/src/nn/optimizer.cpp, written with the same float operations in the
// same order (sqrtf and '/' are IEEE-rounded in CUDA without fast-math), so a
// step agrees with the CPU to about an ulp (fused multiply-adds aside), and
// sum_squares for gradient-norm clipping, and the lifters' max-norm row
// constraint (nn::apply_max_norm) on the device, without a host round trip.
//
// sum_squares is a two-stage fixed-order reduction (per-block partials in a
// file-static device array, then one block), in double as the CPU's clip_grad_norm,
// so it is bitwise reproducible and allocates nothing.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/reduce.cuh"

namespace dofpose::cuda_kernels {

namespace {
constexpr int kThreads = 256;  // a multiple of 32
constexpr int kMaxBlocks = 1024;  // stage-1 grid cap for sum_squares
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

int blocks_for(int64_t n, int cap) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < cap ? (b > 0 ? b : 1) : cap);
}

__global__ void rmsprop_kernel(int64_t n, float rate, float a, float eps, float wd, float m,
                               float* p, const float* grad, float* sq, float* buf) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const float g = wd != 0.f ? grad[k] + wd * p[k] : grad[k];
    const float s = sq[k] * a + (1.f - a) * g * g;
    sq[k] = s;
    const float avg = sqrtf(s) + eps;
    if (buf) {
      const float b = buf[k] * m + g / avg;
      buf[k] = b;
      p[k] -= rate * b;
    } else {
      p[k] -= rate * (g / avg);
    }
  }
}

__global__ void adam_kernel(int64_t n, float step_size, float bc2_sqrt, float b1, float b2,
                            float eps, float wd, float* p, const float* grad, float* exp_avg,
                            float* exp_avg_sq) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const float g = wd != 0.f ? grad[k] + wd * p[k] : grad[k];
    const float m = exp_avg[k] * b1 + (1.f - b1) * g;
    const float v = exp_avg_sq[k] * b2 + (1.f - b2) * g * g;
    exp_avg[k] = m;
    exp_avg_sq[k] = v;
    const float denom = sqrtf(v) / bc2_sqrt + eps;
    p[k] -= step_size * (m / denom);
  }
}

// ---- sum of squares

// Stage-1 partials; calls on one stream are ordered, two streams at once would race.
__device__ double g_sumsq_partials[kMaxBlocks];

__global__ void sum_squares_partials_kernel(int64_t n, const float* x) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc += double(x[i]) * x[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) g_sumsq_partials[blockIdx.x] = acc;
}

__global__ void sum_squares_finish_kernel(int parts, float* out) {
  double acc = 0;
  for (int b = threadIdx.x; b < parts; b += kThreads) acc += g_sumsq_partials[b];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = float(acc);
}

// ---- max-norm: one block per row; the row's sum of squares in double (a
// fixed-order tree, so reproducible), then every thread scales its elements.
constexpr int kRowThreads = 256;

__global__ void max_norm_rows_kernel(int64_t cols, float max_norm, float* w) {
  float* row = w + int64_t(blockIdx.x) * cols;
  double sq = 0;
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) sq += double(row[c]) * row[c];
  const float norm = float(sqrt(block_sum(sq)));  // every thread holds the same sum
  if (!(norm > max_norm)) return;  // uniform over the block
  const float scale = max_norm / (norm + 1e-7f);
  for (int64_t c = threadIdx.x; c < cols; c += kRowThreads) row[c] *= scale;
}
}  // namespace

void max_norm_rows(int64_t rows, int64_t cols, float max_norm, float* w, void* stream) {
  DOFPOSE_CHECK(rows < (int64_t(1) << 31), "max_norm_rows: ", rows, " rows is more than one ",
                "launch indexes");
  if (rows <= 0 || cols <= 0) return;
  max_norm_rows_kernel<<<int(rows), kRowThreads, 0, as_stream(stream)>>>(cols, max_norm, w);
  DOFPOSE_CUDA_LAUNCH_CHECK("max_norm_rows");
}

void rmsprop_update(int64_t n, float lr, float alpha, float eps, float weight_decay,
                    float momentum, float* param, const float* grad, float* square_avg,
                    float* momentum_buf, void* stream) {
  if (n <= 0) return;
  rmsprop_kernel<<<blocks_for(n, 65535 * 16), kThreads, 0, as_stream(stream)>>>(
      n, lr, alpha, eps, weight_decay, momentum, param, grad, square_avg, momentum_buf);
  DOFPOSE_CUDA_LAUNCH_CHECK("rmsprop_update");
}

void adam_update(int64_t n, float step_size, float bc2_sqrt, float beta1, float beta2, float eps,
                 float weight_decay, float* param, const float* grad, float* exp_avg,
                 float* exp_avg_sq, void* stream) {
  if (n <= 0) return;
  adam_kernel<<<blocks_for(n, 65535 * 16), kThreads, 0, as_stream(stream)>>>(
      n, step_size, bc2_sqrt, beta1, beta2, eps, weight_decay, param, grad, exp_avg, exp_avg_sq);
  DOFPOSE_CUDA_LAUNCH_CHECK("adam_update");
}

void sum_squares(int64_t n, const float* x, float* out, void* stream) {
  const int parts = blocks_for(n, kMaxBlocks);  // depends on n only: reproducible
  sum_squares_partials_kernel<<<parts, kThreads, 0, as_stream(stream)>>>(n > 0 ? n : 0, x);
  DOFPOSE_CUDA_LAUNCH_CHECK("sum_squares (partials)");
  sum_squares_finish_kernel<<<1, kThreads, 0, as_stream(stream)>>>(parts, out);
  DOFPOSE_CUDA_LAUNCH_CHECK("sum_squares (finish)");
}

}  // namespace dofpose::cuda_kernels
