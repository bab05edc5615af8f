// Hand-computed sanity checks for the element-wise, normalisation, pooling,
// resize, dropout, soft-argmax and loss CPU kernels. (PyTorch golden fixtures
// and finite-difference checks live in their own test files.)
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/test_util.h"
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace dofpose;
using namespace dofpose::cpu;
using dofpose_test::random_floats;

namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol = 1e-5) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("index ", i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(tol));
  }
}

}  // namespace

TEST_CASE("cpu batchnorm train: batch statistics, running update and layout") {
  // [N=2, C=2, HW=2]; channel 0 holds 1,2,3,4 and channel 1 holds 10,10,10,10.
  const BatchNormShape s{2, 2, 2};
  const std::vector<float> x = {1, 2, 10, 10, 3, 4, 10, 10};
  const std::vector<float> gamma = {2, 1}, beta = {0.5f, -1};
  std::vector<float> rm = {0, 1}, rv = {1, 1}, y(8), save_mean(2), save_invstd(2);
  batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 0.1f,
                          0.f, y.data(), save_mean.data(), save_invstd.data());
  const float inv = 1.f / std::sqrt(1.25f);  // biased variance of 1..4 is 1.25
  check_close(save_mean, {2.5f, 10.f});
  CHECK(save_invstd[0] == doctest::Approx(inv));
  check_close({y[0], y[1], y[4], y[5]},
              {-1.5f * inv * 2 + 0.5f, -0.5f * inv * 2 + 0.5f, 0.5f * inv * 2 + 0.5f,
               1.5f * inv * 2 + 0.5f});
  // Running statistics use the unbiased variance (5/3 for 1..4).
  check_close(rm, {0.25f, 0.1f * 10 + 0.9f});
  check_close(rv, {0.9f + 0.1f * 5.f / 3.f, 0.9f});

  // One value per channel cannot be normalised in training, as in PyTorch.
  CHECK_THROWS_AS(batchnorm_forward_train({1, 1, 1}, x.data(), gamma.data(), beta.data(),
                                          nullptr, nullptr, 0.1f, 1e-5f, y.data(), nullptr,
                                          nullptr),
                  Error);
}

TEST_CASE("cpu batchnorm backward train: hand-computed gradient") {
  // One channel, x = 0,1,2: mean 1, var 2/3, invstd = sqrt(1.5), xhat = (-a, 0, a).
  const BatchNormShape s{1, 1, 3};
  const std::vector<float> x = {0, 1, 2}, gamma = {2}, beta = {0}, dy = {1, 0, 0};
  std::vector<float> y(3), mean(1), invstd(1), dx(3), dgamma(1), dbeta(1);
  batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), nullptr, nullptr, 0.1f, 0.f,
                          y.data(), mean.data(), invstd.data());
  batchnorm_backward_train(s, x.data(), gamma.data(), mean.data(), invstd.data(), dy.data(),
                           dx.data(), dgamma.data(), dbeta.data());
  const float a = std::sqrt(1.5f);
  // dx = gamma*invstd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat)) = 2a/3 * (0.5, -1, 0.5)
  check_close(dx, {a / 3, -2 * a / 3, a / 3});
  CHECK(dgamma[0] == doctest::Approx(-a));
  CHECK(dbeta[0] == doctest::Approx(1));
  // Skipped outputs are allowed.
  batchnorm_backward_train(s, x.data(), gamma.data(), mean.data(), invstd.data(), dy.data(),
                           nullptr, nullptr, dbeta.data());
  CHECK(dbeta[0] == doctest::Approx(1));
}

