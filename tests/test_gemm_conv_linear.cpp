// gemm, conv2d and linear CPU kernels against independent references:
// gemm vs the triple loop, conv vs a direct convolution written here (double),
// backward vs central finite differences of that double forward, and bitwise
// determinism across repeated calls and thread counts.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/test_util.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

using dofpose::Conv2dShape;
namespace cpu = dofpose::cpu;
using dofpose_test::random_floats;
using dofpose_test::with_threads;

bool same_bytes(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// ---------------------------------------------------------------- gemm

struct GemmCase {
  bool ta, tb;
  int M, N, K;
  float alpha, beta;
  int pad;  // extra leading-dimension padding
};

// Checks gemm against gemm_naive; the tolerance scales with K and the operand magnitudes.
void check_gemm(const GemmCase& g, uint32_t seed) {
  const int a_rows = g.ta ? g.K : g.M, a_cols = g.ta ? g.M : g.K;
  const int b_rows = g.tb ? g.N : g.K, b_cols = g.tb ? g.K : g.N;
  const int lda = a_cols + g.pad, ldb = b_cols + g.pad, ldc = g.N + g.pad;
  const auto A = random_floats((size_t)a_rows * lda, seed);
  const auto B = random_floats((size_t)b_rows * ldb, seed + 1);
  const auto C0 = random_floats((size_t)g.M * ldc, seed + 2);
  auto C = C0, R = C0;
  cpu::gemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta, C.data(),
            ldc);
  cpu::gemm_naive(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb, g.beta,
                  R.data(), ldc);
  const float tol = 4e-6f * (float)(g.K + 4) * (std::fabs(g.alpha) + std::fabs(g.beta) + 1.0f);
  int bad = 0;
  for (int i = 0; i < g.M; ++i)
    for (int j = 0; j < ldc; ++j) {
      const size_t idx = (size_t)i * ldc + j;
      if (j >= g.N) {  // padding columns must be untouched
        if (std::memcmp(&C[idx], &C0[idx], sizeof(float)) != 0) ++bad;
        continue;
      }
      if (!(std::fabs(C[idx] - R[idx]) <= tol)) {
        if (bad < 3)
          MESSAGE("gemm ta=", g.ta, " tb=", g.tb, " M=", g.M, " N=", g.N, " K=", g.K, " at (", i,
                  ",", j, "): ", C[idx], " vs ", R[idx]);
        ++bad;
      }
    }
  CHECK_MESSAGE(bad == 0, "gemm ta=", g.ta, " tb=", g.tb, " M=", g.M, " N=", g.N, " K=", g.K,
                " alpha=", g.alpha, " beta=", g.beta, ": ", bad, " wrong elements");
}

TEST_CASE("gemm: matches gemm_naive for all transposes and odd sizes") {
  const int sizes[] = {1, 7, 33, 65, 130};
  uint32_t seed = 1;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int M : sizes)
        for (int N : sizes)
          for (int K : sizes) check_gemm({ta == 1, tb == 1, M, N, K, 1.0f, 0.0f, 0}, seed++);
}

TEST_CASE("gemm: alpha, beta and padded leading dimensions") {
  const float alphas[] = {1.0f, -0.5f, 2.0f};
  const float betas[] = {0.0f, 1.0f, 0.75f, -2.0f};
  uint32_t seed = 1000;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float alpha : alphas)
        for (float beta : betas) {
          check_gemm({ta == 1, tb == 1, 65, 33, 130, alpha, beta, 3}, seed++);
          check_gemm({ta == 1, tb == 1, 7, 130, 1, alpha, beta, 1}, seed++);
          check_gemm({ta == 1, tb == 1, 5, 6, 7, alpha, beta, 2}, seed++);  // small path
        }
}

TEST_CASE("gemm: blocks larger than one cache block in every dimension") {
  // K > KC (several K blocks), M > MC, N > NC (several packed B panels).
  check_gemm({false, false, 200, 300, 600, 1.0f, 0.5f, 0}, 7);
  check_gemm({true, true, 101, 257, 517, -1.0f, 0.0f, 5}, 8);
  check_gemm({false, true, 9, 4200, 40, 1.0f, 1.0f, 0}, 9);
  check_gemm({true, false, 13, 4113, 300, 2.0f, 0.0f, 1}, 10);
}

