#include "dofpose/nn/basic_layers.h"

namespace dofpose::nn {

std::vector<Param> Module::parameters() {
  std::vector<Param> p;
  std::vector<Buffer> b;
  collect("", p, b);
  return p;
}

std::vector<Buffer> Module::buffers() {
  std::vector<Param> p;
  std::vector<Buffer> b;
  collect("", p, b);
  return b;
}

int64_t Module::parameter_count() {
  int64_t n = 0;
  for (const Param& p : parameters()) n += p.value->numel();
  return n;
}

void Module::to_device(Device d) {
  std::vector<Param> params;
  std::vector<Buffer> bufs;
  collect("", params, bufs);
  for (const Param& p : params) {
    if (p.value->device() != d) *p.value = p.value->to(d);
    if (p.grad && p.grad->device() != d) *p.grad = p.grad->to(d);
  }
  for (const Buffer& b : bufs)
    if (b.value->device() != d) *b.value = b.value->to(d);
}

Device Module::device() {
  const std::vector<Param> params = parameters();
  return params.empty() ? Device::CPU : params[0].value->device();
}

BatchNorm::BatchNorm(int c, float eps, float momentum)
    : channels(c),
      weight(Tensor::empty({c})),
      bias(Tensor::zeros({c})),
      running_mean(Tensor::zeros({c})),
      running_var(Tensor::empty({c})),
      grad_weight(Tensor::zeros({c})),
      grad_bias(Tensor::zeros({c})) {
  p.eps = eps;
  p.momentum = momentum;
  fill(weight, 1.f);
  fill(running_var, 1.f);
}

TensorView BatchNorm::forward(Arena& arena, const TensorView& x, Mode mode) {
  TraceSpan span;
  if (span.on()) span.range(trace.get("BatchNorm"));
  mode_ = mode;
  x_ = x;
  act_fused_ = false;
  TensorView y = arena.alloc(x.shape);
  if (mode == Mode::Train) {
    save_mean_ = arena.alloc({channels});
    save_invstd_ = arena.alloc({channels});
    ops::batchnorm_forward_train(x, weight, bias, running_mean, running_var, y, save_mean_,
                                 save_invstd_, p);
  } else {
    ops::batchnorm_forward_infer(x, weight, bias, running_mean, running_var, y, p);
  }
  if (span.on()) span.done(trace.get("BatchNorm"), "BatchNorm", y);
  return y;
}

TensorView BatchNorm::forward_relu(Arena& arena, const TensorView& x, Mode mode, ReLU& relu,
                                   Dropout* drop, const TraceName& owner,
                                   const char* relu_name, const TensorView& residual) {
  if (!fused_training(mode)) {
    TensorView h = forward(arena, x, mode);
    h = traced_op(owner, relu_name, "ReLU", [&] { return relu.forward(arena, h); });
    if (drop) h = drop->forward(arena, h, mode);
    if (residual.empty()) return h;
    TensorView y = arena.alloc(h.shape);
    ops::add_forward(residual, h, y);
    return y;
  }
  TraceSpan span;
  if (span.on()) span.range(trace.get("BatchNorm"));
  uint64_t seed = 0;
  const float drop_p = drop ? drop->draw(mode, seed) : 0.f;
  mode_ = mode;
  x_ = x;
  act_fused_ = true;
  act_p_ = drop_p;
  save_mean_ = arena.alloc({channels});
  save_invstd_ = arena.alloc({channels});
  act_mask_ = arena.alloc(x.shape, DType::U8);
  TensorView y = arena.alloc(x.shape);
  ops::batchnorm_relu_dropout_forward_train(x, weight, bias, running_mean, running_var, y,
                                            save_mean_, save_invstd_, act_mask_, drop_p, seed, p,
                                            residual);
  if (span.on()) {
    const char* type = drop_p > 0.f ? (residual.empty() ? "BatchNorm+ReLU+Dropout"
                                                        : "BatchNorm+ReLU+Dropout+Add")
                                    : (residual.empty() ? "BatchNorm+ReLU" : "BatchNorm+ReLU+Add");
    span.done(trace.get("BatchNorm"), type, y);
  }
  return y;
}

TensorView BatchNorm::backward_relu(Arena& arena, const TensorView& dy, ReLU& relu,
                                    Dropout* drop, const TensorView& dx_add) {
  if (!act_fused_) {
    TensorView dx = backward(arena, relu.backward(arena, drop ? drop->backward(arena, dy) : dy));
    if (!dx_add.empty()) ops::accumulate(dx_add, dx);
    return dx;
  }
  TensorView dx = arena.alloc(x_.shape);
  ops::batchnorm_relu_dropout_backward_train(x_, weight, save_mean_, save_invstd_, act_mask_,
                                             act_p_, dy, dx, grad_weight, grad_bias, dx_add);
  return dx;
}

TensorView BatchNorm::backward(Arena& arena, const TensorView& dy) {
  TensorView dx = arena.alloc(x_.shape);
  if (mode_ == Mode::Train)
    ops::batchnorm_backward_train(x_, weight, save_mean_, save_invstd_, dy, dx, grad_weight,
                                  grad_bias);
  else
    ops::batchnorm_backward_infer(x_, weight, running_mean, running_var, dy, dx, grad_weight,
                                  grad_bias, p);
  return dx;
}

void BatchNorm::collect(const std::string& prefix, std::vector<Param>& params,
                        std::vector<Buffer>& buffers) {
  trace.set(prefix);
  params.push_back({prefix + "weight", &weight, &grad_weight});
  params.push_back({prefix + "bias", &bias, &grad_bias});
  buffers.push_back({prefix + "running_mean", &running_mean});
  buffers.push_back({prefix + "running_var", &running_var});
}

TensorView ReLU::forward(Arena& arena, const TensorView& x) {
  x_ = x;
  TensorView y = arena.alloc(x.shape);
  ops::relu_forward(x, y);
  return y;
}

TensorView ReLU::backward(Arena& arena, const TensorView& dy) {
  TensorView dx = arena.alloc(x_.shape);
  ops::relu_backward(x_, dy, dx);
  return dx;
}

Dropout::Dropout(float p_, uint64_t seed) : p(p_), base_seed_(seed) {
  DOFPOSE_CHECK(p >= 0.f && p < 1.f, "Dropout: p must be in [0, 1), got ", p);
}

void Dropout::set_seed(uint64_t seed) {
  base_seed_ = seed;
  step_ = 0;
}

TensorView Dropout::forward(Arena& arena, const TensorView& x, Mode mode) {
  active_ = mode == Mode::Train && p > 0.f;
  if (!active_) return x;
  TensorView y = arena.alloc(x.shape);
  mask_ = arena.alloc(x.shape, DType::U8);
  ops::dropout_forward(x, y, mask_, p, base_seed_ + step_);
  ++step_;
  return y;
}

float Dropout::draw(Mode mode, uint64_t& seed) {
  active_ = false;  // the fused op keeps the mask; backward() must not be used
  seed = 0;
  if (mode != Mode::Train || !(p > 0.f)) return 0.f;
  seed = base_seed_ + step_;
  ++step_;
  return p;
}

TensorView Dropout::backward(Arena& arena, const TensorView& dy) {
  if (!active_) return dy;
  TensorView dx = arena.alloc(dy.shape);
  ops::dropout_backward(mask_, dy, dx, p);
  return dx;
}

namespace {
thread_local bool g_no_grad = false;
thread_local bool g_unfused = false;
}  // namespace

bool fused_inference(Mode mode) {
  if (mode != Mode::Infer || !g_no_grad || g_unfused) return false;
  const Tracer* t = active_tracer();
  return !(t && t->needs_every_layer());
}

bool fused_training(Mode mode) {
  if (mode != Mode::Train || g_unfused) return false;
  const Tracer* t = active_tracer();
  return !(t && t->needs_every_layer());
}

ScopedNoGrad::ScopedNoGrad() : previous_(g_no_grad) { g_no_grad = true; }
ScopedNoGrad::~ScopedNoGrad() { g_no_grad = previous_; }

ScopedUnfused::ScopedUnfused() : previous_(g_unfused) { g_unfused = true; }
ScopedUnfused::~ScopedUnfused() { g_unfused = previous_; }

}  // namespace dofpose::nn
