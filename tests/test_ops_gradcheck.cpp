// Finite-difference checks of every CPU kernel's backward (see tests/gradcheck.h),
// independent of PyTorch, plus dropout's properties (it has no PyTorch golden:
// its mask comes from our own counter-based hash).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "tests/gradcheck.h"

namespace {

using dofpose::test::dot;
using dofpose::test::GradCheckOptions;
using dofpose::test::random_normal;
using dofpose::test::random_uniform;
using dofpose::test::TestRng;

struct ConvCase {
  const char* name;
  dofpose::Conv2dShape s;
};

dofpose::Conv2dShape conv_shape(int N, int C, int H, int W, int K, int R, int S, int stride,
                                int pad, int groups) {
  dofpose::Conv2dShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = R, s.S = S;
  s.stride = stride, s.pad = pad, s.groups = groups;
  return s;
}

}  // namespace

TEST_CASE("gradcheck: conv2d (normal, strided padded, depthwise, grouped, 1x1)") {
  const ConvCase cases[] = {
      {"normal3x3", conv_shape(2, 3, 5, 6, 4, 3, 3, 1, 1, 1)},
      {"stride2_pad1", conv_shape(1, 3, 7, 8, 5, 3, 3, 2, 1, 1)},
      {"depthwise", conv_shape(2, 4, 5, 5, 4, 3, 3, 1, 1, 4)},
      {"groups2", conv_shape(1, 4, 6, 5, 6, 3, 3, 1, 0, 2)},
      {"pointwise", conv_shape(2, 5, 3, 4, 3, 1, 1, 1, 0, 1)},
  };
  for (const ConvCase& cc : cases) {
    CAPTURE(cc.name);
    const dofpose::Conv2dShape& s = cc.s;
    TestRng rng(17);
    std::vector<float> x = random_normal(size_t(s.N) * s.C * s.H * s.W, rng);
    std::vector<float> w = random_normal(size_t(s.K) * (s.C / s.groups) * s.R * s.S, rng, 0.5f);
    std::vector<float> b = random_normal(size_t(s.K), rng);
    const std::vector<float> v = random_normal(size_t(s.N) * s.K * s.P() * s.Q(), rng);
    std::vector<float> y(v.size());
    auto loss = [&] {
      dofpose::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data());
      return dot(v, y);
    };
    std::vector<float> dx(x.size()), dw(w.size()), db(b.size());
    dofpose::cpu::conv2d_backward(s, x.data(), w.data(), v.data(), dx.data(), dw.data(),
                                  db.data());
    const GradCheckOptions opt;
    DOFPOSE_GRADCHECK("conv2d dx", x, dx, loss, opt);
    DOFPOSE_GRADCHECK("conv2d dweight", w, dw, loss, opt);
    DOFPOSE_GRADCHECK("conv2d dbias", b, db, loss, opt);
  }
}

TEST_CASE("gradcheck: linear") {
  const int N = 3, in = 11, out = 6;
  TestRng rng(18);
  std::vector<float> x = random_normal(size_t(N) * in, rng);
  std::vector<float> w = random_normal(size_t(out) * in, rng, 0.4f);
  std::vector<float> b = random_normal(size_t(out), rng);
  const std::vector<float> v = random_normal(size_t(N) * out, rng);
  std::vector<float> y(v.size());
  auto loss = [&] {
    dofpose::cpu::linear_forward(N, in, out, x.data(), w.data(), b.data(), y.data());
    return dot(v, y);
  };
  std::vector<float> dx(x.size()), dw(w.size()), db(b.size());
  dofpose::cpu::linear_backward(N, in, out, x.data(), w.data(), v.data(), dx.data(), dw.data(),
                                db.data());
  const GradCheckOptions opt;
  DOFPOSE_GRADCHECK("linear dx", x, dx, loss, opt);
  DOFPOSE_GRADCHECK("linear dweight", w, dw, loss, opt);
  DOFPOSE_GRADCHECK("linear dbias", b, db, loss, opt);
}

