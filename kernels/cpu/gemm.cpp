// Packed, cache-blocked single-precision GEMM (GotoBLAS/BLIS structure).
//
//   parallel for tile (mc x nt) of C, dynamically scheduled:
//     pack op(A)[tile rows, all K] into MR-row panels (skipped if the thread's
//                                                     previous tile had the same rows)
//     for pc in K step KC:
//       pack op(B)[pc:pc+KC, tile cols] into NR-column panels
//       for jr (NR panel), ir (MR panel): micro-kernel MR x NR over KC
//
// Determinism: threads only split WHICH C tiles they compute, and the KC
// blocking is fixed, so every C element is accumulated in exactly the same
// order (k ascending inside a KC block, KC blocks ascending) whatever the
// number of threads or the tile shape.
//
// Memory: each thread's packing buffers are thread_local, grow only and are
// reused, so repeated calls of the same size do no heap allocation.
// See docs/cpu-kernels.md for the blocking sizes and measured performance.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DOFPOSE_GEMM_AVX2 1
#endif

#if defined(DOFPOSE_WITH_OPENMP)
#include <omp.h>
#endif

namespace dofpose::cpu {
namespace {

// Register tile: 6 rows x 16 columns = 12 ymm accumulators + 2 B vectors +
// 1 broadcast A value = 15 of the 16 AVX2 registers.
constexpr int MR = 6;
constexpr int NR = 16;
// KC x NR B micro-panel (24 KiB) stays in L1 (32 KiB); the MC x KC A block
// (at most 216 KiB) stays in L2 (512 KiB per core on Zen 3, 1 MiB on Zen 4).
// KC = 384 also divides the 3x3 convs with 128/256 channels (K = 1152/2304)
// into full blocks.
// Tuned on the 2-core EPYC (Zen 3) dev machine, see docs/cpu-kernels.md.
constexpr int KC = 384;
constexpr int MC = 144;  // largest tile height; multiple of MR
constexpr int NT = 256;  // tile width; multiple of NR

// Below this many multiply-adds the packing and threading overhead dominates.
constexpr int64_t kSmallWork = 32 * 1024;
// Below this many multiply-adds one thread is faster than waking the team.
constexpr int64_t kParallelWork = 256 * 1024;
// Matrix-vector products are memory bound: a second thread only pays off on
// large matrices (and costs a lot when the OS preempts it).
constexpr int64_t kParallelGemvWork = 4 * 1024 * 1024;

// 64-byte aligned float buffer that only ever grows.
class GrowBuffer {
 public:
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer() { std::free(data_); }
  float* reserve(size_t n) {
    if (n > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      void* p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      data_ = static_cast<float*>(p);
      capacity_ = n;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

struct GemmWorkspace {
  GrowBuffer packed_a;
  GrowBuffer packed_b;
  GrowBuffer vec;  // gathered strided vector for the matrix-vector path
};

GemmWorkspace& thread_workspace() {
  thread_local GemmWorkspace ws;
  return ws;
}

// op(A)(i, k) and op(B)(k, j) without materialising the transpose.
inline float a_at(const float* A, int lda, bool trans, int i, int k) {
  return trans ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}
inline float b_at(const float* B, int ldb, bool trans, int k, int j) {
  return trans ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

#if DOFPOSE_GEMM_AVX2
// r[i][c] -> r[c][i] for an 8 x 8 block of floats.
inline void transpose8x8(__m256 (&r)[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

// Packs op(A)[i0:i0+mr, k0:k0+kc] as kc groups of MR consecutive values
// (rows beyond mr are zero so the micro-kernel never needs a row edge case).
void pack_a_panel(const float* A, int lda, bool trans, int i0, int mr, int k0, int kc,
                  float* dst) {
  if (trans) {
    // op(A)(i, k) = A[k][i]: each k gives mr contiguous values.
    for (int k = 0; k < kc; ++k) {
      const float* src = A + (size_t)(k0 + k) * lda + i0;
      float* d = dst + (size_t)k * MR;
      int i = 0;
      for (; i < mr; ++i) d[i] = src[i];
      for (; i < MR; ++i) d[i] = 0.0f;
    }
  } else {
    int k = 0;
#if DOFPOSE_GEMM_AVX2
    // 8 k at a time: 6 rows of 8 loaded, transposed in registers, stored as
    // 8 groups of 6 (element by element, this pack was most of the A cost of
    // a long-K weight-gradient GEMM).
    if (mr == MR) {
      const float* src = A + (size_t)i0 * lda + k0;
      for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int i = 0; i < MR; ++i) r[i] = _mm256_loadu_ps(src + (size_t)i * lda + k);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8x8(r);
        for (int c = 0; c < 8; ++c) {  // r[c] = op(A)(i0 .. i0+5, k0+k+c), 2 zeros
          float* d = dst + (size_t)(k + c) * MR;
          _mm_storeu_ps(d, _mm256_castps256_ps128(r[c]));
          _mm_storel_pi(reinterpret_cast<__m64*>(d + 4), _mm256_extractf128_ps(r[c], 1));
        }
      }
    }
#endif
    for (int i = 0; i < MR; ++i) {
      if (i < mr) {
        const float* src = A + (size_t)(i0 + i) * lda + k0;
        for (int kk = k; kk < kc; ++kk) dst[(size_t)kk * MR + i] = src[kk];
      } else {
        for (int kk = k; kk < kc; ++kk) dst[(size_t)kk * MR + i] = 0.0f;
      }
    }
  }
}

// Packs op(B)[k0:k0+kc, j0:j0+nr] as kc rows of NR values (zero padded).
void pack_b_panel(const float* B, int ldb, bool trans, int k0, int kc, int j0, int nr,
                  float* dst) {
  if (!trans) {
    for (int k = 0; k < kc; ++k) {
      const float* src = B + (size_t)(k0 + k) * ldb + j0;
      float* d = dst + (size_t)k * NR;
      if (nr == NR) {
        std::memcpy(d, src, NR * sizeof(float));
      } else {
        int j = 0;
        for (; j < nr; ++j) d[j] = src[j];
        for (; j < NR; ++j) d[j] = 0.0f;
      }
    }
  } else {
    // op(B)(k, j) = B[j][k]: read each source row contiguously.
    int k = 0;
#if DOFPOSE_GEMM_AVX2
    // 8 x 8 blocks transposed in registers (a dW GEMM's whole B operand goes
    // through here; element by element it cost a third of the GEMM).
    if (nr == NR) {
      for (; k + 8 <= kc; k += 8)
        for (int jh = 0; jh < NR; jh += 8) {
          const float* src = B + (size_t)(j0 + jh) * ldb + k0 + k;
          __m256 r[8];
          for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (size_t)j * ldb);
          transpose8x8(r);
          for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + (size_t)(k + c) * NR + jh, r[c]);
        }
    }
#endif
    for (int j = 0; j < NR; ++j) {
      if (j < nr) {
        const float* src = B + (size_t)(j0 + j) * ldb + k0;
        for (int kk = k; kk < kc; ++kk) dst[(size_t)kk * NR + j] = src[kk];
      } else {
        for (int kk = k; kk < kc; ++kk) dst[(size_t)kk * NR + j] = 0.0f;
      }
    }
  }
}

// The one place C is written. acc is the MR x NR register tile (row stride NR).
// beta == 0 never reads C (so NaN/garbage there is ignored). The same
// arithmetic (fma(beta, c, alpha * acc)) is used by the vector path and the
// edge path, so an element's value does not depend on which path wrote it.
inline float update_one(float acc, float c, float alpha, float beta) {
#if defined(__FMA__)
  return beta == 0.0f ? alpha * acc : std::fma(beta, c, alpha * acc);
#else
  return beta == 0.0f ? alpha * acc : beta * c + alpha * acc;
#endif
}

void update_edge(const float* acc, int mr, int nr, float alpha, float beta, float* C, int ldc) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float* c = C + (size_t)i * ldc + j;
      *c = update_one(acc[i * NR + j], beta == 0.0f ? 0.0f : *c, alpha, beta);
    }
}

#if defined(DOFPOSE_GEMM_AVX2)

// acc += Ap (kc x MR, packed) * Bp (kc x NR, packed); then writes C.
// Full tiles update C directly; edge tiles go through a local tile.
void micro_kernel(int kc, const float* Ap, const float* Bp, float alpha, float beta, float* C,
                  int ldc, int mr, int nr) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(Bp);
    const __m256 b1 = _mm256_load_ps(Bp + 8);
    __m256 a;
    a = _mm256_broadcast_ss(Ap + 0);
    c00 = _mm256_fmadd_ps(a, b0, c00);
    c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(Ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10);
    c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(Ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20);
    c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(Ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30);
    c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(Ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40);
    c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(Ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50);
    c51 = _mm256_fmadd_ps(a, b1, c51);
    Ap += MR;
    Bp += NR;
  }
  if (mr == MR && nr == NR) {
    const __m256 va = _mm256_set1_ps(alpha);
    auto store = [&](float* c, __m256 acc) {
      __m256 t = _mm256_mul_ps(va, acc);
      if (beta != 0.0f) t = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c), t);
      _mm256_storeu_ps(c, t);
    };
    store(C + 0 * (size_t)ldc, c00);
    store(C + 0 * (size_t)ldc + 8, c01);
    store(C + 1 * (size_t)ldc, c10);
    store(C + 1 * (size_t)ldc + 8, c11);
    store(C + 2 * (size_t)ldc, c20);
    store(C + 2 * (size_t)ldc + 8, c21);
    store(C + 3 * (size_t)ldc, c30);
    store(C + 3 * (size_t)ldc + 8, c31);
    store(C + 4 * (size_t)ldc, c40);
    store(C + 4 * (size_t)ldc + 8, c41);
    store(C + 5 * (size_t)ldc, c50);
    store(C + 5 * (size_t)ldc + 8, c51);
  } else {
    alignas(32) float acc[MR * NR];
    _mm256_store_ps(acc + 0 * NR, c00);
    _mm256_store_ps(acc + 0 * NR + 8, c01);
    _mm256_store_ps(acc + 1 * NR, c10);
    _mm256_store_ps(acc + 1 * NR + 8, c11);
    _mm256_store_ps(acc + 2 * NR, c20);
    _mm256_store_ps(acc + 2 * NR + 8, c21);
    _mm256_store_ps(acc + 3 * NR, c30);
    _mm256_store_ps(acc + 3 * NR + 8, c31);
    _mm256_store_ps(acc + 4 * NR, c40);
    _mm256_store_ps(acc + 4 * NR + 8, c41);
    _mm256_store_ps(acc + 5 * NR, c50);
    _mm256_store_ps(acc + 5 * NR + 8, c51);
    update_edge(acc, mr, nr, alpha, beta, C, ldc);
  }
}

