// Winograd F(4x4, 3x3) (kernels/cpu/conv2d_winograd.cpp) against a float64
// direct convolution: every output of every shape (odd sizes, planes smaller
// than a tile, batches, a plane wider than many tiles) within a bound relative
// to the size of its sum, and never far above the implicit GEMM's own error;
// the same bits with 1 and 2 threads; where the fused inference uses it and
// where not; its error names the shape it refuses.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "dofpose/error.h"
#include "dofpose/nn/conv_layers.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/module.h"
#include "dofpose/ops.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose_test;

namespace {

// y (float64) and, per output, the sum of |w * x| (the scale of its rounding error).
void direct_f64(const Conv2dShape& s, const std::vector<float>& x, const std::vector<float>& w,
                const std::vector<float>& b, std::vector<double>& y, std::vector<double>& mag) {
  const int P = s.P(), Q = s.Q();
  y.assign(size_t(s.N) * s.K * P * Q, 0.0);
  mag.assign(y.size(), 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          double acc = b.empty() ? 0.0 : b[k], m = std::fabs(acc);
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < 3; ++r)
              for (int t = 0; t < 3; ++t) {
                const int h = p - 1 + r, v = q - 1 + t;
                if (h < 0 || h >= s.H || v < 0 || v >= s.W) continue;
                const double term = double(w[((size_t(k) * s.C + c) * 3 + r) * 3 + t]) *
                                    x[((size_t(n) * s.C + c) * s.H + h) * s.W + v];
                acc += term;
                m += std::fabs(term);
              }
          const size_t i = ((size_t(n) * s.K + k) * P + p) * Q + q;
          y[i] = acc;
          mag[i] = m;
        }
}

// Largest |got - want| / (mag + 1e-3), the error in units of the sum's size.
double worst_relative(const std::vector<float>& got, const std::vector<double>& want,
                      const std::vector<double>& mag) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (mag[i] + 1e-3));
  return worst;
}

Conv2dShape shape3x3(int N, int C, int H, int W, int K) {
  Conv2dShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = s.S = 3, s.stride = 1, s.pad = 1;
  return s;
}

// The input gradient (float64) by its definition, each dy term scattered
// through the taps that used x, and per element the sum of |w * dy|.
void backward_data_f64(const Conv2dShape& s, const std::vector<float>& w, const std::vector<float>& dy,
                       std::vector<double>& dx, std::vector<double>& mag) {
  const int P = s.P(), Q = s.Q();
  dx.assign(size_t(s.N) * s.C * s.H * s.W, 0.0);
  mag.assign(dx.size(), 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q) {
          const double g = dy[((size_t(n) * s.K + k) * P + p) * Q + q];
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < 3; ++r)
              for (int t = 0; t < 3; ++t) {
                const int h = p - 1 + r, v = q - 1 + t;
                if (h < 0 || h >= s.H || v < 0 || v >= s.W) continue;
                const double term = double(w[((size_t(k) * s.C + c) * 3 + r) * 3 + t]) * g;
                const size_t i = ((size_t(n) * s.C + c) * s.H + h) * s.W + v;
                dx[i] += term;
                mag[i] += std::fabs(term);
              }
        }
}

// The weight gradient (float64) by its definition, and per tap the sum of |dy * x|.
void backward_weights_f64(const Conv2dShape& s, const std::vector<float>& x, const std::vector<float>& dy,
                          std::vector<double>& dw, std::vector<double>& mag) {
  const int P = s.P(), Q = s.Q();
  dw.assign(size_t(s.K) * s.C * 9, 0.0);
  mag.assign(dw.size(), 0.0);
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int c = 0; c < s.C; ++c)
        for (int r = 0; r < 3; ++r)
          for (int t = 0; t < 3; ++t) {
            double acc = 0.0, m = 0.0;
            for (int p = 0; p < P; ++p)
              for (int q = 0; q < Q; ++q) {
                const int h = p - 1 + r, v = q - 1 + t;
                if (h < 0 || h >= s.H || v < 0 || v >= s.W) continue;
                const double term = double(dy[((size_t(n) * s.K + k) * P + p) * Q + q]) *
                                    x[((size_t(n) * s.C + c) * s.H + h) * s.W + v];
                acc += term;
                m += std::fabs(term);
              }
            const size_t i = ((size_t(k) * s.C + c) * 3 + r) * 3 + t;
            dw[i] += acc;
            mag[i] += m;
          }
}

