// Gradient reversal layer (domain-adversarial training): the forward pass is
// the identity, the backward pass flips and scales the gradient.
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

void grad_reverse_forward(int64_t n, const float* x, float* y) {
  if (n > 0 && x != y) std::memcpy(y, x, size_t(n) * sizeof(float));
}

void grad_reverse_backward(int64_t n, float lambda, const float* dy, float* dx) {
  if (!dx) return;
  const float k = -lambda;
  for (int64_t i = 0; i < n; ++i) dx[i] = k * dy[i];
}

}  // namespace dofpose::cpu
