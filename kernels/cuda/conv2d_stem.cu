// The stem convolution's forward (7x7, stride 2, pad 3 over the RGB image,
// 64 output channels in the hourglass) as a direct kernel. As an implicit
// GEMM its reduction is only C*R*S = 147 long while every patch element is a
// gather from a 3-channel image; here a block instead stages one input patch
// and the weights of 16 output channels in shared memory once, and each thread
// computes one output pixel for those 16 channels from registers (16 FMAs per
// shared-memory read of the input, the weights read as broadcast float4s).
// The epilogue is the fused conv's (ChannelEpilogue, then + residual), so
// inference's stem conv + BN + ReLU stays one launch.
//
// Applies to groups == 1, C <= 4, R, S <= 7, stride <= 2 and no input
// prologue (stem_forward_applies); F32 arithmetic whatever the math mode.
// Off by default (set_stem_path): written in a session without a GPU.
#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/epilogue.cuh"

namespace dofpose::cuda_kernels {

namespace {

constexpr int kTileP = 8, kTileQ = 32;     // output pixels per block, one per thread
constexpr int kThreads = kTileP * kTileQ;  // 256
constexpr int kChannels = 16;              // output channels per block (accumulators per thread)
// A tap's row of staged weights: kChannels floats padded to 20, so the staging
// stores (a warp: 4 channels x 8 consecutive taps) hit 32 distinct banks while
// the global reads run along a channel's taps (8 floats where [crs][k] order
// read a sector a lane: 18 sectors a request, the emulator's memory profile).
constexpr int kWeightLd = kChannels + 4;
static_assert(kChannels == 16, "the weight copy's lane mapping is 4 groups of 4 channels");
constexpr int kMaxC = 4, kMaxR = 7, kMaxStride = 2;

bool g_stem_path = false;

struct StemParams {
  int N, C, H, W, K, R, S, stride, pad, P, Q;
  int in_rows, in_cols;  // the staged input patch: (kTileP-1)*stride + R by (kTileQ-1)*stride + S
  int phase_cols;        // a staged row holds its columns by phase: col at (col % stride) * phase_cols + col / stride
  int row_floats;        // stride * phase_cols
  int patch_floats;      // C * in_rows * row_floats rounded up to 4 (the weights follow, float4-aligned)
  const float* x;
  const float* w;
  const float* bias;
  ConvFusion f;
  float* y;
};

__global__ void __launch_bounds__(kThreads) stem_forward_kernel(const StemParams p) {
  extern __shared__ float4 smem4[];
  // [C][in_rows][row_floats]: a row's columns grouped by phase (col % stride),
  // so the warp's 32 threads, reading columns tq * stride + s, read 32
  // consecutive floats: stride-2 reads of a plain row hit every bank twice
  // (2 wavefronts, the emulator's memory profile).
  float* s_x = reinterpret_cast<float*>(smem4);
  float* s_w = s_x + p.patch_floats;             // [C*R*S][kWeightLd]
  const int tiles_q = (p.Q + kTileQ - 1) / kTileQ;
  const int p0 = int(blockIdx.x / tiles_q) * kTileP, q0 = int(blockIdx.x % tiles_q) * kTileQ;
  const int k0 = blockIdx.y * kChannels, n = blockIdx.z;

  // The input patch, zero outside the image (the padding).
  const int h0 = p0 * p.stride - p.pad, w0 = q0 * p.stride - p.pad;
  const float* xn = p.x + (int64_t)n * p.C * p.H * p.W;
  const int patch = p.C * p.in_rows * p.in_cols;
  for (int i = threadIdx.x; i < patch; i += kThreads) {
    const int col = i % p.in_cols, t = i / p.in_cols;
    const int row = t % p.in_rows, c = t / p.in_rows;
    const int h = h0 + row, ww = w0 + col;
    const int at = (c * p.in_rows + row) * p.row_floats + (col % p.stride) * p.phase_cols + col / p.stride;
    s_x[at] = (h >= 0 && h < p.H && ww >= 0 && ww < p.W) ? xn[((int64_t)c * p.H + h) * p.W + ww]
                                                         : 0.0f;
  }
  // The block's weights as [crs][k] (zero past K), so a tap's 16 weights are
  // four consecutive float4s that every thread of the warp reads alike.
  // Element i of the copy: lane l = i % 32 takes channel 4 g + l / 8 and tap
  // 8 b + l % 8 of group i / 32 = b * 4 + g.
  const int crs_count = p.C * p.R * p.S;
  const int copies = (crs_count + 7) / 8 * 8 * kChannels;
  for (int i = threadIdx.x; i < copies; i += kThreads) {
    const int l = i % 32, grp = i / 32;
    const int kk = (grp % 4) * 4 + l / 8, crs = (grp / 4) * 8 + l % 8, k = k0 + kk;
    if (crs < crs_count) s_w[crs * kWeightLd + kk] = k < p.K ? p.w[(int64_t)k * crs_count + crs] : 0.0f;
  }
  __syncthreads();

  const int tp = threadIdx.x / kTileQ, tq = threadIdx.x % kTileQ;
  float acc[kChannels];
#pragma unroll
  for (int j = 0; j < kChannels; ++j) acc[j] = 0.0f;
  for (int c = 0; c < p.C; ++c)
    for (int r = 0; r < p.R; ++r) {
      const float* xrow = s_x + (c * p.in_rows + tp * p.stride + r) * p.row_floats + tq;
      const float4* wrow = reinterpret_cast<const float4*>(s_w + (c * p.R + r) * p.S * kWeightLd);
      for (int s = 0; s < p.S; ++s) {
        const float v = xrow[(s % p.stride) * p.phase_cols + s / p.stride];  // column tq * stride + s
#pragma unroll
        for (int j = 0; j < kChannels / 4; ++j) {
          const float4 wv = wrow[s * (kWeightLd / 4) + j];
          acc[4 * j + 0] += v * wv.x;
          acc[4 * j + 1] += v * wv.y;
          acc[4 * j + 2] += v * wv.z;
          acc[4 * j + 3] += v * wv.w;
        }
      }
    }

  const int op = p0 + tp, oq = q0 + tq;
  if (op >= p.P || oq >= p.Q) return;
#pragma unroll
  for (int kk = 0; kk < kChannels; ++kk) {
    const int k = k0 + kk;
    if (k >= p.K) break;
    const int64_t o = (((int64_t)n * p.K + k) * p.P + op) * p.Q + oq;
    float v = ChannelEpilogue(p.bias, p.f.out_bn, p.f.out_relu, k)(acc[kk]);
    if (p.f.residual) v += p.f.residual[o];
    p.y[o] = v;
  }
}

StemParams make_params(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                       const ConvFusion& f, float* y) {
  StemParams p;
  p.N = s.N, p.C = s.C, p.H = s.H, p.W = s.W, p.K = s.K, p.R = s.R, p.S = s.S;
  p.stride = s.stride, p.pad = s.pad, p.P = s.P(), p.Q = s.Q();
  p.in_rows = (kTileP - 1) * s.stride + s.R;
  p.in_cols = (kTileQ - 1) * s.stride + s.S;
  p.phase_cols = (p.in_cols + s.stride - 1) / s.stride;
  p.row_floats = s.stride * p.phase_cols;
  p.patch_floats = (s.C * p.in_rows * p.row_floats + 3) / 4 * 4;
  p.x = x, p.w = w, p.bias = bias, p.f = f, p.y = y;
  return p;
}

}  // namespace

void set_stem_path(bool on) { g_stem_path = on; }
bool stem_path() { return g_stem_path; }

bool stem_forward_applies(const Conv2dShape& s, const ConvFusion& f) {
  return s.groups == 1 && s.C <= kMaxC && s.R <= kMaxR && s.S <= kMaxR && s.R > 1 &&
         s.stride <= kMaxStride && !f.in_bn.present() && s.N < 65536;
}

void stem_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                  const ConvFusion& f, float* y, void* stream) {
  DOFPOSE_CHECK(stem_forward_applies(s, f), "cuda stem_forward: shape (C=", s.C, ", ", s.R, "x",
                s.S, ", stride ", s.stride, ", groups ", s.groups,
                ") or input prologue not handled by the stem kernel");
  const StemParams p = make_params(s, x, w, bias, f, y);
  const size_t bytes = sizeof(float) * (size_t(p.patch_floats) + size_t(s.C) * s.R * s.S * kWeightLd);
  const int tiles = ((p.P + kTileP - 1) / kTileP) * ((p.Q + kTileQ - 1) / kTileQ);
  const dim3 grid(tiles, (s.K + kChannels - 1) / kChannels, s.N);
  stem_forward_kernel<<<grid, kThreads, bytes, static_cast<cudaStream_t>(stream)>>>(p);
  DOFPOSE_CUDA_LAUNCH_CHECK("conv2d stem forward");
}

}  // namespace dofpose::cuda_kernels
