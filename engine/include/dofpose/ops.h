// The op API: every op checks its tensors (shape, dtype F32, device,
// contiguity), names the op and tensor in any error, and runs the kernel of
// the device its tensors live on (kernels/cpu/ or kernels/cuda/).
// An empty TensorView ({}) stands for an absent optional tensor; backward
// ops overwrite the gradients they are given and skip the empty ones.
#pragma once
#include <cstdint>

#include "dofpose/op_shapes.h"
#include "dofpose/tensor.h"

namespace dofpose::ops {

struct ConvParams {
  int stride = 1, pad = 0, groups = 1;
};

// x [N,C,H,W], w [K,C/groups,R,S], bias [K] or empty -> y [N,K,P,Q].
Conv2dShape conv2d_shape(const TensorView& x, const TensorView& w, ConvParams p);
Shape conv2d_output_shape(const TensorView& x, const TensorView& w, ConvParams p);
void conv2d_forward(const TensorView& x, const TensorView& w, const TensorView& bias,
                    const TensorView& y, ConvParams p);
void conv2d_backward(const TensorView& x, const TensorView& w, const TensorView& dy,
                     const TensorView& dx, const TensorView& dw, const TensorView& dbias,
                     ConvParams p);
// Training's convolution (nn::Conv2d::forward_fast): conv2d_forward, except on
// the CPU under CpuConvAlgorithm::Winograd (below) for a 3x3 stride-1 pad-1
// shape with enough tiles (cpu::conv2d_winograd_worthwhile), where the product
// runs by Winograd F(4x4, 3x3): other rounding, a few 1e-6 of each sum.
// Returns whether Winograd ran; conv2d_backward_fast takes that answer and
// computes the input and weight gradients the same way (dbias direct).
bool conv2d_forward_fast(const TensorView& x, const TensorView& w, const TensorView& bias,
                         const TensorView& y, ConvParams p);
void conv2d_backward_fast(const TensorView& x, const TensorView& w, const TensorView& dy,
                          const TensorView& dx, const TensorView& dw, const TensorView& dbias,
                          ConvParams p, bool winograd);

// Inference BatchNorm parameters of one layer (per-channel tensors [C]);
// gamma/beta may be empty (1 and 0), mean empty = no BatchNorm.
struct BatchNormRef {
  TensorView gamma, beta, mean, var;
  float eps = 1e-5f;
};
// The fused convolution (inference): x -> relu(in_bn(x)) at load, the conv,
// then out_bn, relu (out_relu) and + residual [N,K,P,Q] in the epilogue
// (ConvFusion in dofpose/op_shapes.h). groups == 1. On the CPU the result is
// bitwise that of the separate ops; on CUDA it is one kernel launch.
struct ConvFusionRef {
  BatchNormRef in_bn, out_bn;
  bool out_relu = false;
  TensorView residual;
};
void conv2d_fused_forward(const TensorView& x, const TensorView& w, const TensorView& bias,
                          const TensorView& y, ConvParams p, const ConvFusionRef& f);
// How the CPU's conv2d_fused_forward (the hourglass's fused inference) computes
// its 3x3 stride-1 pad-1 convolutions. Winograd (the default): F(4x4, 3x3) where
// the layer has enough 4x4 output tiles for it to pay (cpu::conv2d_winograd_worthwhile),
// 4x fewer multiplies, a few 1e-6 relative error more than the direct product
// (docs/cpu-kernels.md, "Winograd"); the same for training's 3x3 layers
// (conv2d_forward_fast / conv2d_backward_fast: forward and input gradient).
// Direct: the implicit GEMM of conv2d_forward, so fused and unfused inference
// (and training) agree bit for bit. Process-wide; conv2d_forward itself, the
// layer-by-layer (unfused) paths and the CUDA backend always use their direct product.
enum class CpuConvAlgorithm { Winograd, Direct };
void set_cpu_conv_algorithm(CpuConvAlgorithm a);
CpuConvAlgorithm cpu_conv_algorithm();
const char* cpu_conv_algorithm_name(CpuConvAlgorithm a);  // "winograd" / "direct"
class ScopedCpuConvAlgorithm {
 public:
  explicit ScopedCpuConvAlgorithm(CpuConvAlgorithm a) : previous_(cpu_conv_algorithm()) {
    set_cpu_conv_algorithm(a);
  }
  ~ScopedCpuConvAlgorithm() { set_cpu_conv_algorithm(previous_); }
  ScopedCpuConvAlgorithm(const ScopedCpuConvAlgorithm&) = delete;
  ScopedCpuConvAlgorithm& operator=(const ScopedCpuConvAlgorithm&) = delete;

