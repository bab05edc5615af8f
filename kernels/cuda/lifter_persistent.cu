// The batch-1 lifter in one launch (issue: "a single persistent kernel that
// runs the whole lifter"). The host (engine/src/nn/persistent_lifter.cpp)
// compiles the network into an MlpProgram: fused linear steps grouped in
// phases by dependency depth (independent regressors share a phase). One cooperative grid runs every phase; within a phase each
// warp takes output rows (one row = one dot product over the input vector:
// lanes stride the row with float4 loads, a shuffle reduction, then lane 0
// applies bias, BatchNorm, ReLU, residual and writes every destination);
// grid.sync() separates the phases (or, with set_mlp_launch(Cluster) on sm_90,
// one 8- or 16-block thread-block cluster of 1024 threads each and the
// hardware cluster barrier: cheaper barriers, fewer multiprocessors pulling
// the weights; or, with set_mlp_launch(Prefetch), a cooperative grid sized to
// the widest phase whose warps load their next row's weights and epilogue
// values into registers *before* each barrier, so that after it only the
// input vector is waited for). Activations are read with __ldcg (L2,
// never a stale L1 line: other multiprocessors wrote them this launch).
#include <cooperative_groups.h>

#include <algorithm>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/epilogue.cuh"

namespace dofpose::cuda_kernels {

namespace {

namespace cg = cooperative_groups;
constexpr int kThreads = 256;

__device__ float dot_row(const float* __restrict__ w, const float* x, int n, int lane) {
  float acc = 0.0f;
  const bool vec = (n % 4 == 0) && ((reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) % 16 == 0);
  if (vec) {
    const float4* w4 = reinterpret_cast<const float4*>(w);
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int i = lane; i < n / 4; i += 32) {
      const float4 a = __ldg(w4 + i), b = __ldcg(x4 + i);
      acc = fmaf(a.x, b.x, acc);
      acc = fmaf(a.y, b.y, acc);
      acc = fmaf(a.z, b.z, acc);
      acc = fmaf(a.w, b.w, acc);
    }
  } else {
    for (int i = lane; i < n; i += 32) acc = fmaf(__ldg(w + i), __ldcg(x + i), acc);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc;
}

// The cluster path's dot product: four independent float4 loads (and
// accumulators) per lane in flight, because 16 multiprocessors must pull a
// whole layer's weights (4 MiB at width 1024) and only loads in flight make
// bandwidth (Little's law).
__device__ float dot_row_ilp(const float* __restrict__ w, const float* x, int n, int lane) {
  const bool vec = (n % 4 == 0) && ((reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) % 16 == 0);
  if (!vec) return dot_row(w, x, n, lane);
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int n4 = n / 4;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int i = lane;
  for (; i + 96 < n4; i += 128) {
    float4 a[4], b[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      a[u] = __ldg(w4 + i + 32 * u);
      b[u] = __ldcg(x4 + i + 32 * u);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      acc[u] = fmaf(a[u].x, b[u].x, acc[u]);
      acc[u] = fmaf(a[u].y, b[u].y, acc[u]);
      acc[u] = fmaf(a[u].z, b[u].z, acc[u]);
      acc[u] = fmaf(a[u].w, b[u].w, acc[u]);
    }
  }
  for (; i < n4; i += 32) {
    const float4 a = __ldg(w4 + i), b = __ldcg(x4 + i);
    acc[0] = fmaf(a.x, b.x, acc[0]);
    acc[0] = fmaf(a.y, b.y, acc[0]);
    acc[0] = fmaf(a.z, b.z, acc[0]);
    acc[0] = fmaf(a.w, b.w, acc[0]);
  }
  float r = (acc[0] + acc[1]) + (acc[2] + acc[3]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}


// Phase-0 side work: the input into every concat buffer, pose prefixes to 0.
__device__ void copy_inputs(const MlpProgram& p, int tid, int threads) {
  for (int i = tid; i < p.n_input_copies * p.input_dim; i += threads) {
    const int c = i / p.input_dim, j = i - c * p.input_dim;
    p.ws[p.input_copies[c] + j] = __ldcg(p.input + j);
  }
  for (int b = 0; b < kMlpMaxOutputs; ++b)
    if (p.outputs[b])
      for (int j = tid; j < p.zero_prefix; j += threads) p.outputs[b][j] = 0.0f;
}

// Lane 0's last act on a row: write the finished value to every destination.
__device__ void store_row(const MlpProgram& p, const MlpStep& st, int row, float v) {
  for (int d = 0; d < st.ndest; ++d) {
    const MlpDest& dst = st.dest[d];
    const int e = dst.offset + (dst.map ? dst.map[row] : row);
    float o = v;
    if (dst.mul) o = o * dst.mul[e] + dst.add[e];
    float* buf = dst.buffer == 0 ? p.ws : p.outputs[dst.buffer - 1];
    buf[e] = o;
  }
}

// kCluster: the whole program in one thread-block cluster (sm_90), phases
// separated by the hardware cluster barrier; else a cooperative grid and
// grid.sync().
template <int kBlock, bool kCluster>
__global__ void __launch_bounds__(kBlock) mlp_program_kernel(const MlpProgram p) {
  const int lane = threadIdx.x % 32;
  const int warp = int((blockIdx.x * blockDim.x + threadIdx.x) / 32);
  const int warps = int(gridDim.x * blockDim.x / 32);
  const int tid = int(blockIdx.x * blockDim.x + threadIdx.x), threads = int(gridDim.x * blockDim.x);
  copy_inputs(p, tid, threads);

  for (int ph = 0; ph < p.phases; ++ph) {
    const int s0 = p.phase_begin[ph], s1 = p.phase_begin[ph + 1];
    int rows = 0;
    for (int s = s0; s < s1; ++s) rows += p.steps[s].out_dim;
    for (int r = warp; r < rows; r += warps) {
      int s = s0, row = r;
      while (row >= p.steps[s].out_dim) row -= p.steps[s++].out_dim;
      const MlpStep& st = p.steps[s];
      const float* x = st.in_off < 0 ? p.input : p.ws + st.in_off;
      float v = kCluster ? dot_row_ilp(st.w + (int64_t)row * st.in_dim, x, st.in_dim, lane)
                         : dot_row(st.w + (int64_t)row * st.in_dim, x, st.in_dim, lane);
      if (lane == 0) {
        v = ChannelEpilogue(st.b, st.bn, st.relu != 0, row)(v);
        if (st.res_off >= 0) v += __ldcg(p.ws + st.res_off + row);
        store_row(p, st, row, v);
      }
    }
    if (ph + 1 < p.phases) {
      if constexpr (kCluster) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        cg::this_cluster().sync();  // release/acquire at cluster scope: global writes included
#elif defined(__CUDA_ARCH__)
        __trap();  // device code older than sm_90 has no cluster barrier: fail loudly
#endif
      } else {
        cg::this_grid().sync();
      }
    }
  }
}

// ---- The prefetching launch (MlpLaunch::Prefetch).
// A phase's critical path in mlp_program_kernel is barrier -> weights (DRAM/L2)
// -> dot -> epilogue values (another round trip) -> store. The weights and the
// epilogue values do not depend on the previous phase, so each warp loads its
// first row of the next phase into registers before it waits at the barrier;
// after the barrier only the input vector (L2) and the residual are fetched.

constexpr int kHeldVec = 8;  // float4 per lane: rows of up to 32 * 4 * 8 = 1024 inputs

struct HeldRow {
  int step = -1, row = 0;  // step -1: nothing held (no row here, too wide, unaligned)
  int rows = 0;            // rows of the whole phase (all steps)
  float4 w[kHeldVec];
  float bias = 0.0f, mean = 0.0f, var = 1.0f, gamma = 1.0f, beta = 0.0f;
};

// The warp's first row of phase `ph` (row index `warp` over the phase's steps):
// its weights and epilogue values, loaded into registers (not waited for).
__device__ void hold_first_row(const MlpProgram& p, int ph, int warp, int lane, HeldRow& h) {
  const int s0 = p.phase_begin[ph], s1 = p.phase_begin[ph + 1];
  h.step = -1;
  h.rows = 0;
  int s = -1, row = warp;
  for (int t = s0; t < s1; ++t) {
    const int od = p.steps[t].out_dim;
    if (s < 0) {
      if (row < od) s = t;
      else row -= od;
    }
    h.rows += od;
  }
  if (s < 0) return;
  const MlpStep& st = p.steps[s];
  const float* w = st.w + int64_t(row) * st.in_dim;
  const float* x = st.in_off < 0 ? p.input : p.ws + st.in_off;
  if (st.in_dim % 4 != 0 || st.in_dim > 128 * kHeldVec ||
      (reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(x)) % 16 != 0)
    return;  // the row is read the ordinary way after the barrier
  const float4* w4 = reinterpret_cast<const float4*>(w);
  const int n4 = st.in_dim / 4;
#pragma unroll
  for (int k = 0; k < kHeldVec; ++k) {
    const int i = lane + 32 * k;
    h.w[k] = i < n4 ? __ldg(w4 + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  h.bias = st.b ? __ldg(st.b + row) : 0.0f;
  if (st.bn.present()) {
    h.mean = __ldg(st.bn.mean + row);
    h.var = __ldg(st.bn.var + row);
    h.gamma = st.bn.gamma ? __ldg(st.bn.gamma + row) : 1.0f;
    h.beta = st.bn.beta ? __ldg(st.bn.beta + row) : 0.0f;
  }
  h.step = s;
  h.row = row;
}

// dot_row's vector path on held weights: every x load issued first, then the
// same fmaf sequence per lane (the same bits as dot_row).
__device__ float dot_held(const HeldRow& h, const float* x, int n4, int lane) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4 b[kHeldVec];
#pragma unroll
  for (int k = 0; k < kHeldVec; ++k) {
    const int i = lane + 32 * k;
    b[k] = i < n4 ? __ldcg(x4 + i) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < kHeldVec; ++k) {
    if (lane + 32 * k < n4) {
      acc = fmaf(h.w[k].x, b[k].x, acc);
      acc = fmaf(h.w[k].y, b[k].y, acc);
      acc = fmaf(h.w[k].z, b[k].z, acc);
      acc = fmaf(h.w[k].w, b[k].w, acc);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  return acc;
}

template <int kBlock>
__global__ void __launch_bounds__(kBlock) mlp_program_prefetch_kernel(const MlpProgram p) {
  const int lane = threadIdx.x % 32;
  const int warp = int((blockIdx.x * blockDim.x + threadIdx.x) / 32);
  const int warps = int(gridDim.x * blockDim.x / 32);
  const int tid = int(blockIdx.x * blockDim.x + threadIdx.x), threads = int(gridDim.x * blockDim.x);
  HeldRow held;
  hold_first_row(p, 0, warp, lane, held);
  copy_inputs(p, tid, threads);

  for (int ph = 0; ph < p.phases; ++ph) {
    const int s0 = p.phase_begin[ph];
    for (int r = warp; r < held.rows; r += warps) {
      const bool use_held = r == warp && held.step >= 0;  // uniform across the warp
      int s = s0, row = r;
      if (use_held) {
        s = held.step;
        row = held.row;
      } else {
        while (row >= p.steps[s].out_dim) row -= p.steps[s++].out_dim;
      }
      const MlpStep& st = p.steps[s];
      const float* x = st.in_off < 0 ? p.input : p.ws + st.in_off;
      // The residual's load goes out with the input's, not after the reduction.
      const float res = lane == 0 && st.res_off >= 0 ? __ldcg(p.ws + st.res_off + row) : 0.0f;
      float v = use_held ? dot_held(held, x, st.in_dim / 4, lane)
                         : dot_row(st.w + (int64_t)row * st.in_dim, x, st.in_dim, lane);
      if (lane == 0) {
        const ChannelEpilogue epi =
            use_held ? ChannelEpilogue(st.b != nullptr, held.bias, st.bn.present(), held.mean, held.var,
                                       held.gamma, held.beta, st.bn.eps, st.relu != 0)
                     : ChannelEpilogue(st.b, st.bn, st.relu != 0, row);
        v = epi(v);
        if (st.res_off >= 0) v += res;
        store_row(p, st, row, v);
      }
    }
    if (ph + 1 < p.phases) {
      hold_first_row(p, ph + 1, warp, lane, held);  // in flight across the barrier
      cg::this_grid().sync();
    }
  }
}

constexpr int kClusterThreads = 1024;

struct LaunchShape {
  int blocks = 0;           // the cooperative grid: 2 blocks per multiprocessor
  int prefetch_blocks = 0;  // the most the prefetching kernel may have co-resident (<= 2 per SM)
};

LaunchShape launch_shape() {
  static LaunchShape cached[64];
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  LaunchShape& ls = cached[dev % 64];
  if (ls.blocks == 0) {
    int sms = 0, per_sm = 0, per_sm_prefetch = 0;
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    DOFPOSE_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mlp_program_kernel<kThreads, false>,
                                                      kThreads, 0));
    DOFPOSE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm_prefetch, mlp_program_prefetch_kernel<kThreads>, kThreads, 0));
    // Two blocks per multiprocessor: enough warps for one row each at width
    // 1024 on a 132-SM card, and a cheaper barrier than a full occupancy grid.
    ls.blocks = sms * std::max(1, std::min(per_sm, 2));
    ls.prefetch_blocks = sms * std::max(1, std::min(per_sm_prefetch, 2));
  }
  return ls;
}

// The prefetching grid: one warp per row of the widest phase (each warp then
// holds exactly its row), as few blocks as that takes: a barrier costs one
// atomic per block.
int prefetch_grid(const MlpProgram& p, const LaunchShape& ls) {
  constexpr int warps_per_block = kThreads / 32;
  if (p.max_phase_rows <= 0) return ls.prefetch_blocks;
  const int want = (p.max_phase_rows + warps_per_block - 1) / warps_per_block;
  return std::max(1, std::min(want, ls.prefetch_blocks));
}

}  // namespace

