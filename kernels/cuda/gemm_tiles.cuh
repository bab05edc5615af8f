// The GEMM tile kernels, shared by gemm.cu (dense operands) and conv2d.cu
// (im2col gathered on the fly): one SIMT float32 kernel and one TF32 WMMA
// kernel, both written against a "problem" policy P that supplies the sizes
// (M, N, k_range), the operand loaders A<TILE,BK> / B<TILE,BK> (fetch(k0,
// k_end) into registers, store() into a shared slice s[k][t] with leading
// dimension TILE + kPad) and the epilogue store(i, j, value). The design and
// measurements are described at the top of gemm.cu.
// Include inside nothing: it opens dofpose::cuda_kernels' anonymous namespace.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gemm_detail.h"

namespace dofpose::cuda_kernels {

namespace {

constexpr int kThreads = 256;  // every tile kernel (and every kernel of conv2d.cu)
// Shared rows padded by 4 floats: keeps float4 and WMMA (32-byte) alignment and
// spreads the loaders' k-strided stores over the banks (8 was measured slower).
constexpr int kPad = 4;
// Row stride of a warp's 16x16 epilogue staging tile: 24 (= 8 mod 32) makes
// the mma kernel's float2 fragment writes and store_staged_block's float4
// reads (rows r and r + 2 in one quarter-warp) conflict-free; 20 was 2-way
// both ways (the emulator's memory profile).
constexpr int kStageLd = 24;

// A "row" loader's thread layout (operand rows t with k contiguous, stored to
// shared s[k * LD + t]): thread tid owns k = kk and rows t = tt + l * (256 / BK).
// A warp takes 8 k by 4 rows, so its stores fall on 32 different banks for
// LD = 4 (mod 32) (2 ways for TF32's LD = 8) and its global reads are 4 rows
// x 32 bytes. kk = tid % BK (a warp: 16 or 32 k of 1-2 rows) put k and k + 8
// on one bank: 2-4 wavefronts a store (the emulator's memory profile).
template <int BK>
__device__ __forceinline__ void row_loader_coords(int tid, int& kk, int& tt) {
  static_assert(BK % 8 == 0, "row loaders take k in groups of 8");
  constexpr int kStep = kThreads / BK;
  kk = tid % 8 + 8 * (tid / (8 * kStep));
  tt = tid / 8 % kStep;
}

// Column of element (k, t) in a shared slice swizzled by SWZ (0: none).
// TF32 mma.sync pads rows by 8 floats (conflict-free fragment reads), which
// puts k and k + 4 of a row loader's warp on one bank (2-way stores); SWZ = 4
// flips bit 2 of the column in rows with k & 4 set, so those stores spread
// over the 32 banks while the fragment reads stay a permutation of theirs.
template <int SWZ>
__device__ __forceinline__ int swizzle_col(int k, int t) {
  return t ^ (k & SWZ);
}

// ---- the tile kernels (policy P: M, N, k_range, A/B loaders, store)

// Optional in a policy: vec4() (true when 4 consecutive j of one row may be
// written at once) and store4(i, j, float4) — a vectorised epilogue.
template <class P, class = void>
struct HasStore4 : std::false_type {};
template <class P>
struct HasStore4<P, std::void_t<decltype(std::declval<const P&>().store4(0, 0, float4{}))>>
    : std::true_type {};

// Writes C[i][j..j+3] (values v[0..3]) through the policy, four at a time where it can.
template <class P>
__device__ __forceinline__ void store_group(const P& p, int i, int j, const float* v) {
  if constexpr (HasStore4<P>::value) {
    if (j + 3 < p.N && p.vec4()) {
      p.store4(i, j, make_float4(v[0], v[1], v[2], v[3]));
      return;
    }
  }
#pragma unroll
  for (int c = 0; c < 4; ++c)
    if (j + c < p.N) p.store(i, j + c, v[c]);
}

// Four consecutive shared floats (16-byte aligned) into registers.
__device__ __forceinline__ void load4(float* r, const float* s) {
  const float4 v = *reinterpret_cast<const float4*>(s);
  r[0] = v.x;
  r[1] = v.y;
  r[2] = v.z;
  r[3] = v.w;
}

template <class P, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__(kThreads, 2) simt_tile_kernel(const P p) {
  static_assert((BM / TM) * (BN / TN) == kThreads, "one TM x TN tile per thread");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are built of 4x4 blocks");
  constexpr int GM = TM / 4, GN = TN / 4;  // 4-wide groups per thread
  constexpr int SM = BM / GM, SN = BN / GN;  // distance between a thread's groups
  __shared__ __align__(16) float As[2][BK][BM + kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];

  const int tid = threadIdx.x;
  const int tiles_n = (p.N + BN - 1) / BN;
  const int m0 = int(blockIdx.x / tiles_n) * BM, n0 = int(blockIdx.x % tiles_n) * BN;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  int kb, ke;
  p.k_range(kb, ke);
  typename P::template A<BM, BK> a(p, m0, tid);
  typename P::template B<BN, BK> b(p, n0, tid);

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

  if (kb < ke) {
    a.fetch(kb, ke);
    b.fetch(kb, ke);
    a.store(&As[0][0][0]);
    b.store(&Bs[0][0][0]);
    __syncthreads();
    int buf = 0;
    for (int k0 = kb; k0 < ke; k0 += BK) {
      const bool more = k0 + BK < ke;
      if (more) {  // global loads in flight during the FMAs below
        a.fetch(k0 + BK, ke);
        b.fetch(k0 + BK, ke);
      }
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float ra[TM], rb[TN];
#pragma unroll
        for (int g = 0; g < GM; ++g) load4(&ra[g * 4], &As[buf][kk][g * SM + ty * 4]);
#pragma unroll
        for (int g = 0; g < GN; ++g) load4(&rb[g * 4], &Bs[buf][kk][g * SN + tx * 4]);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
      }
      // The other buffer was last read before the previous barrier.
      if (more) {
        a.store(&As[buf ^ 1][0][0]);
        b.store(&Bs[buf ^ 1][0][0]);
      }
      __syncthreads();
      buf ^= 1;
    }
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int gi = m0 + (i / 4) * SM + ty * 4 + i % 4;
    if (gi >= p.M) continue;
#pragma unroll
    for (int g = 0; g < GN; ++g) store_group(p, gi, n0 + g * SN + tx * 4, &acc[i][g * 4]);
  }
}

// Rounds a loader's fetched registers to TF32 once, before they are stored to
// shared memory (each element then feeds several warps' fragments unconverted).
template <class L>
__device__ __forceinline__ void round_to_tf32(L& l) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#pragma unroll
  for (int i = 0; i < L::kCount; ++i) l.v[i] = nvcuda::wmma::__float_to_tf32(l.v[i]);
#endif
}