TEST_CASE("cpu batchnorm infer, its backward and folding into a linear layer") {
  const BatchNormShape s{2, 2, 1};  // BatchNorm1d on [2, 2]
  const std::vector<float> x = {1, 2, 3, 4}, gamma = {2, 0.5f}, beta = {1, -1};
  const std::vector<float> rm = {1, 2}, rv = {4, 0.25f};
  std::vector<float> y(4);
  batchnorm_forward_infer(s, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 0.f,
                          y.data());
  // channel 0: (x-1)/2*2+1; channel 1: (x-2)/0.5*0.5-1
  check_close(y, {1, -1, 3, 1});

  const std::vector<float> dy = {1, 2, 3, 4};
  std::vector<float> dx(4), dgamma(2), dbeta(2);
  batchnorm_backward_infer(s, x.data(), gamma.data(), rm.data(), rv.data(), 0.f, dy.data(),
                           dx.data(), dgamma.data(), dbeta.data());
  check_close(dx, {1, 2, 3, 4});  // gamma/sqrt(var) is 1 for both channels
  check_close(dgamma, {(1 * 0 + 3 * 2) / 2.f, (2 * 0 + 4 * 2) / 0.5f});
  check_close(dbeta, {4, 6});

  // Folding: BN(W v + b) == W' v + b' for a [2 x 3] linear layer.
  std::vector<float> w = {1, 2, 3, -1, 0, 1}, b = {0.5f, -0.5f};
  const std::vector<float> v = {0.3f, -0.7f, 1.1f};
  std::vector<float> lin(2), bn(2);
  for (int k = 0; k < 2; ++k) lin[k] = b[k] + w[3 * k] * v[0] + w[3 * k + 1] * v[1] + w[3 * k + 2] * v[2];
  batchnorm_forward_infer({1, 2, 1}, lin.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                          1e-5f, bn.data());
  batchnorm_fold(2, 3, w.data(), b.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f);
  for (int k = 0; k < 2; ++k) {
    const float folded = b[k] + w[3 * k] * v[0] + w[3 * k + 1] * v[1] + w[3 * k + 2] * v[2];
    CHECK(folded == doctest::Approx(bn[k]).epsilon(1e-5));
  }
  CHECK_THROWS_AS(batchnorm_fold(2, 3, w.data(), nullptr, gamma.data(), beta.data(), rm.data(),
                                 rv.data(), 1e-5f),
                  Error);
}

#ifdef _OPENMP
TEST_CASE("cpu batchnorm is bitwise identical with 1 and 2 threads") {
  const BatchNormShape s{4, 8, 4096};
  const size_t n = size_t(s.N) * s.C * s.HW;
  const auto x = random_floats(n, 1), dy = random_floats(n, 2), gamma = random_floats(8, 3);
  const std::vector<float> beta(8, 0.1f);
  auto run = [&](int threads, std::vector<float>& y, std::vector<float>& dx) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    std::vector<float> mean(8), invstd(8), dg(8), db(8);
    batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), nullptr, nullptr, 0.1f,
                            1e-5f, y.data(), mean.data(), invstd.data());
    batchnorm_backward_train(s, x.data(), gamma.data(), mean.data(), invstd.data(), dy.data(),
                             dx.data(), dg.data(), db.data());
    omp_set_num_threads(before);
  };
  std::vector<float> y1(n), dx1(n), y2(n), dx2(n);
  run(1, y1, dx1);
  run(2, y2, dx2);
  CHECK(y1 == y2);
  CHECK(dx1 == dx2);
}
#endif

TEST_CASE("cpu relu and relu6 forward/backward, including the clip points") {
  const std::vector<float> x = {-1, 0, 0.5f, 6, 7}, dy = {1, 2, 3, 4, 5};
  std::vector<float> y(5), dx(5);
  relu_forward(5, x.data(), y.data());
  CHECK(y == std::vector<float>{0, 0, 0.5f, 6, 7});
  relu_backward(5, x.data(), dy.data(), dx.data());
  CHECK(dx == std::vector<float>{0, 0, 3, 4, 5});
  relu6_forward(5, x.data(), y.data());
  CHECK(y == std::vector<float>{0, 0, 0.5f, 6, 6});
  relu6_backward(5, x.data(), dy.data(), dx.data());
  CHECK(dx == std::vector<float>{0, 0, 3, 0, 0});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  relu_forward(1, &nan, y.data());
  CHECK(std::isnan(y[0]));
}

TEST_CASE("cpu element-wise add, accumulate, scale and grad_reverse") {
  const std::vector<float> a = {1, 2, 3}, b = {10, 20, 30};
  std::vector<float> y(3);
  add_forward(3, a.data(), b.data(), y.data());
  CHECK(y == std::vector<float>{11, 22, 33});
  accumulate(3, a.data(), y.data());
  CHECK(y == std::vector<float>{12, 24, 36});
  scale(3, -0.5f, a.data(), y.data());
  CHECK(y == std::vector<float>{-0.5f, -1, -1.5f});
  grad_reverse_forward(3, a.data(), y.data());
  CHECK(y == a);
  grad_reverse_backward(3, 0.5f, a.data(), y.data());
  CHECK(y == std::vector<float>{-0.5f, -1, -1.5f});
}