TEST_CASE("gemm: matrix-vector shapes (M == 1 or N == 1)") {
  uint32_t seed = 2000;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int pad : {0, 3}) {  // pad > 0 makes the vector strided in some layouts
        check_gemm({ta == 1, tb == 1, 1, 700, 301, 1.0f, 0.0f, pad}, seed++);
        check_gemm({ta == 1, tb == 1, 601, 1, 203, -1.5f, 0.5f, pad}, seed++);
        check_gemm({ta == 1, tb == 1, 1, 1, 40000, 1.0f, 1.0f, pad}, seed++);
        check_gemm({ta == 1, tb == 1, 1, 67, 1000, 2.0f, 0.0f, pad}, seed++);
      }
}

TEST_CASE("gemm: beta == 0 ignores NaN in C, alpha == 0 or K == 0 only scales C") {
  const int M = 40, N = 50, K = 60;
  const auto A = random_floats((size_t)M * K, 1), B = random_floats((size_t)K * N, 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int k : {3, K}) {  // small path and packed path
    std::vector<float> C((size_t)M * N, nan);
    cpu::gemm(false, false, M, N, k, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    for (float v : C) REQUIRE(std::isfinite(v));
  }
  std::vector<float> C((size_t)M * N, 3.0f);
  cpu::gemm(false, false, M, N, K, 0.0f, A.data(), K, B.data(), N, 0.5f, C.data(), N);
  for (float v : C) REQUIRE(v == 1.5f);
  // K == 0: no A/B needed at all.
  std::vector<float> D((size_t)M * N, nan);
  cpu::gemm(false, false, M, N, 0, 1.0f, nullptr, 1, nullptr, N, 0.0f, D.data(), N);
  for (float v : D) REQUIRE(v == 0.0f);
}

TEST_CASE("gemm: bad leading dimensions and sizes are errors") {
  std::vector<float> A(100), B(100), C(100);
  CHECK_THROWS_AS(cpu::gemm(false, false, 4, 4, 5, 1.0f, A.data(), 4, B.data(), 4, 0.0f, C.data(),
                            4),
                  dofpose::Error);  // lda < K
  CHECK_THROWS_AS(cpu::gemm(false, true, 4, 4, 5, 1.0f, A.data(), 5, B.data(), 4, 0.0f, C.data(),
                            4),
                  dofpose::Error);  // transposed B: ldb < K
  CHECK_THROWS_AS(cpu::gemm(false, false, -1, 4, 5, 1.0f, A.data(), 5, B.data(), 4, 0.0f,
                            C.data(), 4),
                  dofpose::Error);
  CHECK_THROWS_AS(cpu::gemm(false, false, 4, 4, 5, 1.0f, A.data(), 5, B.data(), 4, 0.0f, C.data(),
                            3),
                  dofpose::Error);  // ldc < N
}

// ---------------------------------------------------------------- conv2d references (double)

std::string describe(const Conv2dShape& s) {
  return "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " H=" + std::to_string(s.H) +
         " W=" + std::to_string(s.W) + " K=" + std::to_string(s.K) + " R=" + std::to_string(s.R) +
         " S=" + std::to_string(s.S) + " stride=" + std::to_string(s.stride) +
         " pad=" + std::to_string(s.pad) + " groups=" + std::to_string(s.groups);
}

template <typename T>
std::vector<double> conv_ref(const Conv2dShape& s, const T* x, const T* w, const T* b) {
  const int P = s.P(), Q = s.Q(), Cg = s.C / s.groups, Kg = s.K / s.groups;
  std::vector<double> y((size_t)s.N * s.K * P * Q);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k) {
      const int g = k / Kg;
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double acc = b ? (double)b[k] : 0.0;
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int sx = 0; sx < s.S; ++sx) {
                const int h = p * s.stride - s.pad + r, ww = q * s.stride - s.pad + sx;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                acc += (double)x[(((size_t)n * s.C + g * Cg + c) * s.H + h) * s.W + ww] *
                       (double)w[(((size_t)k * Cg + c) * s.R + r) * s.S + sx];
              }
          y[(((size_t)n * s.K + k) * P + p) * Q + q] = acc;
        }
    }
  return y;
}

