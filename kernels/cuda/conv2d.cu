// conv2d on the GPU: NCHW, weight [K, C/groups, R, S], stride, zero padding
// (dilation 1), the semantics of kernels/cpu/conv2d.cpp.
//
// groups == 1 runs as an implicit GEMM on the tile kernels of gemm_tiles.cuh
// (shared with gemm.cu: 256 threads, 128/64 block tiles, k-major double-buffered shared
// slices with a register prefetch of the next slice; SIMT 8x8/4x4 register
// tiles in F32, 16x16x8 TF32 WMMA fragments when math_mode() == TF32). The
// loaders gather the im2col matrix straight from the tensors into shared
// memory (zero outside the image), so no column buffer exists in global
// memory:
//   forward      y[K, N*P*Q]  = W[K, C*R*S]   x patches[C*R*S, N*P*Q]
//   data grad    dx[C, N*H*W] = W^T[C, K*R*S] x dy taps[K*R*S, N*H*W]
//                (input row h meets tap r only where (h + pad - r) % stride
//                == 0 and the output row is in range; the rest are zeros)
//   weight grad  dw[K, C*R*S] = dy[K, N*P*Q]  x patches^T[N*P*Q, C*R*S]
//                the long N*P*Q reduction is split over blockIdx.z; each
//                split writes its own slab of partial sums to scratch and a
//                second kernel adds the slabs in split order (deterministic,
//                no atomics anywhere in this file; the split count depends
//                only on the shape and the multiprocessor count).
// Each loader thread keeps a fixed set of GEMM rows or columns, decoded once
// (a pixel, or a list of (c, r, s) taps), and walks the other index
// incrementally, so the gathers do at most a few divisions per slice.
// The stem's forward (C <= 4, 7x7) has a direct kernel, conv2d_stem.cu, behind
// set_stem_path. 1x1 stride-1 unpadded forward and data grad are plain batched GEMMs on the
// NCHW tensors (detail::gemm_strided_batched in gemm.cu; honours the backend).
// groups > 1 (grouped, depthwise) use direct kernels: one thread per output
// (forward) or input (data grad, visiting only the taps whose stride phase
// matches) element, one block per weight element (weight grad, fixed-order
// block reduction); the data grad with C < 16 (the RGB stem) uses the direct
// kernel too. dbias: one block per channel. Batch sums of the reductions run
// in double, as on the CPU.
// Measured on an H200 (N=32, 3x3, 128-256 channels): forward ~29 TFLOP/s F32,
// ~31 TF32; data grad ~27 / 29; weight grad ~19 / 25.
// Scratch (weight-grad partials): one device buffer per (device, stream),
// grown with cudaMalloc when too small (cudaFree of the old one waits for the
// device; growth happens only on the first calls of a new largest shape) and
// kept for the process lifetime.
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/epilogue.cuh"
#include "kernels/cuda/gemm_detail.h"
#include "kernels/cuda/gemm_tiles.cuh"
#include "kernels/cuda/storage.cuh"

namespace dofpose::cuda_kernels {

namespace {

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(std::min<int64_t>(std::max<int64_t>(b, 1), 65535 * 16));
}

// ---- scratch: per (device, stream), grow only
float* scratch(size_t floats, cudaStream_t stream) {
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::map<std::pair<int, cudaStream_t>, std::pair<float*, size_t>> buffers;
  std::lock_guard<std::mutex> lock(mu);
  auto& buf = buffers[{dev, stream}];
  if (buf.second < floats) {
    if (buf.first) DOFPOSE_CUDA_CHECK(cudaFree(buf.first));
    buf = {nullptr, 0};
    void* p = nullptr;
    DOFPOSE_CUDA_CHECK(cudaMalloc(&p, floats * sizeof(float)));
    buf = {static_cast<float*>(p), floats};
  }
  return buf.first;
}

// Shape fields the kernels need (P, Q, products precomputed on the host).
struct Dims {
  int N, C, H, W, K, R, S, stride, pad, P, Q;
  int HW, PQ, RS;
};

Dims make_dims(const Conv2dShape& s) {
  Dims d;
  d.N = s.N;
  d.C = s.C;
  d.H = s.H;
  d.W = s.W;
  d.K = s.K;
  d.R = s.R;
  d.S = s.S;
  d.stride = s.stride;
  d.pad = s.pad;
  d.P = s.P();
  d.Q = s.Q();
  d.HW = s.H * s.W;
  d.PQ = d.P * d.Q;
  d.RS = s.R * s.S;
  return d;
}

// ====================================================================
// Loaders. Two thread mappings over the TILE x BK slice (idx = tid + l*256):
//  * "column" loaders: t = idx % TILE fixed per thread, k = tid/TILE + l*STEP;
//  * "row" loaders:    k fixed per thread, t = tt + l*STEP, a warp 8 k by 4
//    rows (row_loader_coords in gemm_tiles.cuh: conflict-free shared stores).
// Both store into s[k * (TILE + kPad) + t].

// Forward A: weights [K, CRS] row-major, element (t = k, k = crs).
template <int TILE, int BK>
struct WeightLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / BK;
  static_assert(kCount * kThreads == TILE * BK && kStep * BK == kThreads, "");
  const float* w;
  int rows, cols, t0, kk, tt;
  float v[kCount];
  __device__ WeightLoader(const float* w_, int rows_, int cols_, int t0_, int tid)
      : w(w_), rows(rows_), cols(cols_), t0(t0_) {
    row_loader_coords<BK>(tid, kk, tt);
  }
  // Calls at(l, src) for this thread's elements of the slice at k0 (src
  // nullptr: a zero outside the matrix).
  template <class F>
  __device__ void visit(int k0, int k_end, F&& at) const {
    const int k = k0 + kk;
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      const int t = t0 + tt + l * kStep;
      at(l, (k < k_end && t < rows) ? w + (int64_t)t * cols + k : nullptr);
    }
  }
  __device__ void fetch(int k0, int k_end) {
    visit(k0, k_end, [&](int l, const float* src) { v[l] = src ? *src : 0.0f; });
  }
  // fetch() straight into shared memory (cp.async, zero-filled outside;
  // columns swizzled by SWZ: swizzle_col).
  template <int LD, int SWZ = 0>
  __device__ void fetch_async(float* sm, int k0, int k_end) const {
    visit(k0, k_end, [&](int l, const float* src) {
      cp_async4(&sm[kk * LD + swizzle_col<SWZ>(kk, tt + l * kStep)], src ? src : w, src != nullptr);
    });
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[kk * LD + tt + l * kStep] = T(v[l]);
  }
};