TEST_CASE("cpu maxpool2x2: first maximum wins ties, odd edges dropped, NaN propagates") {
  // One 3x5 plane -> 1x2 output; the last row and column are outside every window.
  const std::vector<float> x = {3, 3, 1, 5, 9,   //
                                3, 2, 5, 0, 9,   //
                                9, 9, 9, 9, 9};
  std::vector<float> y(2);
  maxpool2x2_forward(1, 1, 3, 5, x.data(), y.data());
  CHECK(y == std::vector<float>{3, 5});
  const std::vector<float> dy = {7, 8};
  std::vector<float> dx(15, -1.f);
  maxpool2x2_backward(1, 1, 3, 5, x.data(), dy.data(), dx.data());
  // Window 0: tie of 3s at (0,0), (0,1), (1,0) -> (0,0). Window 1: tie of 5s -> (0,3).
  CHECK(dx == std::vector<float>{7, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> xn = {1, nan, 5, 2};
  float yn = 0, dyn = 1;
  std::vector<float> dxn(4);
  maxpool2x2_forward(1, 1, 2, 2, xn.data(), &yn);
  CHECK(std::isnan(yn));
  maxpool2x2_backward(1, 1, 2, 2, xn.data(), &dyn, dxn.data());
  CHECK(dxn == std::vector<float>{0, 1, 0, 0});
}

TEST_CASE("cpu maxpool2x2: wide rows (the 8-window vector paths) follow the same rule bit for bit, forward and backward") {
  // Values on a coarse grid (many ties), signed zeros (equal, but different
  // bits: the first must win), NaNs with distinct payloads (the last wins).
  const int N = 2, C = 8, H = 33, W = 37;  // 18 windows a row: two vector steps + 2 scalar
  std::vector<float> x(size_t(N) * C * H * W);
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (float& v : x) {
    const uint32_t r = next() >> 8;
    if (r % 29 == 0) {
      uint32_t bits = 0x7fc00000u | (next() & 0x3fffffu);  // quiet NaN, some payload
      std::memcpy(&v, &bits, 4);
    } else if (r % 4 == 0) {
      v = (r & 8) ? -0.0f : 0.0f;
    } else {
      v = float(int(r % 5) - 2);
    }
  }
  const int OH = H / 2, OW = W / 2;
  std::vector<float> y(size_t(N) * C * OH * OW), want(y.size());
  for (int pl = 0; pl < N * C; ++pl)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        const float* tl = x.data() + (size_t(pl) * H + 2 * oh) * W + 2 * ow;
        float best = tl[0];
        for (float v : {tl[1], tl[W], tl[W + 1]})
          if (v > best || std::isnan(v)) best = v;
        want[(size_t(pl) * OH + oh) * OW + ow] = best;
      }
  maxpool2x2_forward(N, C, H, W, x.data(), y.data());
  CHECK(std::memcmp(y.data(), want.data(), y.size() * 4) == 0);
  // Backward: dy into each window's winner, 0 everywhere else (the dropped
  // last row and column too), over a dx full of garbage.
  std::vector<float> dy(y.size()), dx(x.size(), 7.f), want_dx(x.size(), 0.f);
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = float(i % 97) - 40.f;
  for (int pl = 0; pl < N * C; ++pl)
    for (int oh = 0; oh < OH; ++oh)
      for (int ow = 0; ow < OW; ++ow) {
        const size_t tl = (size_t(pl) * H + 2 * oh) * W + 2 * ow;
        size_t win = tl;
        for (size_t o : {tl + 1, tl + W, tl + W + 1})
          if (x[o] > x[win] || std::isnan(x[o])) win = o;
        want_dx[win] = dy[(size_t(pl) * OH + oh) * OW + ow];
      }
  maxpool2x2_backward(N, C, H, W, x.data(), dy.data(), dx.data());
  CHECK(std::memcmp(dx.data(), want_dx.data(), dx.size() * 4) == 0);
  int zeros_neg = 0, nans = 0;
  for (float v : want) {
    zeros_neg += v == 0.0f && std::signbit(v);
    nans += std::isnan(v);
  }
  CHECK(zeros_neg > 0);  // the case exercises what it claims to
  CHECK(nans > 0);
}

TEST_CASE("cpu upsample nearest x2 forward and backward") {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};  // [1, 2, 1, 3]: two channels of 1x3
  std::vector<float> y(24);
  upsample_nearest2x_forward(1, 2, 1, 3, x.data(), y.data());
  CHECK(y == std::vector<float>{1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3,  //
                                4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6});
  std::vector<float> dy(24), dx(6);
  for (int i = 0; i < 24; ++i) dy[size_t(i)] = float(i);
  upsample_nearest2x_backward(1, 2, 1, 3, dy.data(), dx.data());
  CHECK(dx == std::vector<float>{0 + 1 + 6 + 7, 2 + 3 + 8 + 9, 4 + 5 + 10 + 11,  //
                                 12 + 13 + 18 + 19, 14 + 15 + 20 + 21, 16 + 17 + 22 + 23});
}

