#include "dofpose/nn/conv_layers.h"

#include <cmath>

namespace dofpose::nn {

void uniform_fill(const TensorView& t, float bound, std::mt19937_64& rng) {
  DOFPOSE_CHECK(t.device == Device::CPU, "uniform_fill: ", t.str(), " must be on the CPU");
  std::uniform_real_distribution<float> dist(-bound, bound);
  float* p = t.f32();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = dist(rng);
}

Conv2d::Conv2d(int in_c, int out_c, int k, int stride, int pad, int groups, bool with_bias)
    : in_channels(in_c), out_channels(out_c), kernel(k), has_bias(with_bias) {
  DOFPOSE_CHECK(in_c > 0 && out_c > 0 && k > 0 && stride > 0 && pad >= 0 && groups > 0,
                "Conv2d: invalid configuration in=", in_c, " out=", out_c, " kernel=", k,
                " stride=", stride, " pad=", pad, " groups=", groups);
  DOFPOSE_CHECK(in_c % groups == 0 && out_c % groups == 0, "Conv2d: channels in=", in_c,
                " out=", out_c, " are not divisible by groups=", groups);
  p.stride = stride;
  p.pad = pad;
  p.groups = groups;
  weight = Tensor::zeros({out_c, in_c / groups, k, k});
  grad_weight = Tensor::zeros(weight.shape());
  if (with_bias) {
    bias = Tensor::zeros({out_c});
    grad_bias = Tensor::zeros({out_c});
  }
}

TensorView Conv2d::forward(Arena& arena, const TensorView& x) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Conv2d"));
  x_ = x;
  winograd_ = false;
  TensorView y = arena.alloc(ops::conv2d_output_shape(x, weight, p), x.dtype);
  ops::conv2d_forward(x, weight, bias.view(), y, p);
  if (span.on()) span.done(trace.get("Conv2d"), "Conv2d", y, ops::conv2d_shape(x, weight, p).flops());
  return y;
}

TensorView Conv2d::forward_fast(Arena& arena, const TensorView& x) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Conv2d"));
  x_ = x;
  TensorView y = arena.alloc(ops::conv2d_output_shape(x, weight, p), x.dtype);
  winograd_ = ops::conv2d_forward_fast(x, weight, bias.view(), y, p);
  if (span.on()) span.done(trace.get("Conv2d"), "Conv2d", y, ops::conv2d_shape(x, weight, p).flops());
  return y;
}

TensorView Conv2d::forward_fused(Arena& arena, const TensorView& x, const ops::ConvFusionRef& f,
                                 const char* type) {
  return forward_fused(arena, x, f, type, x.dtype);
}

TensorView Conv2d::forward_fused(Arena& arena, const TensorView& x, const ops::ConvFusionRef& f,
                                 const char* type, DType out_dtype) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("Conv2d"));
  x_ = TensorView();  // a fused forward cannot be back-propagated
  winograd_ = false;
  TensorView y = arena.alloc(ops::conv2d_output_shape(x, weight, p), out_dtype);
  ops::conv2d_fused_forward(x, weight, bias.view(), y, p, f);
  if (span.on()) span.done(trace.get("Conv2d"), type, y, ops::conv2d_shape(x, weight, p).flops());
  return y;
}

TensorView Conv2d::forward_add(Arena& arena, const TensorView& x, const TensorView& residual) {
  if (p.groups != 1) {  // the fused conv is dense only
    TensorView y = forward(arena, x);
    ops::accumulate(residual, y);
    return y;
  }
  ops::ConvFusionRef f;
  f.residual = residual;
  TensorView y = forward_fused(arena, x, f, "Conv2d+Add");
  x_ = x;
  return y;
}

TensorView Conv2d::backward(Arena& arena, const TensorView& dy, bool need_dx) {
  DOFPOSE_CHECK(!x_.empty(), "Conv2d::backward called without a forward");
  TensorView dx = need_dx ? arena.alloc(x_.shape) : TensorView();
  ops::conv2d_backward_fast(x_, weight, dy, dx, grad_weight, grad_bias.view(), p, winograd_);
  return dx;
}

void Conv2d::collect(const std::string& prefix, std::vector<Param>& params,
                     std::vector<Buffer>&) {
  trace.set(prefix);
  params.push_back({prefix + "weight", &weight, &grad_weight});
  if (has_bias) params.push_back({prefix + "bias", &bias, &grad_bias});
}

void Conv2d::reset_parameters(std::mt19937_64& rng) {
  const float bound = 1.f / std::sqrt(float(in_channels / p.groups * kernel * kernel));
  uniform_fill(weight, bound, rng);
  if (has_bias) uniform_fill(bias, bound, rng);
}

int64_t Conv2d::flops(int N, int H, int W) const {
  Conv2dShape s;
  s.N = N;
  s.C = in_channels;
  s.H = H;
  s.W = W;
  s.K = out_channels;
  s.R = s.S = kernel;
  s.stride = p.stride;
  s.pad = p.pad;
  s.groups = p.groups;
  return s.flops();
}

TensorView MaxPool2x2::forward(Arena& arena, const TensorView& x) {
  DOFPOSE_CHECK(x.ndim() == 4, "MaxPool2x2: input ", x.str(), " must be [N,C,H,W]");
  x_ = x;
  TensorView y = arena.alloc({x.dim(0), x.dim(1), x.dim(2) / 2, x.dim(3) / 2}, x.dtype);
  ops::maxpool2x2_forward(x, y);
  return y;
}

TensorView MaxPool2x2::backward(Arena& arena, const TensorView& dy, const TensorView& dx_add) {
  DOFPOSE_CHECK(!x_.empty(), "MaxPool2x2::backward called without a forward");
  TensorView dx = arena.alloc(x_.shape);
  ops::maxpool2x2_backward(x_, dy, dx, dx_add);
  return dx;
}

TensorView UpsampleNearest2x::forward(Arena& arena, const TensorView& x) {
  DOFPOSE_CHECK(x.ndim() == 4, "UpsampleNearest2x: input ", x.str(), " must be [N,C,H,W]");
  x_shape_ = x.shape;
  TensorView y = arena.alloc({x.dim(0), x.dim(1), x.dim(2) * 2, x.dim(3) * 2});
  ops::upsample_nearest2x_forward(x, y);
  return y;
}

TensorView UpsampleNearest2x::forward_add(Arena& arena, const TensorView& x,
                                          const TensorView& skip) {
  DOFPOSE_CHECK(x.ndim() == 4, "UpsampleNearest2x: input ", x.str(), " must be [N,C,H,W]");
  x_shape_ = x.shape;
  TensorView y = arena.alloc({x.dim(0), x.dim(1), x.dim(2) * 2, x.dim(3) * 2}, skip.dtype);
  ops::upsample_add_forward(skip, x, y);
  return y;
}

TensorView UpsampleNearest2x::backward(Arena& arena, const TensorView& dy) {
  DOFPOSE_CHECK(x_shape_.ndim == 4, "UpsampleNearest2x::backward called without a forward");
  TensorView dx = arena.alloc(x_shape_);
  ops::upsample_nearest2x_backward(dy, dx);
  return dx;
}

}  // namespace dofpose::nn