// Direct (double) gradients of sum(y * dy), used where finite differences would be too slow.
void conv_backward_ref(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                       std::vector<double>& dx, std::vector<double>& dw) {
  const int P = s.P(), Q = s.Q(), Cg = s.C / s.groups, Kg = s.K / s.groups;
  dx.assign((size_t)s.N * s.C * s.H * s.W, 0.0);
  dw.assign((size_t)s.K * Cg * s.R * s.S, 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k) {
      const int g = k / Kg;
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          const double d = dy[(((size_t)n * s.K + k) * P + p) * Q + q];
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int sx = 0; sx < s.S; ++sx) {
                const int h = p * s.stride - s.pad + r, ww = q * s.stride - s.pad + sx;
                if (h < 0 || h >= s.H || ww < 0 || ww >= s.W) continue;
                const size_t xi = (((size_t)n * s.C + g * Cg + c) * s.H + h) * s.W + ww;
                const size_t wi = (((size_t)k * Cg + c) * s.R + r) * s.S + sx;
                dx[xi] += d * w[wi];
                dw[wi] += d * x[xi];
              }
        }
    }
}

Conv2dShape conv(int N, int C, int H, int W, int K, int R, int S, int stride, int pad,
                 int groups) {
  Conv2dShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = R, s.S = S;
  s.stride = stride, s.pad = pad, s.groups = groups;
  return s;
}

size_t x_size(const Conv2dShape& s) { return (size_t)s.N * s.C * s.H * s.W; }
size_t w_size(const Conv2dShape& s) { return (size_t)s.K * (s.C / s.groups) * s.R * s.S; }
size_t y_size(const Conv2dShape& s) { return (size_t)s.N * s.K * s.P() * s.Q(); }

// Checks float values against a double reference with a tolerance relative to `scale`.
void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                 const std::string& what) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs((double)got[i] - want[i]);
    worst = std::max(worst, err);
    if (!(err <= tol * (1.0 + std::fabs(want[i])))) ++bad;
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", got.size(), " values off, worst abs error ",
                worst);
}

// sum_i y[i] * g[i]: a scalar loss whose gradient with respect to y is g.
double weighted_sum(const std::vector<double>& y, const std::vector<float>& g) {
  double l = 0.0;
  for (size_t i = 0; i < y.size(); ++i) l += y[i] * g[i];
  return l;
}

// Central differences (step 1e-3) of `loss` with respect to every element of `v`,
// which is perturbed in place and restored.
std::vector<double> finite_difference_grad(std::vector<double>& v, const std::function<double()>& loss) {
  const double eps = 1e-3;
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double saved = v[i];
    v[i] = saved + eps;
    const double lp = loss();
    v[i] = saved - eps;
    const double lm = loss();
    v[i] = saved;
    grad[i] = (lp - lm) / (2 * eps);
  }
  return grad;
}

