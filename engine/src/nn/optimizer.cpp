#include "dofpose/nn/optimizer.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "dofpose/ops.h"
#ifdef DOFPOSE_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

namespace dofpose::nn {

using json = nlohmann::json;

Optimizer::Optimizer(std::vector<Param> params, float lr_, std::vector<std::string> names)
    : lr(lr_), params_(std::move(params)), buffer_names_(std::move(names)) {
  state_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    DOFPOSE_CHECK(p.value && p.grad && p.value->shape() == p.grad->shape(),
                  "optimizer: parameter '", p.name, "' needs a value and a gradient of one shape");
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      state_[i].push_back(Tensor::zeros(p.value->shape(), DType::F32, p.value->device()));
  }
}

void Optimizer::step() {
  ++step_count_;
  for (size_t i = 0; i < params_.size(); ++i)
    update(i, params_[i].value->f32(), params_[i].grad->f32(), params_[i].value->numel());
}

void Optimizer::zero_grad() {
  for (const Param& p : params_) fill(*p.grad, 0.f);
}

void Optimizer::save_state(WeightsWriter& writer,
                           std::map<std::string, std::string>& metadata) const {
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      writer.add("optim." + params_[i].name + "." + buffer_names_[b], state_[i][b]);
  json meta = json::parse(options_json());
  meta["type"] = type();
  meta["step"] = step_count_;
  meta["lr"] = lr;
  metadata["optimizer"] = meta.dump();
}

void Optimizer::load_state(const WeightsFile& file) {
  const auto it = file.metadata().find("optimizer");
  DOFPOSE_CHECK(it != file.metadata().end(), "optimizer state: ", file.path(),
                " has no 'optimizer' metadata (saved without an optimizer?)");
  json meta;
  try {
    meta = json::parse(it->second);
  } catch (const json::exception& e) {
    fail("optimizer state: ", file.path(), ": metadata 'optimizer' is not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(meta.is_object() && meta.contains("type") && meta["type"].is_string() &&
                    meta.contains("step") && meta["step"].is_number_integer(),
                "optimizer state: ", file.path(), ": metadata 'optimizer' needs 'type' and 'step'");
  const std::string t = meta["type"].get<std::string>();
  DOFPOSE_CHECK(t == type(), "optimizer state: ", file.path(), " holds '", t,
                "' state, this optimizer is '", type(), "'");
  // Check everything before changing anything.
  std::vector<std::vector<Tensor>> loaded(params_.size());
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t b = 0; b < buffer_names_.size(); ++b) {
      const std::string name = "optim." + params_[i].name + "." + buffer_names_[b];
      DOFPOSE_CHECK(file.has(name), "optimizer state: ", file.path(), " lacks tensor '", name,
                    "'");
      loaded[i].push_back(
          file.load_f32(name, params_[i].value->shape()).to(params_[i].value->device()));
    }
  state_ = std::move(loaded);
  step_count_ = meta["step"].get<int64_t>();
}

// ---- RMSprop

RMSprop::RMSprop(std::vector<Param> params, RMSpropOptions o)
    : Optimizer(std::move(params), o.lr,
                o.momentum > 0.f ? std::vector<std::string>{"square_avg", "momentum_buffer"}
                                 : std::vector<std::string>{"square_avg"}),
      options(o) {
  DOFPOSE_CHECK(o.lr >= 0.f && o.alpha >= 0.f && o.alpha <= 1.f && o.eps >= 0.f &&
                    o.momentum >= 0.f && o.weight_decay >= 0.f,
                "RMSprop: invalid options (lr ", o.lr, ", alpha ", o.alpha, ", eps ", o.eps,
                ", momentum ", o.momentum, ", weight_decay ", o.weight_decay, ")");
}

void RMSprop::update(size_t i, float* p, const float* grad, int64_t n) {
  float* sq = buffer(i, 0).f32();
  float* buf = options.momentum > 0.f ? buffer(i, 1).f32() : nullptr;
  const float a = options.alpha, wd = options.weight_decay, m = options.momentum;
  const float eps = options.eps, rate = lr;
  if (buffer(i, 0).device() == Device::CUDA) {
#ifdef DOFPOSE_WITH_CUDA
    cuda_kernels::rmsprop_update(n, rate, a, eps, wd, m, p, grad, sq, buf, ops::cuda_stream());
    return;
#endif
  }
  // Element-wise, so the thread split cannot change any result.
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n > 32768)
#endif
  for (int64_t k = 0; k < n; ++k) {
    const float g = wd != 0.f ? grad[k] + wd * p[k] : grad[k];
    sq[k] = sq[k] * a + (1.f - a) * g * g;
    const float avg = std::sqrt(sq[k]) + eps;
    if (buf) {
      buf[k] = buf[k] * m + g / avg;
      p[k] -= rate * buf[k];
    } else {
      p[k] -= rate * (g / avg);
    }
  }
}