TEST_CASE("gradcheck: batchnorm training (2d and 1d) and inference") {
  struct BnCase {
    const char* name;
    dofpose::BatchNormShape s;
  };
  const BnCase cases[] = {{"2d", {2, 3, 12}}, {"1d", {6, 4, 1}}, {"batch1_2d", {1, 2, 9}}};
  const float eps = 1e-5f;
  for (const BnCase& bc : cases) {
    CAPTURE(bc.name);
    const dofpose::BatchNormShape s = bc.s;
    TestRng rng(19);
    std::vector<float> x = random_normal(size_t(s.N) * s.C * s.HW, rng, 1.5f);
    std::vector<float> gamma = random_uniform(size_t(s.C), rng, 0.5f, 1.5f);
    std::vector<float> beta = random_normal(size_t(s.C), rng);
    const std::vector<float> rm = random_normal(size_t(s.C), rng, 0.3f);
    const std::vector<float> rv = random_uniform(size_t(s.C), rng, 0.5f, 2.0f);
    const std::vector<float> v = random_normal(x.size(), rng);
    std::vector<float> y(x.size()), mean(size_t(s.C)), invstd(size_t(s.C));
    std::vector<float> dx(x.size()), dgamma(gamma.size()), dbeta(beta.size());
    // Batch statistics make every output depend on every input of its channel:
    // a smaller step keeps the second-order terms of the difference small.
    GradCheckOptions opt;
    opt.step = 3e-3;
    {
      INFO("training mode");
      auto loss = [&] {
        dofpose::cpu::batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), nullptr,
                                              nullptr, 0.1f, eps, y.data(), mean.data(),
                                              invstd.data());
        return dot(v, y);
      };
      loss();  // fills mean / invstd for the backward
      dofpose::cpu::batchnorm_backward_train(s, x.data(), gamma.data(), mean.data(),
                                             invstd.data(), v.data(), dx.data(), dgamma.data(),
                                             dbeta.data());
      DOFPOSE_GRADCHECK("batchnorm train dx", x, dx, loss, opt);
      DOFPOSE_GRADCHECK("batchnorm train dgamma", gamma, dgamma, loss, opt);
      DOFPOSE_GRADCHECK("batchnorm train dbeta", beta, dbeta, loss, opt);
    }
    {
      INFO("inference mode");
      auto loss = [&] {
        dofpose::cpu::batchnorm_forward_infer(s, x.data(), gamma.data(), beta.data(), rm.data(),
                                              rv.data(), eps, y.data());
        return dot(v, y);
      };
      dofpose::cpu::batchnorm_backward_infer(s, x.data(), gamma.data(), rm.data(), rv.data(),
                                             eps, v.data(), dx.data(), dgamma.data(),
                                             dbeta.data());
      DOFPOSE_GRADCHECK("batchnorm infer dx", x, dx, loss, opt);
      DOFPOSE_GRADCHECK("batchnorm infer dgamma", gamma, dgamma, loss, opt);
      DOFPOSE_GRADCHECK("batchnorm infer dbeta", beta, dbeta, loss, opt);
    }
  }
}

