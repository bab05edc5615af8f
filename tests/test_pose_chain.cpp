// The end-to-end chain image -> hourglass -> soft-argmax -> lifter
// (nn/pose_chain.h): forward geometry, a finite-difference check of the one
// backward pass through everything, joint training with RMSprop, and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dofpose/nn/optimizer.h"
#include "dofpose/nn/pose_chain.h"
#include "dofpose/skeleton.h"
#include "tests/gradcheck.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::nn;
using dofpose::test::TestRng;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::kNoError;

namespace {

HourglassConfig small_hourglass() {
  // 64x64 input, 16x16 heatmaps; a sharper soft-argmax so the coordinates
  // (and so the lifter) react to the heatmaps noticeably.
  return HourglassConfig::from_json_string(
      R"({"stacks": 2, "num_feats": 8, "stem_channels": 4, "input_size": 64,
          "attribute_channels": 2, "domain_hidden": 4, "softargmax_beta": 4.0})");
}

LifterConfig small_lifter(bool use_attributes) {
  LifterConfig c;
  c.kind = "progressive";
  c.width = 16;
  c.blocks = 1;
  c.dropout = 0.f;  // deterministic, so finite differences see one function
  c.max_norm = 0.f;
  c.use_attributes = use_attributes;
  return c;
}

// Input statistics of the lifter's frame: the frame maps image pixels to
// roughly [-1, 1]; non-trivial mean/std so the normalisation's gradient counts.
void set_input_stats(Lifter& l) {
  for (int64_t i = 0; i < l.norm_input_mean.numel(); ++i) {
    l.norm_input_mean.f32()[i] = 0.05f * float(i % 5) - 0.1f;
    l.norm_input_std.f32()[i] = 0.2f + 0.01f * float(i % 7);
  }
}

Tensor random_tensor(Shape s, uint64_t seed, float scale) {
  Tensor t = Tensor::empty(s);
  TestRng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = rng.normal() * scale;
  return t;
}

// Image pixels (0..63) -> about [-1, 1], shifted per image: the lifter's
// BatchNorm sees inputs that differ across the batch even when the fresh
// hourglass predicts nearly the same coordinates for every image (otherwise
// it divides by a near-zero batch std and the chain is wildly ill-conditioned).
Tensor frames(int64_t n) {
  Tensor f = Tensor::empty({n, 3});
  for (int64_t r = 0; r < n; ++r) {
    f.f32()[r * 3] = (1.f + 0.3f * float(r)) / 32.f;
    f.f32()[r * 3 + 1] = -1.f + 0.7f * float(r);
    f.f32()[r * 3 + 2] = 0.5f - 0.6f * float(r);
  }
  return f;
}

Param find_param(Module& m, const std::string& name) {
  for (const Param& p : m.parameters())
    if (p.name == name) return p;
  FAIL("no parameter ", name);
  return {};
}

double abs_sum(const Tensor& t) {
  double s = 0;
  for (int64_t i = 0; i < t.numel(); ++i) s += std::fabs(t.f32()[i]);
  return s;
}

}  // namespace