// A flat index over lead x R x S taps as (lead, r, s), advanced `step` taps at
// a time with a few subtractions instead of divisions (the loaders' k walk:
// lead is the input channel for patches, the output channel for dy taps).
struct TapWalk {
  int lead, r, s;
  __device__ TapWalk(int idx, const Dims& d)
      : lead(idx / d.RS), r((idx - lead * d.RS) / d.S), s(idx - lead * d.RS - r * d.S) {}
  __device__ void advance(int step, const Dims& d) {
    s += step;
    while (s >= d.S) {
      s -= d.S;
      if (++r == d.R) {
        r = 0;
        ++lead;
      }
    }
  }
};

// Forward B: patches, element (k = crs, t = output pixel (n, p, q)); with
// `pre` (the fused prologue) each in-image element becomes relu(pre(x)).
// In: the input's storage type (float, or 16-bit activations: storage.cuh).
template <int TILE, int BK, class In = float>
struct PatchLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / TILE;
  static_assert(kCount * kThreads == TILE * BK && kStep * TILE == kThreads, "");
  const Dims& d;
  const BatchNormPtrs* pre;  // nullptr: no prologue
  const In* base;  // the input (a valid address for zero-filled async copies)
  const In* xn;  // this pixel's image, nullptr past the last pixel
  int h0, w0, t, kk;
  float v[kCount];
  __device__ PatchLoader(const Dims& d_, const In* x, int t0, int tid,
                         const BatchNormPtrs* pre_ = nullptr)
      : d(d_), pre(pre_), base(x), xn(nullptr), h0(0), w0(0), t(tid % TILE), kk(tid / TILE) {
    const int m = t0 + t;
    if (m < d.N * d.PQ) {
      const int n = m / d.PQ, pq = m - n * d.PQ;
      const int p = pq / d.Q, q = pq - p * d.Q;
      h0 = p * d.stride - d.pad;
      w0 = q * d.stride - d.pad;
      xn = x + (int64_t)n * d.C * d.HW;
    }
  }
  // Calls at(l, c, src) for this thread's kCount elements of the slice at k0:
  // src points at the input element of channel c, or is nullptr where the
  // element is a zero (padding, past k_end, past the last pixel).
  template <class F>
  __device__ void visit(int k0, int k_end, F&& at) const {
    int crs = k0 + kk;
    TapWalk tap(crs, d);
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      const int h = h0 + tap.r, w = w0 + tap.s;
      const bool ok = xn && crs < k_end && (unsigned)h < (unsigned)d.H && (unsigned)w < (unsigned)d.W;
      at(l, tap.lead, ok ? xn + (int64_t)tap.lead * d.HW + h * d.W + w : nullptr);
      crs += kStep;
      tap.advance(kStep, d);
    }
  }
  __device__ void fetch(int k0, int k_end) {
    visit(k0, k_end, [&](int l, int c, const In* src) {
      float x = 0.0f;
      if (src) {
        x = to_f32(*src);
        if (pre) x = fmaxf(bn_infer(*pre, c, x), 0.0f);  // padding stays 0
      }
      v[l] = x;
    });
  }
  // fetch() straight into shared memory (cp.async, zero-filled outside the
  // image); only without a prologue (ConvForward::async_ok()).
  template <int LD, int SWZ = 0>
  __device__ void fetch_async(float* sm, int k0, int k_end) const {
    static_assert(std::is_same_v<In, float>, "cp.async copies float32 inputs only");
    visit(k0, k_end, [&](int l, int, const In* src) {
      const int k = kk + l * kStep;
      cp_async4(&sm[k * LD + swizzle_col<SWZ>(k, t)], src ? src : base, src != nullptr);
    });
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[(kk + l * kStep) * LD + t] = T(v[l]);
  }
};

// The forward's problem. In / Out: the storage types of the input and of the
// output and residual (float; 16-bit activations run only on the 16-bit
// WMMA kernel of their type, launch_forward16).
template <class In = float, class Out = float>
struct ConvForwardT {
  // The async loaders copy raw input: not with the BN+ReLU prologue ...
  bool async_ok() const { return !f.in_bn.present(); }
  // ... except into mma_async_tile_kernel, which applies it (b_prologue) as
  // it reads B: right where every staged element is an input value or meets
  // a zero weight, i.e. without padding (the bottleneck's 1x1 conv1).
  bool mma_async_ok() const { return async_ok() || d.pad == 0; }
  // relu(bn(v)) of input channel k / RS (bn_infer's arithmetic).
  __host__ __device__ bool has_b_prologue() const { return f.in_bn.present(); }
  __device__ ChannelEpilogue b_prologue(int k) const {
    return ChannelEpilogue(nullptr, f.in_bn, true, k / d.RS);
  }
  int M, N;  // K output channels x N*P*Q pixels
  Dims d;
  const In* x;
  const float *w, *bias;
  Out* y;
  const Out* residual;  // f.residual, as its storage type
  ConvFusion f;  // all absent for the plain convolution
  // Split-K (small outputs, e.g. batch 1 at 4x4..64x64): blockIdx.z takes
  // reduction rows [z * chunk, (z + 1) * chunk) and stores raw partial sums
  // to partial[z][M][N]; split_epilogue_kernel adds them in z order and
  // applies the epilogue. partial == nullptr: one split, epilogue in place.
  float* partial;
  int chunk;
  bool vec_ok;  // host-checked: 4 consecutive pixels of a row are one aligned float4
  int tile_m, tile_n;  // host only: the block tile plan_forward chose