TEST_CASE("cpu bilinear: 2x2 -> 3x3 and 4x4 in every ResizeMode, by hand") {
  // x(r, c) = 2r + c is linear, so each output is 2*sy + sx where (sy, sx) is
  // the source coordinate after clamping to the last pixel (computed by hand).
  const std::vector<float> x = {0, 1, 2, 3};
  struct Case {
    ResizeMode mode;
    int out;
    std::vector<float> src;
  };
  const std::vector<Case> cases = {
      {ResizeMode::AlignCorners, 3, {0, 0.5f, 1}},
      {ResizeMode::AlignCorners, 4, {0, 1.f / 3, 2.f / 3, 1}},
      {ResizeMode::HalfPixel, 3, {0, 0.5f, 1}},             // -1/6 -> 0, 7/6 -> 1
      {ResizeMode::HalfPixel, 4, {0, 0.25f, 0.75f, 1}},     // -0.25 -> 0, 1.25 -> 1
      {ResizeMode::Asymmetric, 3, {0, 2.f / 3, 1}},         // 4/3 -> 1
      {ResizeMode::Asymmetric, 4, {0, 0.5f, 1, 1}},         // 1.5 -> 1
  };
  for (const Case& c : cases) {
    INFO("mode ", int(c.mode), " out ", c.out);
    std::vector<float> y(size_t(c.out * c.out)), want;
    bilinear_forward(1, 1, 2, 2, c.out, c.out, c.mode, x.data(), y.data());
    for (float sy : c.src)
      for (float sx : c.src) want.push_back(2 * sy + sx);
    check_close(y, want);
  }
  // Backward of Asymmetric 2 -> 4 with dy = 1: per-axis weight sums (1.5, 2.5).
  const std::vector<float> ones(16, 1.f);
  std::vector<float> dx(4);
  bilinear_backward(1, 1, 2, 2, 4, 4, ResizeMode::Asymmetric, ones.data(), dx.data());
  check_close(dx, {2.25f, 3.75f, 3.75f, 6.25f});
  // A single output pixel with align_corners samples the top-left input.
  float one = 0;
  bilinear_forward(1, 1, 2, 2, 1, 1, ResizeMode::AlignCorners, x.data(), &one);
  CHECK(one == 0.f);
  CHECK_THROWS_AS(bilinear_forward(1, 1, 2, 2, 0, 3, ResizeMode::HalfPixel, x.data(), dx.data()),
                  Error);
}

TEST_CASE("cpu bilinear backward is the adjoint of forward") {
  for (ResizeMode mode : {ResizeMode::AlignCorners, ResizeMode::HalfPixel, ResizeMode::Asymmetric}) {
    const int N = 2, C = 3, H = 5, W = 7, OH = 9, OW = 4;
    const auto x = random_floats(size_t(N * C * H * W), 4);
    const auto dy = random_floats(size_t(N * C * OH * OW), 5);
    std::vector<float> y(dy.size()), dx(x.size());
    bilinear_forward(N, C, H, W, OH, OW, mode, x.data(), y.data());
    bilinear_backward(N, C, H, W, OH, OW, mode, dy.data(), dx.data());
    CHECK(dot(y, dy) == doctest::Approx(dot(x, dx)).epsilon(1e-5));
  }
}