TEST_CASE("gradcheck: fused batchnorm -> relu -> dropout (training)") {
  struct BnCase {
    const char* name;
    dofpose::BatchNormShape s;
    float p;
  };
  const BnCase cases[] = {{"mlp", {8, 5, 1}, 0.3f}, {"2d_no_dropout", {2, 3, 10}, 0.f}};
  for (const BnCase& bc : cases) {
    CAPTURE(bc.name);
    const dofpose::BatchNormShape s = bc.s;
    const size_t n = size_t(s.N) * s.C * s.HW;
    TestRng rng(23);
    std::vector<float> x = random_normal(n, rng, 1.5f);
    std::vector<float> gamma = random_uniform(size_t(s.C), rng, 0.5f, 1.5f);
    std::vector<float> beta = random_normal(size_t(s.C), rng, 0.3f);
    const std::vector<float> v = random_normal(n, rng);
    std::vector<float> y(n), z(n), mean(size_t(s.C)), invstd(size_t(s.C));
    std::vector<uint8_t> mask(n);
    // The ReLU has a kink at z = 0 and z depends on the whole channel: nudge
    // the inputs whose BatchNorm output is near 0 until none is (the
    // differences then never cross the kink).
    for (int round = 0; round < 20; ++round) {
      dofpose::cpu::batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), nullptr,
                                            nullptr, 0.1f, 1e-5f, z.data(), mean.data(),
                                            invstd.data());
      int moved = 0;
      for (size_t i = 0; i < n; ++i)
        if (std::fabs(z[i]) < 0.05f) {
          const size_t c = (i / size_t(s.HW)) % size_t(s.C);
          x[i] += (z[i] < 0.f ? -0.2f : 0.2f) / (invstd[c] * gamma[c]);
          ++moved;
        }
      if (moved == 0) break;
    }
    auto loss = [&] {
      dofpose::cpu::batchnorm_relu_dropout_forward_train(
          s, x.data(), gamma.data(), beta.data(), nullptr, nullptr, 0.1f, 1e-5f, bc.p, 77,
          y.data(), mean.data(), invstd.data(), mask.data());
      return dot(v, y);
    };
    loss();  // fills mean / invstd / mask for the backward
    int passed = 0;
    for (uint8_t m : mask) passed += m;
    CHECK(passed > 0);
    CHECK(size_t(passed) < n);
    std::vector<float> dx(n), dgamma(gamma.size()), dbeta(beta.size());
    dofpose::cpu::batchnorm_relu_dropout_backward_train(s, x.data(), gamma.data(), mean.data(),
                                                        invstd.data(), mask.data(), bc.p,
                                                        v.data(), dx.data(), dgamma.data(),
                                                        dbeta.data());
    GradCheckOptions opt;
    opt.step = 3e-3;
    DOFPOSE_GRADCHECK("bn_relu_dropout dx", x, dx, loss, opt);
    DOFPOSE_GRADCHECK("bn_relu_dropout dgamma", gamma, dgamma, loss, opt);
    DOFPOSE_GRADCHECK("bn_relu_dropout dbeta", beta, dbeta, loss, opt);
  }
}

TEST_CASE("gradcheck: relu and relu6 (inputs away from the kinks)") {
  TestRng rng(20);
  const GradCheckOptions opt;
  std::vector<float> x = random_uniform(300, rng, -2.0f, 8.0f);
  dofpose::test::keep_away_from(x, {0.0f, 6.0f}, 0.05f);
  const std::vector<float> v = random_normal(x.size(), rng);
  std::vector<float> y(x.size()), dx(x.size());
  const int64_t n = int64_t(x.size());
  auto relu_loss = [&] {
    dofpose::cpu::relu_forward(n, x.data(), y.data());
    return dot(v, y);
  };
  dofpose::cpu::relu_backward(n, x.data(), v.data(), dx.data());
  DOFPOSE_GRADCHECK("relu dx", x, dx, relu_loss, opt);
  auto relu6_loss = [&] {
    dofpose::cpu::relu6_forward(n, x.data(), y.data());
    return dot(v, y);
  };
  dofpose::cpu::relu6_backward(n, x.data(), v.data(), dx.data());
  DOFPOSE_GRADCHECK("relu6 dx", x, dx, relu6_loss, opt);
}

TEST_CASE("gradcheck: add") {
  TestRng rng(21);
  std::vector<float> a = random_normal(40, rng), b = random_normal(40, rng);
  const std::vector<float> v = random_normal(40, rng);
  std::vector<float> y(40);
  auto loss = [&] {
    dofpose::cpu::add_forward(40, a.data(), b.data(), y.data());
    return dot(v, y);
  };
  // add's backward hands dy to both inputs (accumulated into zeroed gradients).
  std::vector<float> da(40, 0.0f), db(40, 0.0f);
  dofpose::cpu::accumulate(40, v.data(), da.data());
  dofpose::cpu::accumulate(40, v.data(), db.data());
  DOFPOSE_GRADCHECK("add da", a, da, loss, GradCheckOptions{});
  DOFPOSE_GRADCHECK("add db", b, db, loss, GradCheckOptions{});
}