  template <int TILE, int BK>
  struct A : WeightLoader<TILE, BK> {
    __device__ A(const ConvForwardT& p, int t0, int tid)
        : WeightLoader<TILE, BK>(p.w, p.d.K, p.d.C * p.d.RS, t0, tid) {}
  };
  template <int TILE, int BK>
  struct B : PatchLoader<TILE, BK, In> {
    __device__ B(const ConvForwardT& p, int t0, int tid)
        : PatchLoader<TILE, BK, In>(p.d, p.x, t0, tid,
                                    p.f.in_bn.present() ? &p.f.in_bn : nullptr) {}
  };
  __device__ void k_range(int& kb, int& ke) const {
    const int total = d.C * d.RS;
    if (!partial) {
      kb = 0;
      ke = total;
      return;
    }
    const int64_t b = (int64_t)blockIdx.z * chunk, e = b + chunk;
    kb = int(b < total ? b : total);
    ke = int(e < total ? e : total);
  }
  __device__ void store(int k, int m, float acc) const {
    if (partial)
      partial[(int64_t)blockIdx.z * M * N + (int64_t)k * N + m] = acc;
    else
      finish(k, m, acc);
  }
  __device__ bool vec4() const { return vec_ok; }
  // Four consecutive pixels m..m+3 of channel k (same image: PQ % 4 == 0).
  __device__ void store4(int k, int m, float4 v) const {
    if (partial) {
      *reinterpret_cast<float4*>(partial + (int64_t)blockIdx.z * M * N + (int64_t)k * N + m) = v;
      return;
    }
    const int n = m / d.PQ, pq = m - n * d.PQ;
    const int64_t i = ((int64_t)n * d.K + k) * d.PQ + pq;
    const ChannelEpilogue e(bias, f.out_bn, f.out_relu, k);
    v = make_float4(e(v.x), e(v.y), e(v.z), e(v.w));
    if (residual) {
      const float4 r = cuda_kernels::load4(residual + i);
      v = make_float4(v.x + r.x, v.y + r.y, v.z + r.z, v.w + r.w);
    }
    cuda_kernels::store4(y + i, v);
  }
  // The epilogue: bias, then the fused out_bn, relu and residual (ConvFusion).
  __device__ void finish(int k, int m, float acc) const {
    const int n = m / d.PQ, pq = m - n * d.PQ;
    const int64_t i = ((int64_t)n * d.K + k) * d.PQ + pq;
    float v = ChannelEpilogue(bias, f.out_bn, f.out_relu, k)(acc);
    if (residual) v += to_f32(residual[i]);
    y[i] = from_f32<Out>(v);
  }
};
using ConvForward = ConvForwardT<>;

// Split-K second pass: y = epilogue(sum over z in order of partial[z][k][m]).
template <class P>
__global__ void split_epilogue_kernel(const P p, int splits) {
  const int64_t n = (int64_t)p.M * p.N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float acc = p.partial[i];
    for (int z = 1; z < splits; ++z) acc += p.partial[z * n + i];
    p.finish(int(i / p.N), int(i % p.N), acc);
  }
}

// Data grad A: W^T, element (t = c, k = (k, r, s)) = w[k][c][r][s], read from
// wt[krs][c], the weights transposed once per call (transpose_weight_kernel).
// A column loader: a warp reads 32 adjacent channels of one row of wt (4
// sectors) and stores them conflict-free. Read in place, w's runs of RS floats
// cost 8 sectors a request (emulator memory profile, docs/cuda.md).
template <int TILE, int BK>
struct WeightTLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / TILE;
  static_assert(kCount * kThreads == TILE * BK && kStep * TILE == kThreads, "");
  const float* wt;
  int C, t, kk;
  float v[kCount];
  __device__ WeightTLoader(const Dims& d, const float* wt_, int t0, int tid)
      : wt(wt_), C(d.C), t(t0 + tid % TILE), kk(tid / TILE) {}
  __device__ void fetch(int k0, int k_end) {
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      const int krs = k0 + kk + l * kStep;
      v[l] = (krs < k_end && t < C) ? wt[(int64_t)krs * C + t] : 0.0f;
    }
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
    const int col = t % TILE;
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[(kk + l * kStep) * LD + col] = T(v[l]);
  }
};

// wt[krs][c] = w[k][c][rs]: the data gradient's A operand with rows contiguous
// in c. A block moves 32 channels of one k through shared memory, reading
// their 32 * RS contiguous floats and writing RS rows of 32 channels, both
// coalesced (gathering w at a stride of RS floats cost 32 sectors a request).
constexpr int kTransposeChannels = 32, kTransposeThreads = 128;
__global__ void transpose_weight_kernel(Dims d, const float* w, float* wt) {
  extern __shared__ float tile[];  // [kTransposeChannels][ld]
  const int ld = d.RS | 1;         // odd: the column reads below are conflict-free
  const int k = blockIdx.y, c0 = blockIdx.x * kTransposeChannels;
  const int nc = min(kTransposeChannels, d.C - c0);
  const float* src = w + ((int64_t)k * d.C + c0) * d.RS;
  for (int i = threadIdx.x; i < nc * d.RS; i += blockDim.x) {
    const int c = i / d.RS, rs = i - c * d.RS;
    tile[c * ld + rs] = src[i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kTransposeChannels * d.RS; i += blockDim.x) {
    const int rs = i / kTransposeChannels, c = i % kTransposeChannels;
    if (c < nc) wt[((int64_t)k * d.RS + rs) * d.C + c0 + c] = tile[c * ld + rs];
  }
}

// Data grad B: element (k = (k, r, s), t = input pixel (n, h, w)) =
// dy[n][k][p][q] where h + pad - r = p * stride and w + pad - s = q * stride.
template <int TILE, int BK>
struct DyTapLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / TILE;
  static_assert(kCount * kThreads == TILE * BK && kStep * TILE == kThreads, "");
  const Dims& d;
  const float* dyn;  // this pixel's image, nullptr past the last pixel
  int hp0, wp0, t, kk;
  float v[kCount];
  __device__ DyTapLoader(const Dims& d_, const float* dy, int t0, int tid)
      : d(d_), dyn(nullptr), hp0(0), wp0(0), t(tid % TILE), kk(tid / TILE) {
    const int m = t0 + t;
    if (m < d.N * d.HW) {
      const int n = m / d.HW, hw = m - n * d.HW;
      const int h = hw / d.W, w = hw - h * d.W;
      hp0 = h + d.pad;
      wp0 = w + d.pad;
      dyn = dy + (int64_t)n * d.K * d.PQ;
    }
  }
  __device__ void fetch(int k0, int k_end) {
    int krs = k0 + kk;
    TapWalk tap(krs, d);  // (k, r, s)
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      float x = 0.0f;
      const int hp = hp0 - tap.r, wp = wp0 - tap.s;
      if (dyn && krs < k_end && hp >= 0 && wp >= 0) {
        int p = hp, q = wp;
        bool hit = true;
        if (d.stride != 1) {
          p = hp / d.stride;
          q = wp / d.stride;
          hit = p * d.stride == hp && q * d.stride == wp;
        }
        if (hit && p < d.P && q < d.Q) x = dyn[((int64_t)tap.lead * d.P + p) * d.Q + q];
      }
      v[l] = x;
      krs += kStep;
      tap.advance(kStep, d);
    }
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[(kk + l * kStep) * LD + t] = T(v[l]);
  }
};