#else  // portable scalar micro-kernel

void micro_kernel(int kc, const float* Ap, const float* Bp, float alpha, float beta, float* C,
                  int ldc, int mr, int nr) {
  float acc[MR * NR] = {};
  for (int k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const float a = Ap[i];
      for (int j = 0; j < NR; ++j) acc[i * NR + j] += a * Bp[j];
    }
    Ap += MR;
    Bp += NR;
  }
  update_edge(acc, mr, nr, alpha, beta, C, ldc);
}

#endif

// ---- matrix-vector products (M == 1 or N == 1): no packing, the matrix is
// streamed once. y[j * incy] = alpha * sum_k v[k] * mat(k, j) + beta * y, where
// mat(k, j) is mat[j * ld + k] ("dot" form) or mat[k * ld + j] ("axpy" form).

// Dot product with a fixed summation order (8 lanes x 4 accumulators, then a
// fixed reduction), so the result never depends on the thread that runs it.
inline float dot(const float* a, const float* b, int n) {
  int k = 0;
#if defined(DOFPOSE_GEMM_AVX2)
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  for (; k + 32 <= n; k += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
  }
  for (; k + 8 <= n; k += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float acc = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
              ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
#else
  float acc = 0.0f;
#endif
  for (; k < n; ++k) acc += a[k] * b[k];
  return acc;
}

void gemv(int n, int K, float alpha, const float* v, const float* mat, int ld, bool dot_form,
          float beta, float* y, int incy, bool parallel) {
  (void)parallel;
  constexpr int kChunk = 64;  // outputs per task in the axpy form
  const int chunks = (n + kChunk - 1) / kChunk;
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel for schedule(static) if (parallel)
#endif
  for (int c = 0; c < chunks; ++c) {
    const int j0 = c * kChunk, j1 = std::min(n, j0 + kChunk);
    float acc[kChunk];
    if (dot_form) {
      for (int j = j0; j < j1; ++j) acc[j - j0] = dot(v, mat + (size_t)j * ld, K);
    } else {
      std::fill(acc, acc + kChunk, 0.0f);
      for (int k = 0; k < K; ++k) {
        const float vk = v[k];
        const float* row = mat + (size_t)k * ld;
        for (int j = j0; j < j1; ++j) acc[j - j0] += vk * row[j];
      }
    }
    for (int j = j0; j < j1; ++j) {
      float* yj = y + (size_t)j * incy;
      *yj = update_one(acc[j - j0], beta == 0.0f ? 0.0f : *yj, alpha, beta);
    }
  }
}

// Chooses the MC x NT tile so that every thread gets several tiles. Tile
// shapes do not change any element's arithmetic (only KC blocking does), so
// this may depend on the thread count without breaking determinism.
void choose_tiles(int M, int nc, int threads, int& mc, int& nt) {
  // Row blocks of equal height: each row block packs all of B once more, so
  // M = 128 as one block of 132 rows, not 120 + 8 (B packed twice, the second
  // time for 8 rows of work).
  const int m_blocks = (M + MC - 1) / MC;
  mc = ((M + m_blocks - 1) / m_blocks + MR - 1) / MR * MR;
  nt = NT;
  auto tiles = [&] { return ((M + mc - 1) / mc) * ((nc + nt - 1) / nt); };
  const int want = 4 * threads;
  while (tiles() < want && nt > 4 * NR) nt /= 2;
  // Rows are split last and not below 48: every row block packs B again, one
  // copied float per mc multiply-adds (a long-K weight gradient, 128 x 64 x
  // 16384, ran 10-30 % faster with 4 tiles of 36 rows than 8 of 18).
  while (tiles() < want && mc > 8 * MR) mc = (mc / 2 + MR - 1) / MR * MR;
}

// C = beta * C (beta == 0 writes zeros without reading C).
void scale_c(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    float* row = C + (size_t)i * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + N, 0.0f);
    } else if (beta != 1.0f) {
      for (int j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

// Small problems: one dot product per element, no packing, no threads.
void gemm_small(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k)
        acc += a_at(A, lda, trans_a, i, k) * b_at(B, ldb, trans_b, k, j);
      float* c = C + (size_t)i * ldc + j;
      *c = update_one(acc, beta == 0.0f ? 0.0f : *c, alpha, beta);
    }
}

