// The epilogue every fused kernel applies to one output channel (the fused
// conv, the fused linear, the persistent lifter): acc + bias, the inference
// BatchNorm (x - mean) * gamma / sqrt(var + eps) + beta, ReLU. Callers add the
// residual, whose layout is theirs. The per-channel values are read once;
// the CPU rounds the root in double (cpu::batchnorm_infer_scale): within an ulp.
#pragma once
#include "dofpose/op_shapes.h"

namespace dofpose::cuda_kernels {

// Inference BatchNorm of channel c alone (the fused conv's input prologue).
__device__ __forceinline__ float bn_infer(const BatchNormPtrs& bn, int c, float x) {
  const float scale = (bn.gamma ? bn.gamma[c] : 1.0f) * (1.0f / sqrtf(bn.var[c] + bn.eps));
  return (x - bn.mean[c]) * scale + (bn.beta ? bn.beta[c] : 0.0f);
}

struct ChannelEpilogue {
  bool has_bias, bn, relu;
  float bias, mean, scale, beta;
  __device__ __forceinline__ ChannelEpilogue(const float* b, const BatchNormPtrs& n, bool r, int c)
      : has_bias(b != nullptr), bn(n.present()), relu(r), bias(b ? b[c] : 0.0f), mean(0.0f),
        scale(1.0f), beta(0.0f) {
    if (bn) {
      mean = n.mean[c];
      scale = (n.gamma ? n.gamma[c] : 1.0f) * (1.0f / sqrtf(n.var[c] + n.eps));
      beta = n.beta ? n.beta[c] : 0.0f;
    }
  }
  __device__ __forceinline__ float operator()(float acc) const {
    float v = has_bias ? acc + bias : acc;
    if (bn) v = (v - mean) * scale + beta;
    return relu ? fmaxf(v, 0.0f) : v;
  }
};

}  // namespace dofpose::cuda_kernels
