// The fused training activation (ops::batchnorm_relu_dropout_*, used by
// BatchNorm::forward_relu in Mode::Train) on the CPU: bit for bit the
// separate BatchNorm, ReLU and Dropout ops; errors name the tensor; and a
// training step of both networks gives the same bits fused and unfused.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "dofpose/nn/hourglass.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/ops.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose_test;

namespace {

Tensor full(Shape s, float v) {
  Tensor t = Tensor::empty(s);
  fill(t, v);
  return t;
}

// Every parameter, gradient and buffer of two modules of the same layout.
void check_same_state(nn::Module& a, nn::Module& b) {
  const std::vector<nn::Param> pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].name);
    CHECK(same_bits(*pa[i].value, *pb[i].value));
    CHECK(same_bits(*pa[i].grad, *pb[i].grad));
  }
  const std::vector<nn::Buffer> ba = a.buffers(), bb = b.buffers();
  REQUIRE(ba.size() == bb.size());
  for (size_t i = 0; i < ba.size(); ++i) {
    CAPTURE(ba[i].name);
    CHECK(same_bits(*ba[i].value, *bb[i].value));
  }
}

}  // namespace

TEST_CASE("batchnorm_relu_dropout equals BatchNorm, ReLU and Dropout bit for bit (CPU)") {
  struct Case {
    Shape shape;
    float p;
  };
  const Case cases[] = {{{16, 24}, 0.25f}, {{9, 70}, 0.5f},  // MLP activations, 2 channel blocks
                        {{2, 5, 6, 7}, 0.f},                 // the hourglass's BN -> ReLU
                        {{3, 4, 5, 3}, 0.1f},                {{4, 300}, 0.f}};
  uint32_t seed = 900;
  for (const Case& c : cases) {
    CAPTURE(c.shape.str());
    CAPTURE(c.p);
    const int C = int(c.shape[1]);
    const ops::BatchNormParams bp{0.1f, 1e-5f};
    const uint64_t drop_seed = 12345 + seed;
    Tensor x = random_tensor(c.shape, ++seed, -2.f, 3.f);
    Tensor gamma = random_tensor({C}, ++seed, 0.5f, 1.5f), beta = random_tensor({C}, ++seed);
    Tensor rm0 = random_tensor({C}, ++seed), rv0 = random_tensor({C}, ++seed, 0.5f, 2.f);
    Tensor dy = random_tensor(c.shape, ++seed);

    // The reference: the three ops one by one (dropout only when p > 0, as nn::Dropout).
    Tensor rm_ref = rm0.to(Device::CPU), rv_ref = rv0.to(Device::CPU);
    Tensor z = Tensor::empty(c.shape), r = Tensor::empty(c.shape), y_ref = Tensor::empty(c.shape);
    Tensor keep = Tensor::empty(c.shape, DType::U8);
    Tensor mean_ref = Tensor::empty({C}), invstd_ref = Tensor::empty({C});
    ops::batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, z, mean_ref, invstd_ref, bp);
    ops::relu_forward(z, r);
    if (c.p > 0.f) ops::dropout_forward(r, y_ref, keep, c.p, drop_seed);
    else copy(r, y_ref);
    Tensor g_r = Tensor::empty(c.shape), g_z = Tensor::empty(c.shape);
    if (c.p > 0.f) ops::dropout_backward(keep, dy, g_r, c.p);
    else copy(dy, g_r);
    ops::relu_backward(z, g_r, g_z);
    Tensor dx_ref = Tensor::empty(c.shape), dg_ref = Tensor::empty({C}), db_ref = Tensor::empty({C});
    ops::batchnorm_backward_train(x, gamma, mean_ref, invstd_ref, g_z, dx_ref, dg_ref, db_ref);

    // The fused op, outputs poisoned first.
    Tensor rm = rm0.to(Device::CPU), rv = rv0.to(Device::CPU);
    Tensor y = full(c.shape, 777.f), mask = Tensor::empty(c.shape, DType::U8);
    std::memset(mask.view().data, 7, mask.nbytes());
    Tensor mean = full({C}, 777.f), invstd = full({C}, 777.f);
    ops::batchnorm_relu_dropout_forward_train(x, gamma, beta, rm, rv, y, mean, invstd, mask, c.p,
                                              drop_seed, bp);
    CHECK(same_bits(y, y_ref));
    CHECK(same_bits(mean, mean_ref));
    CHECK(same_bits(invstd, invstd_ref));
    CHECK(same_bits(rm, rm_ref));
    CHECK(same_bits(rv, rv_ref));
    // The mask byte: 1 exactly where the gradient passes (kept and z > 0).
    int64_t passed = 0, wrong = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      const bool kept = c.p > 0.f ? keep.view().u8()[i] == 1 : true;
      const bool want = kept && z.f32()[i] > 0.f;
      wrong += mask.view().u8()[i] != (want ? 1 : 0);
      passed += want;
    }
    CHECK(wrong == 0);
    CHECK(passed > 0);
    CHECK(passed < x.numel());

    Tensor dx = full(c.shape, 777.f), dg = full({C}, 777.f),
           db = full({C}, 777.f);
    ops::batchnorm_relu_dropout_backward_train(x, gamma, mean, invstd, mask, c.p, dy, dx, dg, db);
    CHECK(same_bits(dx, dx_ref));
    CHECK(same_bits(dg, dg_ref));
    CHECK(same_bits(db, db_ref));

    // With a residual: add_forward(residual, the three ops) in the store, the
    // statistics and the mask unchanged.
    Tensor res = random_tensor(c.shape, ++seed, -1.f, 1.f), sum_ref = Tensor::empty(c.shape);
    ops::add_forward(res, y_ref, sum_ref);
    Tensor y_res = full(c.shape, 777.f), mask_res = Tensor::empty(c.shape, DType::U8);
    Tensor mean2 = full({C}, 777.f), invstd2 = full({C}, 777.f);
    ops::batchnorm_relu_dropout_forward_train(x, gamma, beta, {}, {}, y_res, mean2, invstd2,
                                              mask_res, c.p, drop_seed, bp, res);
    CHECK(same_bits(y_res, sum_ref));
    CHECK(!same_bits(y_res, y_ref));
    CHECK(same_bits(mask_res, mask));
    CHECK(same_bits(mean2, mean_ref));

    // Backward with a gradient to add (the skip's): accumulate(dx_add, dx).
    Tensor dx_add = random_tensor(c.shape, ++seed), dx_sum_ref = dx_ref.to(Device::CPU);
    ops::accumulate(dx_add, dx_sum_ref);
    Tensor dx2 = full(c.shape, 777.f), dg2 = full({C}, 777.f), db2 = full({C}, 777.f);
    ops::batchnorm_relu_dropout_backward_train(x, gamma, mean, invstd, mask, c.p, dy, dx2, dg2,
                                               db2, dx_add);
    CHECK(same_bits(dx2, dx_sum_ref));
    CHECK(!same_bits(dx2, dx_ref));
    CHECK(same_bits(dg2, dg_ref));
    CHECK(same_bits(db2, db_ref));
  }
}

