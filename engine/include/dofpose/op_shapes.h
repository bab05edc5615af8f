// Shape descriptors shared by the op API and by every backend's kernels.
#pragma once
#include <cstdint>

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

// Bilinear sampling conventions:
//  AlignCorners: PyTorch align_corners=True, TFLite align_corners=1.
//  HalfPixel:    PyTorch align_corners=False, TF half_pixel_centers=1.
//  Asymmetric:   TFLite/TF default (align_corners=0, half_pixel_centers=0).
enum class ResizeMode { AlignCorners, HalfPixel, Asymmetric };

}  // namespace dofpose