// A warp's 16 x 16 block staged in `cs` (rows LDC floats apart) to the
// policy's store at rows gi0.., columns gj0.., four columns at a time.
template <int LDC, class P>
__device__ __forceinline__ void store_staged_block(const P& p, const float* cs, int gi0, int gj0,
                                                   int lane) {
  for (int e = lane; e < 64; e += 32) {  // 16 rows x 4 groups of 4 columns
    // Quarter-warp q (8 lanes, one float4 wavefront) reads rows r0 and r0 + 2:
    // 2 * LDC = 16 (mod 32) puts them on disjoint banks. One float4 read, not
    // four scalar ones (those were 4-way conflicted).
    const int q = e / 8;
    const int r = (q / 2) * 4 + q % 2 + 2 * (e % 8 / 4), c = (e % 4) * 4;
    float v[4];
    load4(v, &cs[r * LDC + c]);
    if (gi0 + r < p.M) store_group(p, gi0 + r, gj0 + c, v);
  }
}

// The tensor-core kernels' epilogue: each of a warp's FM x FN accumulator
// fragments (its tile starts at row i0, column j0) goes through the warp's
// 16 x LDC staging tile `cs` in shared memory to the policy's store.
template <int LDC, class P, class Acc, int FM, int FN>
__device__ __forceinline__ void store_fragments(const P& p, Acc (&acc)[FM][FN], float* cs, int i0,
                                                int j0, int lane) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      nvcuda::wmma::store_matrix_sync(cs, acc[i][j], LDC, nvcuda::wmma::mem_row_major);
      __syncwarp();
      store_staged_block<LDC>(p, cs, i0 + i * 16, j0 + j * 16, lane);
      __syncwarp();
    }
#else
  (void)p, (void)acc, (void)cs, (void)i0, (void)j0, (void)lane;
#endif
}

// What the tensor-core kernel needs to know about its input type T:
//  float: TF32 fragments 16x16x8, float shared slices (rows padded by kPad),
//         elements rounded to TF32 as they are fetched;
//  __half / __nv_bfloat16: 16x16x16 fragments, 16-bit shared slices (rows
//         padded by 8: WMMA wants 16-bit leading dimensions in multiples of 8),
//         elements rounded to T as the loaders store them.
template <class T>
struct WmmaInput {
  static constexpr int kK = 16, kRowPad = 8;
};
template <>
struct WmmaInput<float> {
  static constexpr int kK = 8, kRowPad = kPad;
};