bool mlp_program_supported() {
  static int cached[64] = {};  // per device: 0 unknown, 1 yes, -1 no (queried once)
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  int& known = cached[dev % 64];
  if (known == 0) {
    int coop = 0;
    known = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) == cudaSuccess && coop
                ? 1
                : -1;
  }
  return known > 0;
}

namespace {
MlpLaunch g_mlp_launch = MlpLaunch::Cooperative;

// The launch configuration of exactly one cluster of `size` blocks (the grid
// is the cluster). Not copyable: cfg points at the member attribute.
struct OneClusterLaunch {
  cudaLaunchAttribute attr = {};
  cudaLaunchConfig_t cfg = {};
  OneClusterLaunch(int size, cudaStream_t stream) {
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = size;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cfg.gridDim = dim3(size);
    cfg.blockDim = dim3(kClusterThreads);
    cfg.stream = stream;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
  }
  OneClusterLaunch(const OneClusterLaunch&) = delete;
  OneClusterLaunch& operator=(const OneClusterLaunch&) = delete;
};

// The cluster size for this device: 16 where non-portable sizes are allowed
// and one such cluster fits, else 8 (portable) where that fits; 0 below sm_90,
// or when the binary's code for the device predates sm_90 (no cluster barrier).
int cluster_size() {
  static int cached[64] = {};
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  int& n = cached[dev % 64];
  if (n == 0) {
    int major = 0;
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    n = -1;
    auto kernel = mlp_program_kernel<kClusterThreads, true>;
    cudaFuncAttributes fa = {};
    const bool sm90_code = cudaFuncGetAttributes(&fa, kernel) == cudaSuccess &&
                           fa.binaryVersion >= 90;  // the code has the cluster barrier
    // Whether one cluster of `size` blocks of 1024 threads can be placed.
    auto fits = [&](int size) {
      const OneClusterLaunch launch(size, nullptr);
      int clusters = 0;
      return cudaOccupancyMaxActiveClusters(&clusters, kernel, &launch.cfg) == cudaSuccess &&
             clusters > 0;
    };
    if (major >= 9 && sm90_code) {
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) ==
              cudaSuccess &&
          fits(16))
        n = 16;
      else if (fits(8))
        n = 8;
    }
    cudaGetLastError();  // an unsupported query is not an error here
  }
  return n > 0 ? n : 0;
}
}  // namespace