TEST_CASE("gradcheck: maxpool2x2 (odd sizes, no near-ties)") {
  const int N = 2, C = 2, H = 7, W = 5;
  const size_t n = size_t(N) * C * H * W;
  TestRng rng(22);
  // Distinct values 0.05 apart in random order: a step of 1e-2 never changes
  // which element of a window is the maximum.
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = 0.05f * float(i) - 3.0f;
  for (size_t i = n - 1; i > 0; --i) std::swap(x[i], x[size_t(rng.next() % (i + 1))]);
  const std::vector<float> v = random_normal(size_t(N) * C * (H / 2) * (W / 2), rng);
  std::vector<float> y(v.size()), dx(n);
  auto loss = [&] {
    dofpose::cpu::maxpool2x2_forward(N, C, H, W, x.data(), y.data());
    return dot(v, y);
  };
  dofpose::cpu::maxpool2x2_backward(N, C, H, W, x.data(), v.data(), dx.data());
  GradCheckOptions opt;
  opt.max_checks = n;
  DOFPOSE_GRADCHECK("maxpool2x2 dx", x, dx, loss, opt);
}

TEST_CASE("gradcheck: upsample_nearest2x") {
  const int N = 1, C = 2, H = 3, W = 5;
  TestRng rng(23);
  std::vector<float> x = random_normal(size_t(N) * C * H * W, rng);
  const std::vector<float> v = random_normal(x.size() * 4, rng);
  std::vector<float> y(v.size()), dx(x.size());
  auto loss = [&] {
    dofpose::cpu::upsample_nearest2x_forward(N, C, H, W, x.data(), y.data());
    return dot(v, y);
  };
  dofpose::cpu::upsample_nearest2x_backward(N, C, H, W, v.data(), dx.data());
  DOFPOSE_GRADCHECK("upsample_nearest2x dx", x, dx, loss, GradCheckOptions{});
}

TEST_CASE("gradcheck: bilinear resize, all three modes, up and down") {
  struct Size {
    int H, W, OH, OW;
  };
  const Size sizes[] = {{4, 5, 9, 7}, {9, 8, 4, 3}, {3, 7, 6, 2}};
  const std::pair<const char*, dofpose::ResizeMode> modes[] = {
      {"AlignCorners", dofpose::ResizeMode::AlignCorners},
      {"HalfPixel", dofpose::ResizeMode::HalfPixel},
      {"Asymmetric", dofpose::ResizeMode::Asymmetric}};
  const int N = 2, C = 2;
  for (const auto& [mode_name, mode] : modes) {
    for (const Size& sz : sizes) {
      CAPTURE(mode_name);
      CAPTURE(sz.H);
      CAPTURE(sz.W);
      CAPTURE(sz.OH);
      CAPTURE(sz.OW);
      TestRng rng(24);
      std::vector<float> x = random_normal(size_t(N) * C * sz.H * sz.W, rng);
      const std::vector<float> v = random_normal(size_t(N) * C * sz.OH * sz.OW, rng);
      std::vector<float> y(v.size()), dx(x.size());
      auto loss = [&] {
        dofpose::cpu::bilinear_forward(N, C, sz.H, sz.W, sz.OH, sz.OW, mode, x.data(), y.data());
        return dot(v, y);
      };
      dofpose::cpu::bilinear_backward(N, C, sz.H, sz.W, sz.OH, sz.OW, mode, v.data(), dx.data());
      GradCheckOptions opt;
      opt.max_checks = x.size();
      DOFPOSE_GRADCHECK("bilinear dx", x, dx, loss, opt);
    }
  }
}

TEST_CASE("gradcheck: dropout with a fixed mask") {
  const int64_t n = 500;
  const float p = 0.3f;
  const uint64_t seed = 99;
  TestRng rng(25);
  std::vector<float> x = random_normal(size_t(n), rng);
  const std::vector<float> v = random_normal(size_t(n), rng);
  std::vector<float> y(x.size()), dx(x.size());
  std::vector<uint8_t> mask(x.size());
  // The mask depends only on (seed, index): re-running the forward keeps it.
  auto loss = [&] {
    dofpose::cpu::dropout_forward(n, p, seed, x.data(), y.data(), mask.data());
    return dot(v, y);
  };
  loss();
  dofpose::cpu::dropout_backward(n, p, mask.data(), v.data(), dx.data());
  GradCheckOptions opt;
  opt.max_checks = 100;
  DOFPOSE_GRADCHECK("dropout dx", x, dx, loss, opt);
}

