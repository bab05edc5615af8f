// 2-D convolution (NCHW, weight [K, C/groups, R, S], dilation 1).
//
// Lowering, per batch item and group:
//  * 1x1, stride 1, no padding: the input [Cg, H*W] already is the GEMM
//    operand, y_g[Kg, PQ] = W_g[Kg, Cg] * x_g[Cg, HW].
//  * one input channel per group (depthwise, incl. channel multipliers):
//    a direct loop; a GEMM with inner dimension R*S would waste the packing.
//  * everything else, forward: y_g = W_g[Kg, Cg*R*S] * col as an implicit GEMM
//    (gemm_im2col packs col's panels straight from the image; col is never
//    written).
// Backward materialises col in bands of output rows (col[Cg*R*S, rows*Q]; the
// band bounds the scratch to kColBudget floats): dW += dY * col^T, dcol =
// W^T * dY then col2im (scatter-add) into dX.
// Scratch buffers belong to the calling thread and grow only (no allocation in
// steady state). Results do not depend on the thread count.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/lane_sum.h"

namespace dofpose::cpu {
namespace {

// im2col scratch budget in floats (16 MiB): large enough that a band spans
// many output rows (wide GEMMs), small enough to stay near the L3 cache.
constexpr int64_t kColBudget = 4 * 1024 * 1024;

float* col_scratch(size_t n) {
  // std::vector that only grows: resize() never shrinks capacity.
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

void check_shape(const char* op, const Conv2dShape& s) {
  DOFPOSE_CHECK(s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 &&
                    s.S >= 1,
                op, ": sizes must be positive, got N=", s.N, " C=", s.C, " H=", s.H, " W=", s.W,
                " K=", s.K, " R=", s.R, " S=", s.S);
  DOFPOSE_CHECK(s.stride >= 1 && s.pad >= 0, op, ": need stride >= 1 and pad >= 0, got stride=",
                s.stride, " pad=", s.pad);
  DOFPOSE_CHECK(s.groups >= 1 && s.C % s.groups == 0 && s.K % s.groups == 0, op, ": groups=",
                s.groups, " must divide both C=", s.C, " and K=", s.K);
  DOFPOSE_CHECK(s.H + 2 * s.pad >= s.R && s.W + 2 * s.pad >= s.S, op, ": kernel ", s.R, "x",
                s.S, " is larger than the padded input ", s.H + 2 * s.pad, "x",
                s.W + 2 * s.pad);
}

bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
}

// Output columns q whose input column q*stride - pad + s lies inside [0, W).
inline void valid_q_range(int Q, int W, int stride, int pad, int s, int& q0, int& q1) {
  const int off = s - pad;  // input column = q * stride + off
  q0 = off >= 0 ? 0 : (-off + stride - 1) / stride;
  // Largest q with q * stride + off <= W - 1.
  const int last = W - 1 - off;
  q1 = last < 0 ? 0 : std::min(Q, last / stride + 1);
  q0 = std::min(q0, q1);
}

// Output rows per im2col band for this shape.
int band_rows(const Conv2dShape& s) {
  const int64_t crs = (int64_t)(s.C / s.groups) * s.R * s.S;
  const int64_t max_rows = std::clamp<int64_t>(kColBudget / std::max<int64_t>(1, crs * s.Q()),
                                                1, s.P());
  // Equal bands: 64 rows as 32+32 rather than 56+8 keeps every GEMM wide.
  const int64_t bands = (s.P() + max_rows - 1) / max_rows;
  return (int)((s.P() + bands - 1) / bands);
}

// col[(c*R + r)*S + s][(p - p0)*Q + q] = x[c][p*stride - pad + r][q*stride - pad + s] (0 outside).
void im2col(const float* x, int Cg, int H, int W, int R, int S, int stride, int pad, int P,
            int Q, int p0, int p1, float* col) {
  (void)P;
  const int rows = p1 - p0;
  const int64_t ld = (int64_t)rows * Q;
  const int64_t crs = (int64_t)Cg * R * S;
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if (crs * ld > 64 * 1024)
#endif
  for (int64_t row = 0; row < crs; ++row) {
    const int c = (int)(row / (R * S)), r = (int)(row / S % R), sx = (int)(row % S);
    const float* xc = x + (size_t)c * H * W;
    float* dst = col + row * ld;
    int q0, q1;
    valid_q_range(Q, W, stride, pad, sx, q0, q1);
    for (int p = p0; p < p1; ++p) {
      float* d = dst + (int64_t)(p - p0) * Q;
      const int h = p * stride - pad + r;
      if (h < 0 || h >= H) {
        std::fill(d, d + Q, 0.0f);
        continue;
      }
      const float* xr = xc + (size_t)h * W + sx - pad;
      std::fill(d, d + q0, 0.0f);
      if (stride == 1) {
        std::memcpy(d + q0, xr + q0, sizeof(float) * (q1 - q0));
      } else {
        for (int q = q0; q < q1; ++q) d[q] = xr[q * stride];
      }
      std::fill(d + q1, d + Q, 0.0f);
    }
  }
}

// dx[c][h][w] += col[...] for every (c, r, s, p, q) that im2col read. Runs over
// channels in parallel (each channel's sum keeps a fixed order).
void col2im_add(const float* col, int Cg, int H, int W, int R, int S, int stride, int pad,
                int Q, int p0, int p1, float* dx) {
  const int rows = p1 - p0;
  const int64_t ld = (int64_t)rows * Q;
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if ((int64_t)Cg * R * S * ld > 64 * 1024)
#endif
  for (int c = 0; c < Cg; ++c) {
    float* dxc = dx + (size_t)c * H * W;
    for (int r = 0; r < R; ++r)
      for (int sx = 0; sx < S; ++sx) {
        const float* src = col + ((int64_t)(c * R + r) * S + sx) * ld;
        int q0, q1;
        valid_q_range(Q, W, stride, pad, sx, q0, q1);
        for (int p = p0; p < p1; ++p) {
          const int h = p * stride - pad + r;
          if (h < 0 || h >= H) continue;
          const float* sr = src + (int64_t)(p - p0) * Q;
          float* xr = dxc + (size_t)h * W + sx - pad;
          if (stride == 1) {
            for (int q = q0; q < q1; ++q) xr[q] += sr[q];
          } else {
            for (int q = q0; q < q1; ++q) xr[q * stride] += sr[q];
          }
        }
      }
  }
}

// ---- one input channel per group (depthwise): direct loops.

// y[k] = sum_{r,s} w[k][r][s] * x[c](shifted); one output plane.
void direct_plane_forward(const float* xc, const float* wk, float bias, int H, int W, int R,
                          int S, int stride, int pad, int P, int Q, float* yk) {
  std::fill(yk, yk + (size_t)P * Q, bias);
  for (int p = 0; p < P; ++p) {
    float* yr = yk + (size_t)p * Q;
    for (int r = 0; r < R; ++r) {
      const int h = p * stride - pad + r;
      if (h < 0 || h >= H) continue;
      for (int sx = 0; sx < S; ++sx) {
        const float wv = wk[r * S + sx];
        int q0, q1;
        valid_q_range(Q, W, stride, pad, sx, q0, q1);
        const float* xr = xc + (size_t)h * W + sx - pad;
        if (stride == 1) {
          for (int q = q0; q < q1; ++q) yr[q] += wv * xr[q];
        } else {
          for (int q = q0; q < q1; ++q) yr[q] += wv * xr[q * stride];
        }
      }
    }
  }
}

void depthwise_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                       float* y) {
  const int P = s.P(), Q = s.Q();
  const int mult = s.K / s.groups;  // output channels per input channel
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (int64_t nk = 0; nk < (int64_t)s.N * s.K; ++nk) {
    const int n = (int)(nk / s.K), k = (int)(nk % s.K);
    const int c = k / mult;
    direct_plane_forward(x + ((size_t)n * s.C + c) * s.H * s.W, w + (size_t)k * s.R * s.S,
                         bias ? bias[k] : 0.0f, s.H, s.W, s.R, s.S, s.stride, s.pad, P, Q,
                         y + ((size_t)n * s.K + k) * P * Q);
  }
}

void depthwise_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                        float* dx, float* dw) {
  const int P = s.P(), Q = s.Q();
  const int mult = s.K / s.groups;
  const size_t HW = (size_t)s.H * s.W, PQ = (size_t)P * Q;
  if (dx) {
    // One task per input plane: it gathers from its `mult` output planes.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int64_t nc = 0; nc < (int64_t)s.N * s.C; ++nc) {
      const int n = (int)(nc / s.C), c = (int)(nc % s.C);
      float* dxc = dx + ((size_t)n * s.C + c) * HW;
      std::fill(dxc, dxc + HW, 0.0f);
      for (int m = 0; m < mult; ++m) {
        const int k = c * mult + m;
        const float* wk = w + (size_t)k * s.R * s.S;
        const float* dyk = dy + ((size_t)n * s.K + k) * PQ;
        for (int p = 0; p < P; ++p)
          for (int r = 0; r < s.R; ++r) {
            const int h = p * s.stride - s.pad + r;
            if (h < 0 || h >= s.H) continue;
            for (int sx = 0; sx < s.S; ++sx) {
              const float wv = wk[r * s.S + sx];
              int q0, q1;
              valid_q_range(Q, s.W, s.stride, s.pad, sx, q0, q1);
              float* xr = dxc + (size_t)h * s.W + sx - s.pad;
              const float* dr = dyk + (size_t)p * Q;
              for (int q = q0; q < q1; ++q) xr[q * s.stride] += wv * dr[q];
            }
          }
      }
    }
  }
  if (dw) {
    // One task per weight plane; batch items summed in order.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static)
#endif
    for (int k = 0; k < s.K; ++k) {
      const int c = k / mult;
      for (int rs = 0; rs < s.R * s.S; ++rs) {
        const int r = rs / s.S, sx = rs % s.S;
        int q0, q1;
        valid_q_range(Q, s.W, s.stride, s.pad, sx, q0, q1);
        double acc = 0.0;
        for (int n = 0; n < s.N; ++n) {
          const float* xc = x + ((size_t)n * s.C + c) * HW;
          const float* dyk = dy + ((size_t)n * s.K + k) * PQ;
          for (int p = 0; p < P; ++p) {
            const int h = p * s.stride - s.pad + r;
            if (h < 0 || h >= s.H) continue;
            const float* xr = xc + (size_t)h * s.W + sx - s.pad;
            const float* dr = dyk + (size_t)p * Q;
            float row = 0.0f;
            for (int q = q0; q < q1; ++q) row += dr[q] * xr[q * s.stride];
            acc += row;
          }
        }
        dw[(size_t)k * s.R * s.S + rs] = (float)acc;
      }
    }
  }
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y) {
  check_shape("conv2d_forward", s);
  DOFPOSE_CHECK(x && w && y, "conv2d_forward: x, w and y must not be null");
  const int Cg = s.C / s.groups, Kg = s.K / s.groups;
  if (Cg == 1) {
    depthwise_forward(s, x, w, bias, y);
    return;
  }
  const int P = s.P(), Q = s.Q();
  const int64_t PQ = (int64_t)P * Q, HW = (int64_t)s.H * s.W;
  const int crs = Cg * s.R * s.S;
  const bool pointwise = is_pointwise(s);

  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.groups; ++g) {
      const float* xg = x + ((int64_t)n * s.C + (int64_t)g * Cg) * HW;
      const float* wg = w + (int64_t)g * Kg * crs;
      float* yg = y + ((int64_t)n * s.K + (int64_t)g * Kg) * PQ;
      if (pointwise) {
        gemm(false, false, Kg, (int)PQ, Cg, 1.0f, wg, crs, xg, (int)HW, 0.0f, yg, (int)PQ);
      } else {
        // Implicit GEMM: the GEMM packs its B panels straight from the image.
        const Im2colMatrix col{xg, Cg, s.H, s.W, s.R, s.S, s.stride, s.pad, Q, 0, P};
        gemm_im2col(Kg, 1.0f, wg, crs, col, 0.0f, yg, (int)PQ);
      }
      if (bias) {
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if ((int64_t)Kg * PQ > 64 * 1024)
#endif
        for (int k = 0; k < Kg; ++k) {
          const float b = bias[g * Kg + k];
          float* yk = yg + (int64_t)k * PQ;
          for (int64_t i = 0; i < PQ; ++i) yk[i] += b;
        }
      }
    }
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* dbias) {
  check_shape("conv2d_backward", s);
  DOFPOSE_CHECK(dy, "conv2d_backward: dy must not be null");
  DOFPOSE_CHECK(!dx || w, "conv2d_backward: dx requested but w is null");
  DOFPOSE_CHECK(!dw || x, "conv2d_backward: dw requested but x is null");
  const int P = s.P(), Q = s.Q();
  const int64_t PQ = (int64_t)P * Q, HW = (int64_t)s.H * s.W;
  const int Cg = s.C / s.groups, Kg = s.K / s.groups;
  const int crs = Cg * s.R * s.S;

  if (dbias) {
    // Channels in parallel, each summed in double lanes (lane_sum.h): a serial
    // float sum per plane took as long as the 1x1 conv's two GEMMs.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if ((int64_t)s.K * s.N * PQ > 64 * 1024)
#endif
    for (int k = 0; k < s.K; ++k) {
      double acc[kLanes] = {};
      for (int n = 0; n < s.N; ++n) {
        const float* d = dy + ((int64_t)n * s.K + k) * PQ;
        lane_sums(PQ, acc, [d](int64_t i) { return double(d[i]); });
      }
      dbias[k] = (float)lanes_total(acc);
    }
  }
  if (!dx && !dw) return;
  if (Cg == 1) {
    depthwise_backward(s, x, w, dy, dx, dw);
    return;
  }

  const bool pointwise = is_pointwise(s);
  const int band = band_rows(s);
  float* col = pointwise ? nullptr : col_scratch((size_t)crs * band * Q);
  if (dx) std::fill(dx, dx + (int64_t)s.N * s.C * HW, 0.0f);

  for (int n = 0; n < s.N; ++n)
    for (int g = 0; g < s.groups; ++g) {
      const float* xg = x ? x + ((int64_t)n * s.C + (int64_t)g * Cg) * HW : nullptr;
      const float* wg = w ? w + (int64_t)g * Kg * crs : nullptr;
      const float* dyg = dy + ((int64_t)n * s.K + (int64_t)g * Kg) * PQ;
      float* dxg = dx ? dx + ((int64_t)n * s.C + (int64_t)g * Cg) * HW : nullptr;
      float* dwg = dw ? dw + (int64_t)g * Kg * crs : nullptr;
      if (pointwise) {
        // dW_g[Kg, Cg] (+)= dY_g[Kg, PQ] * X_g[Cg, HW]^T ; dX_g = W_g^T * dY_g.
        if (dwg)
          gemm(false, true, Kg, Cg, (int)PQ, 1.0f, dyg, (int)PQ, xg, (int)HW,
               n == 0 ? 0.0f : 1.0f, dwg, crs);
        if (dxg) gemm(true, false, Cg, (int)PQ, Kg, 1.0f, wg, crs, dyg, (int)PQ, 0.0f, dxg, (int)HW);
        continue;
      }
      for (int p0 = 0; p0 < P; p0 += band) {
        const int p1 = std::min(P, p0 + band);
        const int cols = (p1 - p0) * Q;
        const float* dyb = dyg + (int64_t)p0 * Q;
        if (dwg) {
          im2col(xg, Cg, s.H, s.W, s.R, s.S, s.stride, s.pad, P, Q, p0, p1, col);
          const bool first = n == 0 && p0 == 0;
          gemm(false, true, Kg, crs, cols, 1.0f, dyb, (int)PQ, col, cols, first ? 0.0f : 1.0f,
               dwg, crs);
        }
        if (dxg) {
          gemm(true, false, crs, cols, Kg, 1.0f, wg, crs, dyb, (int)PQ, 0.0f, col, cols);
          col2im_add(col, Cg, s.H, s.W, s.R, s.S, s.stride, s.pad, Q, p0, p1, dxg);
        }
      }
    }
}

}  // namespace dofpose::cpu
