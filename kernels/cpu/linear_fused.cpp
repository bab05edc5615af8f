// The fused linear layer's CPU reference (LinearFusion, dofpose/op_shapes.h):
// linear_forward, then per output feature the inference BatchNorm, ReLU and
// the residual add, each with the arithmetic of the separate op, so the fused
// and the unfused lifter give the same bits on the CPU.
#include <cmath>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

void linear_fused_forward(int N, int in, int out, const float* x, const float* w,
                          const LinearFusion& f, float* y) {
  DOFPOSE_CHECK(!f.bn.present() || f.bn.var, "linear_fused_forward: bn needs var");
  linear_forward(N, in, out, x, w, f.bias, y);
  if (!f.bn.present() && !f.relu && !f.residual) return;
  float scale_stack[256], shift_stack[256];
  std::vector<float> scale_heap, shift_heap;
  float *scale = scale_stack, *shift = shift_stack;
  if (out > 256) {
    scale_heap.resize(size_t(out));
    shift_heap.resize(size_t(out));
    scale = scale_heap.data();
    shift = shift_heap.data();
  }
  if (f.bn.present())
    for (int o = 0; o < out; ++o) {  // batchnorm_forward_infer's per-channel scale
      const double invstd = 1.0 / std::sqrt(double(f.bn.var[o]) + double(f.bn.eps));
      scale[o] = float(invstd * (f.bn.gamma ? f.bn.gamma[o] : 1.f));
      shift[o] = f.bn.beta ? f.bn.beta[o] : 0.f;
    }
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(N) * out > 32768)
#endif
  for (int n = 0; n < N; ++n) {
    float* row = y + int64_t(n) * out;
    const float* res = f.residual ? f.residual + int64_t(n) * out : nullptr;
    for (int o = 0; o < out; ++o) {
      float v = row[o];
      if (f.bn.present()) v = (v - f.bn.mean[o]) * scale[o] + shift[o];
      if (f.relu) v = v < 0.f ? 0.f : v;
      if (res) v = res[o] + v;  // add_forward(residual, h)
      row[o] = v;
    }
  }
}

}  // namespace dofpose::cpu
