// GEMM on the GPU: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C,
// row-major, the contract of cpu::gemm (beta == 0 never reads C).
//
// Own kernel (GemmBackend::Own): a block of 256 threads computes a BM x BN
// tile of C and walks K in slices of BK. Each slice of op(A) and op(B) is
// staged in shared memory k-major (As[k][i], Bs[k][j], rows padded by 4
// floats); the next slice is fetched into registers while the current one is
// multiplied, hiding the global-memory latency.
//  * F32 (SIMT): every thread owns a TM x TN register tile (8x8 on 128x128
//    block tiles, BK 8; 4x4 on 64x64, BK 16; 4x8 / 8x4 on the mixed shapes),
//    built of 4x4 blocks spaced BM/2 (BN/2) apart, so shared-memory reads are
//    conflict-free float4 loads. At most 128 registers, so that two blocks
//    share a multiprocessor (measured faster despite a few spilled bytes).
//  * TF32 (math_mode() == TF32, sm_80+): 8 warps, each owning a 2-D block of
//    16x16x8 WMMA fragments (TF32 inputs, FP32 accumulation), BK 16; the
//    accumulators go through a per-warp 16x16 shared staging tile so that
//    edge tiles are bounds-checked element by element.
// Both double-buffer the shared slices: one barrier per slice.
// The block tile is 128 or 64 in each of M and N: the largest that still gives
// every multiprocessor a block. Every C element is summed by one thread in a
// fixed k order, so results are bitwise reproducible run to run.
// Measured on an H200, 4096^3: F32 ~28 TFLOP/s (cuBLAS 51), TF32 ~31
// (cuBLAS ~400: this WMMA loop is latency bound, one block per SM; a cp.async
// multi-stage pipeline would be the next step).
// cuBLAS backend: cublasSgemm on the column-major view (operands swapped).
//
// The tile kernels are written against a "problem" policy (operand loaders
// plus an epilogue) so that conv2d.cu can run the same loops with im2col
// gathers; they live in gemm_tiles.cuh.
#include <cublas_v2.h>
#include <mma.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/epilogue.cuh"
#include "kernels/cuda/gemm_tiles.cuh"

#define DOFPOSE_CUBLAS_CHECK(call)                                                           \
  do {                                                                                       \
    cublasStatus_t st_ = (call);                                                             \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::dofpose::fail("cuBLAS error ", cublasGetStatusName(st_), " (",                       \
                      cublasGetStatusString(st_), ") in ", #call, " at ", __FILE__, ":",     \
                      __LINE__);                                                             \
  } while (0)

namespace dofpose::cuda_kernels {

namespace {

// Process-wide settings (set between runs, not while kernels are queued).
MathMode g_math_mode = MathMode::F32;
bool g_tile_pipeline = false;
bool g_tf32_mma = false;
GemmBackend g_gemm_backend = GemmBackend::Own;

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }


// ---- per-device facts, cached (cudaGetDevice is cheap; attributes are not free)
struct DeviceInfo {
  int sms = 0;
  int major = 0;
};

DeviceInfo device_info() {
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::vector<DeviceInfo> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= (int)cache.size()) cache.resize(dev + 1);
  DeviceInfo& d = cache[dev];
  if (d.sms == 0) {
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&d.major, cudaDevAttrComputeCapabilityMajor, dev));
    DOFPOSE_CUDA_CHECK(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev));
  }
  return d;
}

// ---- dense operand loader: element (t, k) of a tile operand, t along M (or
// N), k along the reduction. k_contig: at ptr[t * ld + k], else ptr[k * ld + t].
// Consecutive threads take consecutive addresses (coalesced global reads).
struct DenseOperand {
  const float* ptr;
  int64_t ld;
  int64_t batch_stride;  // per blockIdx.z
  int extent;            // M (or N)
  bool k_contig;
};