void check_args(const char* op, bool trans_a, bool trans_b, int M, int N, int K, const float* A,
                int lda, const float* B, int ldb, const float* C, int ldc) {
  DOFPOSE_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": sizes must be non-negative, got M=", M,
                " N=", N, " K=", K);
  const int a_cols = trans_a ? M : K;
  const int b_cols = trans_b ? K : N;
  DOFPOSE_CHECK(lda >= std::max(1, a_cols), op, ": lda=", lda, " is smaller than the ",
                a_cols, " columns of ", trans_a ? "A (transposed, K x M)" : "A (M x K)");
  DOFPOSE_CHECK(ldb >= std::max(1, b_cols), op, ": ldb=", ldb, " is smaller than the ",
                b_cols, " columns of ", trans_b ? "B (transposed, N x K)" : "B (K x N)");
  DOFPOSE_CHECK(ldc >= std::max(1, N), op, ": ldc=", ldc, " is smaller than N=", N);
  if (M > 0 && N > 0) {
    DOFPOSE_CHECK(C != nullptr, op, ": C is null for a ", M, "x", N, " result");
    if (K > 0) DOFPOSE_CHECK(A != nullptr && B != nullptr, op, ": A or B is null with K=", K);
  }
}

// Packs col[k0:k0+kc, j0:j0+nr] of an im2col matrix like pack_b_panel: each
// k row is one input row of one channel, shifted; 16 columns of one output row
// are 16 consecutive input pixels at stride 1 (one copy), zero outside.
void pack_b_im2col(const Im2colMatrix& b, int k0, int kc, int j0, int nr, float* dst) {
  int c = k0 / (b.R * b.S), r = k0 / b.S % b.R, sx = k0 % b.S;
  const int p = b.p0 + j0 / b.Q, q = j0 % b.Q;
  const size_t plane = (size_t)b.H * b.W;
  const float* xc = b.x + (size_t)c * plane;
  const auto next_k = [&] {
    if (++sx == b.S) {
      sx = 0;
      if (++r == b.R) {
        r = 0;
        xc += plane;
      }
    }
  };
  if (q + nr > b.Q) {
    // The panel wraps to the next output row (always, when Q < 16: the 8x8 and
    // 4x4 levels of the hourglass). Split it into runs of one output row once,
    // then copy run by run (per element, with a division each, this pack was
    // three quarters of an 8x8 convolution's time).
    struct Run {
      int jj0, jj1, h_base, w_base;
    };
    Run runs[NR];
    int n_runs = 0;
    for (int jj = 0; jj < nr;) {
      const int pos = j0 + jj, pp = b.p0 + pos / b.Q, qq = pos % b.Q;
      const int len = std::min(nr - jj, b.Q - qq);
      runs[n_runs++] = {jj, jj + len, pp * b.stride - b.pad, qq * b.stride - b.pad};
      jj += len;
    }
    for (int k = 0; k < kc; ++k, dst += NR, next_k()) {
      for (int u = 0; u < n_runs; ++u) {
        const Run& run = runs[u];
        const int h = run.h_base + r;
        if (h < 0 || h >= b.H) {
          std::fill(dst + run.jj0, dst + run.jj1, 0.0f);
          continue;
        }
        const float* xr = xc + (size_t)h * b.W;
        for (int jj = run.jj0; jj < run.jj1; ++jj) {
          const int w = run.w_base + sx + (jj - run.jj0) * b.stride;
          dst[jj] = w >= 0 && w < b.W ? xr[w] : 0.0f;
        }
      }
      std::fill(dst + nr, dst + NR, 0.0f);
    }
    return;
  }
  const int h_base = p * b.stride - b.pad, w_base = q * b.stride - b.pad;
  const bool full = nr == NR && b.stride == 1;
  for (int k = 0; k < kc; ++k, dst += NR, next_k()) {
    const int h = h_base + r, w0 = w_base + sx;
    int jj = 0;
    if (h >= 0 && h < b.H) {
      const float* xr = xc + (size_t)h * b.W;
      if (full && w0 >= 0 && w0 + NR <= b.W) {  // the common case: one 64-byte copy
#if DOFPOSE_GEMM_AVX2
        _mm256_storeu_ps(dst, _mm256_loadu_ps(xr + w0));
        _mm256_storeu_ps(dst + 8, _mm256_loadu_ps(xr + w0 + 8));
#else
        std::memcpy(dst, xr + w0, NR * sizeof(float));
#endif
        continue;
      }
      if (nr == NR && b.stride == 2 && w0 >= 0 && w0 + 2 * NR <= b.W) {  // all 32 loaded in the row
        // The stride-2 stem inside the image: even elements of 32, no bounds tests.
#if DOFPOSE_GEMM_AVX2
        for (int half = 0; half < 2; ++half) {
          const float* src = xr + w0 + 16 * half;
          const __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 8);
          // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> lanes in order by a 64-bit permute.
          const __m256 even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
          _mm256_storeu_ps(dst + 8 * half, _mm256_castpd_ps(_mm256_permute4x64_pd(
                                               _mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0))));
        }
#else
        for (int j = 0; j < NR; ++j) dst[j] = xr[w0 + 2 * j];
#endif
        continue;
      }
      for (; jj < nr; ++jj) {
        const int w = w0 + jj * b.stride;
        dst[jj] = w >= 0 && w < b.W ? xr[w] : 0.0f;
      }
    }
    for (; jj < NR; ++jj) dst[jj] = 0.0f;
  }
}

