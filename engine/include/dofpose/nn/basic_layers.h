// The layers both networks share: BatchNorm (1d on [N,C], 2d on [N,C,H,W]), ReLU
// and Dropout.
#pragma once
#include <cstdint>

#include "dofpose/nn/module.h"
#include "dofpose/nn/trace.h"
#include "dofpose/ops.h"

namespace dofpose::nn {

class ReLU;
class Dropout;

class BatchNorm : public Module {
 public:
  explicit BatchNorm(int channels, float eps = 1e-5f, float momentum = 0.1f);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  // relu(bn(x)), then `drop` when given. With fused_training(mode) one op
  // (ops::batchnorm_relu_dropout_forward_train: no stored BN output, a mask
  // byte per element); otherwise this layer, `relu` (traced as owner's child
  // relu_name) and `drop` one by one. backward_relu is its gradient. A
  // residual (x's shape) is added to the result (residual + ..., the skip of a
  // residual block: in the fused op's store); its gradient is dy itself.
  TensorView forward_relu(Arena& arena, const TensorView& x, Mode mode, ReLU& relu,
                          Dropout* drop, const TraceName& owner, const char* relu_name,
                          const TensorView& residual = {});
  // dx_add (x's shape), when given, is added to the returned gradient: the
  // gradient reaching x by another path (a pre-activation block's skip), in
  // the fused op's store.
  TensorView backward_relu(Arena& arena, const TensorView& dy, ReLU& relu, Dropout* drop,
                           const TensorView& dx_add = {});
  // The inference parameters, for a fused conv (ops::ConvFusionRef).
  ops::BatchNormRef ref() const { return {weight, bias, running_mean, running_var, p.eps}; }

  int channels;
  ops::BatchNormParams p;
  Tensor weight, bias, running_mean, running_var;  // PyTorch names
  Tensor grad_weight, grad_bias;
  TraceName trace;  // set by collect()

 private:
  TensorView x_, save_mean_, save_invstd_;
  Mode mode_ = Mode::Infer;
  // Set by a fused forward_relu: its mask and drop probability for backward.
  bool act_fused_ = false;
  float act_p_ = 0.f;
  TensorView act_mask_;
};

class ReLU {
 public:
  TensorView forward(Arena& arena, const TensorView& x);
  TensorView backward(Arena& arena, const TensorView& dy);

 private:
  TensorView x_;
};

// Inverted dropout (kept values scaled by 1/(1-p), as PyTorch). Masks are
// reproducible: forward call k (counted since set_seed) draws the mask with
// seed base_seed + k through ops::dropout_forward. Infer mode and p == 0 are
// the identity (no mask drawn, the counter does not advance).
class Dropout {
 public:
  explicit Dropout(float p = 0.5f, uint64_t base_seed = 0);
  void set_seed(uint64_t base_seed);  // also restarts the step counter
  uint64_t base_seed() const { return base_seed_; }
  uint64_t step() const { return step_; }
  void set_step(uint64_t step) { step_ = step; }

  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  // For a fused op that applies this dropout itself (BatchNorm::forward_relu):
  // sets `seed` to what forward() would use and advances the counter the same
  // way; returns the probability to apply (0 when inactive: Infer or p == 0).
  float draw(Mode mode, uint64_t& seed);

  float p;

 private:
  uint64_t base_seed_ = 0, step_ = 0;
  bool active_ = false;  // whether the last forward applied a mask
  TensorView mask_;
};

}  // namespace dofpose::nn
