#include "dofpose/nn/linear.h"

#include <cmath>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"

namespace dofpose::nn {

uint64_t mix_seed(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {

// Uniform in [0, 1) from the top 24 bits: exact in float, same on every platform.
float uniform01(uint64_t seed, uint64_t index) {
  return float(mix_seed(seed, index) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace

Linear::Linear(int in, int out)
    : in_features(in),
      out_features(out),
      weight(Tensor::zeros({out, in})),
      bias(Tensor::zeros({out})),
      grad_weight(Tensor::zeros({out, in})),
      grad_bias(Tensor::zeros({out})) {
  DOFPOSE_CHECK(in >= 1 && out >= 1, "Linear: features must be >= 1, got in=", in,
                " out=", out);
}

void Linear::init_uniform(uint64_t seed) {
  const float bound = 1.f / std::sqrt(float(in_features));
  const uint64_t wseed = mix_seed(seed, 0), bseed = mix_seed(seed, 1);
  float* w = weight.f32();
  for (int64_t i = 0; i < weight.numel(); ++i) w[i] = (2.f * uniform01(wseed, i) - 1.f) * bound;
  float* b = bias.f32();
  for (int64_t i = 0; i < bias.numel(); ++i) b[i] = (2.f * uniform01(bseed, i) - 1.f) * bound;
}

TensorView Linear::forward(Arena& arena, const TensorView& x) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Linear"));
  x_ = x;
  DOFPOSE_CHECK(x.ndim() == 2, "Linear: input must be [N,", in_features, "], got ", x.str());
  TensorView y = arena.alloc({x.dim(0), out_features});
  ops::linear_forward(x, weight, bias, y);
  if (span.on())
    span.done(trace.get("Linear"), "Linear", y, 2 * x.dim(0) * int64_t(in_features) * out_features);
  return y;
}

TensorView Linear::forward_fused(Arena& arena, const TensorView& x, const ops::LinearFusionRef& f,
                                 const char* type) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Linear"));
  x_ = TensorView();  // a fused forward cannot be back-propagated
  DOFPOSE_CHECK(x.ndim() == 2, "Linear: input must be [N,", in_features, "], got ", x.str());
  TensorView y = arena.alloc({x.dim(0), out_features});
  ops::linear_fused_forward(x, weight, bias, y, f);
  if (span.on())
    span.done(trace.get("Linear"), type, y, 2 * x.dim(0) * int64_t(in_features) * out_features);
  return y;
}

TensorView Linear::backward(Arena& arena, const TensorView& dy, const TensorView& dx_add) {
  DOFPOSE_CHECK(!x_.empty(), "Linear::backward called without a (non-fused) forward");
  TensorView dx = arena.alloc(x_.shape);
  ops::linear_backward(x_, weight, dy, dx, grad_weight, grad_bias, dx_add);
  return dx;
}

void Linear::collect(const std::string& prefix, std::vector<Param>& params,
                     std::vector<Buffer>&) {
  trace.set(prefix);
  params.push_back({prefix + "weight", &weight, &grad_weight});
  params.push_back({prefix + "bias", &bias, &grad_bias});
}

void apply_max_norm(Module& module, float max_norm) {
  if (!(max_norm > 0.f)) return;
  for (const Param& prm : module.parameters()) {
    if (prm.value->shape().ndim != 2) continue;
    const int64_t rows = prm.value->shape()[0], cols = prm.value->shape()[1];
    if (prm.value->device() == Device::CUDA) {
#ifdef DOFPOSE_WITH_CUDA
      cuda_kernels::max_norm_rows(rows, cols, max_norm, prm.value->f32(), ops::cuda_stream());
      continue;
#endif
    }
    cpu::max_norm_rows(rows, cols, max_norm, prm.value->f32());
  }
}

}  // namespace dofpose::nn