template <int TILE, int BK>
struct DenseLoader {
  static constexpr int kCount = TILE * BK / kThreads;
  static_assert(kCount * kThreads == TILE * BK, "tile must be a multiple of the block");
  const float* ptr;
  int64_t ld;
  int extent;
  bool k_contig;
  int t0, tid;
  float v[kCount];

  __device__ DenseLoader(const DenseOperand& op, int t0_, int tid_)
      : ptr(op.ptr + (int64_t)blockIdx.z * op.batch_stride),
        ld(op.ld),
        extent(op.extent),
        k_contig(op.k_contig),
        t0(t0_),
        tid(tid_) {}
  __device__ void coords(int l, int& t, int& k) const {
    const int idx = tid + l * kThreads;
    if (k_contig) {
      row_loader_coords<BK>(tid, k, t);
      t += l * (kThreads / BK);
    } else {
      t = idx % TILE;
      k = idx / TILE;
    }
  }
  // Calls at(l, t, k, src) for this thread's elements of the slice at k0
  // (tile coordinates t, k; src nullptr: k >= k_end or t >= extent, a zero).
  template <class F>
  __device__ void visit(int k0, int k_end, F&& at) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      int t, k;
      coords(l, t, k);
      const int gt = t0 + t, gk = k0 + k;
      const bool ok = gt < extent && gk < k_end;
      at(l, t, k, ok ? (k_contig ? ptr + gt * ld + gk : ptr + gk * ld + gt) : nullptr);
    }
  }
  __device__ void fetch(int k0, int k_end) {
    visit(k0, k_end, [&](int l, int, int, const float* src) { v[l] = src ? *src : 0.0f; });
  }
  // fetch() straight into shared memory (cp.async, zero-filled outside;
  // columns swizzled by SWZ: swizzle_col).
  template <int LD, int SWZ = 0>
  __device__ void fetch_async(float* sm, int k0, int k_end) const {
    visit(k0, k_end, [&](int, int t, int k, const float* src) {
      cp_async4(&sm[k * LD + swizzle_col<SWZ>(k, t)], src ? src : ptr, src != nullptr);
    });
  }
  // Into shared memory as T (float, or half / bfloat16 for the 16-bit tensor
  // cores), rows LD elements apart.
  template <class T = float, int LD = TILE + kPad>
  __device__ void store(T* s) const {
#pragma unroll
    for (int l = 0; l < kCount; ++l) {
      int t, k;
      coords(l, t, k);
      s[k * LD + t] = T(v[l]);
    }
  }
};

// Plain (strided-batched) GEMM problem for the tile kernels.
struct GemmProblem {
  bool async_ok() const { return true; }
  int M, N, K;
  DenseOperand a, b;
  float* c;
  int64_t ldc, c_stride;
  float alpha, beta;
  // Or null: added in this order (__fadd_rn: no FMA with alpha * acc).
  const float* addend;    // as C: [batch][M][N], ldc, c_stride
  const float* row_bias;  // [M]