// Tensor cores, inputs T (float = TF32, __half, __nv_bfloat16), FP32
// accumulation: WM x WN warps, each a (BM/WM) x (BN/WN) block of fragments.
// As[k][i] is op(A) column-major (ldm LDA), Bs[k][j] is op(B) row-major.
template <class P, class T, int BM, int BN, int BK, int WM, int WN>
__global__ void __launch_bounds__(kThreads) wmma_tile_kernel(const P p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  using In = WmmaInput<T>;
  using Prec = std::conditional_t<std::is_same_v<T, float>, wmma::precision::tf32, T>;
  constexpr int FK = In::kK;
  static_assert(WM * WN * 32 == kThreads, "8 warps");
  constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
  constexpr int FM = WTM / 16, FN = WTN / 16;  // fragments per warp
  static_assert(FM * 16 == WTM && FN * 16 == WTN && BK % FK == 0, "fragment shape 16x16xFK");
  constexpr int LDA = BM + In::kRowPad, LDB = BN + In::kRowPad, LDC = kStageLd;
  __shared__ __align__(32) T As[2][BK][LDA];
  __shared__ __align__(32) T Bs[2][BK][LDB];
  __shared__ __align__(32) float Cs[kThreads / 32][16 * LDC];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WN, wn = warp % WN;
  const int tiles_n = (p.N + BN - 1) / BN;
  const int m0 = int(blockIdx.x / tiles_n) * BM, n0 = int(blockIdx.x % tiles_n) * BN;
  int kb, ke;
  p.k_range(kb, ke);
  typename P::template A<BM, BK> a(p, m0, tid);
  typename P::template B<BN, BK> b(p, n0, tid);
  auto fetch = [&](int k0) {
    a.fetch(k0, ke);
    b.fetch(k0, ke);
    if constexpr (std::is_same_v<T, float>) {  // once per element, not per fragment load
      round_to_tf32(a);
      round_to_tf32(b);
    }
  };
  auto store = [&](int buf) {
    a.template store<T, LDA>(&As[buf][0][0]);
    b.template store<T, LDB>(&Bs[buf][0][0]);
  };

  wmma::fragment<wmma::accumulator, 16, 16, FK, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  if (kb < ke) {
    fetch(kb);
    store(0);
    __syncthreads();
    int buf = 0;
    for (int k0 = kb; k0 < ke; k0 += BK) {
      const bool more = k0 + BK < ke;
      if (more) fetch(k0 + BK);  // global loads in flight during the MMAs below
#pragma unroll
      for (int kk = 0; kk < BK; kk += FK) {
        wmma::fragment<wmma::matrix_a, 16, 16, FK, Prec, wmma::col_major> fa[FM];
        wmma::fragment<wmma::matrix_b, 16, 16, FK, Prec, wmma::row_major> fb[FN];
#pragma unroll
        for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(fa[i], &As[buf][kk][wm * WTM + i * 16], LDA);
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::load_matrix_sync(fb[j], &Bs[buf][kk][wn * WTN + j * 16], LDB);
#pragma unroll
        for (int i = 0; i < FM; ++i)
#pragma unroll
          for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      if (more) store(buf ^ 1);  // the other buffer was last read before the previous barrier
      __syncthreads();
      buf ^= 1;
    }
  }
  store_fragments<LDC>(p, acc, Cs[warp], m0 + wm * WTM, n0 + wn * WTN, lane);
#else
  (void)p;  // never launched below sm_80 (the host checks the device)
#endif
}

// ---- the multi-stage TF32 kernel (set_tile_pipeline(true); off by default
// until it has run on a GPU). The loaders copy global -> shared with cp.async
// (no register staging, zero-fill outside the operands), STAGES slices in
// flight, one barrier per slice; fragments are rounded to TF32 after loading.
// Policies opt in with a host member async_ok() (whether this problem may use
// it), their loaders with fetch_async<LD>(smem, k0, k_end).

__device__ __forceinline__ void cp_async4(float* smem, const float* gmem, bool valid) {
#if defined(DOFPOSE_CUDA_EMULATOR)  // the host emulator queues the copy (kernels/cuda_emulator)
  emu::cp_async(smem, gmem, 4, valid);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 4 : 0));