TEST_CASE("dropout: mask follows dropout_uniform, kept values scaled by 1/(1-p)") {
  const int64_t n = 20000;
  TestRng rng(26);
  const std::vector<float> x = random_normal(size_t(n), rng);
  std::vector<float> y(x.size());
  std::vector<uint8_t> mask(x.size()), mask2(x.size());
  for (float p : {0.0f, 0.1f, 0.5f}) {
    CAPTURE(p);
    const uint64_t seed = 1234;
    dofpose::cpu::dropout_forward(n, p, seed, x.data(), y.data(), mask.data());
    int64_t kept = 0, wrong_value = 0, wrong_mask = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool keep = dofpose::cpu::dropout_uniform(seed, uint64_t(i)) >= p;
      if (keep != (mask[size_t(i)] == 1)) ++wrong_mask;
      kept += mask[size_t(i)] ? 1 : 0;
      const float expected = mask[size_t(i)] ? x[size_t(i)] / (1.0f - p) : 0.0f;
      if (std::fabs(y[size_t(i)] - expected) > 1e-6f * (1.0f + std::fabs(expected)))
        ++wrong_value;
    }
    CHECK(wrong_mask == 0);
    CHECK(wrong_value == 0);
    // Binomial: 4 standard deviations of the kept fraction at n = 20000 is < 0.015.
    CHECK(std::fabs(double(kept) / double(n) - (1.0 - p)) < 0.015);
    // Same seed, same mask; another seed, another mask (unless nothing is dropped).
    dofpose::cpu::dropout_forward(n, p, seed, x.data(), y.data(), mask2.data());
    CHECK(mask == mask2);
    dofpose::cpu::dropout_forward(n, p, seed + 1, x.data(), y.data(), mask2.data());
    if (p > 0) CHECK(mask != mask2);
  }
  // The uniform lies in [0, 1).
  for (uint64_t i = 0; i < 1000; ++i) {
    const float u = dofpose::cpu::dropout_uniform(7, i);
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
  }
}

TEST_CASE("gradcheck: softargmax") {
  struct SaCase {
    int NJ, H, W;
    float beta, step;
  };
  const SaCase cases[] = {{3, 5, 6, 1.0f, 1e-2f}, {2, 4, 7, 10.0f, 3e-3f}};
  for (const SaCase& sc : cases) {
    CAPTURE(sc.beta);
    TestRng rng(27);
    std::vector<float> heat = random_uniform(size_t(sc.NJ) * sc.H * sc.W, rng, 0.0f, 1.0f);
    const std::vector<float> v = random_normal(size_t(sc.NJ) * 2, rng);
    std::vector<float> prob(heat.size()), coords(size_t(sc.NJ) * 2), dheat(heat.size());
    auto loss = [&] {
      dofpose::cpu::softargmax_forward(sc.NJ, sc.H, sc.W, sc.beta, heat.data(), prob.data(),
                                       coords.data());
      return dot(v, coords);
    };
    loss();
    dofpose::cpu::softargmax_backward(sc.NJ, sc.H, sc.W, sc.beta, prob.data(), v.data(),
                                      dheat.data());
    GradCheckOptions opt;
    opt.step = sc.step;
    opt.max_checks = heat.size();
    DOFPOSE_GRADCHECK("softargmax dheat", heat, dheat, loss, opt);
  }
}

TEST_CASE("gradcheck: grad_reverse is -lambda times the forward's true gradient") {
  TestRng rng(28);
  std::vector<float> x = random_normal(30, rng);
  const std::vector<float> v = random_normal(30, rng);
  std::vector<float> y(30), dx(30);
  for (float lambda : {1.0f, 0.25f}) {
    CAPTURE(lambda);
    // The backward is deliberately not the forward's gradient: compare it with
    // the finite difference of -lambda * L.
    auto reversed_loss = [&] {
      dofpose::cpu::grad_reverse_forward(30, x.data(), y.data());
      return -double(lambda) * dot(v, y);
    };
    dofpose::cpu::grad_reverse_backward(30, lambda, v.data(), dx.data());
    DOFPOSE_GRADCHECK("grad_reverse dx", x, dx, reversed_loss, GradCheckOptions{});
  }
}

