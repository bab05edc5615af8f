// BatchNorm reference kernels (PyTorch 1.13 semantics). Each channel's sums are
// accumulated in double by a single thread in an order fixed by the shape
// (lane_sums below), so the results are bitwise identical whatever the thread
// count.
//
// Two memory walks:
//  - per channel plane (HW large): each plane x[n, c, :] is contiguous, summed
//    in lanes;
//  - row-wise (HW small, e.g. BatchNorm1d [N, C] with HW = 1): walking channel
//    by channel would read a column with stride C*HW and miss cache on every
//    element, so a thread owns a fixed block of channels and walks each row's
//    contiguous segment x[n, c0:c1, :], keeping one accumulator per channel.
#include <algorithm>
#include <cmath>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/lane_sum.h"

namespace dofpose::cpu {
namespace {

// Element (n, c, p) of an [N, C, HW] tensor.
inline int64_t at(const BatchNormShape& s, int n, int c, int64_t p) {
  return (int64_t(n) * s.C + c) * s.HW + p;
}

void check_shape(const BatchNormShape& s, const char* op) {
  DOFPOSE_CHECK(s.N >= 1 && s.C >= 1 && s.HW >= 1, op, ": expected N, C, HW >= 1, got N=", s.N,
                " C=", s.C, " HW=", s.HW);
}

// Plane sums use lane_sums (lane_sum.h): vectorised, in an order fixed by the
// shape.
// Mean and biased variance of channel c (two passes for accuracy).
void channel_stats(const BatchNormShape& s, const float* x, int c, double& mean, double& var) {
  const double m = double(s.N) * s.HW;
  double sum[kLanes] = {};
  for (int n = 0; n < s.N; ++n) {
    const float* xp = x + at(s, n, c, 0);
    lane_sums(s.HW, sum, [xp](int64_t p) { return double(xp[p]); });
  }
  mean = lanes_total(sum) / m;
  double sq[kLanes] = {};
  const double mu = mean;
  for (int n = 0; n < s.N; ++n) {
    const float* xp = x + at(s, n, c, 0);
    lane_sums(s.HW, sq, [xp, mu](int64_t p) {
      const double d = xp[p] - mu;
      return d * d;
    });
  }
  var = lanes_total(sq) / m;
}

// y = (x - mean) * scale + shift over channel c.
void apply_channel(const BatchNormShape& s, const float* x, int c, float mean, float scale,
                   float shift, float* y) {
  for (int n = 0; n < s.N; ++n) {
    const float* xp = x + at(s, n, c, 0);
    float* yp = y + at(s, n, c, 0);
    for (int64_t p = 0; p < s.HW; ++p) yp[p] = (xp[p] - mean) * scale + shift;
  }
}

// sum(dy) and sum(dy * (x - mean)) over channel c.
void grad_sums(const BatchNormShape& s, const float* x, const float* dy, int c, double mean,
               double& sum_dy, double& sum_dy_xc) {
  double a[kLanes] = {}, b[kLanes] = {};
  for (int n = 0; n < s.N; ++n) {
    const float* xp = x + at(s, n, c, 0);
    const float* dp = dy + at(s, n, c, 0);
    lane_sums(s.HW, a, [dp](int64_t p) { return double(dp[p]); });
    lane_sums(s.HW, b, [xp, dp, mean](int64_t p) { return double(dp[p]) * (double(xp[p]) - mean); });
  }
  sum_dy = lanes_total(a);
  sum_dy_xc = lanes_total(b);
}

// Below this plane size the row-wise walk is used (see the top comment).
constexpr int64_t kRowwiseMaxHW = 32;
// Channels per row-wise block: fixed, so the work split never depends on threads.
constexpr int kChannelBlock = 64;

bool rowwise(const BatchNormShape& s) { return s.HW < kRowwiseMaxHW; }
int channel_blocks(const BatchNormShape& s) { return (s.C + kChannelBlock - 1) / kChannelBlock; }

// Calls f(c, i) for each channel c in [0, nc) of one row segment and each of
// its elements i (offset from the segment's start), in that order. HW == 1
// (BatchNorm1d, the lifters) has a loop of its own: with a run-time inner
// length the compiler leaves the channel loop scalar; this one vectorises.
template <class F>
inline void for_segment(int nc, int64_t HW, F&& f) {
  if (HW == 1) {
    for (int c = 0; c < nc; ++c) f(c, int64_t(c));
    return;
  }
  for (int c = 0; c < nc; ++c)
    for (int64_t p = 0; p < HW; ++p) f(c, c * HW + p);
}

// Row-wise channel_stats for channels [c0, c1): one serial sum per channel
// (the planes here are shorter than kRowwiseMaxHW; lanes would not pay).
void block_stats(const BatchNormShape& s, const float* x, int c0, int c1, double* mean,
                 double* var) {
  const double m = double(s.N) * s.HW;
  const int nc = c1 - c0;
  for (int j = 0; j < nc; ++j) mean[j] = var[j] = 0;
  for (int n = 0; n < s.N; ++n) {
    const float* xr = x + at(s, n, c0, 0);
    for_segment(nc, s.HW, [&](int j, int64_t i) { mean[j] += xr[i]; });
  }
  for (int j = 0; j < nc; ++j) mean[j] /= m;
  for (int n = 0; n < s.N; ++n) {
    const float* xr = x + at(s, n, c0, 0);
    for_segment(nc, s.HW, [&](int j, int64_t i) {
      const double d = xr[i] - mean[j];
      var[j] += d * d;
    });
  }
  for (int j = 0; j < nc; ++j) var[j] /= m;
}

// Row-wise grad_sums for channels [c0, c1).
void block_grad_sums(const BatchNormShape& s, const float* x, const float* dy, int c0, int c1,
                     const double* mean, double* sum_dy, double* sum_dy_xc) {
  const int nc = c1 - c0;
  for (int j = 0; j < nc; ++j) sum_dy[j] = sum_dy_xc[j] = 0;
  for (int n = 0; n < s.N; ++n) {
    const int64_t base = at(s, n, c0, 0);
    const float* xr = x + base;
    const float* dr = dy + base;
    for_segment(nc, s.HW, [&](int j, int64_t i) {
      sum_dy[j] += dr[i];
      sum_dy_xc[j] += double(dr[i]) * (double(xr[i]) - mean[j]);
    });
  }
}

// y[n, c, p] = (x[n, c, p] - mean[c]) * scale[c] + shift[c] over whole rows,
// rows in parallel (element-wise, so deterministic).
void apply_rows(const BatchNormShape& s, const float* x, const float* mean, const float* scale,
                const float* shift, float* y) {
  const int64_t row = int64_t(s.C) * s.HW;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.N) * row > 32768)
#endif
  for (int n = 0; n < s.N; ++n) {
    const float* xr = x + int64_t(n) * row;
    float* yr = y + int64_t(n) * row;
    for_segment(s.C, s.HW,
                [&](int c, int64_t i) { yr[i] = (xr[i] - mean[c]) * scale[c] + shift[c]; });
  }
}