TEST_CASE("linear_backward with dx_add equals linear_backward then accumulate, bit for bit") {
  uint32_t seed = 950;
  for (const Shape& xs : {Shape{5, 7}, Shape{16, 24}, Shape{1, 9}}) {
    const int64_t N = xs[0], in = xs[1], out = 6;
    CAPTURE(xs.str());
    Tensor x = random_tensor(xs, ++seed), w = random_tensor({out, in}, ++seed);
    Tensor dy = random_tensor({N, out}, ++seed), skip = random_tensor(xs, ++seed);
    Tensor dx_ref = Tensor::empty(xs), dw_ref = Tensor::empty({out, in}), db_ref = Tensor::empty({out});
    ops::linear_backward(x, w, dy, dx_ref, dw_ref, db_ref);
    ops::accumulate(skip, dx_ref);
    Tensor dx = full(xs, 777.f), dw = full({out, in}, 777.f), db = full({out}, 777.f);
    ops::linear_backward(x, w, dy, dx, dw, db, skip);
    CHECK(same_bits(dx, dx_ref));
    CHECK(same_bits(dw, dw_ref));
    CHECK(same_bits(db, db_ref));
  }
  Tensor x = random_tensor({4, 6}, 1), w = random_tensor({3, 6}, 2), dy = random_tensor({4, 3}, 3);
  Tensor dx = Tensor::empty({4, 6});
  const std::string bad = error_of([&] { ops::linear_backward(x, w, dy, dx, {}, {}, Tensor::empty({4, 3})); });
  CHECK(contains(bad, "'dx_add'"));
  CHECK(contains(bad, "[4,6]"));
  CHECK(contains(error_of([&] { ops::linear_backward(x, w, dy, dx, {}, {}, dx); }), "must not alias"));
  CHECK(contains(error_of([&] { ops::linear_backward(x, w, dy, {}, {}, {}, x); }), "without dx"));
}

