// The CUDA host emulator's own tests (built with -DDOFPOSE_CUDA_EMULATOR=ON):
// it must compute what CUDA defines (shuffles, shared memory, barriers, WMMA,
// the PTX mma layouts, cp.async groups, graphs) and must catch the bugs it is
// there to catch (a missing barrier, a barrier not all threads reach, a host
// pointer passed to a kernel, an allocation inside a stream capture).
#include <cuda_runtime.h>
#include <cooperative_groups.h>
#include <mma.h>

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) { REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess); }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  void upload(const std::vector<T>& h) {
    REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
};

__global__ void shuffle_kernel(int* out, int mode) {
  const int lane = threadIdx.x % 32;
  int v = 0;
  if (mode == 0) v = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
  if (mode == 1) v = __shfl_down_sync(0xffffffffu, lane * 10, 3);
  if (mode == 2) v = __shfl_sync(0xffffffffu, lane * 10, 7, 16);  // within each half-warp
  if (mode == 3) v = __shfl_down_sync(0xffffffffu, lane * 10, 3, 8);
  out[threadIdx.x] = v;
}

// Block sum through shared memory: correct only with both barriers.
__global__ void block_sum_kernel(const float* x, float* out, bool skip_barrier) {
  __shared__ float s[64];
  s[threadIdx.x] = x[blockIdx.x * 64 + threadIdx.x];
  if (!skip_barrier) __syncthreads();
  if (threadIdx.x == 0) {
    float acc = 0;
    for (int i = 0; i < 64; ++i) acc += s[i];
    out[blockIdx.x] = acc;
  }
}

__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();  // not every thread of the block gets here
  out[threadIdx.x] = 1.0f;
}

__global__ void write_kernel(float* out, float v) { out[threadIdx.x] = v; }

__global__ void grid_sync_kernel(int* counter_per_block, int* seen) {
  // Phase 1: every block writes its slot; phase 2 (after grid.sync) block 0 reads all.
  if (threadIdx.x == 0) counter_per_block[blockIdx.x] = int(blockIdx.x) + 1;
  emu::sync_grid();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    int s = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) s += counter_per_block[b];
    *seen = s;
  }
}

__global__ void exited_lane_shuffle_kernel(int* out) {
  if (threadIdx.x >= 16) return;  // half the warp leaves, the mask still names it
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}

__global__ void cluster_sync_kernel(int* slots, int* seen) {
  const unsigned rank = cooperative_groups::this_cluster().block_rank();
  if (threadIdx.x == 0) slots[blockIdx.x] = int(rank) + 1;
  cooperative_groups::this_cluster().sync();
  if (rank == 0 && threadIdx.x == 0) {  // the cluster's first block sums its cluster's slots
    const unsigned n = cooperative_groups::this_cluster().num_blocks();
    int s = 0;
    for (unsigned b = 0; b < n; ++b) s += slots[blockIdx.x + b];
    seen[blockIdx.x / n] = s;
  }
}

__global__ void wmma_kernel(const float* a, const float* b, float* c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, 8);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_lane_pointer_kernel(const float* a) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + (threadIdx.x == 3 ? 8 : 0), 8);  // lane 3 points elsewhere
}

// One m16n8k8 TF32 mma.sync with fragments built by the PTX ISA's layout
// from row-major A (16x8) and B (8x8); D row-major 16x8.
__global__ void raw_tf32_mma_kernel(const float* A, const float* B, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  const float av[4] = {A[g * 8 + t], A[(g + 8) * 8 + t], A[g * 8 + t + 4], A[(g + 8) * 8 + t + 4]};
  const float bv[2] = {B[t * 8 + g], B[(t + 4) * 8 + g]};
  for (int i = 0; i < 4; ++i) std::memcpy(&a[i], &av[i], 4);
  for (int i = 0; i < 2; ++i) std::memcpy(&b[i], &bv[i], 4);
  float d[4] = {0, 0, 0, 0};
  emu::raw_mma<emu::RawKind::TF32>(d, a, b);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

__global__ void cp_async_kernel(const float* src, float* out, bool wait) {
  __shared__ float s[32];
  s[threadIdx.x] = -1.0f;
  emu::cp_async(&s[threadIdx.x], &src[threadIdx.x], 4, threadIdx.x < 16);  // the rest zero-filled
  emu::cp_async_commit();
  if (wait) emu::cp_async_wait(0);
  out[threadIdx.x] = s[threadIdx.x];
}

}  // namespace