struct ConvBackwardData {
  int M, N;  // C input channels x N*H*W pixels
  Dims d;
  const float *wt, *dy;  // wt: the weights as [K*R*S][C] (transpose_weight_kernel)
  float* dx;

  template <int TILE, int BK>
  struct A : WeightTLoader<TILE, BK> {
    __device__ A(const ConvBackwardData& p, int t0, int tid)
        : WeightTLoader<TILE, BK>(p.d, p.wt, t0, tid) {}
  };
  template <int TILE, int BK>
  struct B : DyTapLoader<TILE, BK> {
    __device__ B(const ConvBackwardData& p, int t0, int tid)
        : DyTapLoader<TILE, BK>(p.d, p.dy, t0, tid) {}
  };
  __device__ void k_range(int& kb, int& ke) const {
    kb = 0;
    ke = d.K * d.RS;
  }
  __device__ void store(int c, int m, float acc) const {
    const int n = m / d.HW, hw = m - n * d.HW;
    dx[((int64_t)n * d.C + c) * d.HW + hw] = acc;
  }
  bool vec_ok;  // host-checked: HW % 4 == 0 and dx 16-byte aligned
  __device__ bool vec4() const { return vec_ok; }
  // Pixels m..m+3 of channel c (one image: HW % 4 == 0), one float4: a warp's
  // scalar stores touched 16 sectors where 4 do (emulator memory profile).
  __device__ void store4(int c, int m, float4 v) const {
    const int n = m / d.HW, hw = m - n * d.HW;
    *reinterpret_cast<float4*>(dx + ((int64_t)n * d.C + c) * d.HW + hw) = v;
  }
};

// Weight grad A: dy as [K, N*P*Q], element (t = k, k = pixel (n, pq)).
template <int TILE, int BK>
struct DyLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / BK;
  static_assert(kCount * kThreads == TILE * BK && kStep * BK == kThreads, "");
  const Dims& d;
  const float* dy;
  int t0, kk, tt;
  float v[kCount];
  __device__ DyLoader(const Dims& d_, const float* dy_, int t0_, int tid)
      : d(d_), dy(dy_), t0(t0_) {
    row_loader_coords<BK>(tid, kk, tt);
  }
  __device__ void fetch(int k0, int k_end) {
    const int m = k0 + kk;
    const int n = m / d.PQ, pq = m - n * d.PQ;
    const float* base = dy + (int64_t)n * d.K * d.PQ + pq;
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      const int k = t0 + tt + l * kStep;
      v[l] = (m < k_end && k < d.K) ? base[(int64_t)k * d.PQ] : 0.0f;
    }
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[kk * LD + tt + l * kStep] = T(v[l]);
  }
};

// Weight grad B: patches^T, element (k = pixel (n, p, q), t = crs). The
// thread's crs set is fixed, so (c, r, s) is decoded once.
template <int TILE, int BK>
struct PatchTLoader {
  static constexpr int kCount = TILE * BK / kThreads, kStep = kThreads / BK;
  static_assert(kCount * kThreads == TILE * BK && kStep * BK == kThreads, "");
  const Dims& d;
  const float* x;
  int kk, tt;
  int coff[kCount];  // c * H * W, or -1 past the last column
  int rs[kCount];    // r << 16 | s
  float v[kCount];
  __device__ PatchTLoader(const Dims& d_, const float* x_, int t0, int tid)
      : d(d_), x(x_) {
    row_loader_coords<BK>(tid, kk, tt);
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      const int crs = t0 + tt + l * kStep;
      coff[l] = -1;
      rs[l] = 0;
      if (crs < d.C * d.RS) {
        const int c = crs / d.RS, r = (crs - c * d.RS) / d.S, s = crs - c * d.RS - r * d.S;
        coff[l] = c * d.HW;
        rs[l] = r << 16 | s;
      }
    }
  }
  __device__ void fetch(int k0, int k_end) {
    const int m = k0 + kk;
    const int n = m / d.PQ, pq = m - n * d.PQ;
    const int p = pq / d.Q, q = pq - p * d.Q;
    const int h0 = p * d.stride - d.pad, w0 = q * d.stride - d.pad;
    const float* xn = x + (int64_t)n * d.C * d.HW;
    const bool ok = m < k_end;
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      float val = 0.0f;
      const int h = h0 + (rs[l] >> 16), w = w0 + (rs[l] & 0xffff);
      if (ok && coff[l] >= 0 && (unsigned)h < (unsigned)d.H && (unsigned)w < (unsigned)d.W)
        val = xn[coff[l] + h * d.W + w];
      v[l] = val;
    }
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) s[kk * LD + tt + l * kStep] = T(v[l]);
  }
};

struct ConvBackwardWeight {
  int M, N;  // K x C*R*S
  Dims d;
  const float *x, *dy;
  float* out;     // dw, or the split partials [splits][K][CRS]
  int chunk;      // reduction pixels per split (multiple of 16)
  __device__ int npix() const { return d.N * d.PQ; }