#else
  (void)smem, (void)gmem, (void)valid;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(DOFPOSE_CUDA_EMULATOR)
  emu::cp_async_commit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(DOFPOSE_CUDA_EMULATOR)
  emu::cp_async_wait(N);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

template <class P, class = void>
struct HasAsync : std::false_type {};
template <class P>
struct HasAsync<P, std::void_t<decltype(std::declval<const P&>().async_ok())>> : std::true_type {};

// Optional in an async policy: has_b_prologue(), whether B's rows take a
// transform relu((v - mean) * scale + beta) that mma_async_tile_kernel applies
// as it reads the shared slice (cp.async copies raw values); b_prologue(k), a
// ChannelEpilogue holding row k's mean, scale and beta (k below the block's
// k_end); and mma_async_ok(), whether this problem may take that kernel
// (default: async_ok()).
template <class P, class = void>
struct HasBPrologue : std::false_type {};
template <class P>
struct HasBPrologue<P, std::void_t<decltype(std::declval<const P&>().has_b_prologue())>>
    : std::true_type {};
template <class P>
bool mma_async_ok(const P& p) {
  if constexpr (HasBPrologue<P>::value)
    return p.mma_async_ok();
  else
    return p.async_ok();
}

// The multi-stage kernels' block: its tile origin (blockIdx.x over the
// M x N tiles) and k range, and the cp.async ring over that range: STAGES
// stages of an A slice (rows LDA floats) then a B slice (rows LDB floats),
// STAGES - 1 slices in flight, one barrier per slice, columns swizzled by
// SWZ (swizzle_col); consume(it, stage)
// reads slice `it` from its stage; on_issue(slice) runs on every thread as
// a slice's copies are issued (for per-slice tables in the same ring). run()
// returns with the stages dead (every copy landed, every thread past its last
// read), ready for the epilogue.
template <class P, int BM, int BN, int BK, int STAGES, int LDA, int LDB, int SWZ = 0>
struct AsyncBlock {
  static constexpr int kStage = BK * (LDA + LDB);  // floats per stage
  int m0, n0, kb, ke;
  __device__ explicit AsyncBlock(const P& p) {
    const int tiles_n = (p.N + BN - 1) / BN;
    m0 = int(blockIdx.x / tiles_n) * BM;
    n0 = int(blockIdx.x % tiles_n) * BN;
    p.k_range(kb, ke);
  }
  template <class Consume, class OnIssue>
  __device__ void run(const P& p, float* smem, Consume&& consume, OnIssue&& on_issue) const {
    const int tid = threadIdx.x;
    typename P::template A<BM, BK> a(p, m0, tid);
    typename P::template B<BN, BK> b(p, n0, tid);
    const int slices = kb < ke ? (ke - kb + BK - 1) / BK : 0;
    auto issue = [&](int slice) {
      float* st = smem + (slice % STAGES) * kStage;
      a.template fetch_async<LDA, SWZ>(st, kb + slice * BK, ke);
      b.template fetch_async<LDB, SWZ>(st + BK * LDA, kb + slice * BK, ke);
      on_issue(slice);
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < slices) issue(s);
      cp_async_commit();  // empty groups keep the count uniform
    }
    for (int it = 0; it < slices; ++it) {
      cp_async_wait<STAGES - 2>();  // slice `it` has landed (for this thread) ...
      __syncthreads();              // ... for every thread; slice it-1's buffer is free
      if (it + STAGES - 1 < slices) issue(it + STAGES - 1);
      cp_async_commit();
      consume(it, static_cast<const float*>(smem + (it % STAGES) * kStage));
    }
    cp_async_wait<0>();
    __syncthreads();
  }
  template <class Consume>
  __device__ void run(const P& p, float* smem, Consume&& consume) const {
    run(p, smem, consume, [](int) {});
  }
};