// Row-wise dx = (dy - mean_dy[c] - (x - mean[c]) * k[c]) * coef[c], rows in parallel.
void backward_rows(const BatchNormShape& s, const float* x, const float* dy, const float* mean,
                   const float* mean_dy, const float* k, const float* coef, float* dx) {
  const int64_t row = int64_t(s.C) * s.HW;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.N) * row > 32768)
#endif
  for (int n = 0; n < s.N; ++n) {
    const int64_t b = int64_t(n) * row;
    const float *xr = x + b, *dr = dy + b;
    float* dxr = dx + b;
    for_segment(s.C, s.HW, [&](int c, int64_t i) {
      dxr[i] = (dr[i] - mean_dy[c] - (xr[i] - mean[c]) * k[c]) * coef[c];
    });
  }
}

// Row-wise dx = dy * coef[c], rows in parallel.
void scale_rows(const BatchNormShape& s, const float* dy, const float* coef, float* dx) {
  const int64_t row = int64_t(s.C) * s.HW;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.N) * row > 32768)
#endif
  for (int n = 0; n < s.N; ++n) {
    const float* dr = dy + int64_t(n) * row;
    float* dxr = dx + int64_t(n) * row;
    for_segment(s.C, s.HW, [&](int c, int64_t i) { dxr[i] = dr[i] * coef[c]; });
  }
}

}  // namespace