std::string RMSprop::options_json() const {
  return json{{"alpha", options.alpha},
              {"eps", options.eps},
              {"weight_decay", options.weight_decay},
              {"momentum", options.momentum}}
      .dump();
}

// ---- Adam

Adam::Adam(std::vector<Param> params, AdamOptions o)
    : Optimizer(std::move(params), o.lr, {"exp_avg", "exp_avg_sq"}), options(o) {
  DOFPOSE_CHECK(o.lr >= 0.f && o.beta1 >= 0.f && o.beta1 < 1.f && o.beta2 >= 0.f &&
                    o.beta2 < 1.f && o.eps >= 0.f && o.weight_decay >= 0.f,
                "Adam: invalid options (lr ", o.lr, ", betas ", o.beta1, ",", o.beta2, ", eps ",
                o.eps, ", weight_decay ", o.weight_decay, ")");
}

void Adam::update(size_t i, float* p, const float* grad, int64_t n) {
  float* m = buffer(i, 0).f32();
  float* v = buffer(i, 1).f32();
  const float b1 = options.beta1, b2 = options.beta2, wd = options.weight_decay;
  const float eps = options.eps;
  // As torch: the bias corrections are Python floats (double), then used as float32 scalars.
  const double t = double(step_count());
  const double bc1 = 1.0 - std::pow(double(b1), t);
  const double bc2 = 1.0 - std::pow(double(b2), t);
  const float step_size = float(double(lr) / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  if (buffer(i, 0).device() == Device::CUDA) {
#ifdef DOFPOSE_WITH_CUDA
    cuda_kernels::adam_update(n, step_size, bc2_sqrt, b1, b2, eps, wd, p, grad, m, v,
                              ops::cuda_stream());
    return;
#endif
  }
  // Element-wise, so the thread split cannot change any result.
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (n > 32768)
#endif
  for (int64_t k = 0; k < n; ++k) {
    const float g = wd != 0.f ? grad[k] + wd * p[k] : grad[k];
    m[k] = m[k] * b1 + (1.f - b1) * g;
    v[k] = v[k] * b2 + (1.f - b2) * g * g;
    const float denom = std::sqrt(v[k]) / bc2_sqrt + eps;
    p[k] -= step_size * (m[k] / denom);
  }
}

std::string Adam::options_json() const {
  return json{{"beta1", options.beta1},
              {"beta2", options.beta2},
              {"eps", options.eps},
              {"weight_decay", options.weight_decay}}
      .dump();
}

// ---- clipping and schedules

float clip_grad_norm(const std::vector<Param>& params, float max_norm) {
  // Device gradients: each one's sum of squares into one slot of a device
  // vector, then one copy back (one host synchronisation per step, not one
  // per parameter); the host adds the slots in parameter order, as below.
  Tensor device_sums;
  int64_t on_device = 0;
  for (const Param& p : params) on_device += p.grad->device() == Device::CUDA;
  if (on_device > 0) {
#ifdef DOFPOSE_WITH_CUDA
    Tensor sq = Tensor::empty({on_device}, DType::F32, Device::CUDA);
    int64_t slot = 0;
    for (const Param& p : params)
      if (p.grad->device() == Device::CUDA)
        cuda_kernels::sum_squares(p.grad->numel(), p.grad->f32(), sq.f32() + slot++,
                                  ops::cuda_stream());
    device_sums = sq.to(Device::CPU);
#endif
  }
  double total_sq = 0;
  int64_t slot = 0;
  for (const Param& p : params) {
    if (p.grad->device() == Device::CUDA) {
      total_sq += double(device_sums.f32()[slot++]);
      continue;
    }
    const float* g = p.grad->f32();
    for (int64_t k = 0; k < p.grad->numel(); ++k) total_sq += double(g[k]) * g[k];
  }
  const float total = float(std::sqrt(total_sq));
  const float coef = max_norm / (total + 1e-6f);
  if (coef < 1.f)
    for (const Param& p : params) ops::scale(*p.grad, coef, *p.grad);
  return total;
}

float StepDecay::lr(int64_t step) const {
  DOFPOSE_CHECK(step_size >= 1, "StepDecay: step_size must be >= 1, got ", step_size);
  return float(double(lr0) * std::pow(double(gamma), double(step / step_size)));
}

float ExponentialDecay::lr(int64_t step) const {
  DOFPOSE_CHECK(decay_steps >= 1, "ExponentialDecay: decay_steps must be >= 1, got ",
                decay_steps);
  const double e = staircase ? double(step / decay_steps) : double(step) / double(decay_steps);
  return float(double(lr0) * std::pow(double(rate), e));
}

}  // namespace dofpose::nn