const std::vector<Conv2dShape>& conv_shapes() {
  static const std::vector<Conv2dShape> shapes = {
      conv(1, 3, 9, 11, 8, 3, 3, 1, 1, 1),     // 3x3 same
      conv(3, 5, 10, 9, 7, 3, 3, 2, 1, 1),     // stride 2 + padding, batch 3
      conv(1, 16, 8, 8, 24, 1, 1, 1, 0, 1),    // pointwise (direct gemm)
      conv(3, 12, 6, 7, 10, 1, 1, 1, 0, 2),    // pointwise, groups 2
      conv(2, 12, 7, 5, 20, 1, 1, 2, 0, 1),    // strided 1x1 (im2col)
      conv(1, 3, 23, 21, 16, 7, 7, 2, 3, 1),   // 7x7/2 stem
      conv(2, 6, 9, 9, 6, 3, 3, 1, 1, 6),      // depthwise
      conv(1, 4, 11, 10, 8, 5, 5, 2, 2, 4),    // depthwise, multiplier 2, stride 2
      conv(3, 10, 8, 8, 14, 3, 3, 1, 1, 2),    // groups 2
      conv(1, 13, 12, 12, 9, 3, 3, 1, 0, 1),   // channels not a multiple of 8, no pad
      conv(2, 7, 5, 6, 3, 5, 3, 1, 2, 1),      // non-square kernel
      conv(1, 1, 6, 6, 5, 3, 3, 1, 1, 1),      // single input channel
      conv(1, 4, 3, 3, 5, 3, 3, 3, 1, 1),      // stride 3
  };
  return shapes;
}

TEST_CASE("conv2d_forward: matches a direct convolution") {
  uint32_t seed = 100;
  for (const Conv2dShape& s : conv_shapes()) {
    const auto x = random_floats(x_size(s), seed++), w = random_floats(w_size(s), seed++);
    const auto b = random_floats((size_t)s.K, seed++);
    for (bool with_bias : {true, false}) {
      std::vector<float> y(y_size(s), std::numeric_limits<float>::quiet_NaN());
      cpu::conv2d_forward(s, x.data(), w.data(), with_bias ? b.data() : nullptr, y.data());
      const auto want = conv_ref(s, x.data(), w.data(), with_bias ? b.data() : nullptr);
      check_close(y, want, 1e-5 * (double)(w_size(s) / s.K + 1), "forward " + describe(s));
    }
  }
}

TEST_CASE("conv2d: large shapes (several im2col bands, several gemm blocks)") {
  // 64 channels 3x3 at 96x96: the im2col matrix exceeds the scratch budget, so
  // the output is produced in row bands.
  const std::vector<Conv2dShape> shapes = {conv(1, 64, 96, 96, 8, 3, 3, 1, 1, 1),
                                           conv(2, 40, 40, 40, 100, 3, 3, 2, 1, 2)};
  uint32_t seed = 300;
  for (const Conv2dShape& s : shapes) {
    const auto x = random_floats(x_size(s), seed++), w = random_floats(w_size(s), seed++);
    const auto b = random_floats((size_t)s.K, seed++), dy = random_floats(y_size(s), seed++);
    std::vector<float> y(y_size(s));
    cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
    check_close(y, conv_ref(s, x.data(), w.data(), b.data()), 1e-4, "forward " + describe(s));

    std::vector<float> dx(x_size(s)), dw(w_size(s)), db((size_t)s.K);
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    std::vector<double> dx_ref, dw_ref;
    conv_backward_ref(s, x.data(), w.data(), dy.data(), dx_ref, dw_ref);
    check_close(dx, dx_ref, 1e-4, "dx " + describe(s));
    check_close(dw, dw_ref, 1e-4, "dw " + describe(s));
  }
}

// Gradient check: L = sum(y * g) with the double reference forward; central
// differences in double (exact up to rounding, conv is linear in x and in w).
// col[(c*R + r)*S + s][(p - p0)*Q + q], written out the obvious way.
std::vector<float> im2col_ref(const cpu::Im2colMatrix& m) {
  const int N = (m.p1 - m.p0) * m.Q, K = m.C * m.R * m.S;
  std::vector<float> col((size_t)K * N, 0.0f);
  for (int c = 0; c < m.C; ++c)
    for (int r = 0; r < m.R; ++r)
      for (int sx = 0; sx < m.S; ++sx)
        for (int p = m.p0; p < m.p1; ++p)
          for (int q = 0; q < m.Q; ++q) {
            const int h = p * m.stride - m.pad + r, w = q * m.stride - m.pad + sx;
            if (h >= 0 && h < m.H && w >= 0 && w < m.W)
              col[(size_t)((c * m.R + r) * m.S + sx) * N + (size_t)(p - m.p0) * m.Q + (size_t)q] =
                  m.x[((size_t)c * m.H + (size_t)h) * m.W + (size_t)w];
          }
  return col;
}