float max_abs(const TensorView& a) {
  float m = 0.f;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.f32()[i]));
  return m;
}

float max_abs_diff(const TensorView& a, const TensorView& b) {
  float d = 0.f;
  for (int64_t i = 0; i < a.numel(); ++i) d = std::max(d, std::fabs(a.f32()[i] - b.f32()[i]));
  return d;
}


}  // namespace

TEST_CASE("conv2d_winograd_forward: every output within 4e-6 of its sum's size of a float64 convolution") {
  struct C5 {
    int N, C, H, W, K;
  };
  // Sizes not multiples of the 4x4 tile, planes smaller than one tile, a row of
  // more than 8 tiles (the vector path and its tail), batches, one channel.
  const C5 cases[] = {{1, 1, 1, 1, 1},  {2, 3, 5, 7, 4},   {1, 16, 4, 4, 8},  {3, 7, 9, 13, 5},
                      {1, 8, 37, 35, 6}, {2, 32, 16, 16, 32}, {1, 64, 32, 32, 64}, {1, 2, 1, 70, 3}};
  uint32_t seed = 900;
  for (const C5& c : cases)
    for (int with_bias = 0; with_bias < 2; ++with_bias) {
      const Conv2dShape s = shape3x3(c.N, c.C, c.H, c.W, c.K);
      CAPTURE(c.N);
      CAPTURE(c.C);
      CAPTURE(c.H);
      CAPTURE(c.W);
      CAPTURE(c.K);
      CAPTURE(with_bias);
      REQUIRE(cpu::conv2d_winograd_applies(s));
      const std::vector<float> x = random_floats(size_t(s.N) * s.C * s.H * s.W, ++seed);
      const std::vector<float> w = random_floats(size_t(s.K) * s.C * 9, ++seed, -0.5f, 0.5f);
      const std::vector<float> b = with_bias ? random_floats(size_t(s.K), ++seed) : std::vector<float>{};
      std::vector<double> want, mag;
      direct_f64(s, x, w, b, want, mag);
      std::vector<float> got(want.size(), std::nanf("")), gemm(want.size());  // NaN: unwritten
      cpu::conv2d_winograd_forward(s, x.data(), w.data(), with_bias ? b.data() : nullptr, got.data());
      cpu::conv2d_forward(s, x.data(), w.data(), with_bias ? b.data() : nullptr, gemm.data());
      const double wino_err = worst_relative(got, want, mag), gemm_err = worst_relative(gemm, want, mag);
      CAPTURE(wino_err);
      CAPTURE(gemm_err);
      // float32 epsilon is 1.2e-7; measured 0.2-2.3e-6 here (the GEMM: 0.02-0.24e-6).
      CHECK(wino_err < 4e-6);
      CHECK(wino_err < 40 * gemm_err + 1e-7);
    }
}