  template <int TILE, int BK>
  struct A : DenseLoader<TILE, BK> {
    __device__ A(const GemmProblem& p, int t0, int tid) : DenseLoader<TILE, BK>(p.a, t0, tid) {}
  };
  template <int TILE, int BK>
  struct B : DenseLoader<TILE, BK> {
    __device__ B(const GemmProblem& p, int t0, int tid) : DenseLoader<TILE, BK>(p.b, t0, tid) {}
  };
  __device__ void k_range(int& kb, int& ke) const {
    kb = 0;
    ke = K;
  }
  __device__ void store(int i, int j, float acc) const {
    const int64_t at = (int64_t)blockIdx.z * c_stride + i * ldc + j;
    float* cp = c + at;
    float v = beta == 0.0f ? alpha * acc : fmaf(beta, *cp, alpha * acc);
    if (addend) v = __fadd_rn(v, addend[at]);
    *cp = row_bias ? __fadd_rn(v, row_bias[i]) : v;
  }
  // C[i][j..j+3] as one float4 (a warp's store: 16 sectors, where four scalar
  // stores at a 16-byte lane stride took 64; the emulator's memory profile).
  bool vec_ok;  // host-checked: ldc, the batch stride and C keep float4 alignment
  __device__ bool vec4() const { return vec_ok; }
  __device__ void store4(int i, int j, float4 v) const {
    const int64_t at = (int64_t)blockIdx.z * c_stride + i * ldc + j;
    float4* cp = reinterpret_cast<float4*>(c + at);
    float4 r;
    if (beta == 0.0f) {
      r = make_float4(alpha * v.x, alpha * v.y, alpha * v.z, alpha * v.w);
    } else {
      const float4 o = *cp;
      r = make_float4(fmaf(beta, o.x, alpha * v.x), fmaf(beta, o.y, alpha * v.y),
                      fmaf(beta, o.z, alpha * v.z), fmaf(beta, o.w, alpha * v.w));
    }
    if (addend) {  // float4-aligned as C (vec_ok)
      const float4 a = *reinterpret_cast<const float4*>(addend + at);
      r = make_float4(__fadd_rn(r.x, a.x), __fadd_rn(r.y, a.y), __fadd_rn(r.z, a.z),
                      __fadd_rn(r.w, a.w));
    }
    if (row_bias) {
      const float b = row_bias[i];
      r = make_float4(__fadd_rn(r.x, b), __fadd_rn(r.y, b), __fadd_rn(r.z, b), __fadd_rn(r.w, b));
    }
    *cp = r;
  }
};


// The fused linear layer y[N,out] = epilogue(x[N,in] w[out,in]^T): column j is
// output feature j; bias, inference BN, ReLU and the residual in the store.
struct FusedLinearProblem {
  bool async_ok() const { return true; }
  int M, N, K;
  DenseOperand a, b;
  float* c;
  LinearFusion f;
  bool vec_ok;

  template <int TILE, int BK>
  struct A : DenseLoader<TILE, BK> {
    __device__ A(const FusedLinearProblem& p, int t0, int tid) : DenseLoader<TILE, BK>(p.a, t0, tid) {}
  };
  template <int TILE, int BK>
  struct B : DenseLoader<TILE, BK> {
    __device__ B(const FusedLinearProblem& p, int t0, int tid) : DenseLoader<TILE, BK>(p.b, t0, tid) {}
  };
  __device__ void k_range(int& kb, int& ke) const {
    kb = 0;
    ke = K;
  }
  __device__ float finish(int i, int j, float v) const {
    v = ChannelEpilogue(f.bias, f.bn, f.relu, j)(v);
    if (f.residual) v = f.residual[(int64_t)i * N + j] + v;
    return v;
  }
  __device__ void store(int i, int j, float acc) const { c[(int64_t)i * N + j] = finish(i, j, acc); }
  __device__ bool vec4() const { return vec_ok; }
  bool params_vec;  // host-checked: epilogue_params_aligned (with vec_ok, ChannelEpilogue4 applies)
  __device__ void store4(int i, int j, float4 v) const {
    if (params_vec) {
      const ChannelEpilogue4 e(f.bias, f.bn, f.relu, j);
      v = make_float4(e.e[0](v.x), e.e[1](v.y), e.e[2](v.z), e.e[3](v.w));
    } else {
      v = make_float4(ChannelEpilogue(f.bias, f.bn, f.relu, j)(v.x),
                      ChannelEpilogue(f.bias, f.bn, f.relu, j + 1)(v.y),
                      ChannelEpilogue(f.bias, f.bn, f.relu, j + 2)(v.z),
                      ChannelEpilogue(f.bias, f.bn, f.relu, j + 3)(v.w));
    }
    if (f.residual) {
      const float4 r = *reinterpret_cast<const float4*>(f.residual + (int64_t)i * N + j);
      v = make_float4(r.x + v.x, r.y + v.y, r.z + v.z, r.w + v.w);
    }
    *reinterpret_cast<float4*>(c + (int64_t)i * N + j) = v;
  }
};

