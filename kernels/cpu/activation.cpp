// ReLU and ReLU6 (PyTorch: clamp_min / hardtanh(0, 6)). Written as plain
// selects so the compiler vectorises them; NaN propagates like PyTorch's clamp.
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

void relu_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : x[i];
}

// PyTorch threshold_backward: the gradient is cut where x <= 0.
void relu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  if (!dx) return;
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] <= 0.f ? 0.f : dy[i];
}

void relu6_forward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : (x[i] > 6.f ? 6.f : x[i]);
}

// PyTorch hardtanh_backward: zero at and beyond both clip points.
void relu6_backward(int64_t n, const float* x, const float* dy, float* dx) {
  if (!dx) return;
  for (int64_t i = 0; i < n; ++i) dx[i] = (x[i] <= 0.f || x[i] >= 6.f) ? 0.f : dy[i];
}

}  // namespace dofpose::cpu
