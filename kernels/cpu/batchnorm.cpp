// BatchNorm reference kernels (PyTorch 1.13 semantics). Each channel's sums are
// accumulated in double by a single thread in a fixed order, so the results are
// bitwise identical whatever the thread count.
#include <cmath>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

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

// Mean and biased variance of channel c (two passes for accuracy).
void channel_stats(const BatchNormShape& s, const float* x, int c, double& mean, double& var) {
  const double m = double(s.N) * s.HW;
  double sum = 0;
  for (int n = 0; n < s.N; ++n)
    for (int64_t p = 0; p < s.HW; ++p) sum += x[at(s, n, c, p)];
  mean = sum / m;
  double sq = 0;
  for (int n = 0; n < s.N; ++n)
    for (int64_t p = 0; p < s.HW; ++p) {
      const double d = x[at(s, n, c, p)] - mean;
      sq += d * d;
    }
  var = sq / m;
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
  sum_dy = 0;
  sum_dy_xc = 0;
  for (int n = 0; n < s.N; ++n)
    for (int64_t p = 0; p < s.HW; ++p) {
      const int64_t i = at(s, n, c, p);
      sum_dy += dy[i];
      sum_dy_xc += double(dy[i]) * (double(x[i]) - mean);
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
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * s.HW > 32768)
#endif
  for (int c = 0; c < s.C; ++c) {
    const double invstd = 1.0 / std::sqrt(double(running_var[c]) + double(eps));
    const float g = gamma ? gamma[c] : 1.f, b = beta ? beta[c] : 0.f;
    apply_channel(s, x, c, running_mean[c], float(invstd * g), b, y);
  }
}

void batchnorm_backward_train(const BatchNormShape& s, const float* x, const float* gamma,
                              const float* save_mean, const float* save_invstd, const float* dy,
                              float* dx, float* dgamma, float* dbeta) {
  check_shape(s, "batchnorm_backward_train");
  const double m = double(s.N) * s.HW;
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

}  // namespace dofpose::cpu