 private:
  CpuConvAlgorithm previous_;
};
// 16-bit activations: conv2d_forward, conv2d_fused_forward, maxpool2x2_forward
// and upsample_add_forward also take F16 / BF16 activation tensors (a conv's
// x may differ from its y and residual: one of them F32, or both the same
// 16-bit type). The weights and parameters stay F32; every value is computed
// in float32 and rounded once, to nearest even, as it is stored. On CUDA such
// a conv runs on the 16-bit tensor cores of its type (sm_80+). cast converts.
void cast(const TensorView& x, const TensorView& y);  // same shape, F32 / F16 / BF16

// x [N,in], w [out,in], b [out] or empty -> y [N,out].
void linear_forward(const TensorView& x, const TensorView& w, const TensorView& b,
                    const TensorView& y);
// The fused linear (inference, the MLP blocks of the lifters): y = x w^T + b,
// then bn, relu and + residual [N,out] in the GEMM's epilogue. Bitwise the
// separate ops on the CPU; one kernel on CUDA.
struct LinearFusionRef {
  BatchNormRef bn;
  bool relu = false;
  TensorView residual;
};
void linear_fused_forward(const TensorView& x, const TensorView& w, const TensorView& b,
                          const TensorView& y, const LinearFusionRef& f);
// dx_add (x's shape, not aliasing dx), when given, is added to dx in the
// GEMM's store: dx + dx_add as ops::accumulate would, the gradient reaching x
// by another path (a residual block's skip).
void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy,
                     const TensorView& dx, const TensorView& dw, const TensorView& db,
                     const TensorView& dx_add = {});

// BatchNorm over x [N,C] or [N,C,H,W]; per-channel tensors are [C].
struct BatchNormParams {
  float momentum = 0.1f, eps = 1e-5f;
};
void batchnorm_forward_train(const TensorView& x, const TensorView& gamma, const TensorView& beta,
                             const TensorView& running_mean, const TensorView& running_var,
                             const TensorView& y, const TensorView& save_mean,
                             const TensorView& save_invstd, BatchNormParams p = {});
void batchnorm_forward_infer(const TensorView& x, const TensorView& gamma, const TensorView& beta,
                             const TensorView& running_mean, const TensorView& running_var,
                             const TensorView& y, BatchNormParams p = {});
void batchnorm_backward_train(const TensorView& x, const TensorView& gamma,
                              const TensorView& save_mean, const TensorView& save_invstd,
                              const TensorView& dy, const TensorView& dx, const TensorView& dgamma,
                              const TensorView& dbeta);
void batchnorm_backward_infer(const TensorView& x, const TensorView& gamma,
                              const TensorView& running_mean, const TensorView& running_var,
                              const TensorView& dy, const TensorView& dx, const TensorView& dgamma,
                              const TensorView& dbeta, BatchNormParams p = {});
// Training BatchNorm -> ReLU -> Dropout(p, seed) as one op: the activation of
// the lifters' MLP layers and (p = 0) the hourglass's BN -> ReLU pairs. y is
// bitwise the three ops in order; mask (U8, x's shape) is 1 where the gradient
// passes (kept and not cut by the ReLU), so backward needs no stored BN output.
// With a residual (x's shape) y = residual + dropout(...), add_forward's sum:
// a residual block's skip added in the store (its gradient is dy, unchanged).
// Backward with dx_add (x's shape, not aliasing dx): dx + dx_add in dx's
// store, as ops::accumulate would (the gradient reaching x by the skip).
void batchnorm_relu_dropout_forward_train(const TensorView& x, const TensorView& gamma,
                                          const TensorView& beta, const TensorView& running_mean,
                                          const TensorView& running_var, const TensorView& y,
                                          const TensorView& save_mean,
                                          const TensorView& save_invstd, const TensorView& mask,
                                          float p, uint64_t seed, BatchNormParams bp = {},
                                          const TensorView& residual = {});
void batchnorm_relu_dropout_backward_train(const TensorView& x, const TensorView& gamma,
                                           const TensorView& save_mean,
                                           const TensorView& save_invstd, const TensorView& mask,
                                           float p, const TensorView& dy, const TensorView& dx,
                                           const TensorView& dgamma, const TensorView& dbeta,
                                           const TensorView& dx_add = {});
