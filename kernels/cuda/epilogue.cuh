// The epilogue every fused kernel applies to one output channel (the fused
// conv, the fused linear, the persistent lifter): acc + bias, the inference
// BatchNorm (x - mean) * gamma / sqrt(var + eps) + beta, ReLU. Callers add the
// residual, whose layout is theirs. The per-channel values are read once;
// the CPU rounds the root in double (cpu::batchnorm_infer_scale): within an ulp.
#pragma once
#include <cstdint>

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

// Channels c..c+3 at once, each parameter array read as one float4: scalar
// reads per channel cost a warp 8 sectors where 2 do (emulator memory
// profile). The caller checks c % 4 == 0 and every array 16-byte aligned
// (epilogue_params_aligned).
struct ChannelEpilogue4 {
  ChannelEpilogue e[4];
  __device__ __forceinline__ ChannelEpilogue4(const float* b, const BatchNormPtrs& n, bool r, int c) {
    const bool bn = n.present();
    auto load = [c](const float* p, float otherwise) {
      return p ? *reinterpret_cast<const float4*>(p + c)
               : make_float4(otherwise, otherwise, otherwise, otherwise);
    };
    const float4 bias = load(b, 0.0f), mean = load(bn ? n.mean : nullptr, 0.0f),
                 var = load(bn ? n.var : nullptr, 1.0f), gamma = load(bn ? n.gamma : nullptr, 1.0f),
                 beta = load(bn ? n.beta : nullptr, 0.0f);
    e[0] = ChannelEpilogue(b != nullptr, bias.x, bn, mean.x, var.x, gamma.x, beta.x, n.eps, r);
    e[1] = ChannelEpilogue(b != nullptr, bias.y, bn, mean.y, var.y, gamma.y, beta.y, n.eps, r);
    e[2] = ChannelEpilogue(b != nullptr, bias.z, bn, mean.z, var.z, gamma.z, beta.z, n.eps, r);
    e[3] = ChannelEpilogue(b != nullptr, bias.w, bn, mean.w, var.w, gamma.w, beta.w, n.eps, r);
  }
};

// Whether every parameter array ChannelEpilogue4 reads is 16-byte aligned (host side).
inline bool epilogue_params_aligned(const float* bias, const BatchNormPtrs& n) {
  auto ok = [](const float* p) { return !p || reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return ok(bias) && (!n.present() || (ok(n.mean) && ok(n.var) && ok(n.gamma) && ok(n.beta)));
}

}  // namespace dofpose::cuda_kernels