template <class P, int BM, int BN, int BK, int STAGES, int WM, int WN>
__global__ void __launch_bounds__(kThreads) wmma_async_tile_kernel(const P p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  static_assert(WM * WN * 32 == kThreads && STAGES >= 2, "8 warps, 2+ stages");
  constexpr int WTM = BM / WM, WTN = BN / WN, FM = WTM / 16, FN = WTN / 16;
  static_assert(FM * 16 == WTM && FN * 16 == WTN && BK % 8 == 0, "fragment shape 16x16x8");
  constexpr int LDA = BM + kPad, LDB = BN + kPad, LDC = kStageLd;
  using Block = AsyncBlock<P, BM, BN, BK, STAGES, LDA, LDB>;
  static_assert(STAGES * Block::kStage >= (kThreads / 32) * 16 * LDC, "epilogue staging fits");
  __shared__ __align__(128) float smem[STAGES * Block::kStage];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / WN, wn = warp % WN;
  const Block blk(p);

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  blk.run(p, smem, [&](int, const float* as) {
    const float* bs = as + BK * LDA;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
        wmma::load_matrix_sync(fa[i], as + kk * LDA + wm * WTM + i * 16, LDA);
#pragma unroll
        for (int t = 0; t < fa[i].num_elements; ++t) fa[i].x[t] = wmma::__float_to_tf32(fa[i].x[t]);
      }
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::load_matrix_sync(fb[j], bs + kk * LDB + wn * WTN + j * 16, LDB);
#pragma unroll
        for (int t = 0; t < fb[j].num_elements; ++t) fb[j].x[t] = wmma::__float_to_tf32(fb[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  });
  // The stages are dead: the epilogue stages its tiles there.
  store_fragments<LDC>(p, acc, smem + warp * 16 * LDC, blk.m0 + wm * WTM, blk.n0 + wn * WTN, lane);
#else
  (void)p;
#endif
}

// ---- the multi-stage mma.sync kernel (set_tile_pipeline(true) with the FP16
// or BF16 math mode, or TF32 with set_tf32_mma(true); off by default until it
// has run on a GPU). The same cp.async stages of float32 slices as
// wmma_async_tile_kernel, but the fragments are built by hand for mma.sync
// (PTX ISA, "Matrix fragments for mma.m16n8k16 / m16n8k8"), each element
// converted as it is read from shared memory: WMMA's fragment layout is
// unspecified, so it cannot take converted registers, and cp.async cannot
// convert on the way in. Each element is rounded once, as the register-staged
// kernels do. With g = lane / 4 and t = lane % 4, a thread holds
//   FP16/BF16, m16n8k16:
//     A (16x16, row): rows g and g+8, k 2t, 2t+1 and 2t+8, 2t+9 (pairs packed, lower k low);
//     B (16x8, col):  k 2t, 2t+1 and 2t+8, 2t+9 of column g;
//   TF32, m16n8k8:
//     A (16x8): rows g and g+8, k t and t+4;  B (8x8): k t and t+4 of column g;
//   C (16x8): rows g and g+8, columns 2t, 2t+1.
// Shared slices are k-major (As[k][i], Bs[k][j]). Rows are padded so that the
// eight lanes with the same t read eight consecutive floats and the four
// values of t land 8 banks apart (no bank conflicts): 4 floats when lanes
// start at k row 2t, 8 when they start at row t. TF32's slices are also
// swizzled (swizzle_col, kSwizzle = 4: rows k & 4 store column i at i ^ 4)
// so that the row loaders' stores are conflict-free too: a lane reads its
// k + 4 rows `sw` = (g ^ 4) - g columns over.

// Two floats as one 32-bit register of T pairs (lo in the low half).
template <class T>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  uint32_t r;  // memcpy, not a pointer cast: the same register move, without aliasing UB
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    memcpy(&r, &h, sizeof r);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &h, sizeof r);
  }
  return r;
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __float_as_uint(nvcuda::wmma::__float_to_tf32(x));  // the WMMA paths' rounding
#else
  return __float_as_uint(x);
#endif
}

