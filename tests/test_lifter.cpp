// The lifters (nn/lifter.h) against the PyTorch reference
// (weights_tools/reference_lifter.py; fixtures by tests/make_lifter_fixtures.py),
// plus checkpoints, load errors, a small training run and determinism.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "dofpose/nn/lifter.h"
#include "dofpose/nn/optimizer.h"
#include "dofpose/nn/serialize.h"
#include "tests/fixture_loader.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::nn;
using dofpose::test::FixtureCase;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::kNoError;
using dofpose_test::TempDir;

namespace {

std::vector<float> to_vec(const TensorView& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

std::string fixture_path(const std::string& name) {
  return std::string(DOFPOSE_FIXTURES_DIR) + "/" + name;
}

LifterConfig small_config(const std::string& kind, float dropout = 0.f) {
  LifterConfig c;
  c.kind = kind;
  c.width = 16;
  c.blocks = 1;
  c.dropout = dropout;
  return c;
}

// Every parameter and buffer value, concatenated as raw bytes.
std::string state_bytes(Module& m) {
  std::string s;
  std::vector<Param> p;
  std::vector<Buffer> b;
  m.collect("", p, b);
  for (const Param& q : p) s.append(static_cast<const char*>(q.value->view().data), q.value->nbytes());
  for (const Buffer& q : b) s.append(static_cast<const char*>(q.value->view().data), q.value->nbytes());
  return s;
}

// Synthetic task shaped like lifting: a hidden low-dimensional "pose" z
// (kLatent values) is seen through a fixed random linear "projection" x = A z
// (the 2D input) and a fixed random linear "3D pose" y = B z (pelvis 0), so y
// is a fixed linear map of x. Everything is in normalised units.
struct Synthetic {
  int64_t n;
  std::vector<float> x, y;
};
Synthetic make_synthetic(const LifterConfig& c, int64_t n, uint32_t seed) {
  constexpr int kLatent = 8;
  const int in = c.input_dim(), out = c.output_dim();
  std::mt19937 map_rng(12345);  // the maps are the same for every data set
  std::normal_distribution<float> unit(0.f, 1.f);
  const float scale = 1.f / std::sqrt(float(kLatent));
  std::vector<float> a(size_t(in) * kLatent), b(size_t(out) * kLatent);
  for (float& v : a) v = unit(map_rng) * scale;
  for (float& v : b) v = unit(map_rng) * scale;
  std::mt19937 rng(seed);
  Synthetic s{n, std::vector<float>(size_t(n) * in), std::vector<float>(size_t(n) * out, 0.f)};
  float z[kLatent];
  for (int64_t r = 0; r < n; ++r) {
    for (float& v : z) v = unit(rng);
    for (int i = 0; i < in; ++i) {
      float acc = 0.f;
      for (int k = 0; k < kLatent; ++k) acc += a[size_t(i * kLatent + k)] * z[k];
      s.x[size_t(r * in + i)] = acc;
    }
    for (int o = 3; o < out; ++o) {
      float acc = 0.f;
      for (int k = 0; k < kLatent; ++k) acc += b[size_t(o * kLatent + k)] * z[k];
      s.y[size_t(r * out + o)] = acc;
    }
  }
  return s;
}

float eval_loss(Lifter& l, const Synthetic& s) {
  Arena arena;
  const int in = l.config().input_dim(), out = l.config().output_dim();
  TensorView x(const_cast<float*>(s.x.data()), {s.n, in});
  TensorView y(const_cast<float*>(s.y.data()), {s.n, out});
  LifterOutput o = l.forward(arena, x, Mode::Infer);
  return ops::l1_forward(o.final(), y);
}

// `steps` minibatch steps (batch rows taken in order, wrapping), max-norm after each.
void train(Lifter& l, Optimizer& opt, const Synthetic& s, int steps, int64_t batch,
           const StepDecay* schedule = nullptr) {
  Arena arena;
  const int in = l.config().input_dim(), out = l.config().output_dim();
  std::vector<float> xb(size_t(batch) * in), yb(size_t(batch) * out);
  for (int step = 0; step < steps; ++step) {
    for (int64_t r = 0; r < batch; ++r) {
      const int64_t src = (step * batch + r) % s.n;
      std::memcpy(&xb[size_t(r * in)], &s.x[size_t(src * in)], sizeof(float) * in);
      std::memcpy(&yb[size_t(r * out)], &s.y[size_t(src * out)], sizeof(float) * out);
    }
    arena.reset();
    if (schedule) opt.lr = schedule->lr(step);
    TensorView x(xb.data(), {batch, in}), y(yb.data(), {batch, out});
    LifterOutput o = l.forward(arena, x, Mode::Train);
    std::vector<TensorView> d;
    lifter_l1_loss(arena, o, y, d);
    l.backward(arena, d);
    opt.step();
    apply_max_norm(l, l.config().max_norm);
  }
}

void parity(const std::string& kind) {
  WeightsFile model_file(fixture_path("lifter_" + kind + "_model.safetensors"));
  for (const FixtureCase& c : test::load_fixture("lifter_" + kind + "_case.safetensors")) {
    CAPTURE(kind);
    CAPTURE(c.name);
    std::unique_ptr<Lifter> lifter = load_lifter(model_file);
    REQUIRE(lifter->config().kind == kind);
    REQUIRE(lifter->num_blocks() == c.param_int("blocks"));
    const Mode mode = c.param_bool("train") ? Mode::Train : Mode::Infer;
    // Fixture-loader vectors are const; the ops take views of mutable memory.
    std::vector<float> xv = c.f32("x"), tv = c.f32("target");
    TensorView x(xv.data(), c.shape("x")), target(tv.data(), c.shape("target"));
    Arena arena;
    LifterOutput out = lifter->forward(arena, x, mode);
    for (int b = 0; b < lifter->num_blocks(); ++b) {
      const std::string name = "pose" + std::to_string(b + 1);
      DOFPOSE_CHECK_CLOSE(kind + " " + c.name + " " + name, to_vec(out.poses[size_t(b)]),
                          c.f32(name), 1e-5, 1e-4);
    }
    std::vector<TensorView> d;
    const float loss = lifter_l1_loss(arena, out, target, d);
    CHECK(loss == doctest::Approx(c.f32("loss")[0]).epsilon(1e-5));
    // Garbage in every gradient: backward must overwrite, not accumulate.
    for (const Param& p : lifter->parameters()) fill(*p.grad, 777.f);
    TensorView dx = lifter->backward(arena, d);
    DOFPOSE_CHECK_CLOSE(kind + " " + c.name + " dx", to_vec(dx), c.f32("dx"), 1e-6, 1e-3);
    int grads = 0;
    for (const Param& p : lifter->parameters()) {
      const std::string key = "grad/" + p.name;
      REQUIRE_MESSAGE(c.has(key), "fixture lacks " << key);
      DOFPOSE_CHECK_CLOSE(kind + " " + c.name + " " + key, to_vec(*p.grad), c.f32(key), 1e-5,
                          1e-3);
      ++grads;
    }
    CHECK(grads > 0);
    if (mode == Mode::Train)
      for (const Buffer& b : lifter->buffers()) {
        const std::string key = "after/" + b.name;
        if (!c.has(key)) continue;  // normalisation buffers do not change
        DOFPOSE_CHECK_CLOSE(kind + " running stats " + b.name, to_vec(*b.value), c.f32(key),
                            1e-5, 1e-4);
      }
  }
}

}  // namespace

TEST_CASE("lifter config: JSON round trip, defaults and clear errors") {
  LifterConfig c = LifterConfig::from_json_string("{}");
  CHECK(c.kind == "progressive");
  CHECK(c.width == 1024);
  CHECK(c.blocks == 2);
  CHECK(c.input_dim() == 32);
  CHECK(c.input_joints().size() == 16);
  CHECK(c.input_joints()[9] == 10);  // neck/nose (9) is skipped
  c.kind = "two_block";
  c.use_attributes = true;
  c.num_joints_in = 17;
  c.width = 48;
  c.max_norm = 0.f;
  const LifterConfig back = LifterConfig::from_json_string(c.to_json_string());
  CHECK(back.to_json_string() == c.to_json_string());
  CHECK(back.input_dim() == 34 + 27);

  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"kind":"mlp"})"); }),
                 "kind must be"));
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"widht":3})"); }),
                 "unknown key \"widht\""));
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"width":"big"})"); }),
                 "wrong type"));
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"num_joints_in":14})"); }),
                 "num_joints_in"));
  CHECK(contains(error_of([] {
                   LifterConfig::from_json_string(R"({"groups":{"distal":[13,16,3]}})");
                 }),
                 "joint 6 appears 0 times"));
  CHECK(contains(error_of([] { LifterConfig::from_json_string("{"); }), "not valid JSON"));
}

