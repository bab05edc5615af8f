// Nearest x2 upsampling (plain, fused with the hourglass add) and bilinear
// resize on CUDA, the twins of cpu/resize.cpp. One thread per output element
// for the forwards; the backwards are gathers (one thread per dx element reads
// every dy element that touches it) so they need no atomics, write each dx
// element exactly once and sum in the CPU's order.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/grid.cuh"
#include "kernels/cuda/storage.cuh"

namespace dofpose::cuda_kernels {

namespace {
using grid::as_stream;
using grid::blocks_for;
using grid::kThreads;

#define GRID_STRIDE_LOOP(i, total)                                                       \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (total); \
       i += int64_t(gridDim.x) * blockDim.x)

// ---- nearest x2

__global__ void upsample_forward_kernel(int64_t total, int H, int W, const float* x, float* y) {
  const int OH = 2 * H, OW = 2 * W;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t pl = i / (int64_t(OH) * OW);
    const int rem = int(i - pl * OH * OW);
    const int oh = rem / OW, ow = rem - oh * OW;
    y[i] = x[(pl * H + (oh >> 1)) * W + (ow >> 1)];
  }
}

// T: float, or a 16-bit activation type (the sum in float32, rounded once).
template <class T>
__global__ void upsample_add_kernel(int64_t total, int H, int W, const T* a, const T* low, T* y) {
  const int OH = 2 * H, OW = 2 * W;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t pl = i / (int64_t(OH) * OW);
    const int rem = int(i - pl * OH * OW);
    const int oh = rem / OW, ow = rem - oh * OW;
    y[i] = from_f32<T>(to_f32(a[i]) + to_f32(low[(pl * H + (oh >> 1)) * W + (ow >> 1)]));
  }
}

template <bool kPairs>
__global__ void upsample_backward_kernel(int64_t total, int H, int W, const float* dy,
                                         float* dx) {
  const int OW = 2 * W;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t pl = i / (int64_t(H) * W);
    const int rem = int(i - pl * H * W);
    const int h = rem / W, w = rem - h * W;
    const float* r0 = dy + (pl * 2 * H + 2 * h) * OW + 2 * w;
    const float* r1 = r0 + OW;
    float2 a, b;
    if constexpr (kPairs) {
      // Each row's pair as one float2 (OW is even, dy 8-byte aligned): two scalar
      // loads at a 2-float stride each touched twice the sectors they used.
      a = *reinterpret_cast<const float2*>(r0);
      b = *reinterpret_cast<const float2*>(r1);
    } else {
      a = make_float2(r0[0], r0[1]);
      b = make_float2(r1[0], r1[1]);
    }
    // The CPU's association, so the sums are bitwise equal.
    dx[i] = (a.x + a.y) + (b.x + b.y);
  }
}

// ---- bilinear

// The source taps of one output coordinate along one axis: make_taps() of
// resize.cpp evaluated for a single d, with the same float operations (the
// std::max / std::min / std::clamp spelled out with their exact comparisons).
struct Tap {
  int i[2];
  float w[2];
};

struct Axis {
  int in, out;
  float ratio;  // computed on the host exactly as make_taps does
  ResizeMode mode;

  static Axis make(int in, int out, ResizeMode mode) {
    float ratio;
    if (mode == ResizeMode::AlignCorners)
      ratio = out > 1 ? float(in - 1) / float(out - 1) : 0.f;
    else
      ratio = float(in) / float(out);
    return Axis{in, out, ratio, mode};
  }

  __host__ __device__ int first_tap(int d, float& lambda) const {
    float src;
    if (mode == ResizeMode::HalfPixel) {
      const float s = ratio * (float(d) + 0.5f) - 0.5f;
      src = s < 0.f ? 0.f : s;  // std::max(s, 0.f)
    } else {
      src = ratio * float(d);  // AlignCorners, Asymmetric
    }
    const int f = int(floorf(src));
    const int i0 = in - 1 < f ? in - 1 : f;  // std::min(f, in - 1)
    const float l = src - float(i0);
    lambda = l < 0.f ? 0.f : (1.f < l ? 1.f : l);  // std::clamp(l, 0.f, 1.f)
    return i0;
  }

  __host__ __device__ Tap tap(int d) const {
    float lambda;
    const int i0 = first_tap(d, lambda);
    return Tap{{i0, i0 + 1 < in - 1 ? i0 + 1 : in - 1}, {1.f - lambda, lambda}};
  }

  // The smallest output d in [0, out] whose first tap is >= target (out if none).
  // first_tap is non-decreasing in d, so a binary search finds it.
  __host__ __device__ int first_output_at_least(int target) const {
    int lo = 0, hi = out;
    while (lo < hi) {
      const int mid = lo + ((hi - lo) >> 1);
      float unused;
      if (first_tap(mid, unused) >= target)
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  }
};

__global__ void bilinear_forward_kernel(int64_t total, Axis ah, Axis aw, const float* x,
                                        float* y) {
  const int H = ah.in, W = aw.in, OH = ah.out, OW = aw.out;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t pl = i / (int64_t(OH) * OW);
    const int rem = int(i - pl * OH * OW);
    const int oh = rem / OW, ow = rem - oh * OW;
    const Tap v = ah.tap(oh), u = aw.tap(ow);
    const float* xp = x + pl * H * W;
    const float* r0 = xp + int64_t(v.i[0]) * W;
    const float* r1 = xp + int64_t(v.i[1]) * W;
    // Same association as the CPU (and PyTorch): rows first, then columns.
    y[i] = v.w[0] * (u.w[0] * r0[u.i[0]] + u.w[1] * r0[u.i[1]]) +
           v.w[1] * (u.w[0] * r1[u.i[0]] + u.w[1] * r1[u.i[1]]);
  }
}

