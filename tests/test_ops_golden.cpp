// Every CPU kernel against PyTorch: forward outputs and all gradients of each
// case in tests/fixtures/*.safetensors (written by tests/make_fixtures.py).
// Gradient buffers are pre-filled with garbage so a kernel that accumulates
// instead of overwriting fails.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "tests/fixture_loader.h"

namespace {

using dofpose::test::FixtureCase;
using dofpose::test::load_fixture;

// Element-wise tolerance |got - ref| <= atol + rtol * |ref| (float32 kernels,
// PyTorch reference in float32 with a different summation order).
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-4;
// Long reductions (conv/linear weight gradients, batch statistics) sum hundreds
// of terms in a different order than PyTorch.
constexpr double kAtolReduce = 1e-4;
constexpr float kGarbage = 777.0f;

std::vector<float> garbage(size_t n) { return std::vector<float>(n, kGarbage); }

std::string label(const FixtureCase& c, const char* tensor) {
  return c.file.substr(c.file.find_last_of('/') + 1) + " case '" + c.name + "' " + tensor;
}

dofpose::ResizeMode resize_mode(const std::string& name) {
  if (name == "AlignCorners") return dofpose::ResizeMode::AlignCorners;
  if (name == "HalfPixel") return dofpose::ResizeMode::HalfPixel;
  if (name == "Asymmetric") return dofpose::ResizeMode::Asymmetric;
  dofpose::fail("fixture: unknown resize mode '", name, "'");
}

}  // namespace

TEST_CASE("golden: a missing fixture file is an error, not a skip") {
  CHECK_THROWS_AS(load_fixture("no_such_fixture.safetensors"), dofpose::Error);
}

TEST_CASE("golden: the comparison flags mismatches, NaN and size differences") {
  using dofpose::test::compare_close;
  const std::vector<float> ref = {1.0f, -2.0f, 1000.0f};
  CHECK(compare_close(ref, ref, 0.0, 0.0).ok);
  // 1000 * 1e-4 = 0.1 of relative slack on the last element, none elsewhere.
  CHECK(compare_close(std::vector<float>{1.0f, -2.0f, 1000.05f}, ref, 1e-6, 1e-4).ok);
  const auto off = compare_close(std::vector<float>{1.0f, -2.01f, 1000.0f}, ref, 1e-3, 1e-4);
  CHECK_FALSE(off.ok);
  CHECK(off.worst_index == 1);
  CHECK(off.failures == 1);
  const auto nan = compare_close(std::vector<float>{1.0f, NAN, 1000.0f}, ref, 1.0, 1.0);
  CHECK_FALSE(nan.ok);
  CHECK(nan.worst_index == 1);
  CHECK_FALSE(compare_close(std::vector<float>{1.0f}, ref, 1.0, 1.0).ok);
  // A fixture asked for a tensor it lacks names the case and tensor.
  const auto cases = load_fixture("add.safetensors");
  REQUIRE(!cases.empty());
  CHECK_THROWS_WITH_AS(cases[0].f32("no_such_tensor"), doctest::Contains("no_such_tensor"),
                       dofpose::Error);
}

TEST_CASE("golden: conv2d forward and backward match PyTorch") {
  const auto cases = load_fixture("conv2d.safetensors");
  REQUIRE(cases.size() >= 8);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    dofpose::Conv2dShape s;
    s.N = c.param_int("N"), s.C = c.param_int("C"), s.H = c.param_int("H"),
    s.W = c.param_int("W");
    s.K = c.param_int("K"), s.R = c.param_int("R"), s.S = c.param_int("S");
    s.stride = c.param_int("stride"), s.pad = c.param_int("pad"),
    s.groups = c.param_int("groups");
    REQUIRE(s.P() == c.param_int("P"));
    REQUIRE(s.Q() == c.param_int("Q"));
    const bool has_bias = c.param_bool("bias");
    const auto& x = c.f32("x");
    const auto& w = c.f32("weight");
    const float* bias = has_bias ? c.f32("bias").data() : nullptr;

    std::vector<float> y = garbage(c.f32("y").size());
    dofpose::cpu::conv2d_forward(s, x.data(), w.data(), bias, y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtol, kRtol);

    std::vector<float> dx = garbage(x.size()), dw = garbage(w.size()),
                       db = garbage(size_t(s.K));
    dofpose::cpu::conv2d_backward(s, x.data(), w.data(), c.f32("dy").data(), dx.data(),
                                  dw.data(), has_bias ? db.data() : nullptr);
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dweight"), dw, c.f32("dweight"), kAtolReduce, kRtol);
    if (has_bias) DOFPOSE_CHECK_CLOSE(label(c, "dbias"), db, c.f32("dbias"), kAtolReduce, kRtol);

    // Skipped gradients (nullptr) leave the others unchanged.
    std::vector<float> dw_only = garbage(w.size());
    dofpose::cpu::conv2d_backward(s, x.data(), w.data(), c.f32("dy").data(), nullptr,
                                  dw_only.data(), nullptr);
    DOFPOSE_CHECK_CLOSE(label(c, "dweight (dx, dbias skipped)"), dw_only, c.f32("dweight"),
                        kAtolReduce, kRtol);
  }
}

