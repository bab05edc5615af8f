// Optimizers (nn/optimizer.h) against torch.optim on fixed gradients
// (tests/fixtures/lifter_optim.safetensors from tests/make_lifter_fixtures.py),
// gradient clipping, learning-rate schedules and optimizer-state files.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "dofpose/nn/linear.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/nn/serialize.h"
#include "tests/fixture_loader.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::nn;
using dofpose::test::FixtureCase;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::TempDir;

namespace {

std::vector<float> to_vec(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }

// Parameters p0, p1, ... of one fixture case, with gradient tensors.
struct ParamSet {
  std::vector<Tensor> values, grads;
  std::vector<Param> params;
  ParamSet(const FixtureCase& c, const char* suffix) {
    const int n = c.param_int("params");
    for (int i = 0; i < n; ++i) {
      const std::string key = "p" + std::to_string(i) + suffix;
      values.push_back(Tensor::from_floats(c.shape(key), c.f32(key).data()));
      grads.push_back(Tensor::zeros(c.shape(key)));
    }
    for (int i = 0; i < n; ++i)
      params.push_back({"p" + std::to_string(i), &values[size_t(i)], &grads[size_t(i)]});
  }
};

std::unique_ptr<Optimizer> make_optimizer(const FixtureCase& c, std::vector<Param> params) {
  if (c.param_str("type") == "rmsprop") {
    RMSpropOptions o;
    o.lr = float(c.param_double("lr"));
    o.alpha = float(c.param_double("alpha"));
    o.eps = float(c.param_double("eps"));
    o.weight_decay = float(c.param_double("weight_decay"));
    o.momentum = float(c.param_double("momentum"));
    return std::make_unique<RMSprop>(std::move(params), o);
  }
  AdamOptions o;
  o.lr = float(c.param_double("lr"));
  o.beta1 = float(c.param_double("beta1"));
  o.beta2 = float(c.param_double("beta2"));
  o.eps = float(c.param_double("eps"));
  o.weight_decay = float(c.param_double("weight_decay"));
  return std::make_unique<Adam>(std::move(params), o);
}

}  // namespace