// Row k of an im2col matrix, its first n columns (for the unpacked paths).
void im2col_row(const Im2colMatrix& b, int k, int n, float* dst) {
  const int c = k / (b.R * b.S), r = k / b.S % b.R, sx = k % b.S;
  const float* xc = b.x + (size_t)c * b.H * b.W;
  for (int j = 0; j < n; ++j) {
    const int p = b.p0 + j / b.Q, q = j % b.Q;
    const int h = p * b.stride - b.pad + r, w = q * b.stride - b.pad + sx;
    dst[j] = h >= 0 && h < b.H && w >= 0 && w < b.W ? xc[(size_t)h * b.W + w] : 0.0f;
  }
}

// The packed GEMM proper: C tiles over the threads, A packed per row block,
// B packed per tile and KC block by pack_b(k0, kc, j0, nr, dst), which writes
// op(B)[k0:k0+kc, j0:j0+nr] as kc rows of NR values (zero padded) - from a
// matrix (gemm) or straight from an image (gemm_im2col). Every C element's
// arithmetic depends only on K (see "Determinism" above).
template <class PackB>
void drive_tiles(int M, int N, int K, float alpha, const float* A, int lda, bool trans_a,
                 float beta, float* C, int ldc, const PackB& pack_b) {
  const bool parallel = (int64_t)M * N * K >= kParallelWork;
  int threads = 1;
#if defined(DOFPOSE_WITH_OPENMP)
  if (parallel && !omp_in_parallel()) threads = omp_get_max_threads();
#else
  (void)parallel;
#endif
  int mc, nt;
  choose_tiles(M, N, threads, mc, nt);
  const int m_blocks = (M + mc - 1) / mc;
  const int n_tiles = (N + nt - 1) / nt;
  const int tiles = m_blocks * n_tiles;
  const int k_blocks = (K + KC - 1) / KC;

  // Each thread packs what its own tiles need, into its own buffers: no
  // barrier inside the call, so a thread that the OS preempts delays only its
  // current tile (the others keep taking tiles) instead of stalling the team.
#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp parallel if (parallel)
#endif
  {
    GemmWorkspace& tw = thread_workspace();
    // A block: all K for mc rows, stored KC block after KC block.
    float* const packed_a = tw.packed_a.reserve((size_t)mc * K);
    float* const packed_b = tw.packed_b.reserve((size_t)nt * std::min(K, KC));
    int packed_ib = -1;  // A block already in packed_a (tiles of one row block are adjacent)

#if defined(DOFPOSE_WITH_OPENMP)
#pragma omp for schedule(dynamic, 1) nowait
#endif
    for (int t = 0; t < tiles; ++t) {
      const int ib = t / n_tiles, jb = t % n_tiles;
      const int i_begin = ib * mc, i_end = std::min(M, i_begin + mc);
      const int j_begin = jb * nt, j_end = std::min(N, j_begin + nt);
      if (ib != packed_ib) {
        for (int kb = 0; kb < k_blocks; ++kb) {
          const int pc = kb * KC, kc = std::min(KC, K - pc);
          float* dst = packed_a + (size_t)mc * pc;
          for (int i0 = i_begin; i0 < i_end; i0 += MR)
            pack_a_panel(A, lda, trans_a, i0, std::min(MR, i_end - i0), pc, kc,
                         dst + (size_t)(i0 - i_begin) * kc);
        }
        packed_ib = ib;
      }
      for (int kb = 0; kb < k_blocks; ++kb) {
        const int pc = kb * KC, kc = std::min(KC, K - pc);
        // Later KC blocks add to what the first one wrote.
        const float beta_block = kb == 0 ? beta : 1.0f;
        for (int j0 = j_begin; j0 < j_end; j0 += NR)
          pack_b(pc, kc, j0, std::min(NR, j_end - j0), packed_b + (size_t)(j0 - j_begin) * kc);
        const float* a_block = packed_a + (size_t)mc * pc;
        // B micro-panel (KC x NR) stays in L1 while the A block streams from L2.
        for (int j0 = j_begin; j0 < j_end; j0 += NR) {
          const int nr = std::min(NR, j_end - j0);
          const float* Bp = packed_b + (size_t)(j0 - j_begin) * kc;
          for (int i0 = i_begin; i0 < i_end; i0 += MR) {
            const int mr = std::min(MR, i_end - i0);
            micro_kernel(kc, a_block + (size_t)(i0 - i_begin) * kc, Bp, alpha, beta_block,
                         C + (size_t)i0 * ldc + j0, ldc, mr, nr);
          }
        }
      }
    }
  }
}

}  // namespace

