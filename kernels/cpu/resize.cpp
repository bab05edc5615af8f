// Nearest x2 upsampling and bilinear resize (PyTorch / TFLite conventions, see
// ResizeMode). Source coordinates are computed in float with PyTorch's
// area_pixel_compute_source_index formulas; outputs agree with PyTorch to float
// rounding (a few ulp: PyTorch's vectorised kernel fuses multiply-adds).
#include <algorithm>
#include <cmath>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

// The two source taps and their weights for one output coordinate.
struct Taps {
  int i0, i1;
  float w0, w1;
};

std::vector<Taps> make_taps(int in, int out, ResizeMode mode) {
  float ratio;
  if (mode == ResizeMode::AlignCorners)
    ratio = out > 1 ? float(in - 1) / float(out - 1) : 0.f;
  else
    ratio = float(in) / float(out);
  std::vector<Taps> taps(static_cast<size_t>(out));
  for (int d = 0; d < out; ++d) {
    float src;
    switch (mode) {
      case ResizeMode::HalfPixel: src = std::max(ratio * (float(d) + 0.5f) - 0.5f, 0.f); break;
      default: src = ratio * float(d); break;  // AlignCorners, Asymmetric
    }
    const int i0 = std::min(int(std::floor(src)), in - 1);
    const float lambda = std::clamp(src - float(i0), 0.f, 1.f);
    taps[size_t(d)] = {i0, std::min(i0 + 1, in - 1), 1.f - lambda, lambda};
  }
  return taps;
}

void check_sizes(const char* op, int N, int C, int H, int W, int OH, int OW) {
  DOFPOSE_CHECK(N >= 0 && C >= 0 && H >= 1 && W >= 1 && OH >= 1 && OW >= 1, op,
                ": expected input [N, C, H>=1, W>=1] and output size >= 1, got [", N, ", ", C,
                ", ", H, ", ", W, "] -> ", OH, "x", OW);
}

}  // namespace

void upsample_nearest2x_forward(int N, int C, int H, int W, const float* x, float* y) {
  const int64_t planes = int64_t(N) * C;
  const int OW = 2 * W;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 16384)
#endif
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int h = 0; h < H; ++h) {
      const float* src = x + (pl * H + h) * W;
      float* row0 = y + (pl * 2 * H + 2 * h) * OW;
      for (int w = 0; w < W; ++w) row0[2 * w] = row0[2 * w + 1] = src[w];
      std::copy(row0, row0 + OW, row0 + OW);
    }
}

void upsample_add_forward(int N, int C, int H, int W, const float* a, const float* low, float* y) {
  const int64_t planes = int64_t(N) * C;
  const int OW = 2 * W;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 16384)
#endif
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int oh = 0; oh < 2 * H; ++oh) {
      const float* src = low + (pl * H + oh / 2) * W;
      const float* ar = a + (pl * 2 * H + oh) * OW;
      float* yr = y + (pl * 2 * H + oh) * OW;
      for (int ow = 0; ow < OW; ++ow) yr[ow] = ar[ow] + src[ow / 2];
    }
}

void upsample_nearest2x_backward(int N, int C, int H, int W, const float* dy, float* dx) {
  if (!dx) return;
  const int64_t planes = int64_t(N) * C;
  const int OW = 2 * W;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 16384)
#endif
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int h = 0; h < H; ++h) {
      const float* r0 = dy + (pl * 2 * H + 2 * h) * OW;
      const float* r1 = r0 + OW;
      float* out = dx + (pl * H + h) * W;
      for (int w = 0; w < W; ++w) out[w] = (r0[2 * w] + r0[2 * w + 1]) + (r1[2 * w] + r1[2 * w + 1]);
    }
}

void bilinear_forward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                      const float* x, float* y) {
  check_sizes("bilinear_forward", N, C, H, W, OH, OW);
  const std::vector<Taps> th = make_taps(H, OH, mode), tw = make_taps(W, OW, mode);
  const int64_t planes = int64_t(N) * C;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * OH * OW > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    for (int oh = 0; oh < OH; ++oh) {
      const Taps& v = th[size_t(oh)];
      const float* r0 = xp + int64_t(v.i0) * W;
      const float* r1 = xp + int64_t(v.i1) * W;
      for (int ow = 0; ow < OW; ++ow) {
        const Taps& u = tw[size_t(ow)];
        // Same association as PyTorch: rows first, then columns.
        yp[int64_t(oh) * OW + ow] = v.w0 * (u.w0 * r0[u.i0] + u.w1 * r0[u.i1]) +
                                    v.w1 * (u.w0 * r1[u.i0] + u.w1 * r1[u.i1]);
      }
    }
  }
}

void bilinear_backward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                       const float* dy, float* dx) {
  if (!dx) return;
  check_sizes("bilinear_backward", N, C, H, W, OH, OW);
  const std::vector<Taps> th = make_taps(H, OH, mode), tw = make_taps(W, OW, mode);
  const int64_t planes = int64_t(N) * C;
  // One thread scatters a whole plane in a fixed order: deterministic sums.
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * OH * OW > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* dxp = dx + pl * H * W;
    const float* dyp = dy + pl * OH * OW;
    std::fill(dxp, dxp + int64_t(H) * W, 0.f);
    for (int oh = 0; oh < OH; ++oh) {
      const Taps& v = th[size_t(oh)];
      float* r0 = dxp + int64_t(v.i0) * W;
      float* r1 = dxp + int64_t(v.i1) * W;
      for (int ow = 0; ow < OW; ++ow) {
        const Taps& u = tw[size_t(ow)];
        const float g = dyp[int64_t(oh) * OW + ow];
        r0[u.i0] += v.w0 * u.w0 * g;
        r0[u.i1] += v.w0 * u.w1 * g;
        r1[u.i0] += v.w1 * u.w0 * g;
        r1[u.i1] += v.w1 * u.w1 * g;
      }
    }
  }
}

}  // namespace dofpose::cpu