TEST_CASE("lifter parity with PyTorch: martinez (train with batch statistics, infer)") {
  parity("martinez");
}
TEST_CASE("lifter parity with PyTorch: progressive (train with batch statistics, infer)") {
  parity("progressive");
}
TEST_CASE("lifter parity with PyTorch: two_block (train with batch statistics, infer)") {
  parity("two_block");
}

TEST_CASE("lifter: progressive block II gradients reach block I regressors") {
  // Only block II's pose gets a gradient; block I's regressors still receive
  // one through the predictions block II consumes (two_block: none).
  for (const std::string kind : {"progressive", "two_block"}) {
    CAPTURE(kind);
    auto l = Lifter::create(small_config(kind), 3);
    Arena arena;
    std::vector<float> xv = dofpose_test::random_floats(size_t(4) * 32, 5);
    LifterOutput out = l->forward(arena, TensorView(xv.data(), {4, 32}), Mode::Train);
    TensorView d2 = arena.alloc({4, 51});
    fill(d2, 0.1f);
    l->backward(arena, {TensorView(), d2});
    double block1_grad = 0;
    for (const Param& p : l->parameters())
      if (p.name.rfind("block1.", 0) == 0)
        for (int64_t i = 0; i < p.grad->numel(); ++i) block1_grad += std::fabs(p.grad->f32()[i]);
    if (kind == "progressive") CHECK(block1_grad > 1e-3);
    else CHECK(block1_grad == 0.0);
  }
}

