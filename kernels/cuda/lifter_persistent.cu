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
// the weights). Activations are read with __ldcg (L2,
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


// kCluster: the whole program in one thread-block cluster (sm_90), phases
// separated by the hardware cluster barrier; else a cooperative grid and
// grid.sync().
template <int kBlock, bool kCluster>
__global__ void __launch_bounds__(kBlock) mlp_program_kernel(const MlpProgram p) {
  const int lane = threadIdx.x % 32;
  const int warp = int((blockIdx.x * blockDim.x + threadIdx.x) / 32);
  const int warps = int(gridDim.x * blockDim.x / 32);
  const int tid = int(blockIdx.x * blockDim.x + threadIdx.x), threads = int(gridDim.x * blockDim.x);

  // Phase-0 side work: the input into every concat buffer, pose prefixes to 0.
  for (int i = tid; i < p.n_input_copies * p.input_dim; i += threads) {
    const int c = i / p.input_dim, j = i - c * p.input_dim;
    p.ws[p.input_copies[c] + j] = __ldcg(p.input + j);
  }
  for (int b = 0; b < kMlpMaxOutputs; ++b)
    if (p.outputs[b])
      for (int j = tid; j < p.zero_prefix; j += threads) p.outputs[b][j] = 0.0f;

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
        for (int d = 0; d < st.ndest; ++d) {
          const MlpDest& dst = st.dest[d];
          const int e = dst.offset + (dst.map ? dst.map[row] : row);
          float o = v;
          if (dst.mul) o = o * dst.mul[e] + dst.add[e];
          float* buf = dst.buffer == 0 ? p.ws : p.outputs[dst.buffer - 1];
          buf[e] = o;
        }
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

constexpr int kClusterThreads = 1024;

struct LaunchShape {
  int blocks = 0;
};

LaunchShape launch_shape() {
  static LaunchShape cached[64];
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  LaunchShape& ls = cached[dev % 64];
  if (ls.blocks == 0) {
    int sms = 0, per_sm = 0;
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    DOFPOSE_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mlp_program_kernel<kThreads, false>,
                                                      kThreads, 0));
    // Two blocks per multiprocessor: enough warps for one row each at width
    // 1024 on a 132-SM card, and a cheaper barrier than a full occupancy grid.
    ls.blocks = sms * std::max(1, std::min(per_sm, 2));
  }
  return ls;
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
  DOFPOSE_CUDA_CHECK(cudaLaunchCooperativeKernel((const void*)mlp_program_kernel<kThreads, false>,
                                                 dim3(ls.blocks), dim3(kThreads), args, 0, st));
  DOFPOSE_CUDA_LAUNCH_CHECK("mlp program (persistent lifter)");
}

}  // namespace dofpose::cuda_kernels