TEST_CASE("optimizer parity with torch.optim: RMSprop and Adam, three steps") {
  int checked = 0;
  for (const FixtureCase& c : test::load_fixture("lifter_optim.safetensors")) {
    const std::string type = c.param_str("type");
    if (type == "clip") continue;
    CAPTURE(c.name);
    ParamSet ps(c, ".init");
    auto opt = make_optimizer(c, ps.params);
    CHECK(opt->type() == type);
    for (int s = 0; s < c.param_int("steps"); ++s) {
      for (size_t i = 0; i < ps.grads.size(); ++i) {
        const std::string g = "p" + std::to_string(i) + ".grad" + std::to_string(s);
        copy(Tensor::from_floats(c.shape(g), c.f32(g).data()), ps.grads[i]);
      }
      opt->step();
      for (size_t i = 0; i < ps.values.size(); ++i) {
        const std::string key = "p" + std::to_string(i) + ".after" + std::to_string(s);
        DOFPOSE_CHECK_CLOSE(c.name + " " + key, to_vec(ps.values[i]), c.f32(key), 1e-6, 1e-5);
      }
    }
    CHECK(opt->step_count() == c.param_int("steps"));
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_") {
  int checked = 0;
  for (const FixtureCase& c : test::load_fixture("lifter_optim.safetensors")) {
    if (c.param_str("type") != "clip") continue;
    CAPTURE(c.name);
    ParamSet ps(c, ".grad");
    for (size_t i = 0; i < ps.grads.size(); ++i) copy(ps.values[i], ps.grads[i]);
    const float total = clip_grad_norm(ps.params, float(c.param_double("max_norm")));
    CHECK(total == doctest::Approx(c.f32("total_norm")[0]).epsilon(1e-6));
    for (size_t i = 0; i < ps.grads.size(); ++i) {
      const std::string key = "p" + std::to_string(i) + ".clipped";
      DOFPOSE_CHECK_CLOSE(c.name + " " + key, to_vec(ps.grads[i]), c.f32(key), 1e-7, 1e-6);
    }
    ++checked;
  }
  CHECK(checked == 2);
}

TEST_CASE("learning-rate schedules: step decay and Martinez exponential decay") {
  const StepDecay step{1e-2f, 0.5f, 10};
  CHECK(step.lr(0) == doctest::Approx(1e-2));
  CHECK(step.lr(9) == doctest::Approx(1e-2));
  CHECK(step.lr(10) == doctest::Approx(5e-3));
  CHECK(step.lr(25) == doctest::Approx(2.5e-3));
  const ExponentialDecay martinez{1e-3f, 0.96f, 100000, false};
  CHECK(martinez.lr(0) == doctest::Approx(1e-3));
  CHECK(martinez.lr(50000) == doctest::Approx(1e-3 * std::sqrt(0.96)));
  CHECK(martinez.lr(200000) == doctest::Approx(1e-3 * 0.96 * 0.96));
  const ExponentialDecay stair{1e-3f, 0.96f, 100000, true};
  CHECK(stair.lr(199999) == doctest::Approx(1e-3 * 0.96));
  CHECK(contains(error_of([] { StepDecay{1.f, 0.1f, 0}.lr(3); }), "step_size must be >= 1"));
}

TEST_CASE("optimizer state: save, load, continue, mismatches are clear errors") {
  TempDir dir("optim");
  auto run_steps = [](Linear& l, Optimizer& opt, int steps, float offset) {
    for (int s = 0; s < steps; ++s) {
      for (int64_t i = 0; i < l.grad_weight.numel(); ++i)
        l.grad_weight.f32()[i] = std::sin(float(i) + offset + float(opt.step_count()));
      for (int64_t i = 0; i < l.grad_bias.numel(); ++i)
        l.grad_bias.f32()[i] = std::cos(float(i) + offset + float(opt.step_count()));
      opt.step();
    }
  };
  for (const std::string type : {"rmsprop", "adam"}) {
    CAPTURE(type);
    Linear a(4, 3), b(4, 3);
    a.init_uniform(1);
    std::unique_ptr<Optimizer> oa, ob;
    if (type == "rmsprop") {
      oa = std::make_unique<RMSprop>(a.parameters(), RMSpropOptions{1e-2f, 0.9f, 1e-8f, 0.f, 0.5f});
      ob = std::make_unique<RMSprop>(b.parameters(), RMSpropOptions{1e-2f, 0.9f, 1e-8f, 0.f, 0.5f});
    } else {
      oa = std::make_unique<Adam>(a.parameters(), AdamOptions{});
      ob = std::make_unique<Adam>(b.parameters(), AdamOptions{});
    }
    run_steps(a, *oa, 4, 0.f);
    const std::string path = dir.file(type + ".safetensors");
    save_module(a, path, {{"kind", "linear"}, {"config", "{}"}}, oa.get());
    WeightsFile f(path);
    CHECK(f.has(type == "rmsprop" ? "optim.weight.momentum_buffer" : "optim.bias.exp_avg"));
    load_module(b, f);
    ob->load_state(f);
    CHECK(ob->step_count() == 4);
    run_steps(a, *oa, 3, 0.f);
    run_steps(b, *ob, 3, 0.f);
    CHECK(to_vec(a.weight) == to_vec(b.weight));
    CHECK(to_vec(a.bias) == to_vec(b.bias));
  }
  // Adam state into RMSprop, and a file without optimizer state.
  Linear l(4, 3);
  RMSprop rms(l.parameters());
  CHECK(contains(error_of([&] { rms.load_state(WeightsFile(dir.file("adam.safetensors"))); }),
                 "holds 'adam' state, this optimizer is 'rmsprop'"));
  save_module(l, dir.file("plain.safetensors"), {{"kind", "linear"}});
  CHECK(contains(error_of([&] { rms.load_state(WeightsFile(dir.file("plain.safetensors"))); }),
                 "no 'optimizer' metadata"));
  // Optimizer state of a different model: the missing buffer is named.
  Linear other(5, 3);
  RMSprop rms_other(other.parameters());
  const std::string e =
      error_of([&] { rms_other.load_state(WeightsFile(dir.file("rmsprop.safetensors"))); });
  CHECK(contains(e, "optim.weight.square_avg"));
  CHECK(contains(e, "[3,5]"));
}

TEST_CASE("optimizer: invalid options and parameters are rejected") {
  Linear l(2, 2);
  CHECK(contains(error_of([&] { RMSprop(l.parameters(), RMSpropOptions{-1.f}); }),
                 "RMSprop: invalid options"));
  CHECK(contains(error_of([&] { Adam(l.parameters(), AdamOptions{1e-3f, 1.f}); }),
                 "Adam: invalid options"));
  Tensor v = Tensor::zeros({2}), g = Tensor::zeros({3});
  CHECK(contains(error_of([&] { RMSprop({{"w", &v, &g}}); }),
                 "parameter 'w' needs a value and a gradient of one shape"));
}
