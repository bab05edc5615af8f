// Stacked hourglass (engine/src/nn/hourglass.cpp) against its PyTorch twin
// weights_tools/reference_hourglass.py:
//  * parity on a small config (tests/fixtures/hourglass_small.safetensors,
//    written by tests/make_hourglass_fixtures.py): state_dict names and
//    shapes, every output in inference and training mode, the loss, every
//    parameter gradient, the input gradient and the updated BN statistics;
//  * config JSON, parameter count of the default config (PyTorch's count),
//    empty gradients, save/load, bad input;
//  * slow (DOFPOSE_SLOW_TESTS=1): the full default config forward against
//    PyTorch run at test time.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dofpose/nn/hourglass.h"
#include "dofpose/weights.h"
#include "tests/fixture_loader.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose::nn::HourglassConfig;
using dofpose::nn::HourglassGrads;
using dofpose::nn::HourglassNet;
using dofpose::nn::HourglassOutputs;
using dofpose::nn::Mode;
using dofpose::test::FixtureCase;

namespace {

// Long float32 sums through two stacks of BatchNorm'd residuals, compared
// with a float64 PyTorch run. The absolute tolerance scales with the largest
// element of the tensor: an element near zero is the cancellation of terms as
// large as the largest ones (conv1.weight's gradient reaches 11, and its
// float32 rounding error, PyTorch's as well as ours, ~5e-4, is ~5e-5 of that).
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-3;

double scaled_atol(const std::vector<float>& ref) {
  double m = 1.0;
  for (float v : ref) m = std::max(m, double(std::fabs(v)));
  return kAtol * m;
}

// Mirrors hashed() in tests/make_hourglass_fixtures.py bit for bit (up to
// the rounding of offset + scale * v).
void hashed_fill(const TensorView& t, uint64_t seed, float offset, float scale) {
  float* p = t.f32();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ULL + uint64_t(i);
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    const float u = float(z >> 40) * (1.f / 16777216.f);
    const float v = 2.f * u - 1.f;
    p[i] = offset + scale * v;
  }
}

void hashed_fill(const TensorView& t, const nlohmann::json& gen) {
  hashed_fill(t, gen.at("seed").get<uint64_t>(), gen.at("offset").get<float>(),
              gen.at("scale").get<float>());
}

std::vector<float> to_vector(const TensorView& t) {
  return std::vector<float>(t.f32(), t.f32() + t.numel());
}

Tensor labels_tensor(const FixtureCase& c, const std::string& name) {
  const auto& v = c.i32(name);
  Tensor t = Tensor::empty(c.shape(name), DType::I32);
  std::memcpy(t.view().data, v.data(), v.size() * sizeof(int32_t));
  return t;
}

struct SmallModel {
  nlohmann::json params_spec;  // [[name, shape, seed, offset, scale], ...] in state_dict order
  std::vector<FixtureCase> cases;
  HourglassConfig config;
  std::unique_ptr<HourglassNet> net;

  SmallModel() {
    WeightsFile file(std::string(DOFPOSE_FIXTURES_DIR) + "/hourglass_small.safetensors");
    params_spec = nlohmann::json::parse(file.metadata_or("params", "[]"));
    cases = dofpose::test::load_fixture("hourglass_small.safetensors");
    config = HourglassConfig::from_json_string(cases.at(0).params.at("config").dump());
    net = std::make_unique<HourglassNet>(config, 1);
    std::vector<nn::Param> params;
    std::vector<nn::Buffer> buffers;
    net->collect("", params, buffers);
    // Fill every state_dict entry from its generator, by name.
    std::map<std::string, Tensor*> by_name;
    for (auto& p : params) by_name[p.name] = p.value;
    for (auto& b : buffers) by_name[b.name] = b.value;
    REQUIRE(by_name.size() == params_spec.size());
    for (const auto& e : params_spec) {
      const std::string name = e.at(0).get<std::string>();
      auto it = by_name.find(name);
      REQUIRE_MESSAGE(it != by_name.end(), "PyTorch state_dict entry ", name,
                      " has no engine counterpart");
      hashed_fill(*it->second, e.at(2).get<uint64_t>(), e.at(3).get<float>(),
                  e.at(4).get<float>());
    }
  }