void batchnorm_forward_train(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, float* running_mean, float* running_var,
                             float momentum, float eps, float* y, float* save_mean,
                             float* save_invstd) {
  check_shape(s, "batchnorm_forward_train");
  const int64_t m = int64_t(s.N) * s.HW;
  // PyTorch refuses this too: the unbiased variance would divide by zero.
  DOFPOSE_CHECK(m > 1, "batchnorm_forward_train: expected more than 1 value per channel when "
                "training, got input [", s.N, ", ", s.C, ", ", s.HW, "]");
  if (rowwise(s)) {
    // Per-channel statistics by channel blocks, then y over whole rows.
    std::vector<float> fmean(s.C), scale(s.C), shift(s.C);
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * m > 32768)
#endif
    for (int blk = 0; blk < channel_blocks(s); ++blk) {
      const int c0 = blk * kChannelBlock, c1 = std::min(s.C, c0 + kChannelBlock);
      double mean[kChannelBlock], var[kChannelBlock];
      block_stats(s, x, c0, c1, mean, var);
      for (int c = c0; c < c1; ++c) {
        const double mu = mean[c - c0], v = var[c - c0];
        const double invstd = 1.0 / std::sqrt(v + double(eps));
        const float g = gamma ? gamma[c] : 1.f;
        fmean[c] = float(mu);
        scale[c] = float(invstd * g);
        shift[c] = beta ? beta[c] : 0.f;
        if (save_mean) save_mean[c] = float(mu);
        if (save_invstd) save_invstd[c] = float(invstd);
        if (running_mean)
          running_mean[c] = float((1.0 - momentum) * running_mean[c] + double(momentum) * mu);
        if (running_var) {
          const double unbiased = v * double(m) / double(m - 1);
          running_var[c] = float((1.0 - momentum) * running_var[c] + double(momentum) * unbiased);
        }
      }
    }
    apply_rows(s, x, fmean.data(), scale.data(), shift.data(), y);
    return;
  }
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * m > 32768)
#endif
  for (int c = 0; c < s.C; ++c) {
    double mean, var;
    channel_stats(s, x, c, mean, var);
    const double invstd = 1.0 / std::sqrt(var + double(eps));
    const float g = gamma ? gamma[c] : 1.f, b = beta ? beta[c] : 0.f;
    apply_channel(s, x, c, float(mean), float(invstd * g), b, y);
    if (save_mean) save_mean[c] = float(mean);
    if (save_invstd) save_invstd[c] = float(invstd);
    if (running_mean)
      running_mean[c] = float((1.0 - momentum) * running_mean[c] + double(momentum) * mean);
    if (running_var) {
      const double unbiased = var * double(m) / double(m - 1);
      running_var[c] = float((1.0 - momentum) * running_var[c] + double(momentum) * unbiased);
    }
  }
}

void batchnorm_forward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                             const float* beta, const float* running_mean,
                             const float* running_var, float eps, float* y) {
  check_shape(s, "batchnorm_forward_infer");
  if (rowwise(s)) {
    std::vector<float> scale(s.C), shift(s.C);
    for (int c = 0; c < s.C; ++c) {
      scale[c] = batchnorm_infer_scale(gamma, running_var, eps, c);
      shift[c] = beta ? beta[c] : 0.f;
    }
    apply_rows(s, x, running_mean, scale.data(), shift.data(), y);
    return;
  }
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
  for (int c = 0; c < s.C; ++c) {
    const float b = beta ? beta[c] : 0.f;
    apply_channel(s, x, c, running_mean[c], batchnorm_infer_scale(gamma, running_var, eps, c), b, y);
  }
}