static_assert(kGemmMR == MR && kGemmNR == NR, "cpu_kernels.h's register tile is gemm.cpp's");

void gemm_micro_tile(int kc, const float* Ap, const float* Bp, float* C, int ldc, int mr, int nr,
                     bool accumulate) {
  micro_kernel(kc, Ap, Bp, 1.0f, accumulate ? 1.0f : 0.0f, C, ldc, mr, nr);
}

void gemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  check_args("gemm_naive", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k)
        acc += a_at(A, lda, trans_a, i, k) * b_at(B, ldb, trans_b, k, j);
      float* c = C + (size_t)i * ldc + j;
      *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
    }
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  check_args("gemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) {  // A and B are not referenced (BLAS semantics)
    scale_c(M, N, beta, C, ldc);
    return;
  }
  const int64_t work = (int64_t)M * N * K;
  if (work <= kSmallWork) {
    gemm_small(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }

  GemmWorkspace& ws = thread_workspace();

  if (M == 1 || N == 1) {
    // v: the length-K vector (gathered when strided); mat: the other operand.
    const bool row_vec = M == 1;
    const float* v = row_vec ? A : B;
    const bool v_contiguous = row_vec ? (!trans_a || lda == 1) : (trans_b || ldb == 1);
    if (!v_contiguous) {
      const int stride = row_vec ? lda : ldb;
      float* g = ws.vec.reserve((size_t)K);
      for (int k = 0; k < K; ++k) g[k] = v[(size_t)k * stride];
      v = g;
    }
    const bool parallel_gemv = work >= kParallelGemvWork;
    if (row_vec)  // C[0, j] = sum_k v[k] * op(B)(k, j)
      gemv(N, K, alpha, v, B, ldb, trans_b, beta, C, 1, parallel_gemv);
    else  // C[i, 0] = sum_k op(A)(i, k) * v[k]
      gemv(M, K, alpha, v, A, lda, !trans_a, beta, C, ldc, parallel_gemv);
    return;
  }

  drive_tiles(M, N, K, alpha, A, lda, trans_a, beta, C, ldc,
              [=](int k0, int kc, int j0, int nr, float* dst) {
                pack_b_panel(B, ldb, trans_b, k0, kc, j0, nr, dst);
              });
}

