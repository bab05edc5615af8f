// 16-bit activation tensors on the CPU reference: ops::cast and the ops of
// the hourglass's fused inference (conv2d_fused_forward, conv2d_forward,
// maxpool2x2_forward, upsample_add_forward) with F16 / BF16 tensors against
// PyTorch (tests/fixtures/half_activations.safetensors, make_fixtures.py:
// the op in float32 on the 16-bit inputs, rounded once by .half() /
// .bfloat16()); their errors; and a hourglass whose fused inference stores
// its activations in 16 bits.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dofpose/nn/hourglass.h"
#include "dofpose/ops.h"
#include "tests/alloc_counter.h"
#include "tests/fixture_loader.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose_test;
using dofpose::test::FixtureCase;

namespace {

DType dtype_of(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  fail("fixture: unknown dtype '", name, "'");
}

// A tensor of dtype t holding `values` (exact in t: the fixture rounded them).
Tensor make(const std::vector<float>& values, const Shape& s, DType t) {
  Tensor f = Tensor::from_floats(s, values.data());
  if (t == DType::F32) return f;
  Tensor out = Tensor::empty(s, t);
  ops::cast(f, out);
  return out;
}

// An output buffer of dtype t filled with 777 (an unwritten element shows).
Tensor poisoned(const Shape& s, DType t) {
  return make(std::vector<float>(size_t(s.numel()), 777.f), s, t);
}

std::vector<float> values_of(const TensorView& t) {
  Tensor f = Tensor::empty(t.shape);
  ops::cast(t, f);
  return std::vector<float>(f.f32(), f.f32() + f.numel());
}

// One unit in the last place of a value of dtype t near v (the spacing of t's
// values at v; at least the smallest normal's).
double ulp(double v, DType t) {
  const int mantissa = t == DType::F16 ? 10 : t == DType::BF16 ? 7 : 23;
  const int min_exp = t == DType::F16 ? -14 : -126;
  const int e = v == 0 ? min_exp : std::max(min_exp, int(std::floor(std::log2(std::fabs(v)))));
  return std::ldexp(1.0, e - mantissa);
}

// got within `ulps` units of t's last place of ref, element-wise (equal bits
// when ulps == 0; infinities must match exactly).
void check_ulps(const std::string& what, const std::vector<float>& got,
                const std::vector<float>& ref, DType t, double ulps) {
  REQUIRE_MESSAGE(got.size() == ref.size(), what, ": ", got.size(), " values, expected ",
                  ref.size());
  int64_t bad = 0, worst = -1;
  double worst_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::isinf(ref[i]) ? (got[i] == ref[i] ? 0.0 : INFINITY)
                                          : std::fabs(double(got[i]) - ref[i]);
    const double tol = ulps * ulp(ref[i], t);
    if (!(err <= tol)) {
      ++bad;
      if (worst < 0 || err / std::max(tol, 1e-30) > worst_err) {
        worst = int64_t(i);
        worst_err = err / std::max(tol, 1e-30);
      }
    }
  }
  CHECK_MESSAGE(bad == 0, what, ": ", bad, " of ", ref.size(), " values off by more than ", ulps,
                " ulp of ", dtype_name(t), "; worst [", worst, "] got ",
                worst >= 0 ? got[size_t(worst)] : 0.f, " expected ",
                worst >= 0 ? ref[size_t(worst)] : 0.f);
}

ops::BatchNormRef bn_ref(const FixtureCase& c, const std::string& prefix, std::vector<Tensor>& keep) {
  ops::BatchNormRef r;
  TensorView* slots[] = {&r.mean, &r.var, &r.gamma, &r.beta};
  const char* names[] = {"mean", "var", "gamma", "beta"};
  for (int i = 0; i < 4; ++i) {
    const std::string n = prefix + names[i];
    keep.push_back(Tensor::from_floats(c.shape(n), c.f32(n).data()));
    *slots[i] = keep.back();
  }
  return r;
}

}  // namespace