TEST_CASE("pose chain: forward maps soft-argmax coordinates through frame, layout and normalisation") {
  HourglassNet hg(small_hourglass(), 1);
  auto lifter = Lifter::create(small_lifter(false), 2);
  set_input_stats(*lifter);
  PoseChain chain(hg, *lifter);
  const int64_t n = 2;
  Tensor image = random_tensor({n, 3, 64, 64}, 3, 1.f);
  Tensor frame = frames(n);
  Arena arena;
  PoseChainOutput out = chain.forward(arena, image, Mode::Infer, frame);
  CHECK(out.coords_heatmap.shape == Shape{n, 16, 2});
  CHECK(out.pose2d.shape == Shape{n, 16, 2});
  CHECK(out.attributes.empty());
  CHECK(out.lifter.poses.size() == 2);
  CHECK(chain.image_scale() == 4.f);
  CHECK(chain.image_offset() == 1.5f);  // heatmap pixel 0 = image pixels 0..3, centre 1.5

  const Layout& mpii = layout(LayoutId::MPII16);
  for (int64_t r = 0; r < n; ++r) {
    const auto in_frame = [&](const std::string& joint, int c) {
      const float hm = out.coords_heatmap.f32()[(r * 16 + mpii.index(joint)) * 2 + c];
      const float u = hm * 4.f + 1.5f;
      return frame.f32()[r * 3] * u + frame.f32()[r * 3 + 1 + c];
    };
    const auto pose2d = [&](int k, int c) { return out.pose2d.f32()[(r * 16 + k) * 2 + c]; };
    for (int c = 0; c < 2; ++c) {
      CAPTURE(c);
      // Lifter inputs: H36M-17 without neck/nose, so input 9 is the head (= head top).
      CHECK(pose2d(0, c) == doctest::Approx(in_frame("pelvis", c)).epsilon(1e-6));
      CHECK(pose2d(1, c) == doctest::Approx(in_frame("right hip", c)).epsilon(1e-6));
      CHECK(pose2d(7, c) ==
            doctest::Approx(0.5f * (in_frame("pelvis", c) + in_frame("thorax", c))).epsilon(1e-6));
      CHECK(pose2d(9, c) == doctest::Approx(in_frame("head top", c)).epsilon(1e-6));
      CHECK(pose2d(15, c) == doctest::Approx(in_frame("right wrist", c)).epsilon(1e-6));
      const int64_t i = r * 32 + 2 * 9 + c;
      CHECK(out.lifter_input.f32()[i] ==
            doctest::Approx((pose2d(9, c) - lifter->norm_input_mean.f32()[18 + c]) /
                            lifter->norm_input_std.f32()[18 + c])
                .epsilon(1e-5));
    }
  }
}

TEST_CASE("pose chain: one backward through lifter, layout map, soft-argmax and hourglass matches finite differences") {
  // Train mode (batch statistics) everywhere: the real use. Attributes come
  // from the hourglass head through the softmax, so that path is checked too.
  HourglassNet hg(small_hourglass(), 7);
  auto lifter = Lifter::create(small_lifter(true), 8);
  set_input_stats(*lifter);
  PoseChain chain(hg, *lifter);
  const int64_t n = 4;  // BatchNorm1d on 2 samples is nearly flat: use 4
  Tensor image = random_tensor({n, 3, 64, 64}, 9, 1.f);
  Tensor frame = frames(n);
  // L = sum_b <v_b, pose_b> + <w0, heat_0> + <w1, heat_1>: smooth, and the
  // heatmap terms exercise the extra (intermediate-supervision) gradients.
  const Tensor v0 = random_tensor({n, 51}, 10, 1.f), v1 = random_tensor({n, 51}, 11, 1.f);
  const Tensor w0 = random_tensor({n, 16, 16, 16}, 12, 0.01f);
  const Tensor w1 = random_tensor({n, 16, 16, 16}, 13, 0.01f);
  Arena arena;
  const auto dot = [](const TensorView& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < b.numel(); ++i) s += double(a.f32()[i]) * double(b.f32()[i]);
    return s;
  };
  const auto loss = [&] {
    arena.reset();
    PoseChainOutput o = chain.forward(arena, image, Mode::Train, frame);
    return dot(o.lifter.poses[0], v0) + dot(o.lifter.poses[1], v1) +
           dot(o.hourglass.heatmaps[0], w0) + dot(o.hourglass.heatmaps[1], w1);
  };

  arena.reset();
  chain.forward(arena, image, Mode::Train, frame);
  PoseChainGrads g;
  g.poses = {v0.view(), v1.view()};
  g.heatmaps = {w0.view(), w1.view()};
  const TensorView dimage = chain.backward(arena, g, true);
  REQUIRE(dimage.shape == image.shape());
  const std::vector<float> dimage_v(dimage.f32(), dimage.f32() + dimage.numel());

  struct Target {
    std::string name;
    double step;
  };
  // Steps: large enough that float32 noise in L (~1e-5 absolute) stays small
  // next to h * gradient, small enough that the difference quotient does not
  // average over many ReLU / max-pool kinks or the soft-argmax curvature. The
  // stem conv sits in front of a training-mode BatchNorm and everything else:
  // its gradients reach ~2e3 and its FD only converges below ~1e-4. Measured
  // max |analytic - numeric| / max|gradient| at these steps: 0.4 %, 0.02 %,
  // 0.14 %, 0.15 %, 0.02 %, ~0 %, image 0.4 % (tolerance 2 %).
  const std::vector<Target> targets = {
      {"hourglass.conv1.weight", 3e-5},                  // stem
      {"hourglass.hg.0.hg.0.3.0.conv2.weight", 3e-3},    // innermost hourglass
      {"hourglass.score.1.weight", 3e-4},                // last stack's heatmap conv
      {"hourglass.attr.fc.weight", 3e-3},                // attributes via softmax
      {"lifter.block1.torso.input_layer.weight", 1e-3},  // lifter
      {"lifter.block2.distal.output_layer.weight", 1e-2},
  };
  for (const Target& t : targets) {
    CAPTURE(t.name);
    Param p = find_param(chain, t.name);
    std::vector<float> values(p.value->f32(), p.value->f32() + p.value->numel());
    const std::vector<float> analytic(p.grad->f32(), p.grad->f32() + p.grad->numel());
    double scale = 0;
    for (float a : analytic) scale = std::max(scale, double(std::fabs(a)));
    CHECK(scale > 0);  // the chain's gradient reaches this parameter
    dofpose::test::GradCheckOptions opt;
    opt.step = t.step;
    opt.max_checks = 8;
    opt.atol = 2e-3 + 2e-2 * scale;
    opt.rtol = 3e-2;
    const auto loss_at = [&] {
      std::copy(values.begin(), values.end(), p.value->f32());
      return loss();
    };
    DOFPOSE_GRADCHECK(t.name, values, analytic, loss_at, opt);
    std::copy(values.begin(), values.end(), p.value->f32());
  }

  // Input pixels.
  std::vector<float> pixels(image.f32(), image.f32() + image.numel());
  double scale = 0;
  for (float a : dimage_v) scale = std::max(scale, double(std::fabs(a)));
  dofpose::test::GradCheckOptions opt;
  opt.step = 1e-3;
  opt.max_checks = 8;
  opt.atol = 2e-3 + 2e-2 * scale;
  opt.rtol = 3e-2;
  const auto loss_at = [&] {
    std::copy(pixels.begin(), pixels.end(), image.f32());
    return loss();
  };
  DOFPOSE_GRADCHECK("image", pixels, dimage_v, loss_at, opt);
}

