// Fully connected layer and the lifters' max-norm constraint (Dropout, BatchNorm
// and ReLU live in basic_layers.h).
#pragma once
#include <cstdint>

#include "dofpose/nn/basic_layers.h"
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
  // dx_add (x's shape), when given, is added to dx in the GEMM's store (a
  // residual block's skip gradient).
  TensorView backward(Arena& arena, const TensorView& dy, const TensorView& dx_add = {});
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;

  int in_features, out_features;
  Tensor weight, bias;
  Tensor grad_weight, grad_bias;
  TraceName trace;  // set by collect()

 private:
  TensorView x_;
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
