// Training losses. Forward sums run in double; each backward writes dpred
// (it does not accumulate) scaled by dloss.
#include <cmath>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

void check_label(int32_t label, int C, int64_t where) {
  DOFPOSE_CHECK(label == -1 || (label >= 0 && label < C), "cross_entropy: labels[", where,
                "] = ", label, ", expected -1 (ignore) or a class in [0, ", C, ")");
}

// log(sum(exp(z))) over one C-way output, computed stably.
double log_sum_exp(int C, const float* z) {
  float zmax = z[0];
  for (int c = 1; c < C; ++c) zmax = std::fmax(zmax, z[c]);
  double sum = 0;
  for (int c = 0; c < C; ++c) sum += std::exp(double(z[c]) - zmax);
  return zmax + std::log(sum);
}

int64_t count_labelled(int64_t outputs, int C, const int32_t* labels) {
  int64_t count = 0;
  for (int64_t i = 0; i < outputs; ++i) {
    check_label(labels[i], C, i);
    count += labels[i] != -1;
  }
  return count;
}

}  // namespace

float heatmap_mse_forward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight) {
  DOFPOSE_CHECK(NJ >= 1 && HW >= 1, "heatmap_mse: expected [NJ>=1, HW>=1], got [", NJ, ", ", HW,
                "]");
  double total = 0;
  for (int j = 0; j < NJ; ++j) {
    double sq = 0;
    for (int64_t p = int64_t(j) * HW; p < int64_t(j + 1) * HW; ++p) {
      const double d = double(pred[p]) - target[p];
      sq += d * d;
    }
    total += (joint_weight ? joint_weight[j] : 1.0) * sq;
  }
  return float(total / (double(NJ) * HW));
}

void heatmap_mse_backward(int NJ, int HW, const float* pred, const float* target,
                          const float* joint_weight, float dloss, float* dpred) {
  DOFPOSE_CHECK(NJ >= 1 && HW >= 1, "heatmap_mse: expected [NJ>=1, HW>=1], got [", NJ, ", ", HW,
                "]");
  if (!dpred) return;
  for (int j = 0; j < NJ; ++j) {
    const float k = float(2.0 * dloss * (joint_weight ? joint_weight[j] : 1.0) / (double(NJ) * HW));
    for (int64_t p = int64_t(j) * HW; p < int64_t(j + 1) * HW; ++p)
      dpred[p] = k * (pred[p] - target[p]);
  }
}

float cross_entropy_forward(int N, int T, int C, const float* logits, const int32_t* labels) {
  DOFPOSE_CHECK(N >= 0 && T >= 0 && C >= 1, "cross_entropy: expected logits [N, T, C>=1], got [",
                N, ", ", T, ", ", C, "]");
  const int64_t outputs = int64_t(N) * T;
  const int64_t count = count_labelled(outputs, C, labels);
  if (count == 0) return 0.f;  // nothing labelled: no signal (PyTorch would give NaN)
  double total = 0;
  for (int64_t i = 0; i < outputs; ++i) {
    if (labels[i] == -1) continue;
    const float* z = logits + i * C;
    total += log_sum_exp(C, z) - z[labels[i]];
  }
  return float(total / double(count));
}

void cross_entropy_backward(int N, int T, int C, const float* logits, const int32_t* labels,
                            float dloss, float* dlogits) {
  DOFPOSE_CHECK(N >= 0 && T >= 0 && C >= 1, "cross_entropy: expected logits [N, T, C>=1], got [",
                N, ", ", T, ", ", C, "]");
  if (!dlogits) return;
  const int64_t outputs = int64_t(N) * T;
  const int64_t count = count_labelled(outputs, C, labels);
  const double k = count ? double(dloss) / double(count) : 0.0;
  for (int64_t i = 0; i < outputs; ++i) {
    const float* z = logits + i * C;
    float* d = dlogits + i * C;
    if (labels[i] == -1) {
      for (int c = 0; c < C; ++c) d[c] = 0.f;
      continue;
    }
    // d/dz of (logsumexp(z) - z[label]) = softmax(z) - onehot(label).
    const double lse = log_sum_exp(C, z);
    for (int c = 0; c < C; ++c)
      d[c] = float(k * (std::exp(double(z[c]) - lse) - (c == labels[i] ? 1.0 : 0.0)));
  }
}

float l1_forward(int64_t n, const float* pred, const float* target) {
  DOFPOSE_CHECK(n >= 1, "l1_loss: expected at least one element, got ", n);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += std::fabs(double(pred[i]) - target[i]);
  return float(total / double(n));
}

void l1_backward(int64_t n, const float* pred, const float* target, float dloss, float* dpred) {
  DOFPOSE_CHECK(n >= 1, "l1_loss: expected at least one element, got ", n);
  if (!dpred) return;
  const float k = float(double(dloss) / double(n));
  for (int64_t i = 0; i < n; ++i) {
    const float d = pred[i] - target[i];
    dpred[i] = d > 0.f ? k : (d < 0.f ? -k : 0.f);  // sign(0) = 0, as torch.sign
  }
}

}  // namespace dofpose::cpu