TEST_CASE("pose chain: RMSprop on hourglass and lifter together lowers the 3D loss on a fixed batch") {
  HourglassNet hg(small_hourglass(), 21);
  auto lifter = Lifter::create(small_lifter(true), 22);
  set_input_stats(*lifter);
  PoseChain chain(hg, *lifter);
  const int64_t n = 4;
  Tensor image = random_tensor({n, 3, 64, 64}, 23, 1.f);
  Tensor frame = frames(n);
  Tensor target = random_tensor({n, 51}, 24, 1.f);
  for (int64_t r = 0; r < n; ++r)
    for (int c = 0; c < 3; ++c) target.f32()[r * 51 + c] = 0.f;  // the pelvis is always 0
  RMSprop opt(chain.parameters(), RMSpropOptions{3e-4f});
  Arena arena;
  std::vector<float> losses;
  for (int step = 0; step < 10; ++step) {
    arena.reset();
    PoseChainOutput out = chain.forward(arena, image, Mode::Train, frame);
    PoseChainGrads g;
    losses.push_back(lifter_l1_loss(arena, out.lifter, target, g.poses));
    chain.backward(arena, g);
    if (step == 0) {
      // One loss on the lifter's output trains every part of the chain...
      CHECK(abs_sum(hg.conv1.grad_weight) > 0);
      CHECK(abs_sum(*find_param(chain, "hourglass.attr.fc.weight").grad) > 0);
      CHECK(abs_sum(*find_param(chain, "lifter.block1.torso.input_layer.weight").grad) > 0);
      // ...except the domain head, which no loss reaches here.
      CHECK(abs_sum(*find_param(chain, "hourglass.domain.fc1.weight").grad) == 0);
    }
    opt.step();
  }
  std::string trace;
  for (float l : losses) trace += " " + std::to_string(l);
  MESSAGE("chain L1 loss per step:" << trace);
  // RMSprop's first steps are large (square_avg starts at 0), so the loss is
  // not monotone; over 10 steps it drops ~22 % (1.82 -> 1.41).
  CHECK(losses.back() < 0.85f * losses.front());
  for (size_t i = 1; i < losses.size(); ++i) CHECK(losses[i] < losses.front());
}