  template <int TILE, int BK>
  struct A : DyLoader<TILE, BK> {
    __device__ A(const ConvBackwardWeight& p, int t0, int tid) : DyLoader<TILE, BK>(p.d, p.dy, t0, tid) {}
  };
  template <int TILE, int BK>
  struct B : PatchTLoader<TILE, BK> {
    __device__ B(const ConvBackwardWeight& p, int t0, int tid)
        : PatchTLoader<TILE, BK>(p.d, p.x, t0, tid) {}
  };
  __device__ void k_range(int& kb, int& ke) const {
    const int64_t b = (int64_t)blockIdx.z * chunk, e = b + chunk, n = npix();
    kb = int(b < n ? b : n);
    ke = int(e < n ? e : n);
  }
  __device__ void store(int k, int crs, float acc) const {
    out[(int64_t)blockIdx.z * M * N + (int64_t)k * N + crs] = acc;
  }
  bool vec_ok;  // host-checked: N % 4 == 0 and out 16-byte aligned
  __device__ bool vec4() const { return vec_ok; }
  __device__ void store4(int k, int crs, float4 v) const {
    *reinterpret_cast<float4*>(out + (int64_t)blockIdx.z * M * N + (int64_t)k * N + crs) = v;
  }
};

// ====================================================================
// Small kernels.

// Fixed-order tree reduction over the block's 256 threads (deterministic).
// In double, as the CPU's batch sums.
__device__ double block_sum(double v) {
  __shared__ double sm[kThreads];
  sm[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) sm[threadIdx.x] += sm[threadIdx.x + s];
    __syncthreads();
  }
  return sm[0];
}

// out[i] = sum over splits z (in order) of part[z * n + i].
__global__ void sum_splits_kernel(int64_t n, int splits, const float* part, float* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    float s = part[i];
    for (int z = 1; z < splits; ++z) s += part[z * n + i];
    out[i] = s;
  }
}

// One block per channel: dbias[k] = sum over n, pq of dy[n][k][pq].
__global__ void dbias_kernel(Dims d, const float* dy, float* dbias) {
  const int k = blockIdx.x;
  double acc = 0.0;
  for (int n = 0; n < d.N; ++n) {
    const float* dyk = dy + ((int64_t)n * d.K + k) * d.PQ;
    float part = 0.0f;
    for (int i = threadIdx.x; i < d.PQ; i += kThreads) part += dyk[i];
    acc += part;
  }
  const double s = block_sum(acc);
  if (threadIdx.x == 0) dbias[k] = (float)s;
}

// ---- direct kernels: groups > 1, and the data grad of convolutions with very
// few input channels (the stem), where a GEMM tile would be mostly padding.
// Index is int when the tensor has < 2^31 elements (64-bit division is slow).

template <typename Index>
__global__ void grouped_forward_kernel(Dims d, int groups, const float* x, const float* w,
                                       const float* bias, float* y) {
  const int Cg = d.C / groups, Kg = d.K / groups;
  const Index total = (Index)d.N * d.K * d.PQ;
  for (Index idx = blockIdx.x * Index(blockDim.x) + threadIdx.x; idx < total;
       idx += Index(gridDim.x) * blockDim.x) {
    const int q = int(idx % d.Q);
    Index t = idx / d.Q;
    const int p = int(t % d.P);
    t /= d.P;
    const int k = int(t % d.K), n = int(t / d.K);
    const float* wk = w + (int64_t)k * Cg * d.RS;
    const float* xg = x + ((int64_t)n * d.C + (int64_t)(k / Kg) * Cg) * d.HW;
    const int h0 = p * d.stride - d.pad, w0 = q * d.stride - d.pad;
    float acc = 0.0f;
    for (int cg = 0; cg < Cg; ++cg)
      for (int r = 0; r < d.R; ++r) {
        const int h = h0 + r;
        if (h < 0 || h >= d.H) continue;
        for (int s = 0; s < d.S; ++s) {
          const int ww = w0 + s;
          if (ww < 0 || ww >= d.W) continue;
          acc += wk[(cg * d.R + r) * d.S + s] * xg[(int64_t)cg * d.HW + h * d.W + ww];
        }
      }
    y[idx] = bias ? acc + bias[k] : acc;
  }
}

// dx[n][c][h][w] = sum over the group's k and the taps (r, s) that reach it:
// r = (h + pad) mod stride, stepping by stride, while h + pad - r >= 0.
template <typename Index>
__global__ void grouped_backward_data_kernel(Dims d, int groups, const float* w, const float* dy,
                                             float* dx) {
  const int Cg = d.C / groups, Kg = d.K / groups;
  const Index total = (Index)d.N * d.C * d.HW;
  for (Index idx = blockIdx.x * Index(blockDim.x) + threadIdx.x; idx < total;
       idx += Index(gridDim.x) * blockDim.x) {
    const int ww = int(idx % d.W);
    Index t = idx / d.W;
    const int h = int(t % d.H);
    t /= d.H;
    const int c = int(t % d.C), n = int(t / d.C);
    const int g = c / Cg, cg = c - g * Cg;
    const int hp0 = h + d.pad, wp0 = ww + d.pad;
    const int r0 = hp0 % d.stride, s0 = wp0 % d.stride;
    float acc = 0.0f;
    for (int kg = 0; kg < Kg; ++kg) {
      const int k = g * Kg + kg;
      const float* wk = w + ((int64_t)k * Cg + cg) * d.RS;
      const float* dyk = dy + ((int64_t)n * d.K + k) * d.PQ;
      for (int r = r0; r < d.R && r <= hp0; r += d.stride) {
        const int p = (hp0 - r) / d.stride;
        if (p >= d.P) continue;
        for (int s = s0; s < d.S && s <= wp0; s += d.stride) {
          const int q = (wp0 - s) / d.stride;
          if (q >= d.Q) continue;
          acc += wk[r * d.S + s] * dyk[p * d.Q + q];
        }
      }
    }
    dx[idx] = acc;
  }
}