TEST_CASE("golden: linear forward and backward match PyTorch") {
  const auto cases = load_fixture("linear.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int N = c.param_int("N"), in = c.param_int("fin"), out = c.param_int("fout");
    const auto& x = c.f32("x");
    const auto& w = c.f32("weight");
    std::vector<float> y = garbage(size_t(N) * out);
    dofpose::cpu::linear_forward(N, in, out, x.data(), w.data(), c.f32("bias").data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtol, kRtol);

    std::vector<float> dx = garbage(x.size()), dw = garbage(w.size()), db = garbage(size_t(out));
    dofpose::cpu::linear_backward(N, in, out, x.data(), w.data(), c.f32("dy").data(), dx.data(),
                                  dw.data(), db.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dweight"), dw, c.f32("dweight"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dbias"), db, c.f32("dbias"), kAtolReduce, kRtol);
  }
}

TEST_CASE("golden: batchnorm train and eval match PyTorch") {
  const auto cases = load_fixture("batchnorm.safetensors");
  REQUIRE(cases.size() >= 6);
  int trained = 0, evaluated = 0;
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    dofpose::BatchNormShape s;
    s.N = c.param_int("N"), s.C = c.param_int("C"), s.HW = c.param_int("HW");
    const float momentum = float(c.param_double("momentum"));
    const float eps = float(c.param_double("eps"));
    const auto& x = c.f32("x");
    const auto& gamma = c.f32("gamma");
    const auto& beta = c.f32("beta");
    std::vector<float> y = garbage(x.size());
    std::vector<float> dx = garbage(x.size()), dgamma = garbage(gamma.size()),
                       dbeta = garbage(beta.size());
    if (c.param_bool("training")) {
      ++trained;
      std::vector<float> rm = c.f32("running_mean"), rv = c.f32("running_var");
      std::vector<float> save_mean = garbage(size_t(s.C)), save_invstd = garbage(size_t(s.C));
      dofpose::cpu::batchnorm_forward_train(s, x.data(), gamma.data(), beta.data(), rm.data(),
                                            rv.data(), momentum, eps, y.data(), save_mean.data(),
                                            save_invstd.data());
      DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtolReduce, kRtol);
      DOFPOSE_CHECK_CLOSE(label(c, "running_mean after one step"), rm,
                          c.f32("running_mean_after"), kAtol, kRtol);
      DOFPOSE_CHECK_CLOSE(label(c, "running_var after one step"), rv,
                          c.f32("running_var_after"), kAtol, kRtol);
      dofpose::cpu::batchnorm_backward_train(s, x.data(), gamma.data(), save_mean.data(),
                                             save_invstd.data(), c.f32("dy").data(), dx.data(),
                                             dgamma.data(), dbeta.data());
    } else {
      ++evaluated;
      const auto& rm = c.f32("running_mean");
      const auto& rv = c.f32("running_var");
      dofpose::cpu::batchnorm_forward_infer(s, x.data(), gamma.data(), beta.data(), rm.data(),
                                            rv.data(), eps, y.data());
      DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtol, kRtol);
      dofpose::cpu::batchnorm_backward_infer(s, x.data(), gamma.data(), rm.data(), rv.data(),
                                             eps, c.f32("dy").data(), dx.data(), dgamma.data(),
                                             dbeta.data());
    }
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dgamma"), dgamma, c.f32("dgamma"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dbeta"), dbeta, c.f32("dbeta"), kAtolReduce, kRtol);
  }
  CHECK(trained >= 2);
  CHECK(evaluated >= 2);
}