TEST_CASE("cpu dropout: reproducible counter-based mask") {
  const size_t n = 100000;
  const float p = 0.3f;
  const std::vector<float> x(n, 2.f);
  std::vector<float> y1(n), y2(n), y3(n);
  std::vector<uint8_t> m1(n), m2(n), m3(n);
  dropout_forward(n, p, 42, x.data(), y1.data(), m1.data());
  dropout_forward(n, p, 42, x.data(), y2.data(), m2.data());
  dropout_forward(n, p, 43, x.data(), y3.data(), m3.data());
  CHECK(m1 == m2);
  CHECK(y1 == y2);
  CHECK(m1 != m3);
  int64_t kept = 0;
  bool consistent = true;
  for (size_t i = 0; i < n; ++i) {
    kept += m1[i];
    consistent &= (m1[i] == 1) == (dropout_uniform(42, i) >= p);
    consistent &= y1[i] == (m1[i] ? 2.f * (1.f / (1.f - p)) : 0.f);
  }
  CHECK(consistent);
  CHECK(double(kept) / double(n) == doctest::Approx(1.0 - p).epsilon(0.01));

  std::vector<float> dx(n);
  dropout_backward(n, p, m1.data(), x.data(), dx.data());
  CHECK(dx == y1);  // same scaling of the same mask

  // p = 0 is the identity with an all-ones mask.
  dropout_forward(n, 0.f, 7, x.data(), y3.data(), m3.data());
  CHECK(y3 == x);
  CHECK(m3 == std::vector<uint8_t>(n, 1));

  for (int64_t i = 0; i < 1000; ++i) {
    const float u = dropout_uniform(1, uint64_t(i));
    REQUIRE((u >= 0.f && u < 1.f));
  }
  CHECK_THROWS_AS(dropout_forward(n, 1.f, 1, x.data(), y1.data(), m1.data()), Error);
  CHECK_THROWS_AS(dropout_forward(n, -0.1f, 1, x.data(), y1.data(), m1.data()), Error);
}

TEST_CASE("cpu soft-argmax: sharp peak, flat map and a finite-difference gradient") {
  const int H = 5, W = 6;
  std::vector<float> heat(size_t(2 * H * W), 0.f), prob(heat.size()), coords(4);
  heat[size_t(2 * W + 3)] = 10.f;  // row 0: peak at (x=3, y=2); row 1 stays flat
  softargmax_forward(2, H, W, 100.f, heat.data(), prob.data(), coords.data());
  CHECK(coords[0] == doctest::Approx(3.0));
  CHECK(coords[1] == doctest::Approx(2.0));
  CHECK(coords[2] == doctest::Approx(2.5));  // (W-1)/2
  CHECK(coords[3] == doctest::Approx(2.0));  // (H-1)/2

  // Gradient of L = gx*x + gy*y on a smooth random map, checked by central differences.
  const float beta = 1.5f;
  auto h = random_floats(size_t(H * W), 6);
  std::vector<float> p(h.size()), c(2), dh(h.size());
  const std::vector<float> g = {0.7f, -1.3f};
  softargmax_forward(1, H, W, beta, h.data(), p.data(), c.data());
  softargmax_backward(1, H, W, beta, p.data(), g.data(), dh.data());
  for (size_t i : {size_t(0), size_t(7), size_t(29)}) {
    const float saved = h[i], step = 1e-2f;
    h[i] = saved + step;
    softargmax_forward(1, H, W, beta, h.data(), p.data(), c.data());
    const double up = g[0] * c[0] + g[1] * c[1];
    h[i] = saved - step;
    softargmax_forward(1, H, W, beta, h.data(), p.data(), c.data());
    const double down = g[0] * c[0] + g[1] * c[1];
    h[i] = saved;
    CHECK(dh[i] == doctest::Approx((up - down) / (2 * step)).epsilon(2e-3));
  }
}

