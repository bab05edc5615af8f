// A model-free composite check: a pre-activation residual bottleneck assembled
// by hand from the CPU kernels, forward and every gradient compared with
// PyTorch (tests/fixtures/bottleneck.safetensors, see make_bottleneck in
// tests/make_fixtures.py):
//   main = conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))  (conv2 3x3 pad 1)
//   skip = conv_skip(x)   (1x1: the channel count changes)
//   y = main + skip       (x fans out, so dx accumulates both branches)
// All BatchNorms run in training mode. Errors compound through the chain, so
// the tolerance is looser than for the single ops.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "tests/fixture_loader.h"

namespace {

using dofpose::test::FixtureCase;

constexpr double kAtol = 2e-4;
constexpr double kRtol = 1e-3;

struct BnLayer {
  dofpose::BatchNormShape s;
  const std::vector<float>* gamma;
  const std::vector<float>* beta;
  std::vector<float> mean, invstd;      // saved by the forward
  std::vector<float> dgamma, dbeta;
};

struct ConvLayer {
  dofpose::Conv2dShape s;
  const std::vector<float>* weight;
  const std::vector<float>* bias;
  std::vector<float> dweight, dbias;
};

// BN(train) -> ReLU; keeps the BN output (the ReLU's input) for the backward.
void bn_relu_forward(BnLayer& bn, float momentum, float eps, const std::vector<float>& x,
                     std::vector<float>& pre, std::vector<float>& out) {
  pre.resize(x.size());
  out.resize(x.size());
  bn.mean.resize(size_t(bn.s.C));
  bn.invstd.resize(size_t(bn.s.C));
  dofpose::cpu::batchnorm_forward_train(bn.s, x.data(), bn.gamma->data(), bn.beta->data(),
                                        nullptr, nullptr, momentum, eps, pre.data(),
                                        bn.mean.data(), bn.invstd.data());
  dofpose::cpu::relu_forward(int64_t(x.size()), pre.data(), out.data());
}

void bn_relu_backward(BnLayer& bn, const std::vector<float>& x, const std::vector<float>& pre,
                      const std::vector<float>& dout, std::vector<float>& dx) {
  std::vector<float> dpre(x.size());
  dofpose::cpu::relu_backward(int64_t(x.size()), pre.data(), dout.data(), dpre.data());
  dx.resize(x.size());
  bn.dgamma.resize(size_t(bn.s.C));
  bn.dbeta.resize(size_t(bn.s.C));
  dofpose::cpu::batchnorm_backward_train(bn.s, x.data(), bn.gamma->data(), bn.mean.data(),
                                         bn.invstd.data(), dpre.data(), dx.data(),
                                         bn.dgamma.data(), bn.dbeta.data());
}

std::vector<float> conv_forward(const ConvLayer& c, const std::vector<float>& x) {
  std::vector<float> y(size_t(c.s.N) * c.s.K * c.s.P() * c.s.Q());
  dofpose::cpu::conv2d_forward(c.s, x.data(), c.weight->data(), c.bias->data(), y.data());
  return y;
}

std::vector<float> conv_backward(ConvLayer& c, const std::vector<float>& x,
                                 const std::vector<float>& dy) {
  std::vector<float> dx(x.size());
  c.dweight.resize(c.weight->size());
  c.dbias.resize(c.bias->size());
  dofpose::cpu::conv2d_backward(c.s, x.data(), c.weight->data(), dy.data(), dx.data(),
                                c.dweight.data(), c.dbias.data());
  return dx;
}

dofpose::Conv2dShape conv_shape(int N, int C, int H, int W, int K, int R, int pad) {
  dofpose::Conv2dShape s;
  s.N = N, s.C = C, s.H = H, s.W = W, s.K = K, s.R = R, s.S = R, s.stride = 1, s.pad = pad;
  return s;
}

}  // namespace