// dy may be dx: every channel's sums are complete before any of its dx is
// written, and each dx element is written from the same element of dy.
void batchnorm_backward_train(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* save_mean, const float* save_invstd, const float* dy,
                              float* dx, float* dgamma, float* dbeta) {
  check_shape(s, "batchnorm_backward_train");
  const double m = double(s.N) * s.HW;
  if (rowwise(s)) {
    std::vector<float> fmean(s.C), mean_dy(s.C), k(s.C), coef(s.C);
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
    for (int blk = 0; blk < channel_blocks(s); ++blk) {
      const int c0 = blk * kChannelBlock, c1 = std::min(s.C, c0 + kChannelBlock);
      double mean[kChannelBlock], sum_dy[kChannelBlock], sum_dy_xc[kChannelBlock];
      for (int c = c0; c < c1; ++c) mean[c - c0] = save_mean[c];
      block_grad_sums(s, x, dy, c0, c1, mean, sum_dy, sum_dy_xc);
      for (int c = c0; c < c1; ++c) {
        const double invstd = save_invstd[c], sdy = sum_dy[c - c0], sdx = sum_dy_xc[c - c0];
        if (dgamma) dgamma[c] = float(sdx * invstd);
        if (dbeta) dbeta[c] = float(sdy);
        const float g = gamma ? gamma[c] : 1.f;
        fmean[c] = float(mean[c - c0]);
        mean_dy[c] = float(sdy / m);
        k[c] = float(sdx * invstd * invstd / m);
        coef[c] = float(invstd * g);
      }
    }
    if (dx) backward_rows(s, x, dy, fmean.data(), mean_dy.data(), k.data(), coef.data(), dx);
    return;
  }
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
  for (int c = 0; c < s.C; ++c) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy, sum_dy_xc;
    grad_sums(s, x, dy, c, mean, sum_dy, sum_dy_xc);
    if (dgamma) dgamma[c] = float(sum_dy_xc * invstd);  // sum(dy * xhat)
    if (dbeta) dbeta[c] = float(sum_dy);
    if (!dx) continue;
    // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)), with
    // xhat * mean(dy*xhat) = (x - mean) * k.
    const float g = gamma ? gamma[c] : 1.f;
    const float mean_dy = float(sum_dy / m);
    const float k = float(sum_dy_xc * invstd * invstd / m);
    const float fmean = float(mean), coef = float(invstd * g);
    for (int n = 0; n < s.N; ++n) {
      const int64_t base = at(s, n, c, 0);
      for (int64_t p = 0; p < s.HW; ++p)
        dx[base + p] = (dy[base + p] - mean_dy - (x[base + p] - fmean) * k) * coef;
    }
  }
}

void batchnorm_backward_infer(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* running_mean, const float* running_var, float eps,
                              const float* dy, float* dx, float* dgamma, float* dbeta) {
  check_shape(s, "batchnorm_backward_infer");
  if (rowwise(s)) {
    if (dgamma || dbeta) {
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
      for (int blk = 0; blk < channel_blocks(s); ++blk) {
        const int c0 = blk * kChannelBlock, c1 = std::min(s.C, c0 + kChannelBlock);
        double mean[kChannelBlock], sum_dy[kChannelBlock], sum_dy_xc[kChannelBlock];
        for (int c = c0; c < c1; ++c) mean[c - c0] = running_mean[c];
        block_grad_sums(s, x, dy, c0, c1, mean, sum_dy, sum_dy_xc);
        for (int c = c0; c < c1; ++c) {
          const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
          if (dgamma) dgamma[c] = float(sum_dy_xc[c - c0] * invstd);
          if (dbeta) dbeta[c] = float(sum_dy[c - c0]);
        }
      }
    }
    if (!dx) return;
    std::vector<float> coef(s.C);
    for (int c = 0; c < s.C; ++c)
      coef[c] = float(1.0 / std::sqrt(double(running_var[c]) + double(eps)) *
                      (gamma ? gamma[c] : 1.f));
    scale_rows(s, dy, coef.data(), dx);
    return;
  }
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
  for (int c = 0; c < s.C; ++c) {
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
    if (dgamma || dbeta) {
      double sum_dy, sum_dy_xc;
      grad_sums(s, x, dy, c, running_mean[c], sum_dy, sum_dy_xc);
      if (dgamma) dgamma[c] = float(sum_dy_xc * invstd);
      if (dbeta) dbeta[c] = float(sum_dy);
    }
    if (!dx) continue;
    const float coef = float(invstd * (gamma ? gamma[c] : 1.f));
    for (int n = 0; n < s.N; ++n) {
      const int64_t base = at(s, n, c, 0);
      for (int64_t p = 0; p < s.HW; ++p) dx[base + p] = dy[base + p] * coef;
    }
  }
}