TEST_CASE("maxpool2x2_backward with dx_add equals maxpool2x2_backward then accumulate, bit for bit") {
  uint32_t seed = 970;
  for (const Shape& s : {Shape{2, 3, 6, 8}, Shape{1, 2, 7, 5}}) {  // odd: floor-dropped edges
    CAPTURE(s.str());
    const Shape half{s[0], s[1], s[2] / 2, s[3] / 2};
    Tensor x = random_tensor(s, ++seed), dy = random_tensor(half, ++seed);
    Tensor add = random_tensor(s, ++seed), ref = Tensor::empty(s);
    ops::maxpool2x2_backward(x, dy, ref);
    ops::accumulate(add, ref);
    Tensor dx = full(s, 777.f);
    ops::maxpool2x2_backward(x, dy, dx, add);
    CHECK(same_bits(dx, ref));
  }
  Tensor x = random_tensor({1, 1, 4, 4}, 1), dy = random_tensor({1, 1, 2, 2}, 2);
  Tensor dx = Tensor::empty({1, 1, 4, 4});
  const std::string bad = error_of([&] { ops::maxpool2x2_backward(x, dy, dx, Tensor::empty({1, 1, 2, 2})); });
  CHECK(contains(bad, "'dx_add'"));
  CHECK(contains(error_of([&] { ops::maxpool2x2_backward(x, dy, dx, dx); }), "must not alias"));
}

TEST_CASE("batchnorm_relu_dropout: errors name the tensor and what was expected") {
  Tensor x = random_tensor({4, 6}, 1), g = random_tensor({6}, 2), b = random_tensor({6}, 3);
  Tensor y = Tensor::empty({4, 6}), m = Tensor::empty({6}), s = Tensor::empty({6});
  Tensor mask = Tensor::empty({4, 6}, DType::U8);
  auto fwd = [&](const TensorView& mk, float p) {
    return error_of([&] {
      ops::batchnorm_relu_dropout_forward_train(x, g, b, {}, {}, y, m, s, mk, p, 1);
    });
  };
  CHECK(fwd(mask, 0.5f) == kNoError);
  const std::string wrong_type = fwd(Tensor::empty({4, 6}), 0.5f);
  CHECK(contains(wrong_type, "'mask'"));
  CHECK(contains(wrong_type, "U8"));
  CHECK(contains(fwd(Tensor::empty({4, 5}, DType::U8), 0.5f), "'mask'"));
  CHECK(contains(fwd(mask, 1.f), "p must be in [0, 1)"));
  const std::string bad_residual = error_of([&] {
    ops::batchnorm_relu_dropout_forward_train(x, g, b, {}, {}, y, m, s, mask, 0.5f, 1, {},
                                              Tensor::empty({4, 5}));
  });
  CHECK(contains(bad_residual, "'residual'"));
  CHECK(contains(bad_residual, "[4,6]"));
  const std::string bad_dx_add = error_of([&] {
    ops::batchnorm_relu_dropout_backward_train(x, g, m, s, mask, 0.5f, y, Tensor::empty({4, 6}),
                                               {}, {}, Tensor::empty({6, 4}));
  });
  CHECK(contains(bad_dx_add, "'dx_add'"));
  CHECK(contains(bad_dx_add, "[4,6]"));
  Tensor dxa = Tensor::empty({4, 6});
  CHECK(contains(error_of([&] {
                   ops::batchnorm_relu_dropout_backward_train(x, g, m, s, mask, 0.5f, y, dxa, {},
                                                              {}, dxa);
                 }),
                 "must not alias"));
  CHECK(contains(error_of([&] {
                   Tensor x1 = random_tensor({1, 6}, 4), y1 = Tensor::empty({1, 6});
                   Tensor mk1 = Tensor::empty({1, 6}, DType::U8);
                   ops::batchnorm_relu_dropout_forward_train(x1, g, b, {}, {}, y1, m, s, mk1, 0.f, 1);
                 }),
                 "more than one value per channel"));
  const std::string bad_gamma = error_of([&] {
    ops::batchnorm_relu_dropout_backward_train(x, Tensor::empty({5}), m, s, mask, 0.5f, y, y, {},
                                               {});
  });
  CHECK(contains(bad_gamma, "'gamma'"));
}