TEST_CASE("lifter: pelvis is the constant zero and normalisation helpers invert") {
  auto l = Lifter::create(small_config("martinez"), 1);
  std::vector<float> p2 = dofpose_test::random_floats(size_t(6) * 32, 1, -500.f, 500.f);
  std::vector<float> p3 = dofpose_test::random_floats(size_t(6) * 51, 2, -900.f, 900.f);
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 3; ++c) p3[size_t(r * 51 + c)] = 0.f;
  l->fit_normalisation(p2.data(), p3.data(), 6);
  Arena arena;
  TensorView x = l->prepare_input(arena, TensorView(p2.data(), {6, 16, 2}), {});
  CHECK(x.shape == Shape({6, 32}));
  double mean0 = 0;
  for (int r = 0; r < 6; ++r) mean0 += x.f32()[r * 32];
  CHECK(std::fabs(mean0) < 1e-4);
  TensorView yn = l->normalise_output(arena, TensorView(p3.data(), {6, 17, 3}));
  TensorView y = l->denormalise_output(arena, yn);
  DOFPOSE_CHECK_CLOSE("denormalise(normalise(y))", to_vec(y), p3, 1e-2, 1e-5);
  LifterOutput out = l->forward(arena, x, Mode::Infer);
  for (int r = 0; r < 6; ++r)
    for (int c = 0; c < 3; ++c) CHECK(out.final().f32()[r * 51 + c] == 0.f);
  CHECK(contains(error_of([&] {
                   l->prepare_input(arena, TensorView(p2.data(), {6, 32}),
                                    TensorView(p3.data(), {6, 27}));
                 }),
                 "does not use attributes"));
  CHECK(contains(error_of([&] { l->forward(arena, TensorView(p2.data(), {4, 33}), Mode::Infer); }),
                 "input must be [N,32]"));
  std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2, 0, 1, 2};
  std::vector<float> onehot(27);
  encode_attribute_labels(labels.data(), 1, onehot.data());
  CHECK(onehot[0] == 1.f);
  CHECK(onehot[4] == 1.f);
  CHECK(onehot[8] == 1.f);
  CHECK(onehot[1] == 0.f);
  labels[3] = 3;
  CHECK(contains(error_of([&] { encode_attribute_labels(labels.data(), 1, onehot.data()); }),
                 "attribute 3 has label 3"));
}

