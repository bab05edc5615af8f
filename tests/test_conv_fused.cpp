// The fused convolution (ops::conv2d_fused_forward) on the CPU: bit for bit
// the separate ops it replaces, for every combination of its parts; its
// errors name the tensor; and a hourglass gives the same bits with fused
// inference on and off.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "dofpose/cuda_backend.h"
#include "dofpose/nn/graph_forward.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/nn/model.h"
#include "dofpose/nn/persistent_lifter.h"
#include "dofpose/ops.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose_test;

namespace {

struct Case {
  int N, C, H, W, K, R, stride, pad;
};

}  // namespace

TEST_CASE("conv2d_fused_forward equals BN+ReLU, conv, BN, ReLU and add bit for bit (CPU)") {
  // Small cases take the GEMM's unpacked paths (then passes over B and C);
  // the larger ones its tiles, with the prologue in the B packing and the
  // epilogue on each finished tile (1x1; 3x3 with a partial last panel and
  // below Winograd's tile count; a 7x7 stride-2 stem; one input channel).
  const ops::ScopedCpuConvAlgorithm direct(ops::CpuConvAlgorithm::Direct);
  const Case cases[] = {{2, 6, 9, 7, 5, 1, 1, 0},    {1, 8, 8, 8, 8, 3, 1, 1},
                        {2, 3, 15, 13, 4, 7, 2, 3},  {2, 70, 19, 21, 45, 1, 1, 0},
                        {1, 24, 27, 23, 40, 3, 1, 1}, {1, 3, 40, 40, 16, 7, 2, 3},
                        {1, 1, 33, 31, 9, 3, 1, 1}};
  uint32_t seed = 10;
  for (const Case& c : cases)
    for (int combo = 0; combo < 16; ++combo) {
      const bool in_bn = combo & 1, out_bn = combo & 2, relu = combo & 4, residual = combo & 8;
      CAPTURE(combo);
      ops::ConvParams p{c.stride, c.pad, 1};
      Tensor x = random_tensor({c.N, c.C, c.H, c.W}, ++seed);
      Tensor w = random_tensor({c.K, c.C, c.R, c.R}, ++seed, -0.3f, 0.3f);
      Tensor b = random_tensor({c.K}, ++seed);
      Tensor g1 = random_tensor({c.C}, ++seed, 0.5f, 1.5f), b1 = random_tensor({c.C}, ++seed);
      Tensor m1 = random_tensor({c.C}, ++seed), v1 = random_tensor({c.C}, ++seed, 0.5f, 2.f);
      Tensor g2 = random_tensor({c.K}, ++seed, 0.5f, 1.5f), b2 = random_tensor({c.K}, ++seed);
      Tensor m2 = random_tensor({c.K}, ++seed), v2 = random_tensor({c.K}, ++seed, 0.5f, 2.f);
      const Shape ys = ops::conv2d_output_shape(x, w, p);
      Tensor r = random_tensor(ys, ++seed);

      // The separate ops.
      Tensor xin = Tensor::empty(x.shape());
      copy(x, xin);
      if (in_bn) {
        ops::batchnorm_forward_infer(x, g1, b1, m1, v1, xin, {0.1f, 1e-5f});
        ops::relu_forward(xin, xin);
      }
      Tensor want = Tensor::empty(ys);
      ops::conv2d_forward(xin, w, b, want, p);
      if (out_bn) ops::batchnorm_forward_infer(want, g2, b2, m2, v2, want, {0.1f, 1e-3f});
      if (relu) ops::relu_forward(want, want);
      if (residual) ops::accumulate(r, want);

      ops::ConvFusionRef f;
      if (in_bn) f.in_bn = {g1, b1, m1, v1, 1e-5f};
      if (out_bn) f.out_bn = {g2, b2, m2, v2, 1e-3f};
      f.out_relu = relu;
      if (residual) f.residual = r;
      Tensor got = Tensor::empty(ys);
      ops::conv2d_fused_forward(x, w, b, got, p, f);
      CHECK(same_bits(got, want));
    }
}

