// Optimizers over a module's parameters (PyTorch semantics, so a run can be
// compared step by step with torch.optim), gradient-norm clipping and
// learning-rate schedules. The state (per-parameter buffers and the step
// count) travels in the weights file next to the parameters:
// tensors "optim.<param>.<buffer>" and metadata "optimizer" (JSON).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dofpose/nn/module.h"
#include "dofpose/weights.h"

namespace dofpose::nn {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter from its current gradient.
  void step();
  void zero_grad();
  int64_t step_count() const { return step_count_; }
  const std::vector<Param>& params() const { return params_; }
  virtual std::string type() const = 0;  // "rmsprop" | "adam"

  float lr;

  // Adds the state tensors and the "optimizer" metadata entry.
  void save_state(WeightsWriter& writer, std::map<std::string, std::string>& metadata) const;
  // Restores buffers and step count; the file's optimizer type must match and
  // every buffer must exist with its parameter's shape.
  void load_state(const WeightsFile& file);

 protected:
  Optimizer(std::vector<Param> params, float lr, std::vector<std::string> buffer_names);
  // Updates parameter i (value, grad, its buffers); step_count_ is already the new step (>= 1).
  virtual void update(size_t i, float* value, const float* grad, int64_t n) = 0;
  virtual std::string options_json() const = 0;
  Tensor& buffer(size_t param, size_t which) { return state_[param][which]; }

 private:
  std::vector<Param> params_;
  std::vector<std::string> buffer_names_;
  std::vector<std::vector<Tensor>> state_;  // [param][buffer], zero-initialised
  int64_t step_count_ = 0;
};

struct RMSpropOptions {
  float lr = 1e-2f, alpha = 0.99f, eps = 1e-8f, weight_decay = 0.f, momentum = 0.f;
};

// torch.optim.RMSprop (not centered): g += wd*p; sq = alpha*sq + (1-alpha)*g^2;
// avg = sqrt(sq) + eps; momentum > 0: buf = m*buf + g/avg, p -= lr*buf;
// otherwise p -= lr * g/avg. Buffers: square_avg (+ momentum_buffer).
class RMSprop : public Optimizer {
 public:
  RMSprop(std::vector<Param> params, RMSpropOptions options = {});
  std::string type() const override { return "rmsprop"; }
  RMSpropOptions options;

 protected:
  void update(size_t i, float* value, const float* grad, int64_t n) override;
  std::string options_json() const override;
};

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.f;
};

// torch.optim.Adam (L2 weight decay added to the gradient, bias correction):
// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Buffers: exp_avg, exp_avg_sq.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Param> params, AdamOptions options = {});
  std::string type() const override { return "adam"; }
  AdamOptions options;

 protected:
  void update(size_t i, float* value, const float* grad, int64_t n) override;
  std::string options_json() const override;
};

// torch.nn.utils.clip_grad_norm_: scales every gradient by
// min(1, max_norm / (total_norm + 1e-6)); returns the total L2 norm before clipping.
float clip_grad_norm(const std::vector<Param>& params, float max_norm);

// lr = lr0 * gamma^floor(step / step_size)
struct StepDecay {
  float lr0 = 1e-3f, gamma = 0.1f;
  int64_t step_size = 1;
  float lr(int64_t step) const;
};

// Martinez et al.: lr = lr0 * rate^(step / decay_steps) (floor of the exponent if staircase).
struct ExponentialDecay {
  float lr0 = 1e-3f, rate = 0.96f;
  int64_t decay_steps = 100000;
  bool staircase = false;
  float lr(int64_t step) const;
};

}  // namespace dofpose::nn