  const FixtureCase& get(const std::string& name) const {
    for (const auto& c : cases)
      if (c.name == name) return c;
    FAIL("no fixture case ", name);
    return cases.front();
  }

  Tensor input(const FixtureCase& c) const {
    const int64_t n = c.params.at("batch").get<int64_t>(), s = config.input_size;
    Tensor x = Tensor::empty({n, 3, s, s});
    hashed_fill(x, c.params.at("x"));
    return x;
  }
};

void check_close(const std::string& what, const TensorView& got, const FixtureCase& c,
                 const std::string& ref_name, double atol = kAtol, double rtol = kRtol) {
  // atol is scaled by the tensor's largest element (scaled_atol).
  CHECK_MESSAGE(got.shape == c.shape(ref_name), what, ": shape ", got.shape.str(),
                " vs PyTorch ", c.shape(ref_name).str());
  const std::vector<float>& ref = c.f32(ref_name);
  DOFPOSE_CHECK_CLOSE(what, to_vector(got), ref, atol * scaled_atol(ref) / kAtol, rtol);
}

// The largest |got - ref| / (atol + rtol |ref|) over a vector: 1 = at the tolerance.
double worst_ratio(const float* got, const float* ref, int64_t n, double atol) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - ref[i]) / (atol + kRtol * std::fabs(ref[i])));
  return worst;
}

}  // namespace

TEST_CASE("hourglass: state_dict names and shapes equal the PyTorch reference") {
  SmallModel m;
  std::vector<nn::Param> params;
  std::vector<nn::Buffer> buffers;
  m.net->collect("", params, buffers);
  // PyTorch's state_dict interleaves parameters and buffers; the engine
  // lists each kind in the same relative order.
  std::vector<std::pair<std::string, Shape>> ref_params, ref_buffers;
  for (const auto& e : m.params_spec) {
    const std::string name = e.at(0).get<std::string>();
    std::vector<int64_t> dims = e.at(1).get<std::vector<int64_t>>();
    const Shape s = Shape::from(dims.data(), int(dims.size()));
    (name.find("running_") != std::string::npos ? ref_buffers : ref_params).push_back({name, s});
  }
  REQUIRE(params.size() == ref_params.size());
  REQUIRE(buffers.size() == ref_buffers.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CHECK_MESSAGE(params[i].name == ref_params[i].first, "parameter ", i);
    CHECK_MESSAGE(params[i].value->shape() == ref_params[i].second, params[i].name);
  }
  for (size_t i = 0; i < buffers.size(); ++i) {
    CHECK_MESSAGE(buffers[i].name == ref_buffers[i].first, "buffer ", i);
    CHECK_MESSAGE(buffers[i].value->shape() == ref_buffers[i].second, buffers[i].name);
  }
}

TEST_CASE("hourglass: inference forward matches PyTorch (small config)") {
  SmallModel m;
  const FixtureCase& c = m.get("infer");
  Tensor x = m.input(c);
  Arena arena;
  HourglassOutputs out = m.net->forward(arena, x, Mode::Infer);
  REQUIRE(out.heatmaps.size() == 2);
  check_close("infer heatmaps (last stack)", out.heatmaps.back(), c, "heatmaps.last");
  check_close("infer attribute logits", out.attributes, c, "attributes");
  check_close("infer domain logits", out.domain, c, "domain");
  nn::SoftArgmax soft(m.config.softargmax_beta);
  check_close("soft-argmax of the last heatmaps", soft.forward(arena, out.heatmaps.back()), c,
              "softargmax");
}