TEST_CASE("conv2d_fused_forward: errors name the tensor and the expected shape") {
  Tensor x = Tensor::zeros({1, 4, 5, 5}), w = Tensor::zeros({3, 4, 1, 1}), y = Tensor::zeros({1, 3, 5, 5});
  Tensor c4 = Tensor::zeros({4}), c3 = Tensor::zeros({3}), bad = Tensor::zeros({1, 3, 5, 4});
  ops::ConvFusionRef f;
  f.in_bn = {c4, c4, c3, c4, 1e-5f};  // running_mean of the wrong size
  std::string e = error_of([&] { ops::conv2d_fused_forward(x, w, {}, y, {}, f); });
  CHECK(e.find("in_bn.running_mean") != std::string::npos);
  CHECK(e.find("[4]") != std::string::npos);
  ops::ConvFusionRef g;
  g.residual = bad;
  e = error_of([&] { ops::conv2d_fused_forward(x, w, {}, y, {}, g); });
  CHECK(e.find("residual") != std::string::npos);
  CHECK(e.find("[1,3,5,5]") != std::string::npos);
  ops::ConvFusionRef h;
  h.out_bn.mean = c3;  // mean without var
  e = error_of([&] { ops::conv2d_fused_forward(x, w, {}, y, {}, h); });
  CHECK(e.find("out_bn.running_var") != std::string::npos);
  CHECK(error_of([&] { ops::conv2d_fused_forward(x, w, {}, x, {}, {}); }).find("y") !=
        std::string::npos);
}

TEST_CASE("hourglass: fused inference gives the unfused bits, backward after it is refused") {
  // Direct 3x3 products: with Winograd (the default) the outputs differ in
  // rounding (test_conv_winograd.cpp bounds that); here every bit must agree.
  ops::ScopedCpuConvAlgorithm direct(ops::CpuConvAlgorithm::Direct);
  const nn::HourglassConfig c = compact_hourglass_config();
  nn::HourglassNet net(c, 3);
  randomise_bn_buffers(net, 40);  // BatchNorms away from (0, 1)
  Tensor x = random_tensor({2, 3, 64, 64}, 7);
  Arena a1, a2;
  nn::HourglassOutputs fused;
  {
    nn::ScopedNoGrad no_grad;
    CHECK(nn::fused_inference(nn::Mode::Infer));
    CHECK_FALSE(nn::fused_inference(nn::Mode::Train));
    fused = net.forward(a1, x, nn::Mode::Infer);
    nn::ScopedUnfused off;
    CHECK_FALSE(nn::fused_inference(nn::Mode::Infer));
  }
  CHECK(contains(error_of([&] { net.backward(a1, {}); }), "fused inference"));
  CHECK_FALSE(nn::fused_inference(nn::Mode::Infer));  // eval() without no-grad: every layer
  nn::HourglassOutputs plain = net.forward(a2, x, nn::Mode::Infer);
  for (size_t s = 0; s < fused.heatmaps.size(); ++s) CHECK(same_bits(fused.heatmaps[s], plain.heatmaps[s]));
  CHECK(same_bits(fused.attributes, plain.attributes));
  CHECK(same_bits(fused.domain, plain.domain));
  // The fused pass allocates less: no separate BatchNorm / ReLU outputs.
  CHECK(a1.high_water() < a2.high_water());
}