TEST_CASE("lifter: max-norm clips each Linear weight row") {
  auto l = Lifter::create(small_config("martinez"), 2);
  Linear& first = l->regressors()[0].net->input_layer;
  for (int64_t i = 0; i < first.weight.numel(); ++i) first.weight.f32()[i] *= 10.f;
  const float untouched_bn = l->regressors()[0].net->input_bn.weight.f32()[0] = 5.f;
  apply_max_norm(*l, 1.f);
  for (const Param& p : l->parameters()) {
    if (p.value->shape().ndim != 2) continue;
    const int64_t rows = p.value->shape()[0], cols = p.value->shape()[1];
    for (int64_t r = 0; r < rows; ++r) {
      double sq = 0;
      for (int64_t k = 0; k < cols; ++k) sq += std::pow(p.value->f32()[r * cols + k], 2);
      CHECK(std::sqrt(sq) <= 1.0 + 1e-5);
    }
  }
  CHECK(l->regressors()[0].net->input_bn.weight.f32()[0] == untouched_bn);  // 1-D: not clipped
}

TEST_CASE("dropout: masks are reproducible from (base seed, step) and differ between steps") {
  Dropout a(0.5f, 42), b(0.5f, 42);
  Arena arena;
  std::vector<float> xv(256, 1.f);
  TensorView x(xv.data(), {8, 32});
  const auto y1 = to_vec(a.forward(arena, x, Mode::Train));
  const auto y2 = to_vec(a.forward(arena, x, Mode::Train));
  CHECK(a.step() == 2);
  CHECK(y1 != y2);
  CHECK(to_vec(b.forward(arena, x, Mode::Train)) == y1);
  a.set_seed(42);
  CHECK(to_vec(a.forward(arena, x, Mode::Train)) == y1);
  const auto yi = to_vec(a.forward(arena, x, Mode::Infer));
  CHECK(yi == xv);
  CHECK(a.step() == 1);  // inference does not advance the stream
}

TEST_CASE("lifter: save/load round trip of model and optimizer state resumes bit-exactly") {
  TempDir dir("lifter");
  const LifterConfig c = small_config("progressive");
  const Synthetic data = make_synthetic(c, 64, 9);
  auto a = Lifter::create(c, 11);
  Adam opt_a(a->parameters(), AdamOptions{});
  train(*a, opt_a, data, 3, 16);
  const std::string path = dir.file("ckpt.safetensors");
  save_lifter(*a, path, &opt_a);

  WeightsFile file(path);
  CHECK(file.metadata_or("kind", "") == "lifter");
  CHECK(file.metadata_or("format_version", "") == "1");
  CHECK(file.has("optim.block2.distal.output_layer.weight.exp_avg_sq"));
  CHECK(file.has("norm.output.std"));
  auto b = load_lifter(file);
  CHECK(b->config().to_json_string() == c.to_json_string());
  CHECK(state_bytes(*b) == state_bytes(*a));
  Adam opt_b(b->parameters(), AdamOptions{});
  opt_b.load_state(file);
  CHECK(opt_b.step_count() == 3);
  train(*a, opt_a, data, 2, 16);
  train(*b, opt_b, data, 2, 16);
  CHECK(state_bytes(*b) == state_bytes(*a));
  CHECK(opt_b.step_count() == 5);
}