// One block per weight element (k, cg, r, s).
__global__ void grouped_backward_weight_kernel(Dims d, int groups, const float* x,
                                               const float* dy, float* dw) {
  const int Cg = d.C / groups, Kg = d.K / groups;
  const int e = blockIdx.x;
  const int s = e % d.S, r = (e / d.S) % d.R, cg = (e / d.RS) % Cg, k = e / (d.RS * Cg);
  const int c = (k / Kg) * Cg + cg;
  double acc = 0.0;
  for (int n = 0; n < d.N; ++n) {
    const float* xc = x + ((int64_t)n * d.C + c) * d.HW;
    const float* dyk = dy + ((int64_t)n * d.K + k) * d.PQ;
    float part = 0.0f;
    for (int pq = threadIdx.x; pq < d.PQ; pq += kThreads) {
      const int p = pq / d.Q, q = pq - p * d.Q;
      const int h = p * d.stride - d.pad + r, ww = q * d.stride - d.pad + s;
      if (h >= 0 && h < d.H && ww >= 0 && ww < d.W) part += dyk[pq] * xc[h * d.W + ww];
    }
    acc += part;
  }
  const double sum = block_sum(acc);
  if (threadIdx.x == 0) dw[e] = (float)sum;
}

void direct_forward(const Dims& d, int groups, const float* x, const float* w, const float* bias,
                    float* y, cudaStream_t st) {
  const int64_t n = (int64_t)d.N * d.K * d.PQ;
  if (n < INT_MAX)
    grouped_forward_kernel<int><<<blocks_for(n), kThreads, 0, st>>>(d, groups, x, w, bias, y);
  else
    grouped_forward_kernel<int64_t><<<blocks_for(n), kThreads, 0, st>>>(d, groups, x, w, bias, y);
  DOFPOSE_CUDA_LAUNCH_CHECK("conv2d direct forward");
}

void direct_backward_data(const Dims& d, int groups, const float* w, const float* dy, float* dx,
                          cudaStream_t st) {
  const int64_t n = (int64_t)d.N * d.C * d.HW;
  if (n < INT_MAX)
    grouped_backward_data_kernel<int><<<blocks_for(n), kThreads, 0, st>>>(d, groups, w, dy, dx);
  else
    grouped_backward_data_kernel<int64_t><<<blocks_for(n), kThreads, 0, st>>>(d, groups, w, dy, dx);
  DOFPOSE_CUDA_LAUNCH_CHECK("conv2d direct backward data");
}

// ---- host helpers

void check_shape(const char* op, const Conv2dShape& s) {
  DOFPOSE_CHECK(s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 &&
                    s.S >= 1,
                op, ": sizes must be positive, got N=", s.N, " C=", s.C, " H=", s.H, " W=", s.W,
                " K=", s.K, " R=", s.R, " S=", s.S);
  DOFPOSE_CHECK(s.stride >= 1 && s.pad >= 0, op, ": need stride >= 1 and pad >= 0, got stride=",
                s.stride, " pad=", s.pad);
  DOFPOSE_CHECK(s.groups >= 1 && s.C % s.groups == 0 && s.K % s.groups == 0, op, ": groups=",
                s.groups, " must divide both C=", s.C, " and K=", s.K);
  DOFPOSE_CHECK(s.H + 2 * s.pad >= s.R && s.W + 2 * s.pad >= s.S, op, ": kernel ", s.R, "x",
                s.S, " is larger than the padded input ", s.H + 2 * s.pad, "x",
                s.W + 2 * s.pad);
  // The kernels index with int inside an image and within the GEMM dimensions.
  const int64_t per_image = std::max<int64_t>((int64_t)s.C * s.H * s.W,
                                              (int64_t)s.K * s.P() * s.Q());
  const int64_t pixels = (int64_t)s.N * std::max<int64_t>((int64_t)s.H * s.W,
                                                          (int64_t)s.P() * s.Q());
  DOFPOSE_CHECK(per_image < INT_MAX && pixels < INT_MAX &&
                    (int64_t)s.K * s.C * s.R * s.S < INT_MAX,
                op, ": shape too large for 32-bit indexing (N=", s.N, " C=", s.C, " H=", s.H,
                " W=", s.W, " K=", s.K, ")");
  DOFPOSE_CHECK(s.R < 65536 && s.S < 65536, op, ": kernel too large");
}

// Forward and data-grad tiles: as choose_tile, but in TF32 no 128x128 (its
// 190 registers allow one block per multiprocessor; two 128x64 blocks were
// measured ~15% faster on the gathered operands, H200), nor where the
// multi-stage FP16/BF16 kernel will run (`pipelined`: a forward it may take,
// ConvForward::mma_async_ok, under set_tile_pipeline; its 3 stages fit 48 KB
// up to 128x64).
void choose_conv_tile(int M, int N, bool pipelined, int& bm, int& bn) {
  choose_tile(M, N, 1, detail::multiprocessor_count(), bm, bn);
  const TileMath math = detail::tile_math();
  const bool pipelined_16bit =
      pipelined && detail::tile_pipeline() && (math == TileMath::Fp16 || math == TileMath::Bf16);
  if ((math == TileMath::Tf32 || pipelined_16bit) && bm == 128 && bn == 128) bn = 64;
}

// The reduction rows of one split: its share of the 16-row slices, rounded
// up to whole slices of the launched kernel (k_step rows: 32 on the 16-bit
// WMMA kernels, k_step_of), or every split's last slice would be half zeros,
// loaded and multiplied for nothing.
int k_step_of(TileMath math) { return math == TileMath::Fp16 || math == TileMath::Bf16 ? 32 : 16; }
int split_chunk(int64_t slices16, int64_t splits, int k_step) {
  const int64_t rows = (slices16 + splits - 1) / splits * 16;
  return int((rows + k_step - 1) / k_step * k_step);
}

// Below this many input channels the data grad runs the direct kernel: the
// GEMM's M dimension (C) would fill under a quarter of a 64-row tile.
constexpr int kDirectDataMaxC = 16;

bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride == 1 && s.pad == 0;
}