TEST_CASE("linear_fused_forward equals linear, BN, ReLU and add bit for bit (CPU), lifters too") {
  uint32_t seed = 500;
  for (int combo = 0; combo < 8; ++combo) {
    const bool bn = combo & 1, relu = combo & 2, residual = combo & 4;
    CAPTURE(combo);
    const int N = 5, in = 13, out = 300;  // out > 256: the heap path of the per-feature scales
    Tensor x = random_tensor({N, in}, ++seed), w = random_tensor({out, in}, ++seed);
    Tensor b = random_tensor({out}, ++seed), r = random_tensor({N, out}, ++seed);
    Tensor g = random_tensor({out}, ++seed, 0.5f, 1.5f), be = random_tensor({out}, ++seed);
    Tensor m = random_tensor({out}, ++seed), v = random_tensor({out}, ++seed, 0.5f, 2.f);
    Tensor want = Tensor::empty({N, out});
    ops::linear_forward(x, w, b, want);
    if (bn) ops::batchnorm_forward_infer(want, g, be, m, v, want, {0.1f, 1e-5f});
    if (relu) ops::relu_forward(want, want);
    if (residual) {
      Tensor sum = Tensor::empty({N, out});
      ops::add_forward(r, want, sum);  // the residual block's x + h
      copy(sum, want);
    }
    ops::LinearFusionRef f;
    if (bn) f.bn = {g, be, m, v, 1e-5f};
    f.relu = relu;
    if (residual) f.residual = r;
    Tensor got = Tensor::empty({N, out});
    ops::linear_fused_forward(x, w, b, got, f);
    CHECK(same_bits(got, want));
  }
  for (const char* kind : {"martinez", "progressive"}) {
    nn::LifterConfig c;
    c.kind = kind;
    c.width = 32;
    auto l = nn::Lifter::create(c, 4);
    for (const nn::Buffer& buf : l->buffers()) {
      const bool positive = buf.name.find("running_var") != std::string::npos ||
                            buf.name.find(".std") != std::string::npos;
      copy(random_tensor(buf.value->shape(), ++seed, positive ? 0.5f : -0.3f, positive ? 2.f : 0.3f),
           *buf.value);
    }
    Tensor x = random_tensor({3, c.input_dim()}, ++seed);
    Arena a1, a2;
    nn::LifterOutput plain = l->forward(a1, x, nn::Mode::Infer);
    nn::LifterOutput fused;
    {
      nn::ScopedNoGrad no_grad;
      fused = l->forward(a2, x, nn::Mode::Infer);
    }
    for (size_t k = 0; k < plain.poses.size(); ++k) CHECK(same_bits(plain.poses[k], fused.poses[k]));
    CHECK(contains(error_of([&] { l->backward(a2, {fused.poses.back()}); }), "fused inference"));
  }
}

TEST_CASE("CUDA-only inference helpers refuse clearly where they cannot run") {
  nn::LifterConfig c;
  c.width = 16;
  auto l = nn::Lifter::create(c, 1);
  if (!nn::PersistentLifter::available()) {
    const std::string e = error_of([&] { nn::PersistentLifter p(*l); });
    CHECK((contains(e, "built without the CUDA backend") || contains(e, "must be on CUDA") ||
           contains(e, "cooperative")));
  }
  // The model is on the CPU: a CUDA graph of it is refused, naming the fix.
  auto model = nn::make_model(std::move(l));
  if (cuda::built() && cuda::device_count() > 0) {
    CHECK(contains(error_of([&] { nn::GraphForward g(*model); }), "to_device"));
  } else {
    CHECK(error_of([&] { nn::GraphForward g(*model); }) != std::string(kNoError));
  }
}

TEST_CASE("persistent lifter schedule: phases follow the regressors' dependencies (host only)") {
  for (const char* kind : {"martinez", "two_block", "progressive"}) {
    CAPTURE(kind);
    nn::LifterConfig c;
    c.kind = kind;
    c.width = 8;
    c.blocks = 2;
    auto l = nn::Lifter::create(c, 1);
    const std::vector<int> p = nn::PersistentLifter::step_phases(*l);
    const int per = 2 + 2 * c.blocks;  // input layer, two per block, output layer
    REQUIRE(int(p.size()) == int(l->regressors().size()) * per);
    const int deepest = *std::max_element(p.begin(), p.end());
    if (std::string(kind) == "progressive") {
      // block2.torso reads block1.distal's output: one chain of six regressors
      CHECK(deepest == 6 * per - 1);
      for (size_t k = 0; k < p.size(); ++k) CHECK(p[k] == int(k));
    } else {
      CHECK(deepest == per - 1);  // every regressor reads only the input
      for (size_t k = 0; k < p.size(); ++k) CHECK(p[k] == int(k % size_t(per)));
    }
  }
}