void gemm_bn_relu_b(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                    const GemmRowPrologue& pro, float* C, int ldc) {
  check_args("gemm_bn_relu_b", false, false, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  // relu((b - mean) * scale + shift), the arithmetic of the pass it replaces.
  const auto map_row = [&pro](int k, const float* src, float* dst, int n) {
    const float m = pro.mean[k], sc = pro.scale[k], sh = pro.shift[k];
    for (int j = 0; j < n; ++j) {
      const float v = (src[j] - m) * sc + sh;
      dst[j] = v < 0.f ? 0.f : v;
    }
  };
  if (M == 1 || N == 1 || K == 0 || (int64_t)M * N * K <= kSmallWork) {
    // gemm's unpacked paths: the normalised B materialised.
    thread_local std::vector<float> buf;
    buf.resize((size_t)K * N);
    for (int k = 0; k < K; ++k) map_row(k, B + (size_t)k * ldb, buf.data() + (size_t)k * N, N);
    gemm(false, false, M, N, K, 1.0f, A, lda, buf.data(), N, 0.0f, C, ldc);
    return;
  }
  drive_tiles(M, N, K, 1.0f, A, lda, false, 0.0f, C, ldc,
              [&](int k0, int kc, int j0, int nr, float* dst) {
                for (int k = 0; k < kc; ++k, dst += NR) {
                  map_row(k0 + k, B + (size_t)(k0 + k) * ldb + j0, dst, nr);
                  std::fill(dst + nr, dst + NR, 0.0f);
                }
              });
}

void gemm_im2col(int M, float alpha, const float* A, int lda, const Im2colMatrix& col, float beta,
                 float* C, int ldc) {
  const int N = (col.p1 - col.p0) * col.Q, K = col.C * col.R * col.S;
  DOFPOSE_CHECK(col.x && col.p0 >= 0 && col.p1 >= col.p0 && col.Q >= 1,
                "gemm_im2col: bad im2col matrix (x null or rows [", col.p0, ", ", col.p1, "))");
  check_args("gemm_im2col", false, false, M, N, K, A, lda, col.x, N, C, ldc);
  const int64_t work = (int64_t)M * N * K;
  if (M <= 1 || N <= 1 || K == 0 || alpha == 0.0f || work <= kSmallWork) {
    // gemm's other paths (no packing): materialise col and take them.
    thread_local std::vector<float> buf;
    buf.resize((size_t)K * N);
    for (int k = 0; k < K; ++k) im2col_row(col, k, N, buf.data() + (size_t)k * N);
    gemm(false, false, M, N, K, alpha, A, lda, buf.data(), N, beta, C, ldc);
    return;
  }
  drive_tiles(M, N, K, alpha, A, lda, false, beta, C, ldc,
              [&col](int k0, int kc, int j0, int nr, float* dst) {
                pack_b_im2col(col, k0, kc, j0, nr, dst);
              });
}

}  // namespace dofpose::cpu
