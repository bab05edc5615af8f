// Fully connected layer on the GPU, PyTorch layout: x [N, in], w [out, in], b [out].
//   y  = x * w^T + b          (our tile GEMM with the bias in its epilogue, one
//                              launch; skinny shapes and the cuBLAS backend:
//                              gemm, then a broadcast bias add)
//   dx = dy * w    dw = dy^T * x    (gemm; OVERWRITE)
//   db = column sums of dy   (32 columns per block, 8 row lanes summed in a
//                             fixed order, in double: deterministic, no atomics)
// The products go through gemm(), so they honour math_mode() and gemm_backend().
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemm_detail.h"

namespace dofpose::cuda_kernels {

namespace {

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

constexpr int kThreads = 256;

// y[n, o] += b[o]: rows over blockIdx.y (no 64-bit division per element).
__global__ void add_row_bias_kernel(int N, int out, const float* b, float* y) {
  for (int n = blockIdx.y; n < N; n += gridDim.y) {
    float* row = y + (int64_t)n * out;
    for (int o = blockIdx.x * kThreads + threadIdx.x; o < out; o += gridDim.x * kThreads)
      row[o] += b[o];
  }
}

constexpr int kColTile = 32;  // columns per block (one warp wide: coalesced rows)
constexpr int kRowLanes = 8;  // row lanes per block

// db[o] = sum_n dy[n, o]: lane r sums rows r, r + 8, ... then the 8 lane
// sums are added in lane order. In double, as the CPU's batch sums.
__global__ void column_sums_kernel(int N, int out, const float* dy, float* db) {
  __shared__ double part[kRowLanes][kColTile];
  const int o = blockIdx.x * kColTile + threadIdx.x;
  double acc = 0.0;
  if (o < out)
    for (int n = threadIdx.y; n < N; n += kRowLanes) acc += dy[(int64_t)n * out + o];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && o < out) {
    double s = part[0][threadIdx.x];
    for (int r = 1; r < kRowLanes; ++r) s += part[r][threadIdx.x];
    db[o] = (float)s;
  }
}

void check_sizes(const char* op, int N, int in, int out) {
  DOFPOSE_CHECK(N >= 0 && in >= 1 && out >= 1, op, ": need N >= 0, in >= 1, out >= 1, got N=",
                N, " in=", in, " out=", out);
}

}  // namespace

void linear_forward(int N, int in, int out, const float* x, const float* w, const float* b,
                    float* y, void* stream) {
  check_sizes("cuda linear_forward", N, in, out);
  if (N == 0) return;
  DOFPOSE_CHECK(x && w && y, "cuda linear_forward: x, w and y must not be null");
  if (b && gemm_backend() == GemmBackend::Own && !detail::gemm_is_skinny(int64_t(N) * out, in)) {
    // The tiles gemm() would run, with acc + b in their epilogue: same bits, one launch.
    LinearFusion f;
    f.bias = b;
    linear_fused_forward(N, in, out, x, w, f, y, stream);
    return;
  }
  gemm(false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out, stream);
  if (b) {
    const dim3 grid((out + kThreads - 1) / kThreads, std::min(N, 65535));
    add_row_bias_kernel<<<grid, kThreads, 0, as_stream(stream)>>>(N, out, b, y);
    DOFPOSE_CUDA_LAUNCH_CHECK("linear_forward bias");
  }
}

void linear_backward(int N, int in, int out, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db, const float* dx_add, void* stream) {
  check_sizes("cuda linear_backward", N, in, out);
  DOFPOSE_CHECK(N == 0 || dy, "cuda linear_backward: dy must not be null");
  DOFPOSE_CHECK(!dx || w, "cuda linear_backward: dx requested but w is null");
  DOFPOSE_CHECK(N == 0 || !dw || x, "cuda linear_backward: dw requested but x is null");
  if (dx && N > 0)  // dx[N, in] = dy[N, out] w[out, in] (+ dx_add)
    detail::gemm_strided_batched(false, false, N, in, out, 1.0f, dy, out, 0, w, in, 0, 0.0f, dx,
                                 in, 0, 1, stream, nullptr, dx_add);
  // With N == 0 gemm's K == 0 path writes zeros (gradients of an empty batch).
  if (dw) gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 0.0f, dw, in, stream);
  if (db) {
    const dim3 block(kColTile, kRowLanes);
    column_sums_kernel<<<(out + kColTile - 1) / kColTile, block, 0, as_stream(stream)>>>(
        N, out, dy, db);
    DOFPOSE_CUDA_LAUNCH_CHECK("linear_backward db");
  }
}

}  // namespace dofpose::cuda_kernels