TEST_CASE("16-bit activations: cast, conv, max-pool and upsample-add match PyTorch (CPU)") {
  const auto cases = test::load_fixture("half_activations.safetensors");
  int convs = 0;
  for (const FixtureCase& c : cases) {
    CAPTURE(c.name);
    const std::string kind = c.param_str("kind");
    const DType xt = dtype_of(c.param_str("xdtype")), yt = dtype_of(c.param_str("ydtype"));
    if (kind == "cast") {
      const Tensor x = make(c.f32("x"), c.shape("x"), DType::F32);
      Tensor y = Tensor::empty(x.shape(), yt);
      ops::cast(x, y);
      check_ulps(c.name, values_of(y), c.f32("y"), yt, 0);  // rounding is exact
      // And back: a 16-bit value widens exactly.
      Tensor back = Tensor::empty(x.shape());
      ops::cast(y, back);
      check_ulps(c.name + " widened", values_of(back), c.f32("y"), DType::F32, 0);
    } else if (kind == "conv") {
      ++convs;
      const Tensor x = make(c.f32("x"), c.shape("x"), xt);
      // The fixture's 16-bit values survive the cast unchanged.
      check_ulps(c.name + " x", values_of(x), c.f32("x"), DType::F32, 0);
      const Tensor w = Tensor::from_floats(c.shape("weight"), c.f32("weight").data());
      const Tensor b = Tensor::from_floats(c.shape("bias"), c.f32("bias").data());
      std::vector<Tensor> keep;
      ops::ConvFusionRef f;
      if (c.param_bool("in_bn")) f.in_bn = bn_ref(c, "in_bn_", keep);
      if (c.param_bool("out_bn")) f.out_bn = bn_ref(c, "out_bn_", keep);
      f.out_relu = c.param_bool("relu");
      Tensor r;
      if (c.param_bool("residual")) {
        r = make(c.f32("residual"), c.shape("residual"), yt);
        f.residual = r;
      }
      ops::ConvParams p;
      p.stride = c.param_int("stride");
      p.pad = c.param_int("pad");
      Tensor y = poisoned(c.shape("y"), yt);
      ops::conv2d_fused_forward(x, w, b, y, p, f);
      // float32 sums in another order than PyTorch's: the rounding may land
      // one step apart; a float32 result gets the float32 golden tolerance.
      if (yt == DType::F32)
        DOFPOSE_CHECK_CLOSE(c.name, values_of(y), c.f32("y"), 1e-5, 1e-4);
      else
        check_ulps(c.name, values_of(y), c.f32("y"), yt, 1);
      // conv2d_forward takes 16-bit activations too (bias only).
      if (!f.in_bn.mean.empty() || !f.out_bn.mean.empty() || f.out_relu || !r.empty()) continue;
      Tensor y2 = poisoned(c.shape("y"), yt);
      ops::conv2d_forward(x, w, b, y2, p);
      CHECK(same_bits(y, y2));
    } else if (kind == "maxpool") {
      const Tensor x = make(c.f32("x"), c.shape("x"), xt);
      Tensor y = poisoned(c.shape("y"), yt);
      ops::maxpool2x2_forward(x, y);
      check_ulps(c.name, values_of(y), c.f32("y"), yt, 0);
    } else if (kind == "upsample_add") {
      const Tensor a = make(c.f32("a"), c.shape("a"), xt);
      const Tensor low = make(c.f32("low"), c.shape("low"), xt);
      Tensor y = poisoned(c.shape("y"), yt);
      ops::upsample_add_forward(a, low, y);
      check_ulps(c.name, values_of(y), c.f32("y"), yt, 0);  // one rounding of an exact sum
    } else {
      FAIL("unknown fixture kind ", kind);
    }
  }
  CHECK(convs == 7);
}

TEST_CASE("16-bit activations: errors name the tensor and the dtypes expected") {
  Tensor x16 = Tensor::zeros({1, 2, 4, 4}, DType::F16);
  Tensor xb16 = Tensor::zeros({1, 2, 4, 4}, DType::BF16);
  Tensor x32 = Tensor::zeros({1, 2, 4, 4});
  Tensor w = Tensor::zeros({3, 2, 1, 1});
  Tensor y16 = Tensor::zeros({1, 3, 4, 4}, DType::F16);
  Tensor yb16 = Tensor::zeros({1, 3, 4, 4}, DType::BF16);
  Tensor i32 = Tensor::zeros({1, 2, 4, 4}, DType::I32);
  CHECK(contains(error_of([&] { ops::cast(i32, x32); }),
                 "cast: tensor 'x' has dtype I32, expected F32, F16 or BF16"));
  CHECK(contains(error_of([&] { ops::cast(x16, Tensor::zeros({2, 2, 4, 4})); }), "'y'"));
  CHECK(contains(error_of([&] { ops::conv2d_fused_forward(x16, w, {}, yb16, {}, {}); }),
                 "x is F16 and y BF16; one 16-bit type per convolution"));
  ops::ConvFusionRef f;
  Tensor r32 = Tensor::zeros({1, 3, 4, 4});
  f.residual = r32;
  CHECK(contains(error_of([&] { ops::conv2d_fused_forward(x16, w, {}, y16, {}, f); }),
                 "tensor 'residual' has dtype F32, expected F16 (the dtype of 'y')"));
  Tensor w16 = Tensor::zeros({3, 2, 1, 1}, DType::F16);
  CHECK(contains(error_of([&] { ops::conv2d_forward(x16, w16, {}, y16, {}); }),
                 "tensor 'weight' has dtype F16, expected F32"));
  Tensor p16 = Tensor::zeros({1, 2, 2, 2}, DType::BF16);
  CHECK(contains(error_of([&] { ops::maxpool2x2_forward(x16, p16); }),
                 "tensor 'y' has dtype BF16, expected F16 (the dtype of 'x')"));
  Tensor low = Tensor::zeros({1, 2, 2, 2}, DType::F16);
  CHECK(contains(error_of([&] { ops::upsample_add_forward(xb16, low, xb16); }),
                 "tensor 'low' has dtype F16, expected BF16 (the dtype of 'a')"));
  // Ops without 16-bit support keep asking for F32.
  CHECK(contains(error_of([&] { ops::relu_forward(x16, x16); }), "has dtype F16, expected F32"));
  nn::HourglassNet net(compact_hourglass_config(), 1);
  CHECK(contains(error_of([&] { net.set_activation_dtype(DType::I32); }),
                 "I32 is not F32, F16 or BF16"));
}