TEST_CASE("golden: relu and relu6 match PyTorch") {
  const auto cases = load_fixture("activation.safetensors");
  REQUIRE(cases.size() >= 4);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const std::string op = c.param_str("op");
    const auto& x = c.f32("x");
    const int64_t n = int64_t(x.size());
    std::vector<float> y = garbage(x.size()), dx = garbage(x.size());
    if (op == "relu") {
      dofpose::cpu::relu_forward(n, x.data(), y.data());
      dofpose::cpu::relu_backward(n, x.data(), c.f32("dy").data(), dx.data());
    } else {
      REQUIRE(op == "relu6");
      dofpose::cpu::relu6_forward(n, x.data(), y.data());
      dofpose::cpu::relu6_backward(n, x.data(), c.f32("dy").data(), dx.data());
    }
    // Exact: selection ops involve no arithmetic.
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), 0.0, 0.0);
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), 0.0, 0.0);
  }
}

TEST_CASE("golden: add and accumulate match PyTorch") {
  const auto cases = load_fixture("add.safetensors");
  REQUIRE(cases.size() >= 2);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const auto& a = c.f32("a");
    const auto& b = c.f32("b");
    const int64_t n = int64_t(a.size());
    std::vector<float> y = garbage(a.size());
    dofpose::cpu::add_forward(n, a.data(), b.data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), 0.0, 0.0);
    // add's backward passes dy to both inputs: accumulate into zeroed gradients.
    std::vector<float> da(a.size(), 0.0f), db(b.size(), 0.0f);
    dofpose::cpu::accumulate(n, c.f32("dy").data(), da.data());
    dofpose::cpu::accumulate(n, c.f32("dy").data(), db.data());
    DOFPOSE_CHECK_CLOSE(label(c, "da"), da, c.f32("da"), 0.0, 0.0);
    DOFPOSE_CHECK_CLOSE(label(c, "db"), db, c.f32("db"), 0.0, 0.0);
    // accumulate adds onto what is there: a += b gives a + b.
    std::vector<float> acc = a;
    dofpose::cpu::accumulate(n, b.data(), acc.data());
    DOFPOSE_CHECK_CLOSE(label(c, "a accumulated with b"), acc, c.f32("y"), 0.0, 0.0);
  }
}

TEST_CASE("golden: maxpool2x2 matches PyTorch (odd sizes floor)") {
  const auto cases = load_fixture("maxpool.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int N = c.param_int("N"), C = c.param_int("C"), H = c.param_int("H"),
              W = c.param_int("W");
    const auto& x = c.f32("x");
    std::vector<float> y = garbage(size_t(N) * C * (H / 2) * (W / 2));
    dofpose::cpu::maxpool2x2_forward(N, C, H, W, x.data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), 0.0, 0.0);
    std::vector<float> dx = garbage(x.size());
    dofpose::cpu::maxpool2x2_backward(N, C, H, W, x.data(), c.f32("dy").data(), dx.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), 0.0, 0.0);
  }
}

TEST_CASE("golden: upsample_nearest2x matches PyTorch") {
  const auto cases = load_fixture("upsample_nearest2x.safetensors");
  REQUIRE(cases.size() >= 2);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int N = c.param_int("N"), C = c.param_int("C"), H = c.param_int("H"),
              W = c.param_int("W");
    const auto& x = c.f32("x");
    std::vector<float> y = garbage(x.size() * 4);
    dofpose::cpu::upsample_nearest2x_forward(N, C, H, W, x.data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), 0.0, 0.0);
    std::vector<float> dx = garbage(x.size());
    dofpose::cpu::upsample_nearest2x_backward(N, C, H, W, c.f32("dy").data(), dx.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
  }
}