// dx[h, w] gathers the contributions the CPU scatters into it. An output row oh
// touches input row h iff its first tap is h - 1 or h (the second tap is
// min(i0 + 1, H - 1)), and the first tap is monotone, so those rows form the
// range [first_output_at_least(h - 1), first_output_at_least(h + 1)); the same
// for columns. Walking oh, then ow, then the taps (v0u0, v0u1, v1u0, v1u1) adds
// the terms in exactly the CPU's order, each as (v.w * u.w) * g.
__global__ void bilinear_backward_kernel(int64_t total, Axis ah, Axis aw, const float* dy,
                                         float* dx) {
  const int H = ah.in, W = aw.in, OH = ah.out, OW = aw.out;
  GRID_STRIDE_LOOP(i, total) {
    const int64_t pl = i / (int64_t(H) * W);
    const int rem = int(i - pl * H * W);
    const int h = rem / W, w = rem - h * W;
    const int oh0 = ah.first_output_at_least(h - 1), oh1 = ah.first_output_at_least(h + 1);
    const int ow0 = aw.first_output_at_least(w - 1), ow1 = aw.first_output_at_least(w + 1);
    const float* dyp = dy + pl * OH * OW;
    float acc = 0.f;
    for (int oh = oh0; oh < oh1; ++oh) {
      const Tap v = ah.tap(oh);
      const float* dyr = dyp + int64_t(oh) * OW;
      for (int ow = ow0; ow < ow1; ++ow) {
        const Tap u = aw.tap(ow);
        const float g = dyr[ow];
#pragma unroll
        for (int a = 0; a < 2; ++a) {
          if (v.i[a] != h) continue;
#pragma unroll
          for (int b = 0; b < 2; ++b)
            if (u.i[b] == w) acc += v.w[a] * u.w[b] * g;
        }
      }
    }
    dx[i] = acc;
  }
}

void check_sizes(const char* op, int N, int C, int H, int W, int OH, int OW) {
  DOFPOSE_CHECK(N >= 0 && C >= 0 && H >= 1 && W >= 1 && OH >= 1 && OW >= 1, op,
                ": expected input [N, C, H>=1, W>=1] and output size >= 1, got [", N, ", ", C,
                ", ", H, ", ", W, "] -> ", OH, "x", OW);
}
}  // namespace

void upsample_nearest2x_forward(int N, int C, int H, int W, const float* x, float* y,
                                void* stream) {
  const int64_t total = int64_t(N) * C * (2 * int64_t(H)) * (2 * int64_t(W));
  if (total <= 0) return;
  upsample_forward_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(total, H, W, x,
                                                                                 y);
  DOFPOSE_CUDA_LAUNCH_CHECK("upsample_nearest2x_forward");
}

void upsample_nearest2x_backward(int N, int C, int H, int W, const float* dy, float* dx,
                                 void* stream) {
  if (!dx) return;
  const int64_t total = int64_t(N) * C * H * W;
  if (total <= 0) return;
  if (reinterpret_cast<uintptr_t>(dy) % 8 == 0)
    upsample_backward_kernel<true><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
        total, H, W, dy, dx);
  else
    upsample_backward_kernel<false><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
        total, H, W, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("upsample_nearest2x_backward");
}

void upsample_add_forward(int N, int C, int H, int W, const float* a, const float* low, float* y,
                          void* stream) {
  const int64_t total = int64_t(N) * C * (2 * int64_t(H)) * (2 * int64_t(W));
  if (total <= 0) return;
  upsample_add_kernel<float><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(total, H, W,
                                                                                    a, low, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("upsample_add_forward");
}

void upsample_add_forward16(int N, int C, int H, int W, DType t, const void* a, const void* low,
                            void* y, void* stream) {
  const int64_t total = int64_t(N) * C * (2 * int64_t(H)) * (2 * int64_t(W));
  if (total <= 0) return;
  with_storage16(t, [&](auto zero) {
    using T = decltype(zero);
    upsample_add_kernel<T><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
        total, H, W, static_cast<const T*>(a), static_cast<const T*>(low), static_cast<T*>(y));
  });
  DOFPOSE_CUDA_LAUNCH_CHECK("upsample_add_forward (16-bit)");
}

void bilinear_forward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                      const float* x, float* y, void* stream) {
  check_sizes("bilinear_forward", N, C, H, W, OH, OW);
  const int64_t total = int64_t(N) * C * OH * OW;
  if (total <= 0) return;
  bilinear_forward_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, Axis::make(H, OH, mode), Axis::make(W, OW, mode), x, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("bilinear_forward");
}

void bilinear_backward(int N, int C, int H, int W, int OH, int OW, ResizeMode mode,
                       const float* dy, float* dx, void* stream) {
  if (!dx) return;
  check_sizes("bilinear_backward", N, C, H, W, OH, OW);
  const int64_t total = int64_t(N) * C * H * W;
  if (total <= 0) return;
  bilinear_backward_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      total, Axis::make(H, OH, mode), Axis::make(W, OW, mode), dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("bilinear_backward");
}

}  // namespace dofpose::cuda_kernels
