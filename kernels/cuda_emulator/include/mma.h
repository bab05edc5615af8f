// CUDA host emulator: WMMA fragments and the mma.sync shapes kernels/cuda/ uses.
//
// WMMA's register layout is unspecified, so the emulator picks one (element e
// of lane l is element e * 32 + l of the row-major tile); kernels only touch
// fragment elements uniformly (x[i] for all i), which any layout serves.
// The raw mma.sync fragments follow the PTX ISA's documented layouts
// (m16n8k16 .f16/.bf16, m16n8k8 .tf32): there the layout *is* the contract.
// Products accumulate in float, k in order; TF32 inputs drop their low 13
// mantissa bits as the tensor cores do.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "kernels/cuda_emulator/emulator.h"
#include "kernels/cuda_emulator/memory_profile.h"

namespace emu {
inline float tf32_truncate(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u &= 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}
inline float tf32_round(float x) {  // cvt.rna.tf32.f32: nearest, ties away from zero
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}
}  // namespace emu

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

inline float __float_to_tf32(float x) { return emu::tf32_round(x); }

template <class Use, int M, int N, int K>
struct FragmentShape;
template <int M, int N, int K>
struct FragmentShape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct FragmentShape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct FragmentShape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
template <class T>
struct Storage {
  using type = T;
};
template <>
struct Storage<precision::tf32> {
  using type = float;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  using Shape = FragmentShape<Use, M, N, K>;
  using element_type = typename Storage<T>::type;
  static constexpr int rows = Shape::rows, cols = Shape::cols;
  static constexpr int num_elements = rows * cols / 32;
  element_type x[num_elements];
  // Element e of this lane sits at (row, col) = index(e, lane).
  static int flat(int e, int lane) { return e * 32 + lane; }
};

template <class F, class V>
void fill_fragment(F& f, const V& v) {
  for (int i = 0; i < F::num_elements; ++i) f.x[i] = typename F::element_type(v);
}

// load/store_matrix_sync are warp-wide: every lane must pass the same address
// and leading dimension (undefined otherwise); checked as a warp collective.
struct MatrixArgs {
  const void* p;
  unsigned ldm;
};
inline void matrix_args_combine(emu::WarpPart* const* lanes) {
  const MatrixArgs* first = nullptr;
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) emu::trap("load/store_matrix_sync with a partial warp");
    const auto* a = static_cast<const MatrixArgs*>(lanes[l]->in);
    if (!first) first = a;
    if (a->p != first->p || a->ldm != first->ldm)
      emu::trap("load/store_matrix_sync: lane " + std::to_string(l) +
                " passes another address or leading dimension than lane 0");
  }
}
inline void matrix_args_agree(const void* p, unsigned ldm) {
  MatrixArgs a{p, ldm};
  emu::WarpPart part;
  part.combine = &matrix_args_combine;
  part.in = &a;
  emu::warp_collective(part);
}

// Element (r, c) of a matrix at p with leading dimension ldm.
template <class P>
P& matrix_element(P* p, unsigned ldm, int r, int c, bool col_major) {
  return col_major ? p[size_t(c) * ldm + r] : p[size_t(r) * ldm + c];
}

template <class Use, int M, int N, int K, class T, class Layout, class P>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  matrix_args_agree(p, ldm);
  emu::memory_profile::Pause uncounted;  // our fragment layout is not the hardware's
  using F = fragment<Use, M, N, K, T, Layout>;
  const int lane = emu::lane_id();
  for (int e = 0; e < F::num_elements; ++e) {
    const int i = F::flat(e, lane);
    const P v = matrix_element(p, ldm, i / F::cols, i % F::cols, std::is_same_v<Layout, col_major>);
    f.x[e] = typename F::element_type(v);
  }
  emu::sync_warp(0xffffffffu);  // a warp-wide operation
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  matrix_args_agree(p, ldm);
  emu::memory_profile::Pause uncounted;  // our fragment layout is not the hardware's
  using F = fragment<accumulator, M, N, K, float>;
  const int lane = emu::lane_id();
  for (int e = 0; e < F::num_elements; ++e) {
    const int i = F::flat(e, lane);
    f.x[e] = matrix_element(p, ldm, i / F::cols, i % F::cols, layout == mem_col_major);
  }
  emu::sync_warp(0xffffffffu);
}
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
  matrix_args_agree(p, ldm);
  emu::memory_profile::Pause uncounted;  // our fragment layout is not the hardware's
  using F = fragment<accumulator, M, N, K, float>;
  const int lane = emu::lane_id();
  for (int e = 0; e < F::num_elements; ++e) {
    const int i = F::flat(e, lane);
    matrix_element(p, ldm, i / F::cols, i % F::cols, layout == mem_col_major) = f.x[e];
  }
  emu::sync_warp(0xffffffffu);
}

