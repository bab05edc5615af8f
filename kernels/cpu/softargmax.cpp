// Soft-argmax over heatmap rows: a differentiable argmax giving (x, y) in
// heatmap pixel units. Sums run in double; each row belongs to one thread.
#include <algorithm>
#include <cmath>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

// Expected (x, y) under the probabilities of one row.
void expected_coords(int H, int W, const float* prob, double& ex, double& ey) {
  ex = 0;
  ey = 0;
  for (int r = 0; r < H; ++r) {
    double row_sum = 0, row_x = 0;
    for (int c = 0; c < W; ++c) {
      const double p = prob[int64_t(r) * W + c];
      row_sum += p;
      row_x += p * c;
    }
    ex += row_x;
    ey += row_sum * r;
  }
}

}  // namespace

void softargmax_forward(int NJ, int H, int W, float beta, const float* heat, float* prob,
                        float* coords) {
  DOFPOSE_CHECK(NJ >= 0 && H >= 1 && W >= 1, "softargmax_forward: expected heatmaps [NJ, H>=1, ",
                "W>=1], got [", NJ, ", ", H, ", ", W, "]");
  const int64_t HW = int64_t(H) * W;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (NJ * HW > 32768)
#endif
  for (int j = 0; j < NJ; ++j) {
    const float* h = heat + j * HW;
    float* p = prob + j * HW;
    // Stable softmax: subtract the row maximum of beta * heat before exp.
    float zmax = beta * h[0];
    for (int64_t i = 1; i < HW; ++i) zmax = std::max(zmax, beta * h[i]);
    double sum = 0;
    for (int64_t i = 0; i < HW; ++i) {
      p[i] = std::exp(beta * h[i] - zmax);
      sum += p[i];
    }
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < HW; ++i) p[i] *= inv;
    double ex, ey;
    expected_coords(H, W, p, ex, ey);
    coords[2 * j] = float(ex);
    coords[2 * j + 1] = float(ey);
  }
}

void softargmax_backward(int NJ, int H, int W, float beta, const float* prob,
                         const float* dcoords, float* dheat) {
  if (!dheat) return;
  const int64_t HW = int64_t(H) * W;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (NJ * HW > 32768)
#endif
  for (int j = 0; j < NJ; ++j) {
    const float* p = prob + j * HW;
    float* d = dheat + j * HW;
    double ex, ey;
    expected_coords(H, W, p, ex, ey);
    const double gx = dcoords[2 * j], gy = dcoords[2 * j + 1];
    // Softmax Jacobian applied to g . (col, row): beta * p_i * (g.pos_i - g.E[pos]).
    for (int r = 0; r < H; ++r)
      for (int c = 0; c < W; ++c) {
        const int64_t i = int64_t(r) * W + c;
        d[i] = float(beta * p[i] * ((c - ex) * gx + (r - ey) * gy));
      }
  }
}

}  // namespace dofpose::cpu