TEST_CASE("lifters: a fused training step gives the unfused step's bits, dropout streams included") {
  for (const char* kind : {"martinez", "progressive"}) {
    CAPTURE(kind);
    nn::LifterConfig c;
    c.kind = kind;
    c.width = 48;
    c.blocks = 2;
    c.dropout = 0.3f;
    auto fused = nn::Lifter::create(c, 11), plain = nn::Lifter::create(c, 11);
    uint32_t seed = 60;
    for (int step = 0; step < 2; ++step) {  // the second step sees updated running statistics
      CAPTURE(step);
      Tensor x = random_tensor({8, c.input_dim()}, ++seed);
      Arena a1, a2;
      CHECK(nn::fused_training(nn::Mode::Train));
      nn::LifterOutput of = fused->forward(a1, x, nn::Mode::Train);
      nn::LifterOutput op;
      std::vector<Tensor> dpose_storage;
      std::vector<TensorView> dposes;
      {
        nn::ScopedUnfused off;
        CHECK_FALSE(nn::fused_training(nn::Mode::Train));
        op = plain->forward(a2, x, nn::Mode::Train);
        for (const TensorView& pose : op.poses) {
          dpose_storage.push_back(random_tensor(pose.shape, ++seed));
          dposes.push_back(dpose_storage.back());
        }
        plain->backward(a2, dposes);
      }
      fused->backward(a1, dposes);
      REQUIRE(of.poses.size() == op.poses.size());
      for (size_t k = 0; k < of.poses.size(); ++k) CHECK(same_bits(of.poses[k], op.poses[k]));
      check_same_state(*fused, *plain);
      // No BatchNorm / ReLU outputs kept: the fused step needs less memory.
      CHECK(a1.high_water() < a2.high_water());
    }
  }
}

TEST_CASE("hourglass: a fused training step gives the unfused step's bits") {
  // The direct product: the CPU's Winograd training convolutions round
  // otherwise (the next case).
  ops::ScopedCpuConvAlgorithm direct(ops::CpuConvAlgorithm::Direct);
  const nn::HourglassConfig c = compact_hourglass_config();
  nn::HourglassNet fused(c, 3), plain(c, 3);
  Tensor x = random_tensor({2, 3, 64, 64}, 7);
  Arena a1, a2;
  nn::HourglassOutputs of = fused.forward(a1, x, nn::Mode::Train);
  nn::HourglassGrads grads;
  std::vector<Tensor> storage;  // owns the gradients' memory
  auto keep = [&](Tensor t) -> TensorView {
    storage.push_back(std::move(t));
    return storage.back();
  };
  nn::HourglassOutputs op;
  {
    nn::ScopedUnfused off;
    op = plain.forward(a2, x, nn::Mode::Train);
    uint32_t seed = 80;
    for (const TensorView& h : op.heatmaps) grads.heatmaps.push_back(keep(random_tensor(h.shape, ++seed)));
    grads.attributes = keep(random_tensor(op.attributes.shape, ++seed));
    grads.domain = keep(random_tensor(op.domain.shape, ++seed));
    plain.backward(a2, grads);
  }
  fused.backward(a1, grads);
  for (size_t s = 0; s < of.heatmaps.size(); ++s) CHECK(same_bits(of.heatmaps[s], op.heatmaps[s]));
  CHECK(same_bits(of.attributes, op.attributes));
  CHECK(same_bits(of.domain, op.domain));
  check_same_state(fused, plain);
  CHECK(a1.high_water() < a2.high_water());
}