TEST_CASE("composite: pre-activation bottleneck block matches PyTorch (forward and all grads)") {
  const auto cases = dofpose::test::load_fixture("bottleneck.safetensors");
  REQUIRE(cases.size() == 1);
  const FixtureCase& c = cases[0];
  const int N = c.param_int("N"), Cin = c.param_int("Cin"), Cmid = c.param_int("Cmid"),
            Cout = c.param_int("Cout"), H = c.param_int("H"), W = c.param_int("W");
  const float momentum = float(c.param_double("momentum"));
  const float eps = float(c.param_double("eps"));
  const int HW = H * W;

  BnLayer bn1{{N, Cin, HW}, &c.f32("bn1_gamma"), &c.f32("bn1_beta"), {}, {}, {}, {}};
  BnLayer bn2{{N, Cmid, HW}, &c.f32("bn2_gamma"), &c.f32("bn2_beta"), {}, {}, {}, {}};
  BnLayer bn3{{N, Cmid, HW}, &c.f32("bn3_gamma"), &c.f32("bn3_beta"), {}, {}, {}, {}};
  ConvLayer conv1{conv_shape(N, Cin, H, W, Cmid, 1, 0), &c.f32("conv1_weight"),
                  &c.f32("conv1_bias"), {}, {}};
  ConvLayer conv2{conv_shape(N, Cmid, H, W, Cmid, 3, 1), &c.f32("conv2_weight"),
                  &c.f32("conv2_bias"), {}, {}};
  ConvLayer conv3{conv_shape(N, Cmid, H, W, Cout, 1, 0), &c.f32("conv3_weight"),
                  &c.f32("conv3_bias"), {}, {}};
  ConvLayer skip{conv_shape(N, Cin, H, W, Cout, 1, 0), &c.f32("skip_weight"),
                 &c.f32("skip_bias"), {}, {}};

  // ---- forward
  const std::vector<float>& x = c.f32("x");
  std::vector<float> pre1, act1, pre2, act2, pre3, act3;
  bn_relu_forward(bn1, momentum, eps, x, pre1, act1);
  const std::vector<float> h1 = conv_forward(conv1, act1);
  bn_relu_forward(bn2, momentum, eps, h1, pre2, act2);
  const std::vector<float> h2 = conv_forward(conv2, act2);
  bn_relu_forward(bn3, momentum, eps, h2, pre3, act3);
  const std::vector<float> h3 = conv_forward(conv3, act3);
  const std::vector<float> s = conv_forward(skip, x);
  std::vector<float> y(h3.size());
  dofpose::cpu::add_forward(int64_t(y.size()), h3.data(), s.data(), y.data());
  DOFPOSE_CHECK_CLOSE("bottleneck y", y, c.f32("y"), kAtol, kRtol);

  // ---- backward: dy reaches both branches of the final add unchanged.
  const std::vector<float>& dy = c.f32("dy");
  const std::vector<float> dact3 = conv_backward(conv3, act3, dy);
  std::vector<float> dh2, dh1, dx;
  bn_relu_backward(bn3, h2, pre3, dact3, dh2);
  const std::vector<float> dact2 = conv_backward(conv2, act2, dh2);
  bn_relu_backward(bn2, h1, pre2, dact2, dh1);
  const std::vector<float> dact1 = conv_backward(conv1, act1, dh1);
  bn_relu_backward(bn1, x, pre1, dact1, dx);
  // x fans out into the skip as well: its gradient is the sum of both paths.
  const std::vector<float> dx_skip = conv_backward(skip, x, dy);
  dofpose::cpu::accumulate(int64_t(dx.size()), dx_skip.data(), dx.data());

  DOFPOSE_CHECK_CLOSE("bottleneck dx", dx, c.f32("dx"), kAtol, kRtol);
  const std::pair<const char*, const std::vector<float>*> grads[] = {
      {"bn1_gamma", &bn1.dgamma},       {"bn1_beta", &bn1.dbeta},
      {"conv1_weight", &conv1.dweight}, {"conv1_bias", &conv1.dbias},
      {"bn2_gamma", &bn2.dgamma},       {"bn2_beta", &bn2.dbeta},
      {"conv2_weight", &conv2.dweight}, {"conv2_bias", &conv2.dbias},
      {"bn3_gamma", &bn3.dgamma},       {"bn3_beta", &bn3.dbeta},
      {"conv3_weight", &conv3.dweight}, {"conv3_bias", &conv3.dbias},
      {"skip_weight", &skip.dweight},   {"skip_bias", &skip.dbias},
  };
  for (const auto& [name, got] : grads) {
    const std::string what = std::string("bottleneck d") + name;
    DOFPOSE_CHECK_CLOSE(what, *got, c.f32("d" + std::string(name)), kAtol, kRtol);
  }
}
