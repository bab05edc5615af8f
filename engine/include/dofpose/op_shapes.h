// Shape descriptors shared by the op API and by every backend's kernels.
#pragma once
#include <cstdint>

// Callable from CUDA kernels too (these structs are kernel parameters).
#if defined(__CUDACC__)
#define DOFPOSE_HOST_DEVICE __host__ __device__
#else
#define DOFPOSE_HOST_DEVICE
#endif

namespace dofpose {

// NCHW input [N,C,H,W], weight [K, C/groups, R, S], output [N,K,P,Q].
struct Conv2dShape {
  int N = 1, C = 1, H = 1, W = 1;  // input
  int K = 1, R = 1, S = 1;         // output channels, kernel height, width
  int stride = 1, pad = 0, groups = 1;
  int P() const { return (H + 2 * pad - R) / stride + 1; }
  int Q() const { return (W + 2 * pad - S) / stride + 1; }
  int64_t flops() const { return 2LL * N * K * P() * Q() * (C / groups) * R * S; }
};

// BatchNorm over [N, C, HW] (HW = 1 for BatchNorm1d on [N, C]).
struct BatchNormShape {
  int N = 1, C = 1, HW = 1;
};

// An inference BatchNorm as the fused convolution reads it: per channel
// y = (x - mean) * (gamma / sqrt(var + eps)) + beta; mean == nullptr: absent.
struct BatchNormPtrs {
  const float *gamma = nullptr, *beta = nullptr, *mean = nullptr, *var = nullptr;
  float eps = 1e-5f;
  DOFPOSE_HOST_DEVICE bool present() const { return mean != nullptr; }
};

// What a fused convolution does around the product (inference only):
//   input  x -> relu(in_bn(x)) as it is loaded (padding stays zero), when in_bn is present;
//   output v = acc + bias; v = out_bn(v) when present; v = relu(v) when out_relu;
//          v += residual[n][k][p][q] when residual is not null.
// One pass replaces the pre-activation BN + ReLU, the conv, the next BN + ReLU
// and the residual add of a bottleneck (docs/cuda.md, "Fused bottleneck").
struct ConvFusion {
  BatchNormPtrs in_bn;
  BatchNormPtrs out_bn;
  bool out_relu = false;
  const float* residual = nullptr;
  // CPU only: the product of a 3x3 stride-1 pad-1 convolution may run by
  // Winograd F(4x4, 3x3) where that is faster (cpu::conv2d_winograd_worthwhile;
  // other rounding than conv2d_forward). ops sets it from cpu_conv_algorithm().
  bool winograd = false;
};

// The fused linear layer (inference, the lifters' MLP blocks): y = x W^T + bias,
// then out_bn, relu and + residual [N,out], per output feature.
struct LinearFusion {
  const float* bias = nullptr;
  BatchNormPtrs bn;
  bool relu = false;
  const float* residual = nullptr;
};

// Bilinear sampling conventions:
//  AlignCorners: PyTorch align_corners=True, TFLite align_corners=1.
//  HalfPixel:    PyTorch align_corners=False, TF half_pixel_centers=1.
//  Asymmetric:   TFLite/TF default (align_corners=0, half_pixel_centers=0).
enum class ResizeMode { AlignCorners, HalfPixel, Asymmetric };

}  // namespace dofpose