TEST_CASE("conv2d_winograd_forward: the same bits with 1 and 2 threads, and on a second call") {
  const Conv2dShape s = shape3x3(2, 24, 30, 41, 20);
  const std::vector<float> x = random_floats(size_t(s.N) * s.C * s.H * s.W, 31);
  const std::vector<float> w = random_floats(size_t(s.K) * s.C * 9, 32, -0.5f, 0.5f);
  const std::vector<float> b = random_floats(size_t(s.K), 33);
  const size_t n = size_t(s.N) * s.K * s.H * s.W;
  std::vector<float> one(n), two(n), again(n);
  with_threads(1, [&] { cpu::conv2d_winograd_forward(s, x.data(), w.data(), b.data(), one.data()); });
  with_threads(2, [&] { cpu::conv2d_winograd_forward(s, x.data(), w.data(), b.data(), two.data()); });
  cpu::conv2d_winograd_forward(s, x.data(), w.data(), b.data(), again.data());
  CHECK(std::memcmp(one.data(), two.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(two.data(), again.data(), n * sizeof(float)) == 0);
}

TEST_CASE("conv2d_winograd_backward_data: every input gradient within 4e-6 of its sum's size, threads alike") {
  struct C5 {
    int N, C, H, W, K;
  };
  // C != K both ways (the filters' channels are swapped), odd and tiny planes.
  const C5 cases[] = {{1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {3, 7, 9, 13, 5}, {1, 24, 16, 16, 8}, {2, 8, 21, 18, 32}};
  uint32_t seed = 950;
  for (const C5& c : cases) {
    const Conv2dShape s = shape3x3(c.N, c.C, c.H, c.W, c.K);
    CAPTURE(c.N);
    CAPTURE(c.C);
    CAPTURE(c.H);
    CAPTURE(c.W);
    CAPTURE(c.K);
    const std::vector<float> w = random_floats(size_t(s.K) * s.C * 9, ++seed, -0.5f, 0.5f);
    const std::vector<float> dy = random_floats(size_t(s.N) * s.K * s.P() * s.Q(), ++seed);
    std::vector<double> want, mag;
    backward_data_f64(s, w, dy, want, mag);
    std::vector<float> got(want.size(), std::nanf("")), two(want.size()), direct(want.size());
    with_threads(1, [&] { cpu::conv2d_winograd_backward_data(s, w.data(), dy.data(), got.data()); });
    with_threads(2, [&] { cpu::conv2d_winograd_backward_data(s, w.data(), dy.data(), two.data()); });
    cpu::conv2d_backward(s, nullptr, w.data(), dy.data(), direct.data(), nullptr, nullptr);
    const double wino_err = worst_relative(got, want, mag), gemm_err = worst_relative(direct, want, mag);
    CAPTURE(wino_err);
    CAPTURE(gemm_err);
    CHECK(wino_err < 4e-6);
    CHECK(wino_err < 40 * gemm_err + 1e-7);
    CHECK(std::memcmp(got.data(), two.data(), got.size() * sizeof(float)) == 0);
  }
  float v = 0.f;
  Conv2dShape strided = shape3x3(1, 2, 8, 8, 2);
  strided.stride = 2;
  const std::string e = error_of([&] { cpu::conv2d_winograd_backward_data(strided, &v, &v, &v); });
  CHECK(contains(e, "conv2d_winograd_backward_data"));
  CHECK(contains(e, "stride 2"));
}

TEST_CASE("conv2d_winograd_backward_weights: every weight gradient within 4e-6 of its sum's size, threads alike") {
  struct C5 {
    int N, C, H, W, K;
  };
  const C5 cases[] = {{1, 1, 1, 1, 1}, {2, 3, 5, 7, 4}, {3, 7, 9, 13, 5}, {1, 24, 16, 16, 8}, {2, 8, 21, 18, 32},
                      {4, 16, 32, 32, 16}, {3, 20, 19, 23, 13}, {1, 9, 10, 70, 7}};
  uint32_t seed = 970;
  for (const C5& c : cases) {
    const Conv2dShape s = shape3x3(c.N, c.C, c.H, c.W, c.K);
    CAPTURE(c.N);
    CAPTURE(c.C);
    CAPTURE(c.H);
    CAPTURE(c.W);
    CAPTURE(c.K);
    const std::vector<float> x = random_floats(size_t(s.N) * s.C * s.H * s.W, ++seed);
    const std::vector<float> dy = random_floats(size_t(s.N) * s.K * s.P() * s.Q(), ++seed);
    std::vector<double> want, mag;
    backward_weights_f64(s, x, dy, want, mag);
    std::vector<float> got(want.size(), std::nanf("")), two(want.size()), direct(want.size());
    with_threads(1, [&] { cpu::conv2d_winograd_backward_weights(s, x.data(), dy.data(), got.data()); });
    with_threads(2, [&] { cpu::conv2d_winograd_backward_weights(s, x.data(), dy.data(), two.data()); });
    cpu::conv2d_backward(s, x.data(), nullptr, dy.data(), nullptr, direct.data(), nullptr);
    const double wino_err = worst_relative(got, want, mag), gemm_err = worst_relative(direct, want, mag);
    CAPTURE(wino_err);
    CAPTURE(gemm_err);
    // Measured 0.5-0.7e-6 (the direct product: 0.03-0.15e-6).
    CHECK(wino_err < 4e-6);
    CHECK(wino_err < 40 * gemm_err + 1e-7);
    CHECK(std::memcmp(got.data(), two.data(), got.size() * sizeof(float)) == 0);
  }
  float v = 0.f;
  Conv2dShape strided = shape3x3(1, 2, 8, 8, 2);
  strided.stride = 2;
  const std::string e = error_of([&] { cpu::conv2d_winograd_backward_weights(strided, &v, &v, &v); });
  CHECK(contains(e, "conv2d_winograd_backward_weights"));
}

TEST_CASE("Conv2d::forward_fast: Winograd forward, input and weight gradients where worthwhile, direct bias gradient") {
  // 4 x 4 x 4 = 64 tiles: worthwhile; the same layer at batch 1 (16 tiles) is not.
  for (int N : {4, 1}) {
    CAPTURE(N);
    nn::Conv2d fast(24, 16, 3, 1, 1), plain(24, 16, 3, 1, 1);
    std::mt19937_64 rng(5);
    fast.reset_parameters(rng);
    copy(fast.weight, plain.weight);
    copy(fast.bias, plain.bias);
    Tensor x = random_tensor({N, 24, 16, 16}, 61), dy = random_tensor({N, 16, 16, 16}, 62);
    Arena a1, a2;
    const TensorView y1 = fast.forward_fast(a1, x), y2 = plain.forward(a2, x);
    const TensorView dx1 = fast.backward(a1, dy), dx2 = plain.backward(a2, dy);
    const bool worthwhile = N == 4;
    CHECK(same_bits(y1, y2) == !worthwhile);  // Winograd rounds otherwise
    CHECK(same_bits(dx1, dx2) == !worthwhile);
    CHECK(max_abs_diff(y1, y2) < 1e-5f);      // |y| up to ~5 here
    CHECK(max_abs_diff(dx1, dx2) < 1e-5f);
    CHECK(same_bits(fast.grad_weight, plain.grad_weight) == !worthwhile);
    MESSAGE("N ", N, ": |dw| up to ", max_abs(fast.grad_weight), ", Winograd - direct ",
            max_abs_diff(fast.grad_weight, plain.grad_weight));
    // Sums of 1024 products, |dw| up to ~38: measured 1.1e-4 (2.8e-6 of the largest).
    CHECK(max_abs_diff(fast.grad_weight, plain.grad_weight) < 1e-5f * max_abs(plain.grad_weight));
    CHECK(same_bits(fast.grad_bias, plain.grad_bias));  // the bias gradient stays direct
    // Direct: forward_fast is forward.
    ops::ScopedCpuConvAlgorithm direct(ops::CpuConvAlgorithm::Direct);
    Arena a3;
    const TensorView y3 = fast.forward_fast(a3, x), dx3 = fast.backward(a3, dy);
    CHECK(same_bits(y3, y2));
    CHECK(same_bits(dx3, dx2));
    CHECK(same_bits(fast.grad_weight, plain.grad_weight));
  }
}

TEST_CASE("conv2d_winograd: which shapes it takes, and its error names the refused shape") {
  Conv2dShape s = shape3x3(1, 8, 32, 32, 8);  // 64 tiles: worthwhile
  CHECK(cpu::conv2d_winograd_worthwhile(s));
  s.H = 28;  // 56 tiles
  CHECK(cpu::conv2d_winograd_applies(s));
  CHECK_FALSE(cpu::conv2d_winograd_worthwhile(s));
  s.N = 2;  // 112 tiles over the batch
  CHECK(cpu::conv2d_winograd_worthwhile(s));
  Conv2dShape strided = s;
  strided.stride = 2;
  Conv2dShape wide = s;
  wide.R = wide.S = 5, wide.pad = 2;
  Conv2dShape grouped = s;
  grouped.groups = 2;
  for (const Conv2dShape& bad : {strided, wide, grouped}) {
    CHECK_FALSE(cpu::conv2d_winograd_applies(bad));
    CHECK_FALSE(cpu::conv2d_winograd_worthwhile(bad));
  }
  float v = 0.f;
  const std::string e = error_of([&] { cpu::conv2d_winograd_forward(wide, &v, &v, nullptr, &v); });
  CHECK(contains(e, "conv2d_winograd_forward"));
  CHECK(contains(e, "5x5"));
}

TEST_CASE("fused inference: Winograd where worthwhile, within tolerance, and Direct gives conv2d_forward's bits") {
  CHECK(ops::cpu_conv_algorithm() == ops::CpuConvAlgorithm::Winograd);  // the default
  // 1x1, a 3x3 below the tile threshold, and two above it (one with all fusions).
  struct Layer {
    int N, C, H, K, R, pad;
    bool expect_winograd;
  };
  const Layer layers[] = {{1, 16, 32, 8, 1, 0, false}, {1, 16, 16, 8, 3, 1, false},
                          {1, 16, 32, 8, 3, 1, true},  {2, 12, 33, 10, 3, 1, true}};
  uint32_t seed = 70;
  for (const Layer& l : layers) {
    CAPTURE(l.H);
    CAPTURE(l.R);
    Tensor x = random_tensor({l.N, l.C, l.H, l.H}, ++seed);
    Tensor w = random_tensor({l.K, l.C, l.R, l.R}, ++seed, -0.3f, 0.3f);
    Tensor b = random_tensor({l.K}, ++seed);
    Tensor g = random_tensor({l.C}, ++seed, 0.5f, 1.5f), be = random_tensor({l.C}, ++seed);
    Tensor m = random_tensor({l.C}, ++seed), v = random_tensor({l.C}, ++seed, 0.5f, 2.f);
    const ops::ConvParams p{1, l.pad, 1};
    const Shape ys = ops::conv2d_output_shape(x, w, p);
    Tensor r = random_tensor(ys, ++seed);
    ops::ConvFusionRef f;
    f.in_bn = {g, be, m, v, 1e-5f};
    f.out_relu = true;
    f.residual = r;
    Tensor fast = Tensor::empty(ys), direct = Tensor::empty(ys);
    ops::conv2d_fused_forward(x, w, b, fast, p, f);
    {
      ops::ScopedCpuConvAlgorithm scoped(ops::CpuConvAlgorithm::Direct);
      CHECK(ops::cpu_conv_algorithm() == ops::CpuConvAlgorithm::Direct);
      ops::conv2d_fused_forward(x, w, b, direct, p, f);
    }
    CHECK(ops::cpu_conv_algorithm() == ops::CpuConvAlgorithm::Winograd);  // restored
    // Direct is the unfused ops' arithmetic (test_conv_fused.cpp checks that
    // bit for bit); Winograd differs in rounding only where it runs.
    CHECK(same_bits(fast, direct) == !l.expect_winograd);
    CHECK(max_abs_diff(fast, direct) < 2e-5f);
  }
}

TEST_CASE("hourglass: fused inference with Winograd stays within 1e-4 of the direct products") {
  const nn::HourglassConfig c = compact_hourglass_config();
  nn::HourglassNet net(c, 3);
  randomise_bn_buffers(net, 80);  // BatchNorms away from (0, 1)
  Tensor x = random_tensor({2, 3, 64, 64}, 8);
  Arena a1, a2;
  nn::ScopedNoGrad no_grad;
  const nn::HourglassOutputs fast = net.forward(a1, x, nn::Mode::Infer);
  nn::HourglassOutputs direct;
  {
    ops::ScopedCpuConvAlgorithm scoped(ops::CpuConvAlgorithm::Direct);
    direct = net.forward(a2, x, nn::Mode::Infer);
  }
  for (size_t s = 0; s < fast.heatmaps.size(); ++s) {
    CAPTURE(s);
    float scale = 0.f;
    for (int64_t i = 0; i < direct.heatmaps[s].numel(); ++i)
      scale = std::max(scale, std::fabs(direct.heatmaps[s].f32()[i]));
    CHECK_FALSE(same_bits(fast.heatmaps[s], direct.heatmaps[s]));  // it did run
    CHECK(max_abs_diff(fast.heatmaps[s], direct.heatmaps[s]) < 1e-4f * scale);
  }
  CHECK(max_abs_diff(fast.attributes, direct.attributes) < 1e-4f);
}