template <class P>
void launch_tiles(const P& p, int batch, cudaStream_t stream, const char* name) {
  const DeviceInfo dev = device_info();
  int bm, bn;
  choose_tile(p.M, p.N, batch, dev.sms, bm, bn);
  launch_tile_kernel(p, bm, bn, batch, detail::tile_math(), stream, name);
}

// C = beta * C over [M, N] (beta == 0 writes zeros without reading C).
__global__ void scale_kernel(int M, int N, float beta, float* C, int64_t ldc) {
  const int64_t n = (int64_t)M * N;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float* c = C + (idx / N) * ldc + idx % N;
    *c = beta == 0.0f ? 0.0f : beta * *c;
  }
}

// C[b][i][j] = (C + addend)[b][i][j] + row_bias[i] over batch x [M, N] (either
// may be null): the extras of the GEMM paths whose store cannot add them
// (cuBLAS, the skinny kernels, K == 0), in the tile store's order.
__global__ void add_extras_batched_kernel(int M, int N, int64_t ldc, int64_t stride_c,
                                          const float* addend, const float* row_bias, float* C) {
  const int64_t base = int64_t(blockIdx.y) * stride_c;
  const int64_t n = (int64_t)M * N;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / N, at = base + i * ldc + idx % N;
    float v = C[at];
    if (addend) v += addend[at];
    if (row_bias) v += row_bias[i];
    C[at] = v;
  }
}

// ---- cuBLAS: one handle per device, created on first use and kept for the
// process lifetime. The handle's stream and math mode are set on every call,
// so concurrent host threads must not share a device (not thread-safe).
cublasHandle_t cublas_handle() {
  int dev = 0;
  DOFPOSE_CUDA_CHECK(cudaGetDevice(&dev));
  static std::mutex mu;
  static std::vector<cublasHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= (int)handles.size()) handles.resize(dev + 1, nullptr);
  if (!handles[dev]) DOFPOSE_CUBLAS_CHECK(cublasCreate(&handles[dev]));
  return handles[dev];
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
// operands, keep each one's transpose flag.
void cublas_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta,
                 float* C, int ldc, int64_t stride_c, int batch, cudaStream_t stream) {
  cublasHandle_t h = cublas_handle();
  DOFPOSE_CUBLAS_CHECK(cublasSetStream(h, stream));
  DOFPOSE_CUBLAS_CHECK(cublasSetMathMode(
      h, g_math_mode == MathMode::TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (g_math_mode == MathMode::FP16 || g_math_mode == MathMode::BF16) {
    // float32 data, 16-bit tensor-core inputs, FP32 accumulation: our FP16/BF16 modes.
    const cublasComputeType_t ct = g_math_mode == MathMode::FP16 ? CUBLAS_COMPUTE_32F_FAST_16F
                                                                 : CUBLAS_COMPUTE_32F_FAST_16BF;
    DOFPOSE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        h, op_b, op_a, N, M, K, &alpha, B, CUDA_R_32F, ldb, stride_b, A, CUDA_R_32F, lda,
        stride_a, &beta, C, CUDA_R_32F, ldc, stride_c, batch, ct, CUBLAS_GEMM_DEFAULT));
    return;
  }
  if (batch == 1) {
    DOFPOSE_CUBLAS_CHECK(
        cublasSgemm(h, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
  } else {
    DOFPOSE_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_b, op_a, N, M, K, &alpha, B, ldb,
                                                   stride_b, A, lda, stride_a, &beta, C, ldc,
                                                   stride_c, batch));
  }
}