// What mma_async_tile_kernel needs to know about its input type T. `c` points
// at the lane's first element of a fragment: A at (row g, k row kLaneRow * t),
// B at (k row kLaneRow * t, column g); ld is the slice's k stride; sw the
// column shift of the lane's swizzled rows (0 where kSwizzle is 0).
template <class T>
struct MmaInput {  // __half, __nv_bfloat16: m16n8k16
  static constexpr int kK = 16, kLaneRow = 2, kRowPad = 4, kSwizzle = 0;
  __device__ static void load_a(const float* c, int ld, int /*sw*/, uint32_t (&a)[4]) {
    a[0] = pack_pair<T>(c[0], c[ld]);                    // row g,   k 2t, 2t+1
    a[1] = pack_pair<T>(c[8], c[ld + 8]);                // row g+8
    a[2] = pack_pair<T>(c[8 * ld], c[9 * ld]);           // row g,   k 2t+8, 2t+9
    a[3] = pack_pair<T>(c[8 * ld + 8], c[9 * ld + 8]);   // row g+8
  }
  // B's elements sit at k rows b_row(0..kBRows-1) past the lane's first;
  // xf(e, v) transforms element e first (the policy's B prologue).
  static constexpr int kBRows = 4;
  __device__ static constexpr int b_row(int e) { return (e & 1) + (e >> 1) * 8; }  // 0, 1, 8, 9
  template <class F>
  __device__ static void load_b(const float* c, int ld, int /*sw*/, uint32_t (&b)[2], F&& xf) {
    b[0] = pack_pair<T>(xf(0, c[0]), xf(1, c[ld]));            // column g, k 2t, 2t+1
    b[1] = pack_pair<T>(xf(2, c[8 * ld]), xf(3, c[9 * ld]));   // k 2t+8, 2t+9
  }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(DOFPOSE_CUDA_EMULATOR)  // PTX fragment layouts, emulated (kernels/cuda_emulator/include/mma.h)
    emu::raw_mma<std::is_same_v<T, __half> ? emu::RawKind::F16 : emu::RawKind::BF16>(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if constexpr (std::is_same_v<T, __half>)
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
          "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)d, (void)a, (void)b;
#endif
  }
};
template <>
struct MmaInput<float> {  // TF32: m16n8k8
  static constexpr int kK = 8, kLaneRow = 1, kRowPad = 8, kSwizzle = 4;
  __device__ static void load_a(const float* c, int ld, int sw, uint32_t (&a)[4]) {
    a[0] = to_tf32(c[0]);                // row g,   k t
    a[1] = to_tf32(c[8]);                // row g+8
    a[2] = to_tf32(c[4 * ld + sw]);      // row g,   k t+4 (swizzled)
    a[3] = to_tf32(c[4 * ld + 8 + sw]);  // row g+8
  }
  static constexpr int kBRows = 2;
  __device__ static constexpr int b_row(int e) { return e * 4; }  // 0, 4
  template <class F>
  __device__ static void load_b(const float* c, int ld, int sw, uint32_t (&b)[2], F&& xf) {
    b[0] = to_tf32(xf(0, c[0]));            // column g, k t
    b[1] = to_tf32(xf(1, c[4 * ld + sw]));  // k t+4 (swizzled)
  }
  __device__ static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(DOFPOSE_CUDA_EMULATOR)
    emu::raw_mma<emu::RawKind::TF32>(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    (void)d, (void)a, (void)b;
#endif
  }
};

