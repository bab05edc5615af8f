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

namespace {
thread_local bool g_no_grad = false;
thread_local bool g_unfused = false;
}  // namespace

bool fused_inference(Mode mode) {
  if (mode != Mode::Infer || !g_no_grad || g_unfused) return false;
  const Tracer* t = active_tracer();
  return !(t && t->needs_every_layer());
}

ScopedNoGrad::ScopedNoGrad() : previous_(g_no_grad) { g_no_grad = true; }
ScopedNoGrad::~ScopedNoGrad() { g_no_grad = previous_; }

ScopedUnfusedInference::ScopedUnfusedInference() : previous_(g_unfused) { g_unfused = true; }
ScopedUnfusedInference::~ScopedUnfusedInference() { g_unfused = previous_; }

}  // namespace dofpose::nn