TEST_CASE("cpu losses: heatmap MSE, cross-entropy with ignore label, L1") {
  // MSE: NJ=2, HW=2, joint weights (1, 0.5).
  const std::vector<float> pred = {1, 2, 3, 4}, target = {0, 2, 1, 4}, jw = {1, 0.5f};
  CHECK(heatmap_mse_forward(2, 2, pred.data(), target.data(), jw.data()) ==
        doctest::Approx((1 * 1 + 0.5 * 4) / 4.0));
  CHECK(heatmap_mse_forward(2, 2, pred.data(), target.data(), nullptr) ==
        doctest::Approx(5 / 4.0));
  std::vector<float> d(4);
  heatmap_mse_backward(2, 2, pred.data(), target.data(), jw.data(), 2.f, d.data());
  check_close(d, {2 * 2 * 1 * 1 / 4.f, 0, 2 * 2 * 0.5f * 2 / 4.f, 0});

  // Cross-entropy: N=1, T=2, C=2; output 1 is ignored.
  const std::vector<float> logits = {0, 0, 5, -5};
  const std::vector<int32_t> labels = {1, -1};
  CHECK(cross_entropy_forward(1, 2, 2, logits.data(), labels.data()) ==
        doctest::Approx(std::log(2.0)));
  std::vector<float> dl(4, 9.f);
  cross_entropy_backward(1, 2, 2, logits.data(), labels.data(), 1.f, dl.data());
  check_close(dl, {0.5f, -0.5f, 0, 0});
  const std::vector<int32_t> none = {-1, -1};
  CHECK(cross_entropy_forward(1, 2, 2, logits.data(), none.data()) == 0.f);
  cross_entropy_backward(1, 2, 2, logits.data(), none.data(), 1.f, dl.data());
  CHECK(dl == std::vector<float>(4, 0.f));
  const std::vector<int32_t> bad = {2, -1};
  CHECK_THROWS_AS(cross_entropy_forward(1, 2, 2, logits.data(), bad.data()), Error);

  // L1 with sign(0) = 0.
  const std::vector<float> lp = {1, 2, 3}, lt = {2, 2, 1};
  CHECK(l1_forward(3, lp.data(), lt.data()) == doctest::Approx(1.0));
  std::vector<float> dlp(3);
  l1_backward(3, lp.data(), lt.data(), 3.f, dlp.data());
  CHECK(dlp == std::vector<float>{-1, 0, 1});
}

TEST_CASE("cpu fill, copy_columns (overwrite and accumulate) and affine_columns") {
  std::vector<float> y(7);
  fill(7, 2.5f, y.data());
  for (float v : y) CHECK(v == 2.5f);

  // src [3,5], dst [3,6]: columns 1..3 of src into columns 2..4 of dst.
  const std::vector<float> src = random_floats(15, 1);
  std::vector<float> dst = random_floats(18, 2), want = dst;
  copy_columns(3, 3, src.data(), 5, 1, dst.data(), 6, 2, false);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) want[r * 6 + 2 + c] = src[r * 5 + 1 + c];
  CHECK(dst == want);
  copy_columns(3, 3, src.data(), 5, 1, dst.data(), 6, 2, true);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) want[r * 6 + 2 + c] += src[r * 5 + 1 + c];
  CHECK(dst == want);

  const std::vector<float> x = random_floats(8, 3), mul = {2.f, -1.f, 0.5f, 0.f};
  const std::vector<float> add = {1.f, 0.f, -3.f, 7.f};
  std::vector<float> out(8);
  affine_columns(2, 4, x.data(), mul.data(), add.data(), out.data());
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) CHECK(out[r * 4 + c] == x[r * 4 + c] * mul[c] + add[c]);
}

TEST_CASE("cpu standardize_columns: (x - mean) / std over the first columns, the rest copied bit for bit") {
  // [3,5] rows: columns 0..2 standardised, 3..4 (attribute columns) passed through.
  const std::vector<float> x = random_floats(15, 7, -500.f, 500.f);
  const std::vector<float> mean = {10.f, -3.5f, 250.f}, sd = {2.f, 0.3f, 117.f};
  std::vector<float> y(15, -1.f);
  standardize_columns(3, 5, 3, x.data(), mean.data(), sd.data(), y.data());
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) CHECK(y[r * 5 + c] == (x[r * 5 + c] - mean[c]) / sd[c]);
    for (int c = 3; c < 5; ++c) CHECK(y[r * 5 + c] == x[r * 5 + c]);
  }
  CHECK(y[0] == doctest::Approx((x[0] - 10.0) / 2.0));
  // In place, all columns.
  std::vector<float> z = x;
  standardize_columns(5, 3, 3, z.data(), mean.data(), sd.data(), z.data());
  for (int i = 0; i < 15; ++i) CHECK(z[i] == (x[i] - mean[i % 3]) / sd[i % 3]);
}

TEST_CASE("cpu upsample_add (the hourglass merge) equals upsample then add, bitwise") {
  const int N = 2, C = 3, H = 3, W = 5;
  const std::vector<float> low = random_floats(N * C * H * W, 4);
  const std::vector<float> a = random_floats(N * C * 4 * H * W, 5);
  std::vector<float> up(a.size()), want(a.size()), got(a.size());
  upsample_nearest2x_forward(N, C, H, W, low.data(), up.data());
  add_forward(int64_t(a.size()), a.data(), up.data(), want.data());
  upsample_add_forward(N, C, H, W, a.data(), low.data(), got.data());
  CHECK(got == want);
}