template <class P, class T, int BM, int BN, int BK, int STAGES, int WM, int WN>
__global__ void __launch_bounds__(kThreads) mma_async_tile_kernel(const P p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  static_assert(WM * WN * 32 == kThreads && STAGES >= 2, "8 warps, 2+ stages");
  constexpr int WTM = BM / WM, WTN = BN / WN, MT = WTM / 16, NT = WTN / 8;
  using In = MmaInput<T>;
  static_assert(MT * 16 == WTM && NT * 8 == WTN && NT % 2 == 0 && BK % In::kK == 0,
                "warp tiles of 16x16 blocks, whole mma steps per slice");
  // Swizzled rows are exactly the lane's k + 4 rows: steps of 8 k, tiles of 8 columns.
  static_assert(In::kSwizzle == 0 || (In::kSwizzle == 4 && In::kK == 8 && WTM % 8 == 0 && WTN % 8 == 0),
                "the swizzle flips bit 2 of the column in the lane's k + 4 rows");
  constexpr int LDA = BM + In::kRowPad, LDB = BN + In::kRowPad, LDC = kStageLd;
  using Block = AsyncBlock<P, BM, BN, BK, STAGES, LDA, LDB, In::kSwizzle>;
  static_assert(STAGES * Block::kStage >= (kThreads / 32) * 16 * LDC, "epilogue staging fits");
  __shared__ __align__(128) float smem[STAGES * Block::kStage];

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int sw = (g ^ In::kSwizzle) - g;  // fragment columns start at multiples of 8
  const int wm = warp / WN, wn = warp % WN;
  const Block blk(p);
  // B's prologue per k row of each stage, {mean, scale, beta}: computed once
  // per slice by BK threads as its copies are issued, instead of by every lane
  // (4 parameter loads and a square root per row) at every step. Rows past
  // the block's k range hold the identity: B is zero there.
  constexpr bool kPrologue = HasBPrologue<P>::value;
  __shared__ float4 pro_table[kPrologue ? STAGES * BK : 1];
  const bool prologue = [&] {
    if constexpr (kPrologue)
      return p.has_b_prologue();
    else
      return false;
  }();
  auto stage_prologue = [&](int slice) {
    if constexpr (kPrologue) {
      const int r = threadIdx.x, k = blk.kb + slice * BK + r;
      if (prologue && r < BK) {
        const ChannelEpilogue e = k < blk.ke ? p.b_prologue(k) : ChannelEpilogue();
        pro_table[(slice % STAGES) * BK + r] = make_float4(e.mean, e.scale, e.beta, 0.0f);
      }
    }
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  blk.run(p, smem, [&](int it, const float* stage) {
    const float* as = stage + wm * WTM + g;
    const float* bs = stage + BK * LDA + wn * WTN + g;
#pragma unroll
    for (int kk = 0; kk < BK; kk += In::kK) {
      const float* ak = as + (kk + In::kLaneRow * t) * LDA;  // the lane's first k row
      const float* bk = bs + (kk + In::kLaneRow * t) * LDB;
      uint32_t fa[MT][4], fb[NT][2];
#pragma unroll
      for (int i = 0; i < MT; ++i) In::load_a(ak + i * 16, LDA, sw, fa[i]);
      if (prologue) {
        // The policy's transform of B (the fused conv's BN + ReLU, bn_infer's
        // arithmetic) for the lane's kBRows k rows, from the stage's table.
        const float4* rows = pro_table + (it % STAGES) * BK + kk + In::kLaneRow * t;
        float4 pro[In::kBRows];
#pragma unroll
        for (int e = 0; e < In::kBRows; ++e) pro[e] = rows[In::b_row(e)];
#pragma unroll
        for (int j = 0; j < NT; ++j)
          In::load_b(bk + j * 8, LDB, sw, fb[j], [&](int e, float v) {
            return fmaxf((v - pro[e].x) * pro[e].y + pro[e].z, 0.0f);
          });
      } else {
#pragma unroll
        for (int j = 0; j < NT; ++j) In::load_b(bk + j * 8, LDB, sw, fb[j], [](int, float v) { return v; });
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) In::mma(acc[i][j], fa[i], fb[j]);
    }
  }, stage_prologue);
  // The stages are dead: each 16x16 block of the warp tile (two n-tiles) goes
  // through the warp's staging tile there to the policy's store.
  float* cs = smem + warp * 16 * LDC;
  const int i0 = blk.m0 + wm * WTM, j0 = blk.n0 + wn * WTN;
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int jj = 0; jj < NT; jj += 2) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float* d = acc[i][jj + h];  // float2 stores: conflict-free at LDC = kStageLd
        *reinterpret_cast<float2*>(&cs[g * LDC + h * 8 + 2 * t]) = make_float2(d[0], d[1]);
        *reinterpret_cast<float2*>(&cs[(g + 8) * LDC + h * 8 + 2 * t]) = make_float2(d[2], d[3]);
      }
      __syncwarp();
      store_staged_block<LDC>(p, cs, i0 + i * 16, j0 + jj * 8, lane);
      __syncwarp();
    }
#else
  (void)p;
#endif
}

// Block tile: 128 where the dimension exceeds 64, halved (wider side first)
// until every multiprocessor gets at least one block.
void choose_tile(int M, int N, int64_t batch, int sms, int& bm, int& bn) {
  bm = M > 64 ? 128 : 64;
  bn = N > 64 ? 128 : 64;
  auto blocks = [&] { return int64_t((M + bm - 1) / bm) * ((N + bn - 1) / bn) * batch; };
  while (blocks() < sms && (bm == 128 || bn == 128)) {
    if (bn == 128 && (bm == 64 || N >= M))
      bn = 64;
    else
      bm = 64;
  }
}

// The tensor-core kernel for input type T; BK = 16 floats or 32 16-bit
// elements (the same shared-memory bytes per slice).
template <class P, class T>
void launch_wmma(const P& p, int bm, int bn, const dim3& grid, cudaStream_t stream) {
  constexpr int BK = std::is_same_v<T, float> ? 16 : 32;
  if (bm == 128 && bn == 128)
    wmma_tile_kernel<P, T, 128, 128, BK, 2, 4><<<grid, kThreads, 0, stream>>>(p);
  else if (bm == 64 && bn == 128)
    wmma_tile_kernel<P, T, 64, 128, BK, 2, 4><<<grid, kThreads, 0, stream>>>(p);
  else if (bm == 128)
    wmma_tile_kernel<P, T, 128, 64, BK, 4, 2><<<grid, kThreads, 0, stream>>>(p);
  else
    wmma_tile_kernel<P, T, 64, 64, BK, 2, 4><<<grid, kThreads, 0, stream>>>(p);
}