TEST_CASE("gemm_im2col: bit for bit gemm on the materialised im2col matrix") {
  // {C, H, W, R, S, stride, pad, p0, p1, M}: the models' 3x3 and 7x7/2 stem,
  // widths that are not a multiple of the 16-column panel (a panel wraps to
  // the next output row), rows narrower than a panel, a band not starting at
  // row 0, padding wider than the kernel reaches, and shapes small enough for
  // gemm's unpacked paths.
  struct Case { int C, H, W, R, S, stride, pad, p0, p1, M; };
  const std::vector<Case> cases = {
      {16, 20, 32, 3, 3, 1, 1, 0, 20, 24},  {3, 38, 38, 7, 7, 2, 3, 0, 19, 16},
      {8, 13, 13, 3, 3, 1, 1, 0, 13, 9},    {5, 17, 23, 3, 5, 2, 2, 3, 8, 13},
      {7, 9, 11, 3, 3, 1, 3, 2, 11, 140},   {2, 5, 5, 3, 3, 1, 1, 0, 5, 3},
      {4, 6, 6, 3, 3, 1, 0, 0, 4, 1},       {24, 16, 16, 3, 3, 1, 1, 0, 16, 130},
      // rows narrower than a panel (each panel spans 2-4 output rows, some padded)
      {32, 8, 8, 3, 3, 1, 1, 0, 8, 40},     {16, 4, 4, 3, 3, 1, 1, 0, 4, 20},
      {6, 9, 9, 3, 3, 2, 1, 0, 5, 30},      {5, 3, 7, 3, 3, 1, 2, 1, 4, 64}};
  uint32_t seed = 900;
  for (const Case& k : cases) {
    const int Q = (k.W + 2 * k.pad - k.S) / k.stride + 1;
    const int N = (k.p1 - k.p0) * Q, K = k.C * k.R * k.S;
    const auto x = random_floats((size_t)k.C * k.H * k.W, seed++);
    const auto A = random_floats((size_t)k.M * (K + 3), seed++);
    const cpu::Im2colMatrix m{x.data(), k.C, k.H, k.W, k.R, k.S, k.stride, k.pad, Q, k.p0, k.p1};
    const std::vector<float> col = im2col_ref(m);
    for (float beta : {0.0f, 0.5f}) {
      CAPTURE(k.C); CAPTURE(k.H); CAPTURE(k.W); CAPTURE(k.R); CAPTURE(k.stride);
      CAPTURE(k.pad); CAPTURE(k.p0); CAPTURE(k.M); CAPTURE(beta);
      const int ldc = N + 5;
      auto c_ref = random_floats((size_t)k.M * ldc, seed), c_got = c_ref;
      cpu::gemm(false, false, k.M, N, K, 1.25f, A.data(), K + 3, col.data(), N, beta, c_ref.data(), ldc);
      cpu::gemm_im2col(k.M, 1.25f, A.data(), K + 3, m, beta, c_got.data(), ldc);
      CHECK(same_bytes(c_ref, c_got));
    }
  }
  const cpu::Im2colMatrix bad{nullptr, 1, 4, 4, 3, 3, 1, 1, 4, 0, 4};
  std::vector<float> c(64), a(9);
  CHECK(dofpose_test::error_of([&] { cpu::gemm_im2col(1, 1.f, a.data(), 9, bad, 0.f, c.data(), 16); })
            .find("gemm_im2col") != std::string::npos);
}

