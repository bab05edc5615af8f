// Convolution-network layers: Conv2d (weight [K, C/groups, R, S] + optional
// bias, PyTorch names "weight"/"bias"), 2x2 max pooling and nearest 2x
// upsampling. Same conventions as every Module (see dofpose/nn/module.h):
// forward caches what backward needs, backward returns dx and writes the
// parameter gradients.
#pragma once
#include <cstdint>
#include <random>

#include "dofpose/nn/module.h"
#include "dofpose/nn/trace.h"
#include "dofpose/ops.h"

namespace dofpose::nn {

class Conv2d : public Module {
 public:
  Conv2d(int in_channels, int out_channels, int kernel, int stride = 1, int pad = 0,
         int groups = 1, bool bias = true);
  TensorView forward(Arena& arena, const TensorView& x);
  // forward() for training on the CPU's fast product where it applies
  // (ops::conv2d_forward_fast: Winograd for 3x3 stride-1 layers with enough
  // tiles, when the CPU conv algorithm is Winograd); backward() then computes
  // the input gradient the same way. Elsewhere the same as forward().
  TensorView forward_fast(Arena& arena, const TensorView& x);
  // Inference only: this conv with its neighbours fused (ops::conv2d_fused_forward),
  // traced as one event of type `type` (e.g. "Conv2d+BN+ReLU"). Keeps nothing for backward.
  TensorView forward_fused(Arena& arena, const TensorView& x, const ops::ConvFusionRef& f,
                           const char* type);
  // The same, y stored as out_dtype (16-bit activations: the hourglass's stem
  // takes the F32 image to them, its heatmap heads take them back to F32).
  TensorView forward_fused(Arena& arena, const TensorView& x, const ops::ConvFusionRef& f,
                           const char* type, DType out_dtype);
  // Training too: conv(x) + residual, the add in the conv's epilogue (one pass
  // less over the output), traced as "Conv2d+Add"; keeps x for backward. The
  // sum's gradient is dy for both terms, so backward is unchanged. Same bits
  // as forward() then ops::accumulate on the CPU.
  TensorView forward_add(Arena& arena, const TensorView& x, const TensorView& residual);
  // need_dx = false skips the input gradient (returns an empty view), e.g.
  // for the first layer on an image; the parameter gradients are still written.
  TensorView backward(Arena& arena, const TensorView& dy, bool need_dx = true);
  void collect(const std::string& prefix, std::vector<Param>& params,
               std::vector<Buffer>& buffers) override;
  // PyTorch's default: weight and bias uniform in +-1/sqrt(fan_in).
  void reset_parameters(std::mt19937_64& rng);
  // Multiply-adds x 2 for an input of N x H x W.
  int64_t flops(int N, int H, int W) const;

  int in_channels, out_channels, kernel;
  ops::ConvParams p;
  bool has_bias;
  Tensor weight, bias;  // bias empty without one
  Tensor grad_weight, grad_bias;
  TraceName trace;  // set by collect()

 private:
  TensorView x_;
  bool winograd_ = false;  // forward_fast took Winograd: backward's dx does too
};

// 2x2 / stride 2 max pooling (even H and W).
class MaxPool2x2 {
 public:
  TensorView forward(Arena& arena, const TensorView& x);
  // dx_add (x's shape), when given, is added to dx as it is written.
  TensorView backward(Arena& arena, const TensorView& dy, const TensorView& dx_add = {});

 private:
  TensorView x_;
};

// Nearest-neighbour upsampling by 2 (PyTorch UpsamplingNearest2d(scale_factor=2)).
class UpsampleNearest2x {
 public:
  TensorView forward(Arena& arena, const TensorView& x);
  // skip + upsample(x) in one pass (the hourglass merge); backward is the same.
  TensorView forward_add(Arena& arena, const TensorView& x, const TensorView& skip);
  TensorView backward(Arena& arena, const TensorView& dy);

 private:
  Shape x_shape_;
};

// Fills `t` (CPU float32) uniformly in [-bound, bound).
void uniform_fill(const TensorView& t, float bound, std::mt19937_64& rng);

}  // namespace dofpose::nn