template <class FD, class FA, class FB, class FC>
struct MmaIO {
  FD* d;
  const FA* a;
  const FB* b;
  const FC* c;
};
template <class T>
inline float mma_input(const T& v) {
  return float(v);
}
template <class FD, class FA, class FB, class FC, bool TF32>
void mma_combine(emu::WarpPart* const* lanes) {
  constexpr int M = FD::rows, N = FD::cols, K = FA::cols;
  float A[M][K], B[K][N], C[M][N];
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) emu::trap("wmma::mma_sync with a partial warp");
    const auto* io = static_cast<const MmaIO<FD, FA, FB, FC>*>(lanes[l]->in);
    for (int e = 0; e < FA::num_elements; ++e) {
      const int i = FA::flat(e, l);
      const float v = mma_input(io->a->x[e]);
      A[i / K][i % K] = TF32 ? emu::tf32_truncate(v) : v;
    }
    for (int e = 0; e < FB::num_elements; ++e) {
      const int i = FB::flat(e, l);
      const float v = mma_input(io->b->x[e]);
      B[i / N][i % N] = TF32 ? emu::tf32_truncate(v) : v;
    }
    for (int e = 0; e < FC::num_elements; ++e) {
      const int i = FC::flat(e, l);
      C[i / N][i % N] = io->c->x[e];
    }
  }
  for (int l = 0; l < 32; ++l) {
    const auto* io = static_cast<const MmaIO<FD, FA, FB, FC>*>(lanes[l]->in);
    for (int e = 0; e < FD::num_elements; ++e) {
      const int i = FD::flat(e, l), r = i / N, c = i % N;
      float acc = C[r][c];
      for (int k = 0; k < K; ++k) acc += A[r][k] * B[k][c];
      io->d->x[e] = acc;
    }
  }
}
template <class FD, class FA, class FB, class FC>
void mma_sync(FD& d, const FA& a, const FB& b, const FC& c) {
  MmaIO<FD, FA, FB, FC> io{&d, &a, &b, &c};
  emu::WarpPart part;
  part.combine = &mma_combine<FD, FA, FB, FC, std::is_same_v<typename FA::element_type, float>>;
  part.in = &io;
  emu::warp_collective(part);
}
}  // namespace wmma
}  // namespace nvcuda

namespace emu {
// mma.sync.aligned.m16n8k{16,8}.row.col.f32.{f16,bf16,tf32}.f32, D = A B + D, with
// the PTX ISA's fragment layouts (g = lane / 4, t = lane % 4):
//  A: a0 (g, k0..), a1 (g+8, k0..), a2 (g, k0+K/2..), a3 (g+8, k0+K/2..)
//  B: b0 (k0.., col g), b1 (k0+K/2.., col g);  C/D: c0,c1 (g, 2t,2t+1), c2,c3 (g+8, 2t,2t+1)
// where k0 = 2t (16-bit: two elements per register, the lower k in the low half) or t (TF32).
struct RawMmaIO {
  float* d;
  const uint32_t* a;
  const uint32_t* b;
};
enum class RawKind { F16, BF16, TF32 };
template <RawKind R>
inline float raw_element(uint32_t reg, int half) {
  if constexpr (R == RawKind::TF32) {
    float f;
    std::memcpy(&f, &reg, 4);
    return tf32_truncate(f);
  } else {
    const uint16_t h = uint16_t(half ? reg >> 16 : reg & 0xffffu);
    return R == RawKind::F16 ? half_bits_to_float(h) : bf16_bits_to_float(h);
  }
}
template <RawKind R>
void raw_mma_combine(WarpPart* const* lanes) {
  constexpr int K = R == RawKind::TF32 ? 8 : 16, H = K / 2;
  float A[16][K], B[K][8];
  for (int l = 0; l < 32; ++l) {
    if (!lanes[l]) trap("mma.sync with a partial warp");
    const auto* io = static_cast<const RawMmaIO*>(lanes[l]->in);
    const int g = l / 4, t = l % 4;
    for (int reg = 0; reg < 4; ++reg) {
      const int row = g + (reg & 1) * 8, kbase = (reg >> 1) * H;
      if constexpr (R == RawKind::TF32) {
        A[row][kbase + t] = raw_element<R>(io->a[reg], 0);
      } else {
        A[row][kbase + 2 * t] = raw_element<R>(io->a[reg], 0);
        A[row][kbase + 2 * t + 1] = raw_element<R>(io->a[reg], 1);
      }
    }
    for (int reg = 0; reg < 2; ++reg) {
      const int kbase = reg * H;
      if constexpr (R == RawKind::TF32) {
        B[kbase + t][g] = raw_element<R>(io->b[reg], 0);
      } else {
        B[kbase + 2 * t][g] = raw_element<R>(io->b[reg], 0);
        B[kbase + 2 * t + 1][g] = raw_element<R>(io->b[reg], 1);
      }
    }
  }
  float D[16][8];
  for (int l = 0; l < 32; ++l) {
    const auto* io = static_cast<const RawMmaIO*>(lanes[l]->in);
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 4; ++e) D[g + (e >> 1) * 8][2 * t + (e & 1)] = io->d[e];
  }
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 8; ++c)
      for (int k = 0; k < K; ++k) D[r][c] += A[r][k] * B[k][c];
  for (int l = 0; l < 32; ++l) {
    const auto* io = static_cast<const RawMmaIO*>(lanes[l]->in);
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 4; ++e) io->d[e] = D[g + (e >> 1) * 8][2 * t + (e & 1)];
  }
}
template <RawKind R>
void raw_mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  RawMmaIO io{d, a, b};
  WarpPart part;
  part.combine = &raw_mma_combine<R>;
  part.in = &io;
  warp_collective(part);
}
}  // namespace emu