TEST_CASE("hourglass: training forward, loss, every gradient and BN statistics match PyTorch") {
  SmallModel m;
  const FixtureCase& c = m.get("train");
  Tensor x = m.input(c);
  const int64_t hm = m.config.heatmap_size();
  Tensor target = Tensor::empty({x.shape()[0], m.config.num_joints, hm, hm});
  hashed_fill(target, c.params.at("target"));
  Tensor attr_labels = labels_tensor(c, "attr_labels");
  Tensor domain_labels = labels_tensor(c, "domain_labels");

  Arena arena;
  HourglassOutputs out = m.net->forward(arena, x, Mode::Train);
  for (size_t s = 0; s < out.heatmaps.size(); ++s)
    check_close("train heatmaps stack " + std::to_string(s), out.heatmaps[s], c,
                "heatmaps." + std::to_string(s));
  check_close("train attribute logits", out.attributes, c, "attributes");
  check_close("train domain logits", out.domain, c, "domain");

  HourglassGrads g;
  float loss = nn::heatmap_mse_loss(arena, out.heatmaps, target, TensorView(), &g.heatmaps);
  loss += ops::cross_entropy_forward(out.attributes, attr_labels);
  const TensorView domain3 = out.domain.reshape({out.domain.dim(0), 1, 2});
  loss += ops::cross_entropy_forward(domain3, domain_labels);
  g.attributes = arena.alloc(out.attributes.shape);
  ops::cross_entropy_backward(out.attributes, attr_labels, g.attributes);
  TensorView ddomain = arena.alloc(domain3.shape);
  ops::cross_entropy_backward(domain3, domain_labels, ddomain);
  g.domain = ddomain.reshape(out.domain.shape);
  DOFPOSE_CHECK_CLOSE("loss", std::vector<float>{loss}, c.f32("loss"), kAtol, kRtol);

  TensorView dx = m.net->backward(arena, g, true);
  REQUIRE(!dx.empty());
  const int64_t per_image = dx.numel() / dx.dim(0);
  DOFPOSE_CHECK_CLOSE("input gradient (image 0)", std::vector<float>(dx.f32(), dx.f32() + per_image),
                      c.f32("dx0"), scaled_atol(c.f32("dx0")), kRtol);

  // Gradients: one flat vector in parameter order.
  const std::vector<float>& ref_grads = c.f32("grads");
  int64_t offset = 0;
  double worst = 0;
  std::string worst_name;
  for (const nn::Param& p : m.net->parameters()) {
    const int64_t n = p.grad->numel();
    REQUIRE(offset + n <= int64_t(ref_grads.size()));
    std::vector<float> ref(ref_grads.begin() + offset, ref_grads.begin() + offset + n);
    const double atol = scaled_atol(ref);
    DOFPOSE_CHECK_CLOSE("gradient of " + p.name, to_vector(*p.grad), ref, atol, kRtol);
    const double r = worst_ratio(p.grad->f32(), ref.data(), n, atol);
    if (r > worst) worst = r, worst_name = p.name;
    offset += n;
  }
  CHECK(offset == int64_t(ref_grads.size()));
  MESSAGE("worst gradient error: ", worst, " x tolerance, in ", worst_name);

  const std::vector<float>& ref_buffers = c.f32("buffers");
  offset = 0;
  for (const nn::Buffer& b : m.net->buffers()) {
    const int64_t n = b.value->numel();
    REQUIRE(offset + n <= int64_t(ref_buffers.size()));
    std::vector<float> ref(ref_buffers.begin() + offset, ref_buffers.begin() + offset + n);
    DOFPOSE_CHECK_CLOSE("updated " + b.name, to_vector(*b.value), ref, scaled_atol(ref), kRtol);
    offset += n;
  }
  CHECK(offset == int64_t(ref_buffers.size()));
}