TEST_CASE("emulator: warp shuffles follow CUDA's xor / down / idx semantics, widths included") {
  DeviceBuffer<int> out(32);
  shuffle_kernel<<<1, 32>>>(out.p, 0);
  auto h = out.download();
  for (int l = 0; l < 32; ++l) CHECK(h[l] == (l ^ 5) * 10);
  shuffle_kernel<<<1, 32>>>(out.p, 1);
  h = out.download();
  for (int l = 0; l < 32; ++l) CHECK(h[l] == (l + 3 < 32 ? l + 3 : l) * 10);  // past the end: own value
  shuffle_kernel<<<1, 32>>>(out.p, 2);
  h = out.download();
  for (int l = 0; l < 32; ++l) CHECK(h[l] == ((l & ~15) + 7) * 10);
  shuffle_kernel<<<1, 32>>>(out.p, 3);
  h = out.download();
  for (int l = 0; l < 32; ++l) CHECK(h[l] == ((l % 8) + 3 < 8 ? l + 3 : l) * 10);
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("emulator: shared memory is per block, and a missing barrier gives a wrong sum") {
  DeviceBuffer<float> x(4 * 64), out(4);
  std::vector<float> h(4 * 64);
  for (size_t i = 0; i < h.size(); ++i) h[i] = float(i % 7);
  x.upload(h);
  block_sum_kernel<<<4, 64>>>(x.p, out.p, false);
  auto r = out.download();
  for (int b = 0; b < 4; ++b) {
    float want = 0;
    for (int i = 0; i < 64; ++i) want += h[size_t(b * 64 + i)];
    CHECK(r[size_t(b)] == want);
  }
  // Without the barrier thread 0 sums before the other threads have stored:
  // fresh shared memory is NaN, so the race shows in every block.
  block_sum_kernel<<<4, 64>>>(x.p, out.p, true);
  r = out.download();
  for (int b = 0; b < 4; ++b) CHECK(std::isnan(r[size_t(b)]));
}

TEST_CASE("emulator: a barrier that not all threads reach is reported as a launch failure") {
  DeviceBuffer<float> out(32);
  divergent_barrier_kernel<<<1, 32>>>(out.p);
  const cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure);
  CHECK(std::string(cudaGetErrorString(e)).find("deadlock") != std::string::npos);
  // The emulator recovers: the next launch runs.
  write_kernel<<<1, 32>>>(out.p, 2.0f);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(out.download()[31] == 2.0f);
}