// The multi-stage mma.sync kernel for T: warp tiles 32x32 (64x64 blocks: 32x16).
template <class P, class T>
void launch_mma_async(const P& p, int bm, int bn, const dim3& grid, cudaStream_t stream) {
  DOFPOSE_CHECK(!(bm == 128 && bn == 128), "mma_async_tile_kernel: no 128x128 tile (3 stages "
                "would not fit 48 KB of shared memory)");
  if (bm == 64 && bn == 128)
    mma_async_tile_kernel<P, T, 64, 128, 16, 3, 2, 4><<<grid, kThreads, 0, stream>>>(p);
  else if (bm == 128)
    mma_async_tile_kernel<P, T, 128, 64, 16, 3, 4, 2><<<grid, kThreads, 0, stream>>>(p);
  else
    mma_async_tile_kernel<P, T, 64, 64, 16, 3, 2, 4><<<grid, kThreads, 0, stream>>>(p);
}

// P's M x N tiles of bm x bn (blockIdx.x) by `depth` blockIdx.z slices.
template <class P>
dim3 tile_grid(const P& p, int bm, int bn, int depth, const char* name) {
  const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + bn - 1) / bn);
  DOFPOSE_CHECK(tiles < (int64_t(1) << 31) && depth <= 65535, name, ": problem too large (",
                tiles, " tiles x ", depth, ")");
  return dim3((unsigned)tiles, 1, (unsigned)depth);
}

// Launches P over its M x N tiles (blockIdx.x) and `depth` blockIdx.z slices
// (batch entries or reduction splits) with the block tile bm x bn, on the
// kernel of `math` (the caller checked the math mode against the device).
template <class P>
void launch_tile_kernel(const P& p, int bm, int bn, int depth, TileMath math, cudaStream_t stream,
                        const char* name) {
  const dim3 grid = tile_grid(p, bm, bn, depth, name);
  if constexpr (HasAsync<P>::value) {
    // 3 stages of 16-deep slices fit the 48 KB of static shared memory up to 128 x 64.
    const bool use_mma = math != TileMath::Tf32 || detail::tf32_mma();
    if (math != TileMath::Simt && detail::tile_pipeline() && !(bm == 128 && bn == 128) &&
        (use_mma ? mma_async_ok(p) : p.async_ok())) {
      if (math == TileMath::Tf32 && use_mma) {
        launch_mma_async<P, float>(p, bm, bn, grid, stream);
      } else if (math == TileMath::Tf32) {
        if (bm == 64 && bn == 128)
          wmma_async_tile_kernel<P, 64, 128, 16, 3, 2, 4><<<grid, kThreads, 0, stream>>>(p);
        else if (bm == 128)
          wmma_async_tile_kernel<P, 128, 64, 16, 3, 4, 2><<<grid, kThreads, 0, stream>>>(p);
        else
          wmma_async_tile_kernel<P, 64, 64, 16, 3, 2, 4><<<grid, kThreads, 0, stream>>>(p);
      } else if (math == TileMath::Fp16) {
        launch_mma_async<P, __half>(p, bm, bn, grid, stream);
      } else {
        launch_mma_async<P, __nv_bfloat16>(p, bm, bn, grid, stream);
      }
      DOFPOSE_CUDA_LAUNCH_CHECK(name);
      ++detail::g_pipelined_launches;
      return;
    }
  }
  if (math == TileMath::Fp16) {
    launch_wmma<P, __half>(p, bm, bn, grid, stream);
  } else if (math == TileMath::Bf16) {
    launch_wmma<P, __nv_bfloat16>(p, bm, bn, grid, stream);
  } else if (math == TileMath::Tf32) {
    launch_wmma<P, float>(p, bm, bn, grid, stream);
  } else {
    if (bm == 128 && bn == 128)
      simt_tile_kernel<P, 128, 128, 8, 8, 8><<<grid, kThreads, 0, stream>>>(p);
    else if (bm == 64 && bn == 128)
      simt_tile_kernel<P, 64, 128, 8, 4, 8><<<grid, kThreads, 0, stream>>>(p);
    else if (bm == 128)
      simt_tile_kernel<P, 128, 64, 8, 8, 4><<<grid, kThreads, 0, stream>>>(p);
    else
      simt_tile_kernel<P, 64, 64, 16, 4, 4><<<grid, kThreads, 0, stream>>>(p);
  }
  DOFPOSE_CUDA_LAUNCH_CHECK(name);
}

}  // namespace
}  // namespace dofpose::cuda_kernels
