// 2x2 / stride 2 max pooling (floor). The argmax rule is PyTorch's: scan the
// window in row-major order, replace on strictly greater OR on NaN, so ties go
// to the first maximum and a NaN wins (the last NaN, as in PyTorch).
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

// Offset (relative to the window's top-left) of the winning element.
inline int64_t window_argmax(const float* top_left, int W) {
  const int64_t offsets[4] = {0, 1, W, int64_t(W) + 1};
  int64_t best = 0;
  float best_val = top_left[0];
  for (int k = 1; k < 4; ++k) {
    const float v = top_left[offsets[k]];
    if (v > best_val || std::isnan(v)) {
      best_val = v;
      best = offsets[k];
    }
  }
  return best;
}

}  // namespace

void maxpool2x2_forward(int N, int C, int H, int W, const float* x, float* y) {
  const int OH = H / 2, OW = W / 2;
  const int64_t planes = int64_t(N) * C;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        const float* tl = xp + int64_t(2 * oh) * W + 2 * ow;
        yp[int64_t(oh) * OW + ow] = tl[window_argmax(tl, W)];
      }
  }
}

void maxpool2x2_backward(int N, int C, int H, int W, const float* x, const float* dy,
                         float* dx, const float* dx_add) {
  if (!dx) return;
  const int OH = H / 2, OW = W / 2;
  const int64_t planes = int64_t(N) * C;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* dxp = dx + pl * H * W;
    const float* dyp = dy + pl * OH * OW;
    for (int64_t i = 0; i < int64_t(H) * W; ++i) dxp[i] = 0.f;  // incl. floor-dropped edge
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        const int64_t tl = int64_t(2 * oh) * W + 2 * ow;
        dxp[tl + window_argmax(xp + tl, W)] = dyp[int64_t(oh) * OW + ow];
      }
  }
  if (dx_add) accumulate(planes * H * W, dx_add, dx);
}

}  // namespace dofpose::cpu