TEST_CASE("gradcheck: heatmap MSE with and without joint weights") {
  const int NJ = 4, HW = 15;
  const float dloss = 0.7f;
  TestRng rng(29);
  std::vector<float> pred = random_uniform(size_t(NJ) * HW, rng, 0.0f, 1.0f);
  const std::vector<float> target = random_uniform(pred.size(), rng, 0.0f, 1.0f);
  const std::vector<float> weights = {1.0f, 0.0f, 2.0f, 0.5f};
  for (const float* jw : {static_cast<const float*>(nullptr), weights.data()}) {
    CAPTURE(jw != nullptr);
    auto loss = [&] {
      return double(dloss) *
             double(dofpose::cpu::heatmap_mse_forward(NJ, HW, pred.data(), target.data(), jw));
    };
    std::vector<float> dpred(pred.size());
    dofpose::cpu::heatmap_mse_backward(NJ, HW, pred.data(), target.data(), jw, dloss,
                                       dpred.data());
    GradCheckOptions opt;
    opt.atol = 1e-4;  // the per-element gradients are small (1/(NJ*HW) scale)
    opt.max_checks = pred.size();
    DOFPOSE_GRADCHECK("heatmap_mse dpred", pred, dpred, loss, opt);
  }
}

TEST_CASE("gradcheck: multi-output cross-entropy with ignored labels") {
  const int N = 3, T = 2, C = 5;
  const float dloss = 1.3f;
  TestRng rng(30);
  std::vector<float> logits = random_normal(size_t(N) * T * C, rng, 2.0f);
  const std::vector<int32_t> labels = {0, 4, -1, 2, 3, -1};
  auto loss = [&] {
    return double(dloss) *
           double(dofpose::cpu::cross_entropy_forward(N, T, C, logits.data(), labels.data()));
  };
  std::vector<float> dlogits(logits.size());
  dofpose::cpu::cross_entropy_backward(N, T, C, logits.data(), labels.data(), dloss,
                                       dlogits.data());
  GradCheckOptions opt;
  opt.step = 3e-3;
  opt.atol = 1e-4;
  opt.max_checks = logits.size();
  DOFPOSE_GRADCHECK("cross_entropy dlogits", logits, dlogits, loss, opt);
  // Ignored outputs get exactly zero gradient.
  for (int j : {2, 5})
    for (int c = 0; c < C; ++c) CHECK(dlogits[size_t(j) * C + size_t(c)] == 0.0f);
}

TEST_CASE("gradcheck: L1 loss (differences away from zero)") {
  const int64_t n = 40;
  const float dloss = 0.9f;
  TestRng rng(31);
  const std::vector<float> target = random_normal(size_t(n), rng);
  std::vector<float> diff = random_normal(size_t(n), rng);
  dofpose::test::keep_away_from(diff, {0.0f}, 0.05f);
  std::vector<float> pred(target.size());
  for (size_t i = 0; i < pred.size(); ++i) pred[i] = target[i] + diff[i];
  auto loss = [&] {
    return double(dloss) * double(dofpose::cpu::l1_forward(n, pred.data(), target.data()));
  };
  std::vector<float> dpred(pred.size());
  dofpose::cpu::l1_backward(n, pred.data(), target.data(), dloss, dpred.data());
  GradCheckOptions opt;
  opt.atol = 1e-4;
  opt.max_checks = pred.size();
  DOFPOSE_GRADCHECK("l1 dpred", pred, dpred, loss, opt);
}

TEST_CASE("gradcheck: the machinery flags a wrong gradient") {
  // y = x^2 has gradient 2x; handing it x must fail, 2x must pass.
  TestRng rng(32);
  std::vector<float> x = random_uniform(20, rng, 0.5f, 2.0f);
  auto loss = [&] {
    double s = 0;
    for (float xi : x) s += double(xi * xi);
    return s;
  };
  std::vector<float> right(x.size()), wrong(x.size());
  for (size_t i = 0; i < x.size(); ++i) right[i] = 2 * x[i], wrong[i] = x[i];
  CHECK(dofpose::test::gradcheck(x, right, loss).ok);
  const auto bad = dofpose::test::gradcheck(x, wrong, loss);
  CHECK_FALSE(bad.ok);
  CHECK(bad.failures == x.size());
  // A gradient of the wrong size is a failure, not a crash.
  std::vector<float> short_grad(3);
  CHECK_FALSE(dofpose::test::gradcheck(x, short_grad, loss).ok);
  // The parameter is restored after the check.
  const std::vector<float> before = x;
  dofpose::test::gradcheck(x, right, loss);
  CHECK(x == before);
}
