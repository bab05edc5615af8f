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
      : ChannelEpilogue(b != nullptr, b ? b[c] : 0.0f, n.present(), n.present() ? n.mean[c] : 0.0f,
                        n.present() ? n.var[c] : 1.0f, n.present() && n.gamma ? n.gamma[c] : 1.0f,
                        n.present() && n.beta ? n.beta[c] : 0.0f, n.eps, r) {}
  // The identity (no bias, no BatchNorm, no ReLU).
  __device__ __forceinline__ ChannelEpilogue()
      : ChannelEpilogue(false, 0.0f, false, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f, false) {}
  // From values already loaded (the persistent lifter fetches them before a barrier).
  __device__ __forceinline__ ChannelEpilogue(bool has_b, float b, bool has_bn, float m, float var,
                                             float gamma, float bt, float eps, bool r)
      : has_bias(has_b), bn(has_bn), relu(r), bias(b), mean(has_bn ? m : 0.0f),
        scale(has_bn ? gamma * (1.0f / sqrtf(var + eps)) : 1.0f), beta(has_bn ? bt : 0.0f) {}
  __device__ __forceinline__ float operator()(float acc) const {
    float v = has_bias ? acc + bias : acc;
    if (bn) v = (v - mean) * scale + beta;
    return relu ? fmaxf(v, 0.0f) : v;
  }
};

}  // namespace dofpose::cuda_kernels