void batchnorm_fold(int K, int64_t per_channel, float* weight, float* bias, const float* gamma,
                    const float* beta, const float* running_mean, const float* running_var,
                    float eps) {
  DOFPOSE_CHECK(bias != nullptr, "batchnorm_fold: the layer needs a bias tensor to fold into ",
                "(start it at zero if the layer had none)");
  for (int k = 0; k < K; ++k) {
    const double scale = double(gamma[k]) / std::sqrt(double(running_var[k]) + double(eps));
    float* row = weight + int64_t(k) * per_channel;
    for (int64_t i = 0; i < per_channel; ++i) row[i] = float(row[i] * scale);
    bias[k] = float((double(bias[k]) - running_mean[k]) * scale + beta[k]);
  }
}

// ---- BatchNorm -> ReLU -> Dropout, the training activation as one op.
// The reference is the three kernels' arithmetic in order, so it is bitwise
// the separate ops; the GPU twin does it in one pass over each channel.

void batchnorm_relu_dropout_forward_train(const BatchNormShape& s, const float* x,
                                          const float* gamma, const float* beta,
                                          float* running_mean, float* running_var,
                                          float momentum, float eps, float p, uint64_t seed,
                                          float* y, float* save_mean, float* save_invstd,
                                          uint8_t* mask, const float* residual) {
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, "batchnorm_relu_dropout_forward_train: drop probability "
                "p must be in [0, 1), got ", p);
  batchnorm_forward_train(s, x, gamma, beta, running_mean, running_var, momentum, eps, y,
                          save_mean, save_invstd);
  const int64_t n = int64_t(s.N) * s.C * s.HW;
  const float keep_scale = 1.f / (1.f - p);  // 1 for p == 0: relu(z) * 1 is relu(z)
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n > kHashParallelMin)
#endif
  for (int64_t i = 0; i < n; ++i) {  // branch-free, so it vectorises (see dropout_uniform)
    const float z = y[i];
    const bool keep = dropout_uniform(seed, uint64_t(i)) >= p;  // p == 0 keeps all
    const float kept = (z < 0.f ? 0.f : z) * keep_scale;
    y[i] = keep ? kept : 0.f;
    mask[i] = keep & !(z <= 0.f);  // relu_backward cuts z <= 0 (NaN passes)
  }
  // A pass of its own: in the loop above, -march=native would contract the
  // dropout's product and this sum into one FMA, and differ from add_forward.
  if (residual) add_forward(n, residual, y, y);
}

void batchnorm_relu_dropout_backward_train(const BatchNormShape& s, const float* x,
                                           const float* gamma, const float* save_mean,
                                           const float* save_invstd, const uint8_t* mask,
                                           float p, const float* dy, float* dx, float* dgamma,
                                           float* dbeta, const float* dx_add) {
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, "batchnorm_relu_dropout_backward_train: drop probability "
                "p must be in [0, 1), got ", p);
  const int64_t n = int64_t(s.N) * s.C * s.HW;
  const float keep_scale = 1.f / (1.f - p);
  // The gradient at the BatchNorm output, built in dx itself when there is
  // one (batchnorm_backward_train allows dy == dx): no scratch the size of
  // an activation per call.
  std::vector<float> scratch(dx ? 0 : static_cast<size_t>(n));
  float* g = dx ? dx : scratch.data();
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n > 65536)
#endif
  for (int64_t i = 0; i < n; ++i) g[i] = mask[i] ? dy[i] * keep_scale : 0.f;
  batchnorm_backward_train(s, x, gamma, save_mean, save_invstd, g, dx, dgamma, dbeta);
  if (dx_add) accumulate(n, dx_add, dx);  // accumulate's own pass, as the unfused block
}

}  // namespace dofpose::cpu