void check_args(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                const float* B, int ldb, const float* C, int ldc) {
  DOFPOSE_CHECK(M >= 0 && N >= 0 && K >= 0, "cuda gemm: sizes must be non-negative, got M=", M,
                " N=", N, " K=", K);
  const int a_cols = trans_a ? M : K;
  const int b_cols = trans_b ? K : N;
  DOFPOSE_CHECK(lda >= std::max(1, a_cols), "cuda gemm: lda=", lda, " is smaller than the ",
                a_cols, " columns of ", trans_a ? "A (transposed, K x M)" : "A (M x K)");
  DOFPOSE_CHECK(ldb >= std::max(1, b_cols), "cuda gemm: ldb=", ldb, " is smaller than the ",
                b_cols, " columns of ", trans_b ? "B (transposed, N x K)" : "B (K x N)");
  DOFPOSE_CHECK(ldc >= std::max(1, N), "cuda gemm: ldc=", ldc, " is smaller than N=", N);
  if (M > 0 && N > 0) {
    DOFPOSE_CHECK(C != nullptr, "cuda gemm: C is null for a ", M, "x", N, " result");
    if (K > 0)
      DOFPOSE_CHECK(A != nullptr && B != nullptr, "cuda gemm: A or B is null with K=", K);
  }
}

}  // namespace

void set_math_mode(MathMode m) { g_math_mode = m; }
void set_tile_pipeline(bool on) { g_tile_pipeline = on; }
bool tile_pipeline() { return g_tile_pipeline; }
void set_tf32_mma(bool on) { g_tf32_mma = on; }
bool tf32_mma() { return g_tf32_mma; }
int64_t pipelined_launches() { return detail::g_pipelined_launches.load(); }
MathMode math_mode() { return g_math_mode; }
void set_gemm_backend(GemmBackend b) { g_gemm_backend = b; }
GemmBackend gemm_backend() { return g_gemm_backend; }