TEST_CASE("hourglass: a training step with the CPU's Winograd 3x3 products differs from the direct step no more than rounding does") {
  // Batch 4: the 16x16 residual layers have 64 tiles, so Winograd runs there
  // (forward, input and weight gradients). An untrained network's parameter gradients
  // are not smooth in the rounding (ReLU and max-pool choices flip): the
  // direct step on an input scaled by 1 + 1e-6 moves conv1's weight gradient
  // by 2.6 %. So the measure is that step: Winograd's step must stay as close
  // to the direct one as it (the outputs, smooth, within 1e-4).
  const nn::HourglassConfig c = compact_hourglass_config();
  Tensor x = random_tensor({4, 3, 64, 64}, 17), nudged = random_tensor({4, 3, 64, 64}, 17);
  for (int64_t i = 0; i < nudged.numel(); ++i) nudged.f32()[i] *= 1.0f + 1e-6f;
  std::vector<Tensor> storage;  // owns the upstream gradients
  nn::HourglassGrads grads;
  struct Step {
    explicit Step(const nn::HourglassConfig& config) : net(config, 3) {}
    nn::HourglassNet net;
    Arena arena;
    nn::HourglassOutputs out;
  };
  auto step = [&](Step& st, const Tensor& input, ops::CpuConvAlgorithm algo) {
    ops::ScopedCpuConvAlgorithm scoped(algo);
    st.out = st.net.forward(st.arena, input, nn::Mode::Train);
    if (grads.heatmaps.empty()) {
      uint32_t seed = 180;
      auto keep = [&](Tensor t) -> TensorView {
        storage.push_back(std::move(t));
        return storage.back();
      };
      for (const TensorView& h : st.out.heatmaps) grads.heatmaps.push_back(keep(random_tensor(h.shape, ++seed)));
      grads.attributes = keep(random_tensor(st.out.attributes.shape, ++seed));
      grads.domain = keep(random_tensor(st.out.domain.shape, ++seed));
    }
    st.net.backward(st.arena, grads);
  };
  Step direct(c), noise(c), wino(c);
  step(direct, x, ops::CpuConvAlgorithm::Direct);
  step(noise, nudged, ops::CpuConvAlgorithm::Direct);
  step(wino, x, ops::CpuConvAlgorithm::Winograd);
  // Outputs: smooth in the rounding.
  for (size_t s = 0; s < wino.out.heatmaps.size(); ++s) {
    const TensorView a = wino.out.heatmaps[s], b = direct.out.heatmaps[s];
    float worst = 0.f;
    for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.f32()[i] - b.f32()[i]));
    CHECK(worst < 1e-4f);
  }
  // Parameter gradients: distance to the direct step, all tensors together.
  auto distance = [&](Step& st) {
    const std::vector<nn::Param> pa = st.net.parameters(), pb = direct.net.parameters();
    REQUIRE(pa.size() == pb.size());
    double d2 = 0.0;
    for (size_t i = 0; i < pa.size(); ++i)
      for (int64_t j = 0; j < pa[i].grad->numel(); ++j) {
        const double d = double(pa[i].grad->f32()[j]) - pb[i].grad->f32()[j];
        d2 += d * d;
      }
    return std::sqrt(d2);
  };
  const double by_winograd = distance(wino), by_rounding = distance(noise);
  MESSAGE("parameter gradients' distance to the direct step: Winograd ", by_winograd, ", input nudged by 1e-6 ",
          by_rounding);
  CHECK(by_winograd > 0.0);  // Winograd did run
  CHECK(by_rounding > 0.0);
  CHECK(by_winograd < 3.0 * by_rounding);
}