TEST_CASE("conv2d_backward: matches finite differences") {
  const std::vector<Conv2dShape> shapes = {
      conv(2, 3, 5, 6, 4, 3, 3, 1, 1, 1),  conv(1, 4, 7, 6, 3, 3, 3, 2, 1, 1),
      conv(2, 4, 4, 4, 6, 1, 1, 1, 0, 2),  conv(1, 3, 5, 5, 6, 3, 3, 1, 1, 3),
      conv(2, 4, 5, 5, 4, 3, 3, 2, 1, 4),  conv(1, 6, 5, 4, 4, 3, 3, 1, 0, 2),
      conv(1, 2, 9, 9, 3, 7, 7, 2, 3, 1),  conv(2, 5, 4, 5, 3, 1, 1, 2, 0, 1)};
  uint32_t seed = 500;
  for (const Conv2dShape& s : shapes) {
    const auto x = random_floats(x_size(s), seed++), w = random_floats(w_size(s), seed++);
    const auto g = random_floats(y_size(s), seed++);
    std::vector<float> dx(x_size(s), 99.0f), dw(w_size(s), 99.0f), db((size_t)s.K, 99.0f);
    cpu::conv2d_backward(s, x.data(), w.data(), g.data(), dx.data(), dw.data(), db.data());

    std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
    std::vector<double> bd((size_t)s.K, 0.0);
    auto loss = [&] { return weighted_sum(conv_ref(s, xd.data(), wd.data(), bd.data()), g); };
    check_close(dx, finite_difference_grad(xd, loss), 1e-4, "dx " + describe(s));
    check_close(dw, finite_difference_grad(wd, loss), 1e-4, "dw " + describe(s));
    check_close(db, finite_difference_grad(bd, loss), 1e-4, "dbias " + describe(s));

    // nullptr outputs are skipped; the others are still written.
    std::vector<float> dw_only(w_size(s), 0.0f);
    cpu::conv2d_backward(s, x.data(), w.data(), g.data(), nullptr, dw_only.data(), nullptr);
    CHECK(same_bytes(dw_only, dw));
  }
}

TEST_CASE("conv2d: invalid shapes are errors") {
  std::vector<float> buf(4096);
  CHECK_THROWS_AS(cpu::conv2d_forward(conv(1, 6, 5, 5, 4, 3, 3, 1, 1, 4), buf.data(), buf.data(),
                                      nullptr, buf.data()),
                  dofpose::Error);  // groups does not divide C
  CHECK_THROWS_AS(cpu::conv2d_forward(conv(1, 4, 2, 2, 4, 5, 5, 1, 0, 1), buf.data(), buf.data(),
                                      nullptr, buf.data()),
                  dofpose::Error);  // kernel larger than input
  CHECK_THROWS_AS(cpu::conv2d_forward(conv(1, 4, 5, 5, 4, 3, 3, 0, 1, 1), buf.data(), buf.data(),
                                      nullptr, buf.data()),
                  dofpose::Error);  // stride 0
  CHECK_THROWS_AS(cpu::conv2d_backward(conv(1, 4, 5, 5, 4, 3, 3, 1, 1, 1), buf.data(), nullptr,
                                       buf.data(), buf.data(), nullptr, nullptr),
                  dofpose::Error);  // dx needs w
}

// ---------------------------------------------------------------- linear

std::vector<double> linear_ref(int N, int in, int out, const double* x, const double* w,
                               const double* b) {
  std::vector<double> y((size_t)N * out);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < out; ++o) {
      double acc = b ? b[o] : 0.0;
      for (int i = 0; i < in; ++i) acc += x[(size_t)n * in + i] * w[(size_t)o * in + i];
      y[(size_t)n * out + o] = acc;
    }
  return y;
}

