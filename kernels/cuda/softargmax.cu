// Soft-argmax over heatmap rows on CUDA, the twin of cpu/softargmax.cpp: a
// differentiable argmax giving (x, y) in heatmap pixel units.
//
// One block per row (NJ rows of H*W values, typically 64x64). The row maximum
// and the sums are block reductions in a fixed order (warp shuffles, then the
// warps' partials in shared memory), so results are reproducible run to run.
// As on the CPU, the softmax sum and the expected coordinates run in double.
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/reduce.cuh"

namespace dofpose::cuda_kernels {

namespace {
constexpr int kThreads = 256;  // a multiple of 32
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Expected (x, y) = (sum p*col, sum p*row) of one row's probabilities, to every thread.
__device__ void expected_coords(int HW, int W, const float* p, double& ex, double& ey) {
  double sx = 0, sy = 0;
  for (int i = threadIdx.x; i < HW; i += kThreads) {
    const int r = i / W, c = i - r * W;
    const double pi = p[i];
    sx += pi * c;
    sy += pi * r;
  }
  ex = block_sum(sx);
  ey = block_sum(sy);
}

__global__ void softargmax_forward_kernel(int HW, int W, float beta, const float* heat,
                                          float* prob, float* coords) {
  const int64_t j = blockIdx.x;
  const float* h = heat + j * HW;
  float* p = prob + j * HW;
  // Stable softmax: subtract the row maximum of beta * heat before exp.
  // __fmul_rn keeps beta * h a rounded product (no fused multiply-subtract), so
  // the exponent is exactly the CPU's and exactly 0 at the maximum.
  float zmax = -INFINITY;
  for (int i = threadIdx.x; i < HW; i += kThreads) zmax = fmaxf(zmax, __fmul_rn(beta, h[i]));
  zmax = block_max(zmax);
  double sum = 0;
  for (int i = threadIdx.x; i < HW; i += kThreads) {
    const float e = expf(__fmul_rn(beta, h[i]) - zmax);
    p[i] = e;  // each thread re-reads only the elements it wrote here
    sum += e;
  }
  const float inv = float(1.0 / block_sum(sum));
  for (int i = threadIdx.x; i < HW; i += kThreads) p[i] *= inv;
  // expected_coords reads with the same thread-to-element map, so it sees these writes.
  double ex, ey;
  expected_coords(HW, W, p, ex, ey);
  if (threadIdx.x == 0) {
    coords[2 * j] = float(ex);
    coords[2 * j + 1] = float(ey);
  }
}

// Softmax Jacobian applied to g . (col, row): beta * p_i * (g.pos_i - g.E[pos]).
__global__ void softargmax_backward_kernel(int HW, int W, float beta, const float* prob,
                                           const float* dcoords, float* dheat) {
  const int64_t j = blockIdx.x;
  const float* p = prob + j * HW;
  float* d = dheat + j * HW;
  double ex, ey;
  expected_coords(HW, W, p, ex, ey);
  const double gx = dcoords[2 * j], gy = dcoords[2 * j + 1];
  for (int i = threadIdx.x; i < HW; i += kThreads) {
    const int r = i / W, c = i - r * W;
    const float bp = beta * p[i];  // float * float, as on the CPU, then double
    d[i] = float(bp * ((c - ex) * gx + (r - ey) * gy));
  }
}

void check_rows(const char* op, int NJ, int H, int W) {
  DOFPOSE_CHECK(NJ >= 0 && H >= 1 && W >= 1, op, ": expected heatmaps [NJ, H>=1, ", "W>=1], got [",
                NJ, ", ", H, ", ", W, "]");
  DOFPOSE_CHECK(int64_t(H) * W < (int64_t(1) << 31), op, ": heatmap of ", H, "x", W,
                " is larger than this kernel indexes");
}
}  // namespace

void softargmax_forward(int NJ, int H, int W, float beta, const float* heat, float* prob,
                        float* coords, void* stream) {
  check_rows("softargmax_forward", NJ, H, W);
  if (NJ == 0) return;
  softargmax_forward_kernel<<<NJ, kThreads, 0, as_stream(stream)>>>(H * W, W, beta, heat, prob,
                                                                    coords);
  DOFPOSE_CUDA_LAUNCH_CHECK("softargmax_forward");
}

void softargmax_backward(int NJ, int H, int W, float beta, const float* prob,
                         const float* dcoords, float* dheat, void* stream) {
  if (!dheat || NJ <= 0 || H <= 0 || W <= 0) return;  // the CPU loops zero times too
  check_rows("softargmax_backward", NJ, H, W);
  softargmax_backward_kernel<<<NJ, kThreads, 0, as_stream(stream)>>>(H * W, W, beta, prob,
                                                                     dcoords, dheat);
  DOFPOSE_CUDA_LAUNCH_CHECK("softargmax_backward");
}

}  // namespace dofpose::cuda_kernels