TEST_CASE("emulator: a host pointer passed to a kernel, and copies outside device ranges, are errors") {
  std::vector<float> host(32);
  write_kernel<<<1, 32>>>(host.data(), 1.0f);
  CHECK(cudaGetLastError() == cudaErrorInvalidDevicePointer);
  CHECK(host[0] == 0.0f);  // not run
  DeviceBuffer<float> d(8);
  CHECK(cudaMemcpy(d.p, host.data(), 9 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), d.p, 8 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST_CASE("emulator: a cooperative grid sync orders the blocks; the launch is refused when too large") {
  DeviceBuffer<int> slots(8), seen(1);
  void* args[] = {&slots.p, &seen.p};
  REQUIRE(cudaLaunchCooperativeKernel(grid_sync_kernel, dim3(8), dim3(64), args, 0, nullptr) == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(seen.download()[0] == 36);  // 1 + ... + 8: block 0 saw every block's write
  CHECK(cudaLaunchCooperativeKernel(grid_sync_kernel, dim3(100000), dim3(1024), args, 0, nullptr) ==
        cudaErrorCooperativeLaunchTooLarge);
  cudaGetLastError();
  // Without a cooperative launch the grid sync traps.
  grid_sync_kernel<<<2, 32>>>(slots.p, seen.p);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
}

TEST_CASE("emulator: a warp collective whose mask names an exited lane is an error") {
  DeviceBuffer<int> out(32);
  exited_lane_shuffle_kernel<<<1, 32>>>(out.p);
  const cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure);
  CHECK(std::string(cudaGetErrorString(e)).find("exited lane") != std::string::npos);
}

TEST_CASE("emulator: a cluster launch runs each cluster together and its sync orders the blocks") {
  DeviceBuffer<int> slots(8), seen(2);
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = 4;
  attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(8);
  cfg.blockDim = dim3(64);
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  REQUIRE(cudaLaunchKernelEx(&cfg, cluster_sync_kernel, slots.p, seen.p) == cudaSuccess);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto h = seen.download();
  CHECK(h[0] == 10);  // ranks 0..3 -> 1 + 2 + 3 + 4, in each of the two clusters
  CHECK(h[1] == 10);
  // A cluster sync in a launch without clusters traps.
  cluster_sync_kernel<<<2, 32>>>(slots.p, seen.p);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
}

TEST_CASE("emulator: WMMA TF32 and the PTX m16n8k8 fragments compute A x B") {
  std::vector<float> a(16 * 8), b(8 * 16), b8(8 * 8);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i % 5) - 2);
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(int(i % 3) - 1);
  for (size_t i = 0; i < b8.size(); ++i) b8[i] = float(int(i % 4) - 1);
  DeviceBuffer<float> da(a.size()), db(b.size()), dc(16 * 16), db8(b8.size()), dd(16 * 8);
  da.upload(a);
  db.upload(b);
  db8.upload(b8);
  wmma_kernel<<<1, 32>>>(da.p, db.p, dc.p);
  raw_tf32_mma_kernel<<<1, 32>>>(da.p, db8.p, dd.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto c = dc.download(), d = dd.download();
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      float want = 0;
      for (int k = 0; k < 8; ++k) want += a[size_t(i * 8 + k)] * b[size_t(k * 16 + j)];
      CHECK(c[size_t(i * 16 + j)] == want);
    }
    for (int j = 0; j < 8; ++j) {
      float want = 0;
      for (int k = 0; k < 8; ++k) want += a[size_t(i * 8 + k)] * b8[size_t(k * 8 + j)];
      CHECK(d[size_t(i * 8 + j)] == want);
    }
  }
}

TEST_CASE("emulator: WMMA loads whose lanes disagree on the address are an error") {
  DeviceBuffer<float> a(16 * 8 + 8);
  wmma_lane_pointer_kernel<<<1, 32>>>(a.p);
  const cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorLaunchFailure);
  CHECK(std::string(cudaGetErrorString(e)).find("lane 3") != std::string::npos);
}

TEST_CASE("emulator: cp.async lands at wait_group (zero-filled when invalid), not before") {
  std::vector<float> h(32);
  for (int i = 0; i < 32; ++i) h[size_t(i)] = float(i + 1);
  DeviceBuffer<float> src(32), out(32);
  src.upload(h);
  cp_async_kernel<<<1, 32>>>(src.p, out.p, true);
  auto r = out.download();
  for (int i = 0; i < 32; ++i) CHECK(r[size_t(i)] == (i < 16 ? float(i + 1) : 0.0f));
  cp_async_kernel<<<1, 32>>>(src.p, out.p, false);  // read before the wait: the old value
  r = out.download();
  for (int i = 0; i < 32; ++i) CHECK(r[size_t(i)] == -1.0f);
}

TEST_CASE("emulator: stream capture records launches for replay and refuses allocation inside it") {
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  DeviceBuffer<float> out(32);
  REQUIRE(cudaMemset(out.p, 0, 32 * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  write_kernel<<<1, 32, 0, s>>>(out.p, 3.0f);
  cudaGraph_t g = nullptr;
  REQUIRE(cudaStreamEndCapture(s, &g) == cudaSuccess);
  CHECK(out.download()[0] == 0.0f);  // captured, not run
  cudaGraphExec_t e = nullptr;
  REQUIRE(cudaGraphInstantiate(&e, g, 0) == cudaSuccess);
  REQUIRE(cudaGraphLaunch(e, s) == cudaSuccess);
  CHECK(out.download()[0] == 3.0f);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);

  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 64) == cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  cudaStreamDestroy(s);
}
