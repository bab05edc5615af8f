// The layers both networks share: BatchNorm (1d on [N,C], 2d on [N,C,H,W]) and ReLU.
#pragma once
#include "dofpose/nn/module.h"
#include "dofpose/nn/trace.h"
#include "dofpose/ops.h"

namespace dofpose::nn {

class BatchNorm : public Module {
 public:
  explicit BatchNorm(int channels, float eps = 1e-5f, float momentum = 0.1f);
  TensorView forward(Arena& arena, const TensorView& x, Mode mode);
  TensorView backward(Arena& arena, const TensorView& dy);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
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
};

class ReLU {
 public:
  TensorView forward(Arena& arena, const TensorView& x);
  TensorView backward(Arena& arena, const TensorView& dy);

 private:
  TensorView x_;
};

}  // namespace dofpose::nn