void set_mlp_launch(MlpLaunch m) { g_mlp_launch = m; }
MlpLaunch mlp_launch() { return g_mlp_launch; }
bool mlp_cluster_supported() { return cluster_size() > 0; }

void mlp_program_run(const MlpProgram& prog, void* stream) {
  DOFPOSE_CHECK(prog.steps && prog.phase_begin && prog.ws && prog.input && prog.phases >= 1,
                "mlp_program_run: empty program");
  MlpProgram p = prog;
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (g_mlp_launch == MlpLaunch::Cluster) {
    const int n = cluster_size();
    DOFPOSE_CHECK(n > 0, "mlp_program_run: cluster launch needs sm_90 or newer");
    const OneClusterLaunch launch(n, st);
    DOFPOSE_CUDA_CHECK(cudaLaunchKernelEx(&launch.cfg, mlp_program_kernel<kClusterThreads, true>, p));
    DOFPOSE_CUDA_LAUNCH_CHECK("mlp program (persistent lifter, one cluster)");
    return;
  }
  DOFPOSE_CHECK(mlp_program_supported(), "mlp_program_run: this device has no cooperative launch");
  const LaunchShape ls = launch_shape();
  void* args[] = {&p};
  if (g_mlp_launch == MlpLaunch::Prefetch) {
    DOFPOSE_CUDA_CHECK(cudaLaunchCooperativeKernel(mlp_program_prefetch_kernel<kThreads>,
                                                   dim3(prefetch_grid(p, ls)), dim3(kThreads), args,
                                                   0, st));
    DOFPOSE_CUDA_LAUNCH_CHECK("mlp program (persistent lifter, prefetching grid)");
    return;
  }
  DOFPOSE_CUDA_CHECK(cudaLaunchCooperativeKernel(mlp_program_kernel<kThreads, false>,
                                                 dim3(ls.blocks), dim3(kThreads), args, 0, st));
  DOFPOSE_CUDA_LAUNCH_CHECK("mlp program (persistent lifter)");
}

}  // namespace dofpose::cuda_kernels