// The implicit-GEMM forward, split over the reduction when the output alone
// would give fewer blocks than multiprocessors (the per-block K loop, not the
// arithmetic, is then the time: e.g. 72 slices for a 3x3 conv over 128
// channels). Deterministic: the split count depends only on the shape and the
// multiprocessor count, and the partial sums are added in split order.
// The problem's tile, split count and vector store (shared by launch_forward
// and launch_forward16); p.partial is set to scratch when it splits.
template <class P>
int plan_forward(P& p, cudaStream_t st, int k_step) {
  int bm, bn;
  choose_conv_tile(p.M, p.N, p.mma_async_ok(), bm, bn);
  const int sms = detail::multiprocessor_count();
  const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + bn - 1) / bn);
  const int total = p.d.C * p.d.RS;
  const int64_t slices = (total + 15) / 16;  // BK-sized pieces of the reduction
  int64_t splits = 1;
  if (tiles < sms)
    splits = std::max<int64_t>(1, std::min<int64_t>({(2 * sms + tiles - 1) / tiles, slices / 2, 64}));
  p.partial = nullptr;
  p.chunk = total;
  if (splits > 1) {
    p.chunk = split_chunk(slices, splits, k_step);
    splits = (total + p.chunk - 1) / p.chunk;  // no empty splits
  }
  if (splits > 1) p.partial = scratch(size_t(splits * p.M * int64_t(p.N)), st);
  using Out = std::remove_pointer_t<decltype(p.y)>;
  p.vec_ok = p.partial ? (p.N % 4 == 0 && reinterpret_cast<uintptr_t>(p.partial) % 16 == 0)
                       : (p.d.PQ % 4 == 0 && storage_aligned4<Out>(p.y) &&
                          (!p.residual || storage_aligned4<Out>(p.residual)));
  p.tile_m = bm;
  p.tile_n = bn;
  return int(splits);
}

template <class In, class Out>
ConvForwardT<In, Out> forward_problem(const Dims& d, const void* x, const float* w,
                                      const float* bias, const ConvFusion& f, void* y) {
  ConvForwardT<In, Out> p;
  p.M = d.K;
  p.N = d.N * d.PQ;
  p.d = d;
  p.x = static_cast<const In*>(x);
  p.w = w;
  p.bias = bias;
  p.y = static_cast<Out*>(y);
  p.residual = reinterpret_cast<const Out*>(f.residual);
  p.f = f;
  return p;
}

template <class P>
void launch_split_epilogue(const P& p, int splits, cudaStream_t st) {
  if (!p.partial) return;
  split_epilogue_kernel<P><<<blocks_for(int64_t(p.M) * p.N), kThreads, 0, st>>>(p, splits);
  DOFPOSE_CUDA_LAUNCH_CHECK("conv2d forward split-K epilogue");
}

// The implicit-GEMM forward, split over the reduction when the output alone
// would give fewer blocks than multiprocessors (the per-block K loop, not the
// arithmetic, is then the time: e.g. 72 slices for a 3x3 conv over 128
// channels). Deterministic: the split count depends only on the shape and the
// multiprocessor count, and the partial sums are added in split order.
void launch_forward(const Dims& d, const float* x, const float* w, const float* bias,
                    const ConvFusion& f, float* y, cudaStream_t st, const char* name) {
  ConvForward p = forward_problem<float, float>(d, x, w, bias, f, y);
  // (FP16 / BF16 math: 32-deep slices on the WMMA kernel, 16 on the
  // multi-stage one, which 32 keeps whole too.)
  const TileMath math = detail::tile_math();
  const int splits = plan_forward(p, st, k_step_of(math));
  launch_tile_kernel(p, p.tile_m, p.tile_n, splits, math, st, name);
  launch_split_epilogue(p, splits, st);
}

// With 16-bit activations (x, or y and the residual, of type S; the other
// float32): the 16-bit WMMA kernel of S, whatever the math mode (the
// activations are already S; the weights are rounded to S as they are staged).
template <class S>
void launch_forward16(const Dims& d, const void* x, DType xt, const float* w, const float* bias,
                      const ConvFusion& f, void* y, DType yt, cudaStream_t st) {
  auto run = [&](auto p) {
    const int splits = plan_forward(p, st, 32);  // launch_wmma's BK for 16-bit types
    const char* name = "conv2d forward (16-bit activations)";
    const dim3 grid = tile_grid(p, p.tile_m, p.tile_n, splits, name);
    launch_wmma<decltype(p), S>(p, p.tile_m, p.tile_n, grid, st);
    DOFPOSE_CUDA_LAUNCH_CHECK(name);
    launch_split_epilogue(p, splits, st);
  };
  if (xt == DType::F32)
    run(forward_problem<float, S>(d, x, w, bias, f, y));
  else if (yt == DType::F32)
    run(forward_problem<S, float>(d, x, w, bias, f, y));
  else
    run(forward_problem<S, S>(d, x, w, bias, f, y));
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    float* y, void* stream) {
  check_shape("cuda conv2d_forward", s);
  DOFPOSE_CHECK(x && w && y, "cuda conv2d_forward: x, w and y must not be null");
  const cudaStream_t st = as_stream(stream);
  const Dims d = make_dims(s);

  if (s.groups > 1) {
    direct_forward(d, s.groups, x, w, bias, y, st);
    return;
  }
  if (is_pointwise(s)) {
    // y_n[K, HW] = W[K, C] x_n[C, HW] + bias for every image n (the bias in
    // the GEMM's store: a pass over y less).
    detail::gemm_strided_batched(false, false, d.K, d.HW, d.C, 1.0f, w, d.C, 0, x, d.HW,
                                 (int64_t)d.C * d.HW, 0.0f, y, d.HW, (int64_t)d.K * d.HW, d.N,
                                 stream, bias);
    return;
  }
  if (stem_path() && stem_forward_applies(s, ConvFusion{})) {
    stem_forward(s, x, w, bias, ConvFusion{}, y, stream);
    return;
  }
  launch_forward(d, x, w, bias, ConvFusion{}, y, st, "conv2d forward");
}


void conv2d_fused_forward(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                          const ConvFusion& f, float* y, void* stream) {
  check_shape("cuda conv2d_fused_forward", s);
  DOFPOSE_CHECK(x && w && y, "cuda conv2d_fused_forward: x, w and y must not be null");
  DOFPOSE_CHECK(s.groups == 1, "cuda conv2d_fused_forward: groups must be 1, got ", s.groups);
  if (stem_path() && stem_forward_applies(s, f)) {
    stem_forward(s, x, w, bias, f, y, stream);
    return;
  }
  launch_forward(make_dims(s), x, w, bias, f, y, as_stream(stream), "conv2d fused forward");
}

