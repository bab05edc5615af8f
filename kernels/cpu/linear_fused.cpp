// The fused linear layer's CPU reference (LinearFusion, dofpose/op_shapes.h):
// linear_forward, then per output feature the inference BatchNorm, ReLU and
// the residual add, each with the arithmetic of the separate op, so the fused
// and the unfused lifter give the same bits on the CPU.
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {

void linear_fused_forward(int N, int in, int out, const float* x, const float* w,
                          const LinearFusion& f, float* y) {
  DOFPOSE_CHECK(!f.bn.present() || f.bn.var, "linear_fused_forward: bn needs var");
  linear_forward(N, in, out, x, w, f.bias, y);
  if (!f.bn.present() && !f.relu && !f.residual) return;
  thread_local std::vector<float> scale, shift;  // per output feature; grow only
  if (f.bn.present()) {
    scale.resize(size_t(out));
    shift.resize(size_t(out));
    for (int o = 0; o < out; ++o) {
      scale[size_t(o)] = batchnorm_infer_scale(f.bn.gamma, f.bn.var, f.bn.eps, o);
      shift[size_t(o)] = f.bn.beta ? f.bn.beta[o] : 0.f;
    }
  }
  const float* sc = scale.data();  // thread_local: the OpenMP threads read this thread's
  const float* sh = shift.data();
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(N) * out > 32768)
#endif
  for (int n = 0; n < N; ++n) {
    float* row = y + int64_t(n) * out;
    const float* res = f.residual ? f.residual + int64_t(n) * out : nullptr;
    for (int o = 0; o < out; ++o) {
      float v = row[o];
      if (f.bn.present()) v = (v - f.bn.mean[o]) * sc[o] + sh[o];
      if (f.relu) v = v < 0.f ? 0.f : v;
      if (res) v = res[o] + v;  // add_forward(residual, h)
      row[o] = v;
    }
  }
}

}  // namespace dofpose::cpu
