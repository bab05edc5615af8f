// 2x2 / stride 2 max pooling (floor). The argmax rule is PyTorch's: scan the
// window in row-major order, replace on strictly greater OR on NaN, so ties go
// to the first maximum and a NaN wins (the last NaN, as in PyTorch).
#include <cmath>

#include "kernels/cpu/cpu_kernels.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace dofpose::cpu {
namespace {

// Offset (relative to the window's top-left) of the winning element.
inline int64_t window_argmax(const float* top_left, int W) {
  const int64_t offsets[4] = {0, 1, W, int64_t(W) + 1};
  int64_t best = 0;
  float best_val = top_left[0];
  for (int k = 1; k < 4; ++k) {
    const float v = top_left[offsets[k]];
    if (v > best_val || std::isnan(v)) {
      best_val = v;
      best = offsets[k];
    }
  }
  return best;
}

#if defined(__AVX2__)
// The even and the odd elements of x[0..15], each in order.
inline void deinterleave16(const float* x, __m256& even, __m256& odd) {
  const __m256 lo = _mm256_loadu_ps(x), hi = _mm256_loadu_ps(x + 8);
  // Per 128-bit lane: {lo0, lo2, hi0, hi2 | lo4, lo6, hi4, hi6}; then the
  // 64-bit chunks reordered to lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6.
  const __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
  const __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// even[0..7], odd[0..7] stored interleaved: dst[2i] = even[i], dst[2i + 1] = odd[i].
inline void interleave16(__m256 even, __m256 odd, float* dst) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd);  // e0 o0 e1 o1 | e4 o4 e5 o5
  const __m256 hi = _mm256_unpackhi_ps(even, odd);  // e2 o2 e3 o3 | e6 o6 e7 o7
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(dst + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

// window_argmax on the 8 windows whose top-left corners are tl[0], tl[2], ...,
// tl[14] (rows tl and tl + W): each window's maximum and its place 0..3 (as
// floats, window_argmax's order), with the same compares in the same order.
struct Windows8 {
  __m256 best, place;
};
inline Windows8 argmax_windows8(const float* tl, int W) {
  __m256 v[4];
  deinterleave16(tl, v[0], v[1]);
  deinterleave16(tl + W, v[2], v[3]);
  Windows8 r{v[0], _mm256_setzero_ps()};
  for (int k = 1; k < 4; ++k) {  // replace on strictly greater or on NaN
    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v[k], r.best, _CMP_GT_OQ),
                                     _mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q));
    r.best = _mm256_blendv_ps(r.best, v[k], take);
    r.place = _mm256_blendv_ps(r.place, _mm256_set1_ps(float(k)), take);
  }
  return r;
}
#endif

}  // namespace

void maxpool2x2_forward(int N, int C, int H, int W, const float* x, float* y) {
  const int OH = H / 2, OW = W / 2;
  const int64_t planes = int64_t(N) * C;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    for (int oh = 0; oh < OH; ++oh) {
      const float* r0 = xp + int64_t(2 * oh) * W;
      float* yr = yp + int64_t(oh) * OW;
      int ow = 0;
#if defined(__AVX2__)
      for (; ow + 8 <= OW; ow += 8)  // 8 windows a step (the places are unused)
        _mm256_storeu_ps(yr + ow, argmax_windows8(r0 + 2 * ow, W).best);
#endif
      for (; ow < OW; ++ow) {
        const float* tl = r0 + 2 * ow;
        yr[ow] = tl[window_argmax(tl, W)];
      }
    }
  }
}

void maxpool2x2_backward(int N, int C, int H, int W, const float* x, const float* dy,
                         float* dx, const float* dx_add) {
  if (!dx) return;
  const int OH = H / 2, OW = W / 2;
  const int64_t planes = int64_t(N) * C;
#ifdef DOFPOSE_WITH_OPENMP
#pragma omp parallel for schedule(static) if (planes * H * W > 65536)
#endif
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* dxp = dx + pl * H * W;
    const float* dyp = dy + pl * OH * OW;
    for (int oh = 0; oh < OH; ++oh) {
      const float* r0 = xp + int64_t(2 * oh) * W;
      float* d0 = dxp + int64_t(2 * oh) * W;
      const float* dyr = dyp + int64_t(oh) * OW;
      int ow = 0;
#if defined(__AVX2__)
      // 8 windows a step: the forward's winner, then dy or 0 into each of
      // the window's four places, both rows whole.
      for (; ow + 8 <= OW; ow += 8) {
        const __m256 win = argmax_windows8(r0 + 2 * ow, W).place;
        const __m256 g = _mm256_loadu_ps(dyr + ow);
        const auto at = [&](float k) {  // dy where window place k won, else +0
          return _mm256_and_ps(g, _mm256_cmp_ps(win, _mm256_set1_ps(k), _CMP_EQ_OQ));
        };
        interleave16(at(0.f), at(1.f), d0 + 2 * ow);
        interleave16(at(2.f), at(3.f), d0 + W + 2 * ow);
      }
#endif
      for (; ow < OW; ++ow) {
        const int64_t tl = 2 * ow;
        d0[tl] = d0[tl + 1] = d0[W + tl] = d0[W + tl + 1] = 0.f;
        d0[tl + window_argmax(r0 + tl, W)] = dyr[ow];
      }
      if (W % 2) d0[W - 1] = d0[2 * W - 1] = 0.f;  // the column floor drops
    }
    if (H % 2)
      for (int w = 0; w < W; ++w) dxp[int64_t(H - 1) * W + w] = 0.f;  // the row floor drops
  }
  if (dx_add) accumulate(planes * H * W, dx_add, dx);
}

}  // namespace dofpose::cpu