void conv2d_fused_forward16(const Conv2dShape& s, const void* x, DType xt, const float* w,
                            const float* bias, const ConvFusion& f, void* y, DType yt,
                            void* stream) {
  const char* op = "cuda conv2d_fused_forward (16-bit activations)";
  check_shape(op, s);
  DOFPOSE_CHECK(x && w && y, op, ": x, w and y must not be null");
  DOFPOSE_CHECK(s.groups == 1, op, ": groups must be 1, got ", s.groups);
  const bool x16 = xt != DType::F32, y16 = yt != DType::F32;
  DOFPOSE_CHECK((x16 || y16) && (!x16 || !y16 || xt == yt) &&
                    (xt == DType::F32 || xt == DType::F16 || xt == DType::BF16) &&
                    (yt == DType::F32 || yt == DType::F16 || yt == DType::BF16),
                op, ": x is ", dtype_name(xt), " and y ", dtype_name(yt),
                ", expected one 16-bit type (F16 or BF16) for both or for one of them with F32");
  DOFPOSE_CHECK(detail::has_16bit_tensor_cores(), op,
                ": needs a device with 16-bit tensor cores (compute capability 8.0 or newer)");
  const DType t = x16 ? xt : yt;
  with_storage16(t, [&](auto zero) {
    launch_forward16<decltype(zero)>(make_dims(s), x, xt, w, bias, f, y, yt, as_stream(stream));
  });
}

void conv2d_backward(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* dbias, void* stream) {
  check_shape("cuda conv2d_backward", s);
  DOFPOSE_CHECK(dy, "cuda conv2d_backward: dy must not be null");
  DOFPOSE_CHECK(!dx || w, "cuda conv2d_backward: dx requested but w is null");
  DOFPOSE_CHECK(!dw || x, "cuda conv2d_backward: dw requested but x is null");
  const cudaStream_t st = as_stream(stream);
  const Dims d = make_dims(s);

  if (dbias) {
    dbias_kernel<<<d.K, kThreads, 0, st>>>(d, dy, dbias);
    DOFPOSE_CUDA_LAUNCH_CHECK("conv2d dbias");
  }
  if (s.groups > 1) {
    const int Cg = d.C / s.groups;
    if (dx) direct_backward_data(d, s.groups, w, dy, dx, st);
    if (dw) {
      grouped_backward_weight_kernel<<<d.K * Cg * d.RS, kThreads, 0, st>>>(d, s.groups, x, dy,
                                                                           dw);
      DOFPOSE_CUDA_LAUNCH_CHECK("conv2d grouped backward weight");
    }
    return;
  }

  if (dx) {
    if (is_pointwise(s)) {
      // dx_n[C, HW] = W^T[C, K] dy_n[K, HW].
      detail::gemm_strided_batched(true, false, d.C, d.HW, d.K, 1.0f, w, d.C, 0, dy, d.HW,
                                   (int64_t)d.K * d.HW, 0.0f, dx, d.HW, (int64_t)d.C * d.HW, d.N,
                                   stream);
    } else if (d.C < kDirectDataMaxC) {
      direct_backward_data(d, 1, w, dy, dx, st);
    } else {
      ConvBackwardData p;
      p.M = d.C;
      p.N = d.N * d.HW;
      p.d = d;
      float* wt = scratch(size_t(d.K) * d.RS * d.C, st);  // dw's split partials reuse it after
      const size_t tile_bytes = sizeof(float) * kTransposeChannels * (d.RS | 1);
      DOFPOSE_CHECK(d.K <= 65535 && tile_bytes <= 48 * 1024, "cuda conv2d_backward: K = ", d.K,
                    ", R*S = ", d.RS, " is past the weight transpose's grid (K <= 65535) or shared memory (R*S < 384)");
      const dim3 grid((d.C + kTransposeChannels - 1) / kTransposeChannels, d.K);
      transpose_weight_kernel<<<grid, kTransposeThreads, tile_bytes, st>>>(d, w, wt);
      DOFPOSE_CUDA_LAUNCH_CHECK("conv2d backward data weight transpose");
      p.wt = wt;
      p.dy = dy;
      p.dx = dx;
      p.vec_ok = d.HW % 4 == 0 && reinterpret_cast<uintptr_t>(dx) % 16 == 0;
      int bm, bn;
      choose_conv_tile(p.M, p.N, false, bm, bn);
      launch_tile_kernel(p, bm, bn, 1, detail::tile_math(), st,
                         "conv2d backward data");
    }
  }
  if (dw) {
    ConvBackwardWeight p;
    p.M = d.K;
    p.N = d.C * d.RS;
    p.d = d;
    p.x = x;
    p.dy = dy;
    const int sms = detail::multiprocessor_count();
    const int64_t npix = (int64_t)d.N * d.PQ;
    const int64_t slices = (npix + 15) / 16;
    // Large tiles first (the splits, not smaller tiles, fill the machine),
    // then split the N*P*Q reduction so that about two blocks per
    // multiprocessor run, keeping at least 8 slices of 16 pixels per split.
    int bm, bn;
    choose_tile(p.M, p.N, std::max<int64_t>(1, slices / 8), sms, bm, bn);
    const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + bn - 1) / bn);
    int64_t splits = (2 * sms + tiles - 1) / tiles;
    splits = std::max<int64_t>(1, std::min<int64_t>({splits, slices / 8, 256}));
    p.chunk = split_chunk(slices, splits, k_step_of(detail::tile_math()));
    splits = (npix + p.chunk - 1) / p.chunk;  // no empty splits
    const int64_t dw_size = (int64_t)p.M * p.N;
    p.out = splits > 1 ? scratch((size_t)(splits * dw_size), st) : dw;
    p.vec_ok = p.N % 4 == 0 && reinterpret_cast<uintptr_t>(p.out) % 16 == 0;
    launch_tile_kernel(p, bm, bn, (int)splits, detail::tile_math(), st,
                       "conv2d backward weight");
    if (splits > 1) {
      sum_splits_kernel<<<blocks_for(dw_size), kThreads, 0, st>>>(dw_size, (int)splits, p.out,
                                                                   dw);
      DOFPOSE_CUDA_LAUNCH_CHECK("conv2d backward weight split sum");
    }
  }
}

}  // namespace dofpose::cuda_kernels