TEST_CASE("pose chain: constant attributes get no gradient into the attribute head") {
  HourglassNet hg(small_hourglass(), 31);
  auto lifter = Lifter::create(small_lifter(true), 32);
  PoseChain chain(hg, *lifter);
  const int64_t n = 4;
  Tensor image = random_tensor({n, 3, 64, 64}, 33, 1.f);
  std::vector<int32_t> labels(size_t(n) * 9);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 3);
  Tensor attributes = Tensor::empty({n, 27});
  encode_attribute_labels(labels.data(), n, attributes.f32());
  Arena arena;
  PoseChainOutput out = chain.forward(arena, image, Mode::Train, {}, attributes);
  CHECK(out.attributes.data == attributes.view().data);
  PoseChainGrads g;
  Tensor dp = random_tensor({n, 51}, 34, 1.f);
  g.poses = {dp.view(), TensorView()};
  chain.backward(arena, g);
  CHECK(abs_sum(*find_param(chain, "hourglass.attr.fc.weight").grad) == 0);
  CHECK(abs_sum(hg.conv1.grad_weight) > 0);
}

TEST_CASE("pose chain: configuration and shape mismatches are clear errors") {
  auto lifter = Lifter::create(small_lifter(false), 1);
  {
    HourglassConfig c = small_hourglass();
    c.num_joints = 14;
    HourglassNet hg14(c, 1);
    const std::string e = error_of([&] { PoseChain chain(hg14, *lifter); });
    CHECK(contains(e, "16 MPII-16 heatmaps"));
    CHECK(contains(e, "num_joints 14"));
  }
  // A lifter config other than 16/17 input joints cannot even be built.
  {
    LifterConfig bad = small_lifter(false);
    bad.num_joints_in = 15;
    CHECK(contains(error_of([&] { Lifter::create(bad, 1); }), "num_joints_in must be 16 or 17"));
  }
  HourglassNet hg(small_hourglass(), 2);
  PoseChain chain(hg, *lifter);
  Arena arena;
  CHECK(contains(error_of([&] { chain.backward(arena, PoseChainGrads{}); }), "call forward first"));
  Tensor image = random_tensor({2, 3, 64, 64}, 3, 1.f);
  Tensor wrong_image = random_tensor({2, 3, 32, 32}, 3, 1.f);
  CHECK(contains(error_of([&] { chain.forward(arena, wrong_image, Mode::Infer); }),
                 "must be [N,3,64,64]"));
  Tensor bad_frame = Tensor::zeros({2, 2});
  CHECK(contains(error_of([&] { chain.forward(arena, image, Mode::Infer, bad_frame); }), "frame"));
  Tensor attributes = Tensor::zeros({2, 27});
  CHECK(contains(error_of([&] { chain.forward(arena, image, Mode::Infer, {}, attributes); }),
                 "does not use them"));
  {
    // An attribute lifter without given attributes needs the hourglass head.
    HourglassConfig c = small_hourglass();
    c.attribute_head = false;
    HourglassNet no_head(c, 4);
    auto attr_lifter = Lifter::create(small_lifter(true), 5);
    PoseChain chain2(no_head, *attr_lifter);
    CHECK(contains(error_of([&] { chain2.forward(arena, image, Mode::Infer); }),
                   "hourglass attribute head"));
    Tensor wrong_attr = Tensor::zeros({2, 26});
    CHECK(contains(error_of([&] { chain2.forward(arena, image, Mode::Infer, {}, wrong_attr); }),
                   "attributes"));
    CHECK(error_of([&] { chain2.forward(arena, image, Mode::Infer, {}, attributes); }) == kNoError);
  }
  chain.forward(arena, image, Mode::Train);
  Tensor wrong_pose = Tensor::zeros({2, 50});
  PoseChainGrads g;
  g.poses = {wrong_pose.view(), TensorView()};
  CHECK(contains(error_of([&] { chain.backward(arena, g); }), "dpose"));
  g.poses = {TensorView()};
  CHECK(contains(error_of([&] { chain.backward(arena, g); }), "pose gradients"));
  g.poses = {};
  Tensor one = Tensor::zeros({2, 16, 16, 16});
  g.heatmaps = {one.view()};
  CHECK(contains(error_of([&] { chain.backward(arena, g); }), "heatmap gradients"));
  g.heatmaps = {};
  CHECK(error_of([&] { chain.backward(arena, g); }) == kNoError);
}