TEST_CASE("golden: bilinear resize (AlignCorners, HalfPixel, Asymmetric) matches reference") {
  const auto cases = load_fixture("bilinear.safetensors");
  int per_mode[3] = {0, 0, 0};
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const dofpose::ResizeMode mode = resize_mode(c.param_str("mode"));
    ++per_mode[int(mode)];
    const int N = c.param_int("N"), C = c.param_int("C"), H = c.param_int("H"),
              W = c.param_int("W"), OH = c.param_int("OH"), OW = c.param_int("OW");
    const auto& x = c.f32("x");
    std::vector<float> y = garbage(size_t(N) * C * OH * OW);
    dofpose::cpu::bilinear_forward(N, C, H, W, OH, OW, mode, x.data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtol, kRtol);
    std::vector<float> dx = garbage(x.size());
    dofpose::cpu::bilinear_backward(N, C, H, W, OH, OW, mode, c.f32("dy").data(), dx.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
  }
  for (int m = 0; m < 3; ++m) {
    CAPTURE(m);
    CHECK(per_mode[m] >= 4);
  }
}

TEST_CASE("golden: softargmax matches PyTorch") {
  const auto cases = load_fixture("softargmax.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int NJ = c.param_int("NJ"), H = c.param_int("H"), W = c.param_int("W");
    const float beta = float(c.param_double("beta"));
    const auto& heat = c.f32("heat");
    std::vector<float> prob = garbage(heat.size()), coords = garbage(size_t(NJ) * 2);
    dofpose::cpu::softargmax_forward(NJ, H, W, beta, heat.data(), prob.data(), coords.data());
    DOFPOSE_CHECK_CLOSE(label(c, "prob"), prob, c.f32("prob"), kAtol, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "coords"), coords, c.f32("coords"), kAtolReduce, kRtol);
    // Backward from the kernel's own probabilities, as a training step would.
    std::vector<float> dheat = garbage(heat.size());
    dofpose::cpu::softargmax_backward(NJ, H, W, beta, prob.data(), c.f32("dcoords").data(),
                                      dheat.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dheat"), dheat, c.f32("dheat"), kAtolReduce, kRtol);
  }
}

TEST_CASE("golden: grad_reverse matches PyTorch") {
  const auto cases = load_fixture("grad_reverse.safetensors");
  REQUIRE(cases.size() >= 2);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const auto& x = c.f32("x");
    const int64_t n = int64_t(x.size());
    std::vector<float> y = garbage(x.size()), dx = garbage(x.size());
    dofpose::cpu::grad_reverse_forward(n, x.data(), y.data());
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), 0.0, 0.0);
    dofpose::cpu::grad_reverse_backward(n, float(c.param_double("lambda")), c.f32("dy").data(),
                                        dx.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
  }
}

TEST_CASE("golden: dropout reproduces the documented mask and PyTorch's scaling") {
  const auto cases = load_fixture("dropout.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const auto& x = c.f32("x");
    const int64_t n = int64_t(x.size());
    const float p = float(c.param_double("p"));
    const uint64_t seed = uint64_t(c.param_double("seed"));
    std::vector<float> y = garbage(x.size()), dx = garbage(x.size()), mask_f(x.size());
    std::vector<uint8_t> mask(x.size(), 7);
    dofpose::cpu::dropout_forward(n, p, seed, x.data(), y.data(), mask.data());
    for (size_t i = 0; i < mask.size(); ++i) mask_f[i] = float(mask[i]);
    DOFPOSE_CHECK_CLOSE(label(c, "mask"), mask_f, c.f32("mask"), 0.0, 0.0);
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtol, kRtol);
    dofpose::cpu::dropout_backward(n, p, mask.data(), c.f32("dy").data(), dx.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtol, kRtol);
  }
}