TEST_CASE("lifter: load errors name the file, the tensor and the shapes") {
  TempDir dir("lifter");
  auto m = Lifter::create(small_config("martinez"), 1);
  const std::string good = dir.file("martinez.safetensors");
  save_lifter(*m, good);
  WeightsFile src(good);

  // Copies `src` into `name`, dropping `skip`, replacing `reshape` by a [3]
  // tensor and adding `extra` ([1]) when given.
  auto variant = [&](const std::string& name, const std::string& skip, const std::string& reshape,
                     const std::string& extra) {
    WeightsWriter w;
    for (const std::string& n : src.names()) {
      if (n == skip) continue;
      if (n == reshape) {
        Tensor t = Tensor::zeros({3});
        w.add(n, t);
      } else {
        Tensor t = src.load_copy(n);
        w.add(n, t);
      }
    }
    if (!extra.empty()) {
      Tensor t = Tensor::zeros({1});
      w.add(extra, t);
    }
    for (const auto& [k, v] : src.metadata()) w.set_metadata(k, v);
    const std::string p = dir.file(name);
    w.write(p);
    return p;
  };
  const std::string tensor = "regressor.blocks.0.bn1.running_var";

  std::string e = error_of([&] { load_lifter(WeightsFile(variant("missing.st", tensor, "", ""))); });
  CHECK(contains(e, "missing.st"));
  CHECK(contains(e, "lacks tensor '" + tensor + "'"));
  CHECK(contains(e, "[16]"));

  e = error_of([&] { load_lifter(WeightsFile(variant("shape.st", "", tensor, ""))); });
  CHECK(contains(e, "'" + tensor + "' has shape [3], expected [16]"));

  e = error_of([&] { load_lifter(WeightsFile(variant("extra.st", "", "", "regressor.bogus"))); });
  CHECK(contains(e, "'regressor.bogus' that the model does not have"));
  CHECK(error_of([&] { load_lifter(WeightsFile(variant("optim.st", "", "", "optim.x.y"))); }) ==
        kNoError);

  auto p = Lifter::create(small_config("progressive"), 1);
  e = error_of([&] { load_lifter_weights(*p, src); });
  CHECK(contains(e, "holds a 'martinez' lifter, this lifter is 'progressive'"));

  // A module that is not a lifter, and a file of another kind.
  save_module(*m, dir.file("hg.st"), {{"kind", "hourglass"}, {"config", "{}"}});
  e = error_of([&] { load_lifter(WeightsFile(dir.file("hg.st"))); });
  CHECK(contains(e, "kind is 'hourglass', expected 'lifter'"));

  // Loading failed checks leave the lifter untouched.
  const std::string before = state_bytes(*m);
  CHECK(error_of([&] { load_module(*m, WeightsFile(dir.file("shape.st"))); }) != kNoError);
  CHECK(state_bytes(*m) == before);
}

TEST_CASE("lifter: a small training run fits a linear 2D->3D map (loss drops > 5x)") {
  for (const std::string kind : {"martinez", "progressive"}) {
    CAPTURE(kind);
    LifterConfig c = small_config(kind, 0.f);
    c.width = 64;
    c.max_norm = 0.f;
    const Synthetic train_set = make_synthetic(c, 1024, 1), test_set = make_synthetic(c, 128, 2);
    auto l = Lifter::create(c, 5);
    Adam opt(l->parameters(), AdamOptions{3e-3f});
    const float before = eval_loss(*l, test_set);
    const int steps = 300;
    const StepDecay schedule{opt.lr, 0.3f, steps / 3};
    train(*l, opt, train_set, steps, 64, &schedule);
    const float after = eval_loss(*l, test_set);
    MESSAGE(kind << ": held-out L1 " << before << " -> " << after);
    CHECK(after * 5.f < before);
  }
}

TEST_CASE("lifter: two identical training runs give bit-identical weights") {
  auto run = [](uint64_t seed) {
    LifterConfig c = small_config("progressive", 0.5f);
    c.use_attributes = true;
    const Synthetic data = make_synthetic(c, 64, 3);
    auto l = Lifter::create(c, seed);
    RMSprop opt(l->parameters(), RMSpropOptions{1e-3f});
    train(*l, opt, data, 6, 16);
    return state_bytes(*l);
  };
  const std::string a = run(21), b = run(21), other = run(22);
  CHECK(a.size() > 1000);
  CHECK(a == b);
  CHECK(a != other);
}

TEST_CASE("lifter: parameter counts and FLOPs of the default configs") {
  // Numbers printed by `python3 weights_tools/reference_lifter.py` for the
  // PyTorch reference; docs/models.md quotes them.
  struct Row {
    const char* kind;
    bool attributes;
    int64_t params, flops;
  };
  const Row rows[] = {{"martinez", false, 4291632, 8557616},
                      {"progressive", false, 25709664, 51265632},
                      {"martinez", true, 4319280, 8612912},
                      {"two_block", false, 25552992, 50952288}};
  for (const Row& r : rows) {
    CAPTURE(std::string(r.kind));
    LifterConfig c;
    c.kind = r.kind;
    c.use_attributes = r.attributes;
    auto l = Lifter::create(c);
    CHECK(l->parameter_count() == r.params);
    CHECK(l->flops_per_pose() == r.flops);
  }
}