TEST_CASE("linear: forward matches the definition, backward matches finite differences") {
  struct Dims { int N, in, out; };
  uint32_t seed = 700;
  for (Dims d : {Dims{1, 7, 5}, Dims{3, 33, 17}, Dims{4, 65, 40}, Dims{64, 130, 48},
                 Dims{1, 1024, 1000}}) {
    const auto x = random_floats((size_t)d.N * d.in, seed++);
    const auto w = random_floats((size_t)d.out * d.in, seed++);
    const auto b = random_floats((size_t)d.out, seed++);
    const auto g = random_floats((size_t)d.N * d.out, seed++);
    std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), bd(b.begin(), b.end());
    const std::string what = "linear N=" + std::to_string(d.N) + " in=" + std::to_string(d.in) +
                             " out=" + std::to_string(d.out);

    std::vector<float> y((size_t)d.N * d.out);
    cpu::linear_forward(d.N, d.in, d.out, x.data(), w.data(), b.data(), y.data());
    check_close(y, linear_ref(d.N, d.in, d.out, xd.data(), wd.data(), bd.data()), 1e-5,
                "forward " + what);

    std::vector<float> dx(x.size(), 99.0f), dw(w.size(), 99.0f), db(b.size(), 99.0f);
    cpu::linear_backward(d.N, d.in, d.out, x.data(), w.data(), g.data(), dx.data(), dw.data(),
                         db.data());
    auto loss = [&] { return weighted_sum(linear_ref(d.N, d.in, d.out, xd.data(), wd.data(), bd.data()), g); };
    if ((int64_t)d.N * d.in * d.out <= 20000) {
      check_close(dx, finite_difference_grad(xd, loss), 1e-4, "dx " + what);
      check_close(dw, finite_difference_grad(wd, loss), 1e-4, "dw " + what);
      check_close(db, finite_difference_grad(bd, loss), 1e-4, "db " + what);
      continue;
    }
    // Larger sizes (finite differences would be slow): the gradient formulas in double.
    std::vector<double> dx_ref(x.size(), 0.0), dw_ref(w.size(), 0.0), db_ref(b.size(), 0.0);
    for (int n = 0; n < d.N; ++n)
      for (int o = 0; o < d.out; ++o) {
        const double gv = g[(size_t)n * d.out + o];
        db_ref[o] += gv;
        for (int i = 0; i < d.in; ++i) {
          dx_ref[(size_t)n * d.in + i] += gv * wd[(size_t)o * d.in + i];
          dw_ref[(size_t)o * d.in + i] += gv * xd[(size_t)n * d.in + i];
        }
      }
    check_close(dx, dx_ref, 1e-4, "dx " + what);
    check_close(dw, dw_ref, 1e-4, "dw " + what);
    check_close(db, db_ref, 1e-4, "db " + what);
  }
}

TEST_CASE("max_norm_rows: rows above the norm scaled to it, the others untouched, any thread count") {
  const int64_t rows = 300, cols = 1031;  // cols: lanes plus a tail
  auto w = random_floats((size_t)(rows * cols), 77);
  for (int64_t r = 0; r < rows; r += 2)  // every other row well inside the limit
    for (int64_t c = 0; c < cols; ++c) w[(size_t)(r * cols + c)] *= 0.01f;
  const float max_norm = 5.f;
  std::vector<float> a = w, b = w;
  with_threads(1, [&] { cpu::max_norm_rows(rows, cols, max_norm, a.data()); });
  with_threads(max_threads() > 1 ? 2 : 1, [&] { cpu::max_norm_rows(rows, cols, max_norm, b.data()); });
  CHECK(same_bytes(a, b));
  int scaled = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double before = 0, after = 0;
    for (int64_t c = 0; c < cols; ++c) {
      before += double(w[(size_t)(r * cols + c)]) * w[(size_t)(r * cols + c)];
      after += double(a[(size_t)(r * cols + c)]) * a[(size_t)(r * cols + c)];
    }
    if (std::sqrt(before) > max_norm) {
      ++scaled;
      CHECK(std::sqrt(after) == doctest::Approx(max_norm).epsilon(1e-5));
    } else {
      CHECK(std::memcmp(&a[(size_t)(r * cols)], &w[(size_t)(r * cols)], (size_t)cols * 4) == 0);
    }
  }
  CHECK(scaled == rows / 2);
}

TEST_CASE("linear: empty batch gives zero weight gradients, bad sizes are errors") {
  std::vector<float> w(12, 1.0f), dw(12, 5.0f), db(3, 5.0f);
  cpu::linear_backward(0, 4, 3, nullptr, w.data(), nullptr, nullptr, dw.data(), db.data());
  for (float v : dw) CHECK(v == 0.0f);
  for (float v : db) CHECK(v == 0.0f);
  CHECK_THROWS_AS(cpu::linear_forward(2, 0, 3, w.data(), w.data(), nullptr, dw.data()),
                  dofpose::Error);
}

