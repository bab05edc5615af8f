// Fully connected layer, PyTorch layout: x [N, in], w [out, in], b [out].
//   y  = x * w^T + b
//   dx = dy * w        dw = dy^T * x        db = column sums of dy
// All products go through the packed gemm (deterministic for any thread count).
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/lane_sum.h"

namespace dofpose::cpu {
namespace {

void check_sizes(const char* op, int N, int in, int out) {
  DOFPOSE_CHECK(N >= 0 && in >= 1 && out >= 1, op, ": need N >= 0, in >= 1, out >= 1, got N=",
                N, " in=", in, " out=", out);
}

}  // namespace

void linear_forward(int N, int in, int out, const float* x, const float* w, const float* b,
                    float* y) {
  check_sizes("linear_forward", N, in, out);
  if (N == 0) return;
  DOFPOSE_CHECK(x && w && y, "linear_forward: x, w and y must not be null");
  gemm(false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (b) {
    for (int n = 0; n < N; ++n) {
      float* row = y + (size_t)n * out;
      for (int o = 0; o < out; ++o) row[o] += b[o];
    }
  }
}

void linear_backward(int N, int in, int out, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db, const float* dx_add) {
  check_sizes("linear_backward", N, in, out);
  DOFPOSE_CHECK(N == 0 || dy, "linear_backward: dy must not be null");
  DOFPOSE_CHECK(!dx || w, "linear_backward: dx requested but w is null");
  DOFPOSE_CHECK(N == 0 || !dw || x, "linear_backward: dw requested but x is null");
  if (dx && N > 0) gemm(false, false, N, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
  if (dx && dx_add) accumulate(int64_t(N) * in, dx_add, dx);
  // With N == 0 gemm's K == 0 path writes zeros (gradients of an empty batch).
  if (dw) gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 0.0f, dw, in);
  if (db) {
    // Batch sums in double, n ascending for every o (the order of one column
    // walk), but row by row over blocks of outputs: a column walk strides a
    // whole row per element.
    constexpr int kBlock = 256;
    for (int o0 = 0; o0 < out; o0 += kBlock) {
      const int nb = std::min(kBlock, out - o0);
      double acc[kBlock] = {};
      for (int n = 0; n < N; ++n) {
        const float* row = dy + (size_t)n * out + o0;
        for (int j = 0; j < nb; ++j) acc[j] += row[j];
      }
      for (int j = 0; j < nb; ++j) db[o0 + j] = (float)acc[j];
    }
  }
}

void max_norm_rows(int64_t rows, int64_t cols, float max_norm, float* w) {
  DOFPOSE_CHECK(rows >= 0 && cols >= 0 && (rows == 0 || cols == 0 || w), "max_norm_rows: bad "
                "matrix [", rows, ", ", cols, "]");
  // Each row on its own (one thread, lanes in a fixed order): any thread split
  // gives the same bits. A serial double sum per row took 14 ms of every
  // progressive-lifter training step.
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    float* row = w + r * cols;
    double sq[kLanes] = {};
    lane_sums(cols, sq, [row](int64_t c) { return double(row[c]) * row[c]; });
    const float norm = float(std::sqrt(lanes_total(sq)));
    if (norm > max_norm) {
      const float scale = max_norm / (norm + 1e-7f);
      for (int64_t c = 0; c < cols; ++c) row[c] *= scale;
    }
  }
}

}  // namespace dofpose::cpu