TEST_CASE("golden: fused batchnorm -> relu -> dropout (training) matches PyTorch") {
  const auto cases = load_fixture("bn_relu_dropout.safetensors");
  REQUIRE(cases.size() >= 4);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    dofpose::BatchNormShape s;
    s.N = c.param_int("N"), s.C = c.param_int("C"), s.HW = c.param_int("HW");
    const float p = float(c.param_double("p"));
    const uint64_t seed = uint64_t(c.param_double("seed"));
    const auto& x = c.f32("x");
    const auto& gamma = c.f32("gamma");
    std::vector<float> rm = c.f32("running_mean"), rv = c.f32("running_var");
    std::vector<float> y = garbage(x.size()), save_mean = garbage(size_t(s.C)),
                       save_invstd = garbage(size_t(s.C)), mask_f(x.size());
    std::vector<uint8_t> mask(x.size(), 7);
    dofpose::cpu::batchnorm_relu_dropout_forward_train(
        s, x.data(), gamma.data(), c.f32("beta").data(), rm.data(), rv.data(),
        float(c.param_double("momentum")), float(c.param_double("eps")), p, seed, y.data(),
        save_mean.data(), save_invstd.data(), mask.data());
    for (size_t i = 0; i < mask.size(); ++i) mask_f[i] = float(mask[i]);
    DOFPOSE_CHECK_CLOSE(label(c, "mask"), mask_f, c.f32("mask"), 0.0, 0.0);
    DOFPOSE_CHECK_CLOSE(label(c, "y"), y, c.f32("y"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "running_mean after one step"), rm, c.f32("running_mean_after"),
                        kAtol, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "running_var after one step"), rv, c.f32("running_var_after"),
                        kAtol, kRtol);
    std::vector<float> dx = garbage(x.size()), dgamma = garbage(gamma.size()),
                       dbeta = garbage(gamma.size());
    dofpose::cpu::batchnorm_relu_dropout_backward_train(
        s, x.data(), gamma.data(), save_mean.data(), save_invstd.data(), mask.data(), p,
        c.f32("dy").data(), dx.data(), dgamma.data(), dbeta.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dx"), dx, c.f32("dx"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dgamma"), dgamma, c.f32("dgamma"), kAtolReduce, kRtol);
    DOFPOSE_CHECK_CLOSE(label(c, "dbeta"), dbeta, c.f32("dbeta"), kAtolReduce, kRtol);
  }
}

TEST_CASE("golden: heatmap MSE loss matches PyTorch") {
  const auto cases = load_fixture("heatmap_mse.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int NJ = c.param_int("NJ"), HW = c.param_int("HW");
    const float* jw = c.param_bool("weighted") ? c.f32("joint_weight").data() : nullptr;
    const auto& pred = c.f32("pred");
    const auto& target = c.f32("target");
    const float loss = dofpose::cpu::heatmap_mse_forward(NJ, HW, pred.data(), target.data(), jw);
    DOFPOSE_CHECK_CLOSE(label(c, "loss"), std::vector<float>{loss}, c.f32("loss"), kAtol, kRtol);
    std::vector<float> dpred = garbage(pred.size());
    dofpose::cpu::heatmap_mse_backward(NJ, HW, pred.data(), target.data(), jw,
                                       c.f32("dloss")[0], dpred.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dpred"), dpred, c.f32("dpred"), kAtol, kRtol);
  }
}

TEST_CASE("golden: multi-output cross-entropy matches PyTorch (ignore label -1)") {
  const auto cases = load_fixture("cross_entropy.safetensors");
  REQUIRE(cases.size() >= 3);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const int N = c.param_int("N"), T = c.param_int("T"), C = c.param_int("C");
    const auto& logits = c.f32("logits");
    const auto& labels = c.i32("labels");
    REQUIRE(labels.size() == size_t(N) * T);
    const float loss = dofpose::cpu::cross_entropy_forward(N, T, C, logits.data(), labels.data());
    DOFPOSE_CHECK_CLOSE(label(c, "loss"), std::vector<float>{loss}, c.f32("loss"), kAtol, kRtol);
    std::vector<float> dlogits = garbage(logits.size());
    dofpose::cpu::cross_entropy_backward(N, T, C, logits.data(), labels.data(),
                                         c.f32("dloss")[0], dlogits.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dlogits"), dlogits, c.f32("dlogits"), kAtol, kRtol);
  }
}

TEST_CASE("golden: L1 loss matches PyTorch") {
  const auto cases = load_fixture("l1.safetensors");
  REQUIRE(cases.size() >= 2);
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const auto& pred = c.f32("pred");
    const auto& target = c.f32("target");
    const int64_t n = int64_t(pred.size());
    const float loss = dofpose::cpu::l1_forward(n, pred.data(), target.data());
    DOFPOSE_CHECK_CLOSE(label(c, "loss"), std::vector<float>{loss}, c.f32("loss"), kAtol, kRtol);
    std::vector<float> dpred = garbage(pred.size());
    dofpose::cpu::l1_backward(n, pred.data(), target.data(), c.f32("dloss")[0], dpred.data());
    DOFPOSE_CHECK_CLOSE(label(c, "dpred"), dpred, c.f32("dpred"), kAtol, kRtol);
  }
}