// ---------------------------------------------------------------- determinism

TEST_CASE("gemm/conv2d/linear: bitwise identical across calls and thread counts") {
  const int M = 150, N = 1100, K = 700;
  const auto A = random_floats((size_t)M * K, 1), B = random_floats((size_t)K * N, 2);
  auto run_gemm = [&]() {
    std::vector<float> C((size_t)M * N, 0.25f);
    cpu::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.5f, C.data(), N);
    return C;
  };
  const Conv2dShape s = conv(2, 32, 40, 40, 48, 3, 3, 1, 1, 1);
  const auto x = random_floats(x_size(s), 3), w = random_floats(w_size(s), 4);
  const auto bias = random_floats((size_t)s.K, 5), dy = random_floats(y_size(s), 6);
  auto run_conv = [&]() {
    std::vector<float> out(y_size(s) + x_size(s) + w_size(s) + s.K);
    float* y = out.data();
    float* dx = y + y_size(s);
    float* dw = dx + x_size(s);
    float* db = dw + w_size(s);
    cpu::conv2d_forward(s, x.data(), w.data(), bias.data(), y);
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), dx, dw, db);
    return out;
  };
  const Conv2dShape dws = conv(2, 32, 20, 20, 32, 3, 3, 1, 1, 32);
  const auto dwx = random_floats(x_size(dws), 7), dww = random_floats(w_size(dws), 8);
  const auto dwdy = random_floats(y_size(dws), 9);
  auto run_depthwise = [&]() {
    std::vector<float> out(y_size(dws) + x_size(dws) + w_size(dws));
    cpu::conv2d_forward(dws, dwx.data(), dww.data(), nullptr, out.data());
    cpu::conv2d_backward(dws, dwx.data(), dww.data(), dwdy.data(), out.data() + y_size(dws),
                         out.data() + y_size(dws) + x_size(dws), nullptr);
    return out;
  };
  const int LN = 96, LI = 300, LO = 200;
  const auto lx = random_floats((size_t)LN * LI, 10), lw = random_floats((size_t)LO * LI, 11);
  const auto ldy = random_floats((size_t)LN * LO, 12);
  auto run_linear = [&]() {
    std::vector<float> out((size_t)LN * LO + (size_t)LN * LI + (size_t)LO * LI + LO);
    float* y = out.data();
    float* dx = y + (size_t)LN * LO;
    float* dw = dx + (size_t)LN * LI;
    float* db = dw + (size_t)LO * LI;
    cpu::linear_forward(LN, LI, LO, lx.data(), lw.data(), nullptr, y);
    cpu::linear_backward(LN, LI, LO, lx.data(), lw.data(), ldy.data(), dx, dw, db);
    return out;
  };

  const int all = max_threads();
  std::vector<float> g1, g2, g3, c1, c2, c3, d1, d2, d3, l1, l2, l3;
  with_threads(all, [&] {
    g1 = run_gemm(), g2 = run_gemm();
    c1 = run_conv(), c2 = run_conv();
    d1 = run_depthwise(), d2 = run_depthwise();
    l1 = run_linear(), l2 = run_linear();
  });
  with_threads(1, [&] {
    g3 = run_gemm();
    c3 = run_conv();
    d3 = run_depthwise();
    l3 = run_linear();
  });
  MESSAGE("determinism compared with ", all, " threads vs 1 thread");
  CHECK(same_bytes(g1, g2));
  CHECK(same_bytes(g1, g3));
  CHECK(same_bytes(c1, c2));
  CHECK(same_bytes(c1, c3));
  CHECK(same_bytes(d1, d2));
  CHECK(same_bytes(d1, d3));
  CHECK(same_bytes(l1, l2));
  CHECK(same_bytes(l1, l3));
  // Also with an odd team size, where tiles split unevenly.
  std::vector<float> g4;
  with_threads(3, [&] { g4 = run_gemm(); });
  CHECK(same_bytes(g1, g4));
}

}  // namespace