namespace detail {

// Declared in gemm_detail.h (used by conv2d.cu, linear.cu, gemm_tiles.cuh).
std::atomic<int64_t> g_pipelined_launches{0};
int multiprocessor_count() { return device_info().sms; }
bool has_16bit_tensor_cores() { return device_info().major >= 8; }
bool tile_pipeline() { return g_tile_pipeline; }
bool tf32_mma() { return g_tf32_mma; }
TileMath tile_math() {
  if (device_info().major < 8) return TileMath::Simt;  // the kernels are built for sm_80+
  switch (g_math_mode) {
    case MathMode::TF32: return TileMath::Tf32;
    case MathMode::FP16: return TileMath::Fp16;
    case MathMode::BF16: return TileMath::Bf16;
    default: return TileMath::Simt;
  }
}
bool use_tf32_tensor_cores() {
  return tile_math() == TileMath::Tf32;
}

// batch independent GEMMs, matrix b at A + b*stride_a, B + b*stride_b,
// C + b*stride_c (stride 0 shares an operand). Arguments are assumed checked.
namespace {
// The skinny path: at most this many outputs, at least this long a reduction.
constexpr int64_t kSkinnyMaxOutputs = 4096;
constexpr int kSkinnyMinK = 512;

// One warp per output C[i][j] (of batch entry b): lanes stride k, a fixed
// shuffle tree adds them (deterministic). Float32 whatever the math mode.
__global__ void skinny_gemm_kernel(bool ta, bool tb, int M, int N, int K, float alpha,
                                   const float* A, int lda, int64_t sa, const float* B, int ldb,
                                   int64_t sb, float beta, float* C, int ldc, int64_t sc,
                                   int batch) {
  const int64_t o = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (o >= int64_t(M) * N * batch) return;  // whole warps leave together
  const int b = int(o / (int64_t(M) * N));
  const int ij = int(o - int64_t(b) * M * N), i = ij / N, j = ij - i * N;
  const float* a = A + b * sa;
  const float* bm = B + b * sb;
  float acc = 0.0f;
  for (int k = lane; k < K; k += 32) {
    const float av = ta ? a[(int64_t)k * lda + i] : a[(int64_t)i * lda + k];
    const float bv = tb ? bm[(int64_t)j * ldb + k] : bm[(int64_t)k * ldb + j];
    acc = fmaf(av, bv, acc);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    float* c = C + b * sc + (int64_t)i * ldc + j;
    *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
  }
}

// The skinny path when the reduction runs along a strided operand (B as
// [K, N], or A as [K, M] with B as [N, K]): lanes over 32 adjacent outputs of
// one row (or column) read that operand's row coalesced, 4 sectors a request,
// where a warp per output read one sector per lane (32 sectors a request: the
// first lifter layer's input gradient in the emulator's memory profile). The
// 8 warps split k; their partials are added in warp order (deterministic).
__global__ void skinny_gemm_lanes_kernel(bool ta, bool tb, bool lanes_j, int M, int N, int K,
                                         float alpha, const float* A, int lda, int64_t sa,
                                         const float* B, int ldb, int64_t sb, float beta, float* C,
                                         int ldc, int64_t sc) {
  __shared__ float part[8][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int span = lanes_j ? N : M, fixed = lanes_j ? M : N, groups = (span + 31) / 32;
  int64_t blk = blockIdx.x;
  const int grp = int(blk % groups);
  blk /= groups;
  const int f = int(blk % fixed), b = int(blk / fixed);
  const int v = grp * 32 + lane;  // the lane's output row (lanes over i) or column (over j)
  const int i = lanes_j ? f : v, j = lanes_j ? v : f;
  const bool live = v < span;
  const float* a = A + b * sa;
  const float* bm = B + b * sb;
  float acc = 0.0f;
  if (live)
    for (int k = warp; k < K; k += 8) {
      const float av = ta ? a[(int64_t)k * lda + i] : a[(int64_t)i * lda + k];
      const float bv = tb ? bm[(int64_t)j * ldb + k] : bm[(int64_t)k * ldb + j];
      acc = fmaf(av, bv, acc);
    }
  part[warp][lane] = acc;
  __syncthreads();
  if (warp != 0 || !live) return;
  float sum = 0.0f;
#pragma unroll
  for (int w = 0; w < 8; ++w) sum += part[w][lane];
  float* c = C + b * sc + (int64_t)i * ldc + j;
  *c = beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
}
}  // namespace

bool gemm_is_skinny(int64_t outputs, int K) {
  return outputs <= kSkinnyMaxOutputs && K >= kSkinnyMinK;
}

namespace {
// One chunk of gemm_strided_batched (batch <= 65535). Returns whether the
// addend and row bias went into the store (the tile kernels), or still need
// their own pass (the K == 0, cuBLAS and skinny paths).
bool gemm_chunk(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                int lda, int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta,
                float* C, int ldc, int64_t stride_c, int batch, cudaStream_t st,
                const float* row_bias, const float* addend) {
  if (K == 0 || alpha == 0.0f) {  // A and B are not referenced (BLAS semantics)
    const int64_t n = (int64_t)M * N;
    const int blocks = (int)std::min<int64_t>((n + 255) / 256, 65535);
    for (int b = 0; b < batch; ++b) {
      scale_kernel<<<blocks, 256, 0, st>>>(M, N, beta, C + b * stride_c, ldc);
      DOFPOSE_CUDA_LAUNCH_CHECK("gemm scale");
    }
    return false;
  }
  if (g_gemm_backend == GemmBackend::Cublas) {
    cublas_gemm(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                ldc, stride_c, batch, st);
    return false;
  }
  if (gemm_is_skinny(int64_t(M) * N * batch, K)) {
    // Few outputs, long reduction (global average pool, batch-1 heads): a
    // tile would loop over K in one or two blocks; a warp per output instead.
    const int64_t outputs = int64_t(M) * N * batch;
    // A strided reduction operand with 32+ outputs along its free side: lanes over those.
    const bool lanes_j = !trans_b && N >= 32, lanes_i = trans_a && trans_b && M >= 32;
    if (lanes_j || lanes_i) {
      const int groups = ((lanes_j ? N : M) + 31) / 32;
      const int64_t blocks = int64_t(groups) * (lanes_j ? M : N) * batch;
      skinny_gemm_lanes_kernel<<<unsigned(blocks), 256, 0, st>>>(
          trans_a, trans_b, lanes_j, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
          ldc, stride_c);
      DOFPOSE_CUDA_LAUNCH_CHECK("gemm (skinny: lanes over outputs)");
      return false;
    }
    const int blocks = int((outputs * 32 + 255) / 256);
    skinny_gemm_kernel<<<blocks, 256, 0, st>>>(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a,
                                               B, ldb, stride_b, beta, C, ldc, stride_c, batch);
    DOFPOSE_CUDA_LAUNCH_CHECK("gemm (skinny: warp per output)");
    return false;
  }
  GemmProblem p;
  p.M = M;
  p.N = N;
  p.K = K;
  p.a = DenseOperand{A, lda, stride_a, M, !trans_a};
  p.b = DenseOperand{B, ldb, stride_b, N, trans_b};
  p.c = C;
  p.ldc = ldc;
  p.c_stride = stride_c;
  p.alpha = alpha;
  p.beta = beta;
  p.row_bias = row_bias;
  p.addend = addend;
  p.vec_ok = ldc % 4 == 0 && stride_c % 4 == 0 && reinterpret_cast<uintptr_t>(C) % 16 == 0 &&
             reinterpret_cast<uintptr_t>(addend) % 16 == 0;
  launch_tiles(p, batch, st, "gemm");
  return true;
}
}  // namespace

void gemm_strided_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, int64_t stride_a, const float* B, int ldb,
                          int64_t stride_b, float beta, float* C, int ldc, int64_t stride_c,
                          int batch, void* stream, const float* row_bias,
                          const float* addend) {
  const cudaStream_t st = as_stream(stream);
  if (M == 0 || N == 0 || batch == 0) return;
  // gridDim.z is limited to 65535: longer batches go in chunks.
  constexpr int kMaxBatch = 65535;
  for (int b0 = 0; b0 < batch; b0 += kMaxBatch) {
    const int nb = std::min(kMaxBatch, batch - b0);
    float* c = C + b0 * stride_c;
    const float* add = addend ? addend + b0 * stride_c : nullptr;
    if (gemm_chunk(trans_a, trans_b, M, N, K, alpha, A + b0 * stride_a, lda, stride_a,
                   B + b0 * stride_b, ldb, stride_b, beta, c, ldc, stride_c, nb, st, row_bias, add) ||
        (!row_bias && !add))
      continue;
    const int64_t n = (int64_t)M * N;
    const dim3 grid((unsigned)std::min<int64_t>((n + 255) / 256, 65535), (unsigned)nb);
    add_extras_batched_kernel<<<grid, 256, 0, st>>>(M, N, ldc, stride_c, add, row_bias, c);
    DOFPOSE_CUDA_LAUNCH_CHECK("gemm addend / row bias");
  }
}

}  // namespace detail

void linear_fused_forward(int N, int in, int out, const float* x, const float* w,
                          const LinearFusion& f, float* y, void* stream) {
  DOFPOSE_CHECK(N >= 0 && in >= 1 && out >= 1, "cuda linear_fused_forward: need N >= 0, in >= 1, "
                "out >= 1, got N=", N, " in=", in, " out=", out);
  if (N == 0) return;
  DOFPOSE_CHECK(x && w && y, "cuda linear_fused_forward: x, w and y must not be null");
  FusedLinearProblem p;
  p.M = N;
  p.N = out;
  p.K = in;
  p.a = DenseOperand{x, in, 0, N, true};  // x [N,in], not transposed
  p.b = DenseOperand{w, in, 0, out, true};  // w^T: w [out,in] read transposed
  p.c = y;
  p.f = f;
  auto aligned = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  p.vec_ok = out % 4 == 0 && aligned(y) && (!f.residual || aligned(f.residual));
  p.params_vec = epilogue_params_aligned(f.bias, f.bn);
  launch_tiles(p, 1, as_stream(stream), "linear fused forward");
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, void* stream) {
  check_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  detail::gemm_strided_batched(trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C,
                               ldc, 0, 1, stream);
}

}  // namespace dofpose::cuda_kernels