TEST_CASE("hourglass: config JSON round trip and errors") {
  HourglassConfig c;
  c.stacks = 3;
  c.num_feats = 64;
  c.domain_head = false;
  c.grl_lambda = 0.25f;
  c.stem_layout = "pytorch-pose";
  const HourglassConfig back = HourglassConfig::from_json_string(c.to_json_string());
  CHECK(back.to_json_string() == c.to_json_string());
  CHECK(back.stem_layout == "pytorch-pose");
  CHECK(HourglassConfig().stem_layout == "newell");
  CHECK(back.stacks == 3);
  CHECK(back.num_feats == 64);
  CHECK(!back.domain_head);
  CHECK(back.grl_lambda == 0.25f);
  // Defaults for missing keys.
  CHECK(HourglassConfig::from_json_string("{}").to_json_string() ==
        HourglassConfig().to_json_string());

  using dofpose_test::error_of;
  const auto contains = [](const std::string& s, const std::string& piece) {
    return s.find(piece) != std::string::npos;
  };
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"stack\": 2}"); }),
                 "unknown key 'stack'"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"input_size\": 100}"); }),
                 "input_size"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"num_feats\": 33}"); }),
                 "num_feats"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"blocks\": 1.5}"); }),
                 "must be an integer"));
  CHECK(contains(error_of([] {
                   HourglassConfig::from_json_string(R"({"stem_layout": "bearpaw"})");
                 }),
                 "'stem_layout' must be \"newell\" or \"pytorch-pose\", got \"bearpaw\""));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"stem_layout\": 1}"); }),
                 "'stem_layout' must be a string"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("[1]"); }), "JSON object"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{"); }), "not valid JSON"));
  // 192 is a multiple of 64 but its 48x48 heatmaps do not pool to 8x8.
  CHECK(contains(error_of([] { HourglassConfig::from_json_string("{\"input_size\": 192}"); }),
                 "attribute head"));
  CHECK(error_of([] {
          HourglassConfig::from_json_string("{\"input_size\": 192, \"attribute_head\": false}");
        }) == dofpose_test::kNoError);
}

TEST_CASE("hourglass: parameter counts of the default config equal PyTorch's") {
  // Counted with weights_tools/reference_hourglass.py (sum of p.numel()).
  HourglassConfig c;
  HourglassNet with_heads(c);
  CHECK(with_heads.parameter_count() == 6651101);
  c.attribute_head = false;
  c.domain_head = false;
  HourglassNet plain(c);  // = pytorch-pose HourglassNet(Bottleneck, 2 stacks, 1 block, 16)
  CHECK(plain.parameter_count() == 6570400);
  MESSAGE("default config: ", with_heads.parameter_count(), " parameters, ",
          double(with_heads.forward_flops(1)) * 1e-9, " GFLOP per 256x256 image (",
          double(plain.forward_flops(1)) * 1e-9, " without heads)");
  // 2 x multiply-adds of every Conv2d and Linear, counted in PyTorch with forward hooks.
  CHECK(with_heads.forward_flops(1) == 16740659456LL);
  CHECK(plain.forward_flops(1) == 16669212672LL);
  // bearpaw/pytorch-pose's 2-stack 1-block model (counted with its HourglassNet).
  c.stem_layout = "pytorch-pose";
  HourglassNet bearpaw(c);
  CHECK(bearpaw.parameter_count() == 6730912);
}

namespace {
HourglassConfig tiny_config() {
  return HourglassConfig::from_json_string(
      R"({"stacks": 2, "num_feats": 8, "stem_channels": 4, "input_size": 64,
          "attribute_channels": 2, "domain_hidden": 4})");
}
}  // namespace

TEST_CASE("hourglass: stem_layout pytorch-pose moves the stem downsample from layer3 to layer2") {
  const auto stem_names = [](const char* layout, int num_feats) {
    HourglassConfig c = tiny_config();
    c.stem_layout = layout;
    c.num_feats = num_feats;
    HourglassNet net(c);
    std::vector<nn::Param> params;
    std::vector<nn::Buffer> buffers;
    net.collect("", params, buffers);
    std::map<std::string, Shape> shapes;
    for (const nn::Param& p : params)
      if (p.name.rfind("layer", 0) == 0) shapes[p.name] = p.value->shape();
    return shapes;
  };
  // stem_channels 4: Newell's layer2 is 8 -> 8 (width 4), layer3 8 -> num_feats.
  auto newell = stem_names("newell", 16);
  CHECK(newell.count("layer2.0.downsample.0.weight") == 0);
  CHECK(newell.at("layer2.0.conv1.weight") == Shape{4, 8, 1, 1});
  CHECK(newell.at("layer3.0.downsample.0.weight") == Shape{16, 8, 1, 1});
  // pytorch-pose: layer2 8 -> 16 (width 8) with a downsample, layer3 16 -> num_feats
  // without one when num_feats = 4 x stem (its released models), with one otherwise.
  auto bearpaw = stem_names("pytorch-pose", 16);
  CHECK(bearpaw.at("layer2.0.conv1.weight") == Shape{8, 8, 1, 1});
  CHECK(bearpaw.at("layer2.0.downsample.0.weight") == Shape{16, 8, 1, 1});
  CHECK(bearpaw.at("layer3.0.conv1.weight") == Shape{8, 16, 1, 1});
  CHECK(bearpaw.count("layer3.0.downsample.0.weight") == 0);
  CHECK(stem_names("pytorch-pose", 8).at("layer3.0.downsample.0.weight") == Shape{8, 16, 1, 1});
}