TEST_CASE("hourglass: fused inference with 16-bit activations stays close to float32 (CPU)") {
  const nn::HourglassConfig c = compact_hourglass_config();
  nn::HourglassNet net(c, 3);
  randomise_bn_buffers(net, 60);  // BatchNorms away from (0, 1)
  Tensor x = random_tensor({2, 3, 64, 64}, 9);
  nn::ScopedNoGrad no_grad;
  Arena a32;
  const nn::HourglassOutputs ref = net.forward(a32, x, nn::Mode::Infer);
  // Rounding every activation to 16 bits: F16 keeps 11 significant bits,
  // BF16 8; the errors compound over the network's depth.
  for (auto [t, tol] : {std::pair{DType::F16, 5e-3}, std::pair{DType::BF16, 4e-2}}) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    net.set_activation_dtype(t);
    Arena a16;
    const nn::HourglassOutputs out = net.forward(a16, x, nn::Mode::Infer);
    net.set_activation_dtype(DType::F32);
    REQUIRE(out.heatmaps.size() == ref.heatmaps.size());
    auto compare = [&](const std::string& what, const TensorView& got, const TensorView& want) {
      CAPTURE(what);
      REQUIRE(got.dtype == DType::F32);  // the outputs stay float32
      const std::vector<float> g = values_of(got), r = values_of(want);
      double scale = 0, err = 0;
      for (size_t i = 0; i < r.size(); ++i) {
        scale = std::max(scale, double(std::fabs(r[i])));
        err = std::max(err, std::fabs(double(g[i]) - r[i]));
      }
      INFO(what, ": max error ", err, " of max |value| ", scale);
      if (std::getenv("DOFPOSE_REPORT_ERRORS")) MESSAGE(type, " ", what, ": max error ", err, " of max |value| ", scale);
      CHECK(err <= tol * scale);
      CHECK(err > 0);  // 16-bit storage did take effect
    };
    for (size_t s = 0; s < ref.heatmaps.size(); ++s)
      compare("heatmaps", out.heatmaps[s], ref.heatmaps[s]);
    compare("features", out.features, ref.features);
    if (!ref.attributes.empty()) compare("attributes", out.attributes, ref.attributes);
    // Half the bytes for the activations between stem and heads.
    CHECK(a16.high_water() < a32.high_water() * 3 / 4);
  }
}

TEST_CASE("16-bit activations on the CPU: after the first call, the ops allocate nothing") {
  Tensor x = Tensor::empty({2, 8, 16, 16}, DType::F16);
  ops::cast(random_tensor(x.shape(), 5), x);
  Tensor w = random_tensor({8, 8, 3, 3}, 6), b = random_tensor({8}, 7);
  Tensor y = Tensor::empty({2, 8, 16, 16}, DType::F16);
  Tensor pooled = Tensor::empty({2, 8, 8, 8}, DType::F16);
  Tensor merged = Tensor::empty({2, 8, 16, 16}, DType::F16);
  ops::ConvFusionRef f;
  f.residual = x;
  auto run = [&] {
    ops::conv2d_fused_forward(x, w, b, y, {1, 1, 1}, f);
    ops::maxpool2x2_forward(y, pooled);
    ops::upsample_add_forward(y, pooled, merged);
  };
  run();  // sizes the per-thread float32 working buffers
  const int64_t before = dofpose_test::allocations();
  run();
  run();
  CHECK(dofpose_test::allocations() == before);
}
