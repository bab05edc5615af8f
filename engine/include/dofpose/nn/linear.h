// Fully connected layer and dropout, the building blocks of the lifters.
#pragma once
#include <cstdint>

#include "dofpose/nn/module.h"
#include "dofpose/nn/trace.h"
#include "dofpose/ops.h"

namespace dofpose::nn {

// y = x W^T + b with x [N,in], weight [out,in], bias [out] (PyTorch names and layout).
class Linear : public Module {
 public:
  Linear(int in_features, int out_features);
  // PyTorch's default nn.Linear initialisation, U(-1/sqrt(in), 1/sqrt(in)) for
  // weight and bias, drawn from a counter-based stream so `seed` fixes it.
  void init_uniform(uint64_t seed);

  TensorView forward(Arena& arena, const TensorView& x);
  // Inference only: with the following BN / ReLU / residual add fused into the
  // GEMM epilogue (ops::linear_fused_forward), traced as one event of `type`.
  TensorView forward_fused(Arena& arena, const TensorView& x, const ops::LinearFusionRef& f,
                           const char* type);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;

  int in_features, out_features;
  Tensor weight, bias;
  Tensor grad_weight, grad_bias;
  TraceName trace;  // set by collect()

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

  float p;

 private:
  uint64_t base_seed_ = 0, step_ = 0;
  bool active_ = false;  // whether the last forward applied a mask
  TensorView mask_;
};

// A well-mixed 64-bit hash (splitmix64 finaliser), for deriving independent
// seeds (per layer, per dropout) from one user seed.
uint64_t mix_seed(uint64_t seed, uint64_t index);

// Clips the L2 norm of every row of every 2-D parameter (Linear weights) of
// `module` to at most max_norm (torch.renorm(w, 2, 0, max_norm) semantics:
// rows with a larger norm are scaled by max_norm / (norm + 1e-7)). Meant to be
// called after each optimizer step; max_norm <= 0 does nothing.
void apply_max_norm(Module& module, float max_norm);

}  // namespace dofpose::nn