TEST_CASE("hourglass: empty output gradients give zero parameter gradients") {
  HourglassNet net(tiny_config(), 3);
  Tensor x = Tensor::empty({2, 3, 64, 64});
  hashed_fill(x, 11, 0.f, 1.f);
  Arena arena;
  HourglassOutputs out = net.forward(arena, x, Mode::Train);
  // First a full backward so every gradient holds something.
  HourglassGrads g;
  for (const TensorView& h : out.heatmaps) {
    TensorView d = arena.alloc(h.shape);
    fill(d, 0.5f);
    g.heatmaps.push_back(d);
  }
  g.attributes = arena.alloc(out.attributes.shape);
  fill(g.attributes, 1.f);
  g.domain = arena.alloc(out.domain.shape);
  fill(g.domain, 1.f);
  net.backward(arena, g);
  double total = 0;
  for (const nn::Param& p : net.parameters())
    for (int64_t i = 0; i < p.grad->numel(); ++i) total += std::fabs(p.grad->f32()[i]);
  CHECK(total > 0);

  arena.reset();
  out = net.forward(arena, x, Mode::Train);
  TensorView dx = net.backward(arena, HourglassGrads{}, true);
  for (const nn::Param& p : net.parameters()) {
    double sum = 0;
    for (int64_t i = 0; i < p.grad->numel(); ++i) sum += std::fabs(p.grad->f32()[i]);
    CHECK_MESSAGE(sum == 0, p.name);
  }
  double dx_sum = 0;
  for (int64_t i = 0; i < dx.numel(); ++i) dx_sum += std::fabs(dx.f32()[i]);
  CHECK(dx_sum == 0);
  CHECK(net.backward(arena, HourglassGrads{}, false).empty());  // no dx asked for
}

TEST_CASE("hourglass: save and load reproduce the outputs, bad inputs are named") {
  HourglassNet net(tiny_config(), 5);
  dofpose_test::TempDir dir("hourglass");
  const std::string path = dir.file("hg.safetensors");
  net.save(path);
  WeightsFile file(path);
  CHECK(file.metadata_or("kind", "") == "hourglass");
  CHECK(file.metadata_or("format_version", "") == "1");
  auto loaded = HourglassNet::load(path);
  CHECK(loaded->config().to_json_string() == net.config().to_json_string());

  Tensor x = Tensor::empty({1, 3, 64, 64});
  hashed_fill(x, 12, 0.f, 1.f);
  Arena a1, a2;
  HourglassOutputs o1 = net.forward(a1, x, Mode::Infer);
  HourglassOutputs o2 = loaded->forward(a2, x, Mode::Infer);
  CHECK(to_vector(o1.heatmaps.back()) == to_vector(o2.heatmaps.back()));
  CHECK(to_vector(o1.attributes) == to_vector(o2.attributes));
  CHECK(to_vector(o1.domain) == to_vector(o2.domain));

  using dofpose_test::error_of;
  Tensor wrong = Tensor::zeros({1, 3, 32, 64});
  const std::string e = error_of([&] { net.forward(a1, wrong, Mode::Infer); });
  CHECK(e.find("HourglassNet: input") != std::string::npos);
  CHECK(e.find("[N,3,64,64]") != std::string::npos);

  HourglassNet fresh(tiny_config(), 5);
  const std::string e2 = error_of([&] { fresh.backward(a1, HourglassGrads{}); });
  CHECK(e2.find("without a forward") != std::string::npos);

  // A file of another kind is refused with its kind named.
  WeightsWriter w;
  w.set_metadata("kind", "lifter");
  Tensor one = Tensor::zeros({1});
  w.add("x", one);
  w.write(dir.file("other.safetensors"));
  const std::string e3 = error_of([&] { HourglassNet::load(dir.file("other.safetensors")); });
  CHECK(e3.find("kind 'lifter'") != std::string::npos);
}