// Folds an inference BatchNorm into the conv/linear before it: weight [K,...], bias [K].
void batchnorm_fold(const TensorView& weight, const TensorView& bias, const TensorView& gamma,
                    const TensorView& beta, const TensorView& running_mean,
                    const TensorView& running_var, BatchNormParams p = {});

void relu_forward(const TensorView& x, const TensorView& y);
void relu_backward(const TensorView& x, const TensorView& dy, const TensorView& dx);
void relu6_forward(const TensorView& x, const TensorView& y);
void relu6_backward(const TensorView& x, const TensorView& dy, const TensorView& dx);

void add_forward(const TensorView& a, const TensorView& b, const TensorView& y);
void accumulate(const TensorView& x, const TensorView& y);  // y += x
void scale(const TensorView& x, float alpha, const TensorView& y);  // y = alpha * x
// Columns [src_col, src_col+width) of src [N,A] into columns [dst_col, ..) of
// dst [N,B] (overwritten, or added when accumulate): concat and split of features.
void copy_columns(const TensorView& src, int64_t src_col, const TensorView& dst, int64_t dst_col,
                  int64_t width, bool accumulate = false);
// y = x * mul + add per column: x, y [N,C], mul, add [C] (normalisation).
void affine_columns(const TensorView& x, const TensorView& mul, const TensorView& add,
                    const TensorView& y);
// y = (x - mean) / std per column over the first K columns, the rest copied:
// x, y [N,C], mean, std [K], K <= C (the lifters' standardisation of inputs
// and targets, attribute columns passed through).
void standardize_columns(const TensorView& x, const TensorView& mean, const TensorView& std,
                         const TensorView& y);

// 2x2 / stride 2 max pooling; x [N,C,H,W] -> y [N,C,H/2,W/2].
void maxpool2x2_forward(const TensorView& x, const TensorView& y);
// dx_add (x's shape, not aliasing dx), when given, is added to dx as it is
// written (dx + dx_add, ops::accumulate's sum): the gradient reaching x by
// another path (an hourglass level's skip branch).
void maxpool2x2_backward(const TensorView& x, const TensorView& dy, const TensorView& dx,
                         const TensorView& dx_add = {});

// x [N,C,H,W] -> y [N,C,2H,2W].
void upsample_nearest2x_forward(const TensorView& x, const TensorView& y);
void upsample_nearest2x_backward(const TensorView& dy, const TensorView& dx);
// The hourglass merge in one pass: y = a + upsample_nearest2x(low).
void upsample_add_forward(const TensorView& a, const TensorView& low, const TensorView& y);

// x [N,C,H,W] -> y [N,C,OH,OW] (sizes taken from y / dy).
void bilinear_forward(const TensorView& x, const TensorView& y, ResizeMode mode);
void bilinear_backward(const TensorView& dy, const TensorView& dx, ResizeMode mode);

// mask: U8 tensor of x's shape (1 = kept).
void dropout_forward(const TensorView& x, const TensorView& y, const TensorView& mask, float p,
                     uint64_t seed);
void dropout_backward(const TensorView& mask, const TensorView& dy, const TensorView& dx, float p);

// heat [N,J,H,W] -> prob [N,J,H,W], coords [N,J,2] (x, y in heatmap pixels).
void softargmax_forward(const TensorView& heat, const TensorView& prob, const TensorView& coords,
                        float beta);
void softargmax_backward(const TensorView& prob, const TensorView& dcoords,
                         const TensorView& dheat, float beta);

void grad_reverse_forward(const TensorView& x, const TensorView& y);
void grad_reverse_backward(const TensorView& dy, const TensorView& dx, float lambda);

// pred/target [N,J,H,W]; joint_weight [N,J] or empty.
float heatmap_mse_forward(const TensorView& pred, const TensorView& target,
                          const TensorView& joint_weight);
void heatmap_mse_backward(const TensorView& pred, const TensorView& target,
                          const TensorView& joint_weight, const TensorView& dpred,
                          float dloss = 1.f);
// logits [N,T,C] F32, labels [N,T] I32 (-1 ignored).
float cross_entropy_forward(const TensorView& logits, const TensorView& labels);
void cross_entropy_backward(const TensorView& logits, const TensorView& labels,
                            const TensorView& dlogits, float dloss = 1.f);
float l1_forward(const TensorView& pred, const TensorView& target);
void l1_backward(const TensorView& pred, const TensorView& target, const TensorView& dpred,
                 float dloss = 1.f);

// The CUDA stream that ops on CUDA tensors are queued on (this thread).
void set_cuda_stream(void* stream);
void* cuda_stream();

}  // namespace dofpose::ops
