// The fused convolution's CPU reference (ConvFusion, dofpose/op_shapes.h):
// prologue relu(in_bn(x)), conv2d, epilogue out_bn, relu, + residual. Each
// step is the arithmetic of the separate op it replaces (batchnorm_forward_infer,
// relu_forward, conv2d_forward, accumulate), so on the CPU the fused and the
// unfused bottleneck give the same bits; the CUDA kernel is tested against this.
// A 1x1 conv's prologue is applied as the GEMM packs x (gemm_bn_relu_b), with
// the same arithmetic. With f.winograd, a 3x3 stride-1 product with enough
// tiles runs by Winograd F(4x4, 3x3) (conv2d_winograd.cpp): faster, other rounding.
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

namespace dofpose::cpu {
namespace {

float bn_scale(const BatchNormPtrs& bn, int c) {
  return batchnorm_infer_scale(bn.gamma, bn.var, bn.eps, c);
}

inline float relu(float v) { return v < 0.f ? 0.f : v; }

// relu(in_bn(x)) as a pass over x when present, then the product (Winograd
// with its own epilogue, or conv2d_forward).
void conv_with_prologue_pass(const Conv2dShape& s, const float* x, const float* w,
                             const float* bias, const ConvFusion& f, bool winograd, float* y) {
  const float* xin = x;
  thread_local std::vector<float> pre;  // relu(in_bn(x)); grows only
  if (f.in_bn.present()) {
    const int64_t hw = int64_t(s.H) * s.W;
    pre.resize(size_t(int64_t(s.N) * s.C * hw));
    float* const pre_data = pre.data();  // the thread_local, named for the workers
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.C) * s.N * hw > 32768)
#endif
    for (int c = 0; c < s.C; ++c) {
      const float m = f.in_bn.mean[c], sc = bn_scale(f.in_bn, c);
      const float sh = f.in_bn.beta ? f.in_bn.beta[c] : 0.f;
      for (int n = 0; n < s.N; ++n) {
        const float* xp = x + (int64_t(n) * s.C + c) * hw;
        float* pp = pre_data + (int64_t(n) * s.C + c) * hw;
        for (int64_t i = 0; i < hw; ++i) pp[i] = relu((xp[i] - m) * sc + sh);
      }
    }
    xin = pre.data();
  }
  if (winograd) {
    ConvFusion out = f;  // the epilogue runs as the tiles are written
    out.in_bn = {};
    conv2d_winograd_forward(s, xin, w, bias, y, &out);
    return;
  }
  // The bias joins the epilogue's pass, except in the one-input-channel loop,
  // which starts its sums from it (conv2d_forward's arithmetic either way).
  conv2d_forward(s, xin, w, s.C == s.groups ? bias : nullptr, y);
}

// + bias (conv2d_forward's own pass, same arithmetic), out_bn, ReLU and the
// residual as one pass over y.
void epilogue_pass(const Conv2dShape& s, const float* bias, const ConvFusion& f, float* y) {
  if (!bias && !f.out_bn.present() && !f.out_relu && !f.residual) return;
  const int64_t pq = int64_t(s.P()) * s.Q();
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (int64_t(s.K) * s.N * pq > 32768)
#endif
  for (int k = 0; k < s.K; ++k) {
    const float b = bias ? bias[k] : 0.f;
    float m = 0.f, sc = 1.f, sh = 0.f;
    if (f.out_bn.present()) {
      m = f.out_bn.mean[k];
      sc = bn_scale(f.out_bn, k);
      sh = f.out_bn.beta ? f.out_bn.beta[k] : 0.f;
    }
    for (int n = 0; n < s.N; ++n) {
      const int64_t base = (int64_t(n) * s.K + k) * pq;
      float* yp = y + base;
      const float* rp = f.residual ? f.residual + base : nullptr;
      for (int64_t i = 0; i < pq; ++i) {
        float v = yp[i];
        if (bias) v += b;
        if (f.out_bn.present()) v = (v - m) * sc + sh;
        if (f.out_relu) v = relu(v);
        if (rp) v += rp[i];
        yp[i] = v;
      }
    }
  }
}

}  // namespace

void conv2d_fused_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          const ConvFusion& f, float* y) {
  DOFPOSE_CHECK(!f.in_bn.present() || f.in_bn.var, "conv2d_fused_forward: in_bn needs var");
  DOFPOSE_CHECK(!f.out_bn.present() || f.out_bn.var, "conv2d_fused_forward: out_bn needs var");
  const bool winograd = f.winograd && conv2d_winograd_worthwhile(s);
  const bool pointwise = s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
  const int64_t hw = int64_t(s.H) * s.W, pq = int64_t(s.P()) * s.Q();
  if (f.in_bn.present() && pointwise && s.C > 1 && s.groups == 1) {
    // A 1x1 conv's prologue runs as the GEMM packs x (no normalised copy of x
    // written and read back).
    thread_local std::vector<float> rows;
    rows.resize(size_t(3) * s.C);
    for (int c = 0; c < s.C; ++c) {
      rows[c] = f.in_bn.mean[c];
      rows[s.C + c] = bn_scale(f.in_bn, c);
      rows[2 * s.C + c] = f.in_bn.beta ? f.in_bn.beta[c] : 0.f;
    }
    const GemmRowPrologue pro{rows.data(), rows.data() + s.C, rows.data() + 2 * s.C};
    for (int n = 0; n < s.N; ++n) {
      float* yn = y + int64_t(n) * s.K * pq;
      gemm_bn_relu_b(s.K, int(pq), s.C, w, s.C, x + int64_t(n) * s.C * hw, int(hw), pro, yn,
                     int(pq));
    }
  } else {
    conv_with_prologue_pass(s, x, w, bias, f, winograd, y);
    if (winograd) return;  // its epilogue ran as the tiles were written
  }
  epilogue_pass(s, s.C == s.groups ? nullptr : bias, f, y);
}

}  // namespace dofpose::cpu