TEST_CASE("hourglass: full default config forward matches PyTorch (slow)" * doctest::skip()) {
  const char* slow = std::getenv("DOFPOSE_SLOW_TESTS");
  if (!slow || std::string(slow) != "1") {
    MESSAGE("skipped: set DOFPOSE_SLOW_TESTS=1 to run the full-size hourglass parity test");
    return;
  }
  std::string probe;
  const std::string python = DOFPOSE_PYTHON;
  if (python.empty() ||
      dofpose_test::run_command(dofpose_test::shell_quote(python) + " -c 'import torch'",
                                &probe) != 0) {
    MESSAGE("skipped: no Python with torch (", python, "): ", probe);
    return;
  }
  HourglassNet net(HourglassConfig(), 42);
  // Non-trivial BatchNorms (default init is the identity in inference).
  uint64_t seed = 100;
  for (const nn::Buffer& b : net.buffers()) {
    const bool var = b.name.find("running_var") != std::string::npos;
    hashed_fill(*b.value, seed++, var ? 1.f : 0.f, var ? 0.3f : 0.2f);
  }
  for (const nn::Param& p : net.parameters())
    if (p.value->shape().ndim == 1 && p.name.find("bn") != std::string::npos)
      hashed_fill(*p.value, seed++, p.name.find("weight") != std::string::npos ? 1.f : 0.f, 0.2f);
  dofpose_test::TempDir dir("hourglass-slow");
  net.save(dir.file("net.safetensors"));
  Tensor x = Tensor::empty({1, 3, 256, 256});
  hashed_fill(x, 13, 0.f, 1.f);
  WeightsWriter xw;
  xw.add("x", x);
  xw.write(dir.file("x.safetensors"));

  const std::string script = R"PY(
import json, sys
sys.path.insert(0, sys.argv[1] + "/weights_tools")
import numpy as np, torch
import reference_hourglass as ref, safetensors_np
torch.set_num_threads(2)
d = sys.argv[2]
weights, meta = safetensors_np.load(d + "/net.safetensors", True)
model = ref.HourglassNet(json.loads(meta["config"]))
missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False)
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
model.eval()
x = torch.from_numpy(np.array(safetensors_np.load(d + "/x.safetensors")["x"]))
with torch.no_grad():
    out = model(x)
res = {"heatmaps.%d" % i: h.numpy() for i, h in enumerate(out["heatmaps"])}
res["attributes"] = out["attributes"].numpy()
res["domain"] = out["domain"].numpy()
safetensors_np.save(d + "/out.safetensors", res, {})
)PY";
  dofpose_test::run_python_source(dir, script, {DOFPOSE_SOURCE_DIR, dir.path});
  WeightsFile ref(dir.file("out.safetensors"));
  Arena arena;
  HourglassOutputs out = net.forward(arena, x, Mode::Infer);
  const auto compare = [&](const std::string& what, const TensorView& got, const std::string& name) {
    Tensor r = ref.load_f32(name, got.shape);
    const std::vector<float> rv = to_vector(r);
    DOFPOSE_CHECK_CLOSE(what, to_vector(got), rv, scaled_atol(rv), kRtol);
  };
  for (size_t s = 0; s < out.heatmaps.size(); ++s)
    compare("heatmaps stack " + std::to_string(s), out.heatmaps[s], "heatmaps." + std::to_string(s));
  compare("attribute logits", out.attributes, "attributes");
  compare("domain logits", out.domain, "domain");
}
