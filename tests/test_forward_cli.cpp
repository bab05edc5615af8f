// `dofpose forward` (nn::run_forward, engine/src/nn/model.cpp) and the layer
// tracer (nn/trace.h) on tiny models built here:
//  * the .npz outputs equal an in-process forward (hourglass and lifter, raw
//    2D de/normalised with the stored statistics, attributes as labels or
//    probabilities);
//  * --dump writes every layer, named like the parameters, with the right
//    shapes; the last heatmap layer equals the output;
//  * --profile: leaf shares sum to 100%, conv/linear FLOPs add up to the
//    network's forward_flops, table and JSON list every layer;
//  * every error path names what was expected;
//  * the dofpose binary itself, and (Python) make_random_model.py models load
//    and dump_reference.py + compare_dumps.py agree with the engine's dump.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dofpose/build_info.h"
#include "dofpose/cuda_backend.h"
#include "dofpose/npz.h"
#include "dofpose/nn/model.h"
#include "dofpose/weights.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::nn;
using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::TempDir;
using dofpose_test::tiny_hourglass_config;

namespace {

// Non-trivial BatchNorm statistics, so that inference mode is really exercised.
void randomise_buffers(Module& m, uint32_t seed) {
  uint32_t k = seed;
  for (const Buffer& b : m.buffers()) {
    const bool var = b.name.find("running_var") != std::string::npos;
    std::vector<float> v = dofpose_test::random_floats(size_t(b.value->numel()), k++,
                                                       var ? 0.5f : -0.3f, var ? 2.f : 0.3f);
    std::copy(v.begin(), v.end(), b.value->f32());
  }
}

std::unique_ptr<HourglassNet> tiny_hourglass() {
  auto net = std::make_unique<HourglassNet>(tiny_hourglass_config(), 11);
  randomise_buffers(*net, 100);
  return net;
}

LifterConfig tiny_lifter_config(bool attributes) {
  LifterConfig c;
  c.kind = "progressive";
  c.width = 16;
  c.blocks = 1;
  c.use_attributes = attributes;
  return c;
}

std::unique_ptr<Lifter> tiny_lifter(bool attributes) {
  auto l = Lifter::create(tiny_lifter_config(attributes), 5);
  std::vector<float> p2 = dofpose_test::random_floats(size_t(8) * 32, 1, -500.f, 500.f);
  std::vector<float> p3 = dofpose_test::random_floats(size_t(8) * 51, 2, -900.f, 900.f);
  l->fit_normalisation(p2.data(), p3.data(), 8);
  for (const Buffer& b : l->buffers())
    if (b.name.find("running_var") != std::string::npos) fill(*b.value, 1.7f);
  return l;
}

std::string write_f32_npy(const TempDir& dir, const std::string& name,
                          const std::vector<int64_t>& shape, uint32_t seed, float lo = -1.f,
                          float hi = 1.f) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v = dofpose_test::random_floats(size_t(n), seed, lo, hi);
  const std::string path = dir.file(name);
  write_npy(path, NpyDType::F32, shape, v.data());
  return path;
}

Tensor load_npy(const std::string& path) { return read_npy_f32(path, "test"); }

void check_equal(const TensorView& a, const float* b, int64_t n, const std::string& what) {
  INFO(what);
  REQUIRE(a.numel() == n);
  double worst = 0, scale = 1e-6;
  for (int64_t i = 0; i < n; ++i) {
    worst = std::max(worst, double(std::fabs(a.f32()[i] - b[i])));
    scale = std::max(scale, double(std::fabs(b[i])));
  }
  CHECK(worst <= 1e-5 * scale);
}

void check_npz_member(const NpzFile& f, const std::string& name, const TensorView& expected) {
  INFO("npz member " << name);
  REQUIRE(f.has(name));
  const NpyArray& a = f.array(name);
  CHECK(a.shape == std::vector<int64_t>(expected.shape.dims, expected.shape.dims + expected.ndim()));
  const std::vector<float> v = a.to_f32();
  check_equal(expected, v.data(), int64_t(v.size()), name);
}

// Module names owning parameters: "layer1.0.conv1.weight" -> "layer1.0.conv1".
std::set<std::string> parameter_modules(Module& m) {
  std::set<std::string> out;
  for (const Param& p : m.parameters()) out.insert(p.name.substr(0, p.name.rfind('.')));
  return out;
}

}  // namespace

TEST_CASE("forward: hourglass outputs in the npz equal an in-process forward") {
  TempDir dir("fwd-hg");
  auto net = tiny_hourglass();
  net->save(dir.file("hg.safetensors"));
  const std::string input = write_f32_npy(dir, "x.npy", {2, 3, 32, 32}, 3);

  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = input;
  opt.output = dir.file("out.npz");
  ForwardResult r = run_forward(opt);
  CHECK(r.output_names ==
        std::vector<std::string>{"heatmaps_stack0", "heatmaps_stack1", "coords", "attributes", "domain"});

  Arena arena;
  Tensor x = load_npy(input);
  HourglassOutputs o = net->forward(arena, x, Mode::Infer);
  SoftArgmax sa(net->config().softargmax_beta);
  TensorView coords = sa.forward(arena, o.heatmaps.back());
  NpzFile f(opt.output);
  check_npz_member(f, "heatmaps_stack0", o.heatmaps[0]);
  check_npz_member(f, "heatmaps_stack1", o.heatmaps[1]);
  check_npz_member(f, "coords", coords);
  check_npz_member(f, "attributes", o.attributes);
  check_npz_member(f, "domain", o.domain);
}

TEST_CASE("forward: --activations f16 / bf16 keep the hourglass outputs close, errors are named") {
  TempDir dir("fwd-hg16");
  auto net = tiny_hourglass();
  net->save(dir.file("hg.safetensors"));
  const std::string input = write_f32_npy(dir, "x.npy", {2, 3, 32, 32}, 3);
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = input;
  opt.output = dir.file("f32.npz");
  run_forward(opt);
  const NpzFile ref(opt.output);
  for (const char* t : {"f16", "bf16"}) {
    INFO("--activations " << t);
    opt.activations = t;
    opt.output = dir.file(std::string(t) + ".npz");
    run_forward(opt);
    const NpzFile got(opt.output);
    for (const char* name : {"heatmaps_stack1", "coords"}) {
      const std::vector<float> a = got.array(name).to_f32(), b = ref.array(name).to_f32();
      REQUIRE(a.size() == b.size());
      double worst = 0, scale = 1e-6;
      for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, double(std::fabs(a[i] - b[i])));
        scale = std::max(scale, double(std::fabs(b[i])));
      }
      INFO(name << ": max error " << worst << " of max |value| " << scale);
      CHECK(worst > 0);  // the 16-bit path ran
      CHECK(worst <= (std::string(t) == "f16" ? 1e-2 : 5e-2) * scale);
    }
  }
  // The profile shows each layer's output dtype: 16-bit inside, F32 heatmaps.
  opt.activations = "f16";
  opt.profile = true;
  opt.repeat = 1;
  const ForwardResult prof = run_forward(opt);
  int f16_rows = 0;
  for (const ProfileRow& row : prof.profile) {
    if (row.composite) continue;
    if (row.dtype == DType::F16) ++f16_rows;
    if (row.name.rfind("score.", 0) == 0 || row.name == "features") CHECK(row.dtype == DType::F32);
  }
  CHECK(f16_rows > 10);
  CHECK(contains(format_profile(prof), "F16["));
  CHECK(contains(profile_json(prof), "\"F16\""));  // a layer's "dtype"
  opt.profile = false;
  opt.activations = "f8";
  CHECK(contains(error_of([&] { run_forward(opt); }),
                 "forward: --activations must be f32, f16 or bf16, got 'f8'"));
  opt.activations = "f16";
  opt.dump_dir = dir.file("dump");
  CHECK(contains(error_of([&] { run_forward(opt); }), "--activations f16 applies to fused inference only"));
  save_lifter(*tiny_lifter(false), dir.file("l.safetensors"));
  ForwardOptions lo;
  lo.model = dir.file("l.safetensors");
  lo.input = write_f32_npy(dir, "p.npy", {2, 16, 2}, 4);
  lo.activations = "bf16";
  CHECK(contains(error_of([&] { run_forward(lo); }),
                 "lifter model: BF16 activations are for the hourglass only"));
}

TEST_CASE("forward: lifter de/normalises and writes one pose per block") {
  TempDir dir("fwd-lifter");
  auto lifter = tiny_lifter(true);
  save_lifter(*lifter, dir.file("l.safetensors"));
  const std::string input = write_f32_npy(dir, "p2d.npy", {3, 16, 2}, 4, -400.f, 400.f);
  std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 2, 1, 1, 1, 0, 0, 0,
                                 1, 0, 2, 1, 0, 2, 1, 0, 2};
  write_npy(dir.file("labels.npy"), NpyDType::I32, {3, 9}, labels.data());

  ForwardOptions opt;
  opt.model = dir.file("l.safetensors");
  opt.input = input;
  opt.attributes = dir.file("labels.npy");
  opt.output = dir.file("out.npz");
  ForwardResult r = run_forward(opt);
  CHECK(r.output_names == std::vector<std::string>{"pose3d_block1", "pose3d_block2", "pose3d"});

  // In process: normalise, forward, de-normalise.
  Arena arena;
  Tensor p2d = load_npy(input);
  Tensor attr = Tensor::empty({3, 27});
  encode_attribute_labels(labels.data(), 3, attr.f32());
  TensorView xin = lifter->prepare_input(arena, p2d, attr);
  LifterOutput o = lifter->forward(arena, xin, Mode::Infer);
  NpzFile f(opt.output);
  for (int b = 0; b < 2; ++b) {
    TensorView mm = lifter->denormalise_output(arena, o.poses[size_t(b)]).reshape({3, 17, 3});
    check_npz_member(f, concat("pose3d_block", b + 1), mm);
    if (b == 1) check_npz_member(f, "pose3d", mm);
    CHECK(mm.f32()[0] == 0.f);  // the pelvis is the origin
  }

  // The same attributes as [N,9,3] probabilities give the same poses.
  write_npy(dir.file("probs.npy"), NpyDType::F32, {3, 9, 3}, attr.f32());
  opt.attributes = dir.file("probs.npy");
  opt.output = dir.file("out2.npz");
  run_forward(opt);
  NpzFile f2(opt.output);
  const std::vector<float> a = f.array("pose3d").to_f32(), b = f2.array("pose3d").to_f32();
  CHECK(a == b);
}

TEST_CASE("forward: --dump writes every layer under its parameter name") {
  TempDir dir("fwd-dump");
  auto net = tiny_hourglass();
  net->save(dir.file("hg.safetensors"));
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = write_f32_npy(dir, "x.npy", {1, 3, 32, 32}, 5);
  opt.output = dir.file("out.npz");
  opt.dump_dir = dir.file("dump");
  ForwardResult r = run_forward(opt);

  REQUIRE(!r.dumped.empty());
  std::set<std::string> dumped_names;
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(opt.dump_dir)) {
    (void)e;
    ++files;
  }
  CHECK(files == r.dumped.size());
  for (size_t i = 0; i < r.dumped.size(); ++i) {
    const DumpTracer::Entry& e = r.dumped[i];
    dumped_names.insert(e.name);
    std::string index = std::to_string(i);
    index.insert(0, index.size() < 3 ? 3 - index.size() : 0, '0');
    CHECK(e.file == opt.dump_dir + "/" + index + "_" + e.name + ".npy");
    Tensor t = load_npy(e.file);
    CHECK(t.shape() == e.shape);
  }
  // Every conv / BN / linear layer, the composites and the non-module ops.
  for (const std::string& m : parameter_modules(*net)) {
    INFO("layer " << m);
    CHECK(dumped_names.count(m) == 1);
  }
  for (const char* n : {"relu", "maxpool", "layer1.0", "layer1", "hg.0", "hg.0.hg.1.pool",
                        "hg.0.hg.0.merge", "layer1.0.add", "layer1.0.relu", "fc.0.2", "fc.0",
                        "merge.0", "attr", "attr.concat", "domain", "domain.pool", "softargmax"}) {
    INFO("op " << n);
    CHECK(dumped_names.count(n) == 1);
  }
  // Shapes: the stem conv halves the image; the last heatmap equals the output.
  const auto find = [&](const std::string& name) {
    for (const auto& e : r.dumped)
      if (e.name == name) return e;
    FAIL("no dump entry " << name);
    return r.dumped[0];
  };
  CHECK(find("conv1").shape == Shape{1, 4, 16, 16});
  CHECK(find("score.1").shape == Shape{1, 3, 8, 8});
  CHECK(find("attr").shape == Shape{1, 9, 3});
  NpzFile f(opt.output);
  Tensor last = load_npy(find("score.1").file);
  const std::vector<float> heat = f.array("heatmaps_stack1").to_f32();
  check_equal(last, heat.data(), int64_t(heat.size()), "score.1 dump vs heatmaps_stack1");
  Tensor coords = load_npy(find("softargmax").file);
  const std::vector<float> c = f.array("coords").to_f32();
  check_equal(coords, c.data(), int64_t(c.size()), "softargmax dump vs coords");
  // In-place ops happen after the dump of the layer: conv3's file holds conv3's output,
  // the add's file the sum (they differ by the skip connection).
  Tensor conv3 = load_npy(find("layer1.0.conv3").file), add = load_npy(find("layer1.0.add").file);
  CHECK(std::vector<float>(conv3.f32(), conv3.f32() + conv3.numel()) !=
        std::vector<float>(add.f32(), add.f32() + add.numel()));
}

TEST_CASE("forward: lifter --dump names regressor layers like the parameters") {
  TempDir dir("fwd-ldump");
  auto lifter = tiny_lifter(false);
  save_lifter(*lifter, dir.file("l.safetensors"));
  ForwardOptions opt;
  opt.model = dir.file("l.safetensors");
  opt.input = write_f32_npy(dir, "p.npy", {2, 32}, 6, -300.f, 300.f);
  opt.dump_dir = dir.file("dump");
  ForwardResult r = run_forward(opt);
  std::set<std::string> names;
  for (const auto& e : r.dumped) names.insert(e.name);
  for (const std::string& m : parameter_modules(*lifter)) {
    INFO("layer " << m);
    CHECK(names.count(m) == 1);
  }
  for (const char* n : {"norm.input", "block1.torso", "block1.torso.blocks.0",
                        "block1.proximal.concat", "pose.block1", "pose.block2",
                        "norm.output.block2"})
    CHECK(names.count(n) == 1);
  CHECK(r.dumped.back().name == "norm.output.block2");
  CHECK(r.dumped.back().shape == Shape{2, 51});
}

TEST_CASE("forward: --profile shares sum to 100% and FLOPs match the network") {
  TempDir dir("fwd-prof");
  auto net = tiny_hourglass();
  net->save(dir.file("hg.safetensors"));
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = write_f32_npy(dir, "x.npy", {2, 3, 32, 32}, 7);
  opt.profile = true;
  opt.repeat = 2;
  ForwardResult r = run_forward(opt);
  CHECK(r.repeat == 2);
  REQUIRE(!r.profile.empty());
  double share = 0, ms = 0;
  int64_t flops = 0;
  int leaves = 0;
  for (const ProfileRow& row : r.profile) {
    CHECK(row.ms >= 0);
    if (row.composite) {
      CHECK(row.share == 0);
      continue;
    }
    ++leaves;
    share += row.share;
    ms += row.ms;
    flops += row.flops;
    // Fused inference reports a conv with its BN/ReLU/add as one row ("Conv2d+BN+ReLU").
    const std::string type = row.type;
    if (type.find("Conv2d") != std::string::npos || type == "Linear")
      CHECK(row.flops > 0);
    else
      CHECK(row.flops == 0);
  }
  CHECK(share == doctest::Approx(100.0).epsilon(1e-6));
  CHECK(ms == doctest::Approx(r.layers_ms).epsilon(1e-9));
  CHECK(flops == net->forward_flops(2));
  // Unfused, the same layers as the dump (which always runs every PyTorch layer).
  ForwardResult u;
  {
    nn::ScopedUnfused unfused;
    u = run_forward(opt);
  }
  CHECK(u.profile.size() > r.profile.size());
  opt.profile = false;
  opt.dump_dir = dir.file("dump");
  ForwardResult d = run_forward(opt);
  REQUIRE(d.dumped.size() == u.profile.size());
  for (size_t i = 0; i < d.dumped.size(); ++i) CHECK(d.dumped[i].name == u.profile[i].name);

  const std::string table = format_profile(r);
  CHECK(table.find(concat("total (", leaves, " layers)")) != std::string::npos);
  CHECK(table.find("layer1.0.conv2") != std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(profile_json(r));
  CHECK(j["layers"].size() == r.profile.size());
  CHECK(j["repeat"] == 2);
  // On the CPU no peak is known: no %peak column. With a (CUDA) peak the
  // column gives each conv's share of it.
  CHECK(table.find("%peak") == std::string::npos);
  ForwardResult g = r;
  g.flop_peak_gflops = 1000.0;
  for (ProfileRow& row : g.profile) row.gflops_per_s = row.flops > 0 ? 250.0 : 0.0;
  const std::string gpu_table = format_profile(g);
  CHECK(gpu_table.find("%peak") != std::string::npos);
  CHECK(gpu_table.find("  25.0%") != std::string::npos);
  CHECK(gpu_table.find("of the device's FP32 peak, 1.0 TFLOP/s") != std::string::npos);
}

TEST_CASE("forward: bad inputs give errors naming what was expected") {
  TempDir dir("fwd-err");
  tiny_hourglass()->save(dir.file("hg.safetensors"));
  save_lifter(*tiny_lifter(true), dir.file("l.safetensors"));
  const std::string img = write_f32_npy(dir, "img.npy", {1, 3, 32, 32}, 8);
  auto run = [&](const std::string& model, const std::string& input,
                 const std::string& attributes = "", const std::string& output = "") {
    ForwardOptions o;
    o.model = model;
    o.input = input;
    o.attributes = attributes;
    o.output = output;
    return error_of([&] { run_forward(o); });
  };
  const std::string hg = dir.file("hg.safetensors"), lifter = dir.file("l.safetensors");

  CHECK(run(dir.file("missing.safetensors"), img).find("missing.safetensors' does not exist") !=
        std::string::npos);
  CHECK(run(hg, dir.file("nope.npy")).find("input file") != std::string::npos);
  CHECK(run(hg, dir.file("nope.npy")).find("does not exist") != std::string::npos);
  CHECK(run(hg, img, "", dir.file("no/such/dir/out.npz")).find("does not exist") !=
        std::string::npos);

  // Shape vs config.
  const std::string rank3 = write_f32_npy(dir, "rank3.npy", {3, 32, 32}, 9);
  CHECK(run(hg, rank3).find("expects [N,3,32,32]") != std::string::npos);
  const std::string big = write_f32_npy(dir, "big.npy", {1, 3, 64, 64}, 9);
  CHECK(run(hg, big).find("[1,3,64,64]") != std::string::npos);
  const std::string p17 = write_f32_npy(dir, "p17.npy", {2, 17, 2}, 9);
  CHECK(run(lifter, p17).find("expects 2D joints [N,16,2] or [N,32]") != std::string::npos);

  // dtype and values.
  std::vector<double> f64(3 * 32 * 32, 0.5);
  write_npy(dir.file("f64.npy"), NpyDType::F64, {1, 3, 32, 32}, f64.data());
  CHECK(run(hg, dir.file("f64.npy")).find("dtype '<f8', expected float32") != std::string::npos);
  std::vector<float> nan(3 * 32 * 32, 0.f);
  nan[77] = std::nanf("");
  write_npy(dir.file("nan.npy"), NpyDType::F32, {1, 3, 32, 32}, nan.data());
  CHECK(run(hg, dir.file("nan.npy")).find("non-finite value (nan) at flat index 77") !=
        std::string::npos);
  {
    std::ofstream junk(dir.file("junk.npy"), std::ios::binary);
    junk << "this is not numpy";
  }
  CHECK(run(hg, dir.file("junk.npy")).find("junk.npy") != std::string::npos);

  // Attributes.
  const std::string p16 = write_f32_npy(dir, "p16.npy", {2, 16, 2}, 10);
  CHECK(run(lifter, p16).find("this lifter uses attributes") != std::string::npos);
  CHECK(run(hg, img, dir.file("p16.npy")).find("--attributes is for lifters") != std::string::npos);
  std::vector<int32_t> bad_labels(18, 0);
  bad_labels[4] = 5;
  write_npy(dir.file("bad_labels.npy"), NpyDType::I32, {2, 9}, bad_labels.data());
  CHECK(run(lifter, p16, dir.file("bad_labels.npy")).find("has label 5") != std::string::npos);
  std::vector<int32_t> few(2 * 8, 0);
  write_npy(dir.file("few.npy"), NpyDType::I32, {2, 8}, few.data());
  CHECK(run(lifter, p16, dir.file("few.npy")).find("expected (N, 9)") != std::string::npos);

  // Device.
  {
    ForwardOptions o;
    o.model = hg;
    o.input = img;
    o.device = "tpu";
    CHECK(error_of([&] { run_forward(o); }).find("--device must be cpu or cuda, got 'tpu'") !=
          std::string::npos);
    if (!cuda::built() || cuda::device_count() == 0) {
      o.device = "cuda";
      const std::string e = error_of([&] { run_forward(o); });
      CHECK(e.find("--device cuda") != std::string::npos);
      CHECK((e.find("without the CUDA backend") != std::string::npos ||
             e.find("no CUDA device") != std::string::npos));
    }
  }

  // Unknown kind / missing kind.
  WeightsWriter w;
  Tensor t = Tensor::zeros({2});
  w.add("x", t);
  w.set_metadata("kind", "segmenter");
  w.write(dir.file("seg.safetensors"));
  CHECK(run(dir.file("seg.safetensors"), img).find("unknown model kind 'segmenter'") !=
        std::string::npos);
  WeightsWriter w2;
  w2.add("x", t);
  w2.write(dir.file("nokind.safetensors"));
  CHECK(run(dir.file("nokind.safetensors"), img).find("metadata has no 'kind'") !=
        std::string::npos);
}

TEST_CASE("forward: with no tracer installed nothing is traced") {
  // A counting tracer sees events only inside its scope.
  struct Counter : Tracer {
    int n = 0;
    void record(const TraceEvent&) override { ++n; }
  } counter;
  auto net = tiny_hourglass();
  auto model = make_model(std::move(net));
  Tensor x = Tensor::zeros({1, 3, 32, 32});
  Arena arena;
  CHECK(active_tracer() == nullptr);
  model->forward(arena, {x, {}});
  CHECK(counter.n == 0);
  {
    ScopedTracer on(&counter);
    arena.reset();
    model->forward(arena, {x, {}});
  }
  CHECK(counter.n > 0);
  CHECK(active_tracer() == nullptr);
}

TEST_CASE("forward: the dofpose binary runs a model and reports errors") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  TempDir dir("fwd-cli");
  tiny_hourglass()->save(dir.file("hg.safetensors"));
  const std::string img = write_f32_npy(dir, "img.npy", {1, 3, 32, 32}, 12);
  std::string out;
  const std::string q = dofpose_test::shell_quote(program);
  int rc = dofpose_test::run_command(
      q + " forward --model " + dir.file("hg.safetensors") + " --input " + img + " --output " +
          dir.file("o.npz") + " --profile --repeat 1 --profile-json " + dir.file("p.json") +
          " --threads 1",
      &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK(out.find("heatmaps_stack1") != std::string::npos);
  CHECK(out.find("total (") != std::string::npos);
  CHECK(NpzFile(dir.file("o.npz")).has("coords"));
  CHECK(std::filesystem::exists(dir.file("p.json")));
  rc = dofpose_test::run_command(q + " forward --model " + dir.file("hg.safetensors") +
                                     " --input " + dir.file("none.npy"),
                                 &out);
  CHECK(rc == 2);
  CHECK(out.find("dofpose forward: error: input file") != std::string::npos);
  rc = dofpose_test::run_command(q + " forward --bogus", &out);
  CHECK(rc == 1);
  CHECK(out.find("unknown option '--bogus'") != std::string::npos);
}

TEST_CASE("forward: make_random_model.py models load, dump_reference.py agrees with --dump") {
  if (!dofpose_test::python_with_numpy("make_random_model.py / dump_reference.py")) return;
  TempDir dir("fwd-py");
  const std::string tools = std::string(DOFPOSE_SOURCE_DIR) + "/weights_tools/";
  dofpose_test::run_python(tools + "make_random_model.py",
                           {"hourglass", dir.file("hg.safetensors"), "--random-bn", "--config",
                            "{\"num_feats\": 8, \"stem_channels\": 4, \"input_size\": 32, "
                            "\"depth\": 2, \"num_joints\": 3, \"attribute_channels\": 4, "
                            "\"domain_hidden\": 4}"});
  dofpose_test::run_python(tools + "make_random_model.py",
                           {"lifter", dir.file("l.safetensors"), "--config",
                            "{\"kind\": \"two_block\", \"width\": 8, \"blocks\": 1}"});
  auto lifter = load_model(dir.file("l.safetensors"));
  CHECK(lifter->kind() == "lifter");
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = write_f32_npy(dir, "x.npy", {2, 3, 32, 32}, 13);
  opt.dump_dir = dir.file("engine");
  run_forward(opt);

  std::string out;
  const std::string py = dofpose_test::shell_quote(DOFPOSE_PYTHON);
  if (dofpose_test::run_command(py + " -c 'import torch'", &out) != 0) {
    if (dofpose_test::ci_required()) FAIL("torch is required in CI: " << out);
    MESSAGE("skipped the PyTorch comparison: no torch (" << out << ")");
    return;
  }
  dofpose_test::run_python(tools + "dump_reference.py",
                           {opt.model, opt.input, dir.file("torch")});
  const std::string report = dofpose_test::run_python(
      tools + "compare_dumps.py", {dir.file("engine"), dir.file("torch"), "--tol", "1e-4"});
  CHECK(report.find("layer1.0.conv2") != std::string::npos);
  CHECK(report.find("fc.1.2") != std::string::npos);  // the shared nn.ReLU, named by its caller
}

namespace {

// `src` with its metadata "config" replaced by `config` (the tensors as they were).
void copy_with_config(const std::string& src, const std::string& dst, const std::string& config) {
  WeightsFile f(src);
  WeightsWriter w;
  std::vector<Tensor> keep;
  for (const std::string& name : f.names()) {
    keep.push_back(f.load_f32(name));
    w.add(name, keep.back());
  }
  for (const auto& [key, value] : f.metadata()) w.set_metadata(key, key == "config" ? config : value);
  w.write(dst);
}

std::string with_key(const std::string& config, const std::string& key, int64_t value) {
  nlohmann::json j = nlohmann::json::parse(config);
  j[key] = value;
  return j.dump();
}

}  // namespace

TEST_CASE("forward: broken statistics and out-of-range configs are refused at load, named") {
  TempDir dir("fwd-load");
  const std::string x = write_f32_npy(dir, "x.npy", {2, 16, 2}, 3, -500.f, 500.f);
  auto run = [&](const std::string& model) {
    ForwardOptions o;
    o.model = model;
    o.input = x;
    return error_of([&] { run_forward(o); });
  };
  // A std of 0 (docs/weights-format.md: invalid) or NaN gave NaN poses with status 0.
  {
    auto l = tiny_lifter(false);
    l->norm_input_std.f32()[3] = 0.f;
    save_lifter(*l, dir.file("zero.safetensors"));
    const std::string e = run(dir.file("zero.safetensors"));
    CHECK(contains(e, "zero.safetensors"));
    CHECK(contains(e, "tensor 'norm.input.std' has 0 at index 3"));
    CHECK(contains(e, "expected finite standard deviations > 0"));
    auto n = tiny_lifter(false);
    n->norm_output_std.f32()[5] = std::nanf("");
    save_lifter(*n, dir.file("nan.safetensors"));
    CHECK(contains(run(dir.file("nan.safetensors")), "'norm.output.std' has nan at index 5"));
  }
  // Config integers: read as 64 bits, range-checked, named with the value as written.
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"width": 1000000000000})"); }),
                 "'width' must be in [1, 16384], got 1000000000000"));
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"width": 2000000000})"); }),
                 "'width' must be in [1, 16384], got 2000000000"));
  CHECK(contains(error_of([] { LifterConfig::from_json_string(R"({"blocks": 100000000})"); }),
                 "'blocks' must be in [0, 64], got 100000000"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string(R"({"num_feats": 2000000000})"); }),
                 "'num_feats' must be in [2, 8192], got 2000000000"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string(R"({"stacks": -5})"); }),
                 "'stacks' must be in [1, 64], got -5"));
  CHECK(contains(error_of([] { HourglassConfig::from_json_string(R"({"depth": 1e3})"); }),
                 "'depth' must be an integer"));
  // In range but not what the tensors hold: refused before anything is allocated.
  save_lifter(*tiny_lifter(false), dir.file("l.safetensors"));
  const std::string lcfg = WeightsFile(dir.file("l.safetensors")).metadata().at("config");
  copy_with_config(dir.file("l.safetensors"), dir.file("wide.safetensors"),
                   with_key(lcfg, "width", 16384));
  std::string e = run(dir.file("wide.safetensors"));
  CHECK(contains(e, "wide.safetensors: its config (width 16384, blocks 1) needs at least"));
  CHECK(contains(e, "config and tensors disagree"));
  copy_with_config(dir.file("l.safetensors"), dir.file("big.safetensors"),
                   with_key(lcfg, "width", 2000000000));
  CHECK(contains(run(dir.file("big.safetensors")), "big.safetensors: LifterConfig: 'width' must be"));
  tiny_hourglass()->save(dir.file("hg.safetensors"));
  const std::string hcfg = WeightsFile(dir.file("hg.safetensors")).metadata().at("config");
  copy_with_config(dir.file("hg.safetensors"), dir.file("hgwide.safetensors"),
                   with_key(hcfg, "num_feats", 4096));
  CHECK(contains(run(dir.file("hgwide.safetensors")),
                 "hgwide.safetensors: its config (stacks 2, blocks 1, num_feats 4096) needs at least"));
}

TEST_CASE("forward: --threads is bounded, --dump refuses a used folder, attribute counts name the files") {
  TempDir dir("fwd-opts");
  save_lifter(*tiny_lifter(false), dir.file("l.safetensors"));
  ForwardOptions o;
  o.model = dir.file("l.safetensors");
  o.input = write_f32_npy(dir, "x.npy", {2, 16, 2}, 3, -500.f, 500.f);
  // libgomp crashed creating 100000 threads.
  o.threads = 100000;
  CHECK(contains(error_of([&] { run_forward(o); }), "--threads must be in [1, 1024], got 100000"));
  CHECK(contains(error_of([] { set_cpu_threads(100000); }), "expected 1 to 1024"));
  CHECK(contains(error_of([] { set_cpu_threads(-1); }), "expected 1 to 1024"));
  o.threads = 0;

  // A second dump into the same folder would leave the first one's files for
  // compare_dumps.py to pair: refused; an empty existing folder is fine.
  std::filesystem::create_directories(dir.file("dump"));
  o.dump_dir = dir.file("dump");
  const size_t n = run_forward(o).dumped.size();
  CHECK(n > 0);
  const std::string e = error_of([&] { run_forward(o); });
  CHECK(contains(e, "--dump folder '" + o.dump_dir + "' is not empty"));
  CHECK(std::distance(std::filesystem::directory_iterator(o.dump_dir),
                      std::filesystem::directory_iterator()) == std::ptrdiff_t(n));
  o.dump_dir = dir.file("x.npy");  // a file
  CHECK(contains(error_of([&] { run_forward(o); }), "exists and is not a folder"));
  o.dump_dir.clear();

  // Attributes for 3 poses, input of 2: the files and the shapes as given.
  save_lifter(*tiny_lifter(true), dir.file("la.safetensors"));
  o.model = dir.file("la.safetensors");
  std::vector<int32_t> labels(3 * 9, 0);
  write_npy(dir.file("a39.npy"), NpyDType::I32, {3, 9}, labels.data());
  o.attributes = dir.file("a39.npy");
  const std::string a = error_of([&] { run_forward(o); });
  CHECK(contains(a, "the attributes '" + o.attributes + "' hold 3 pose(s)"));
  CHECK(contains(a, "the input '" + o.input + "' of shape [2,16,2] holds 2"));
  CHECK_FALSE(contains(a, "[3,27]"));
}

TEST_CASE("forward: the dofpose binary: usage errors exit 1, --help works everywhere, checks come first") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  const std::string timer = dofpose_test::build_program_path("bench/dofpose_model_timer");
  TempDir dir("fwd-usage");
  const std::string q = dofpose_test::shell_quote(program) + " ";
  std::string out;
  auto rc_of = [&](const std::string& args) {
    const int rc = dofpose_test::run_command(q + args, &out);
    INFO(args << " -> " << rc << ": " << out);
    return rc;
  };
  for (const char* cmd : {"info", "inspect", "selfcheck", "forward", "train", "eval", "lift", "demo"}) {
    CAPTURE(cmd);
    CHECK(rc_of(std::string(cmd) + " --help") == 0);
    CHECK(contains(out, std::string("usage: dofpose ") + cmd));
  }
  CHECK(rc_of("eval --bogus") == 1);
  CHECK(contains(out, "unknown option '--bogus'"));
  CHECK_FALSE(contains(out, "needs a value"));
  CHECK(rc_of("eval extra") == 1);
  CHECK(contains(out, "unexpected argument 'extra'"));
  CHECK(rc_of("eval --model m.safetensors --data d") == 1);
  CHECK(contains(out, "--subjects is required"));
  CHECK(rc_of("forward --model m --input x --threads -3") == 1);
  CHECK(contains(out, "--threads needs an integer from 1 to 1024, got '-3'"));
  CHECK(rc_of("forward --model m --input x --threads 100000") == 1);
  CHECK(rc_of("forward --model m --input x --repeat abc") == 1);
  CHECK(contains(out, "--repeat needs an integer"));
  CHECK(rc_of("forward --model m --input x --repeat") == 1);
  CHECK(rc_of("info --bogus") == 1);
  CHECK(contains(out, "unknown option '--bogus'"));
  CHECK(rc_of("selfcheck --bogus") == 1);
  CHECK(rc_of("inspect a b") == 1);
  CHECK(rc_of("train --max-steps 5x --config c.json") == 1);
  const std::string demo_out = dir.file("demo");
  for (const char* seed : {"-1", "5abc", "99999999999"}) {
    CHECK(rc_of("demo --no-png --out " + demo_out + " --seed " + seed) == 1);
    CHECK(contains(out, std::string("--seed needs an integer from 0 to 4294967295, got '") + seed));
  }
  CHECK_FALSE(std::filesystem::exists(demo_out));

  // --profile-json into a missing folder: refused before the run (no --output written).
  tiny_hourglass()->save(dir.file("hg.safetensors"));
  const std::string img = write_f32_npy(dir, "img.npy", {1, 3, 32, 32}, 12);
  CHECK(rc_of("forward --model " + dir.file("hg.safetensors") + " --input " + img + " --output " +
              dir.file("o.npz") + " --profile-json " + dir.file("no/such/p.json")) == 2);
  CHECK(contains(out, "--profile-json: the folder of '" + dir.file("no/such/p.json") + "' does not exist"));
  CHECK_FALSE(std::filesystem::exists(dir.file("o.npz")));
  CHECK(rc_of("forward --model " + dir.file("hg.safetensors") + " --input " + img +
              " --profile-json " + dir.file("p.json") + " --repeat 1") == 0);
  CHECK(nlohmann::json::parse(std::ifstream(dir.file("p.json"))).contains("layers"));
  CHECK(dir.listing() == std::vector<std::string>{"hg.safetensors", "img.npy", "p.json"});  // no temporary left

  // The model timer: --help, bounded --threads, --attributes for attribute lifters.
  if (!std::filesystem::exists(timer)) {
    MESSAGE("skipped the model timer part: build dofpose_model_timer (" << timer << ")");
    return;
  }
  const std::string t = dofpose_test::shell_quote(timer) + " ";
  CHECK(dofpose_test::run_command(t + "--help", &out) == 0);
  CHECK(contains(out, "usage: dofpose_model_timer"));
  CHECK(contains(out, "--attributes A.npy"));
  save_lifter(*tiny_lifter(true), dir.file("la.safetensors"));
  const std::string x = write_f32_npy(dir, "x.npy", {2, 16, 2}, 3, -500.f, 500.f);
  std::vector<int32_t> labels(2 * 9, 1);
  write_npy(dir.file("a.npy"), NpyDType::I32, {2, 9}, labels.data());
  const std::string base = t + "--model " + dir.file("la.safetensors") + " --input " + x;
  CHECK(dofpose_test::run_command(base + " --threads 100000 --repeat 1", &out) == 2);
  CHECK(contains(out, "--threads needs an integer from 1 to 1024"));
  CHECK(dofpose_test::run_command(base + " --repeat 1", &out) == 1);
  CHECK(contains(out, "this lifter uses attributes"));
  CHECK(dofpose_test::run_command(base + " --attributes " + dir.file("a.npy") + " --repeat 2", &out) == 0);
  INFO(out);
  CHECK(contains(out, "\"ms\":["));
}

TEST_CASE("forward: --unfused profiles every layer (one row per BatchNorm / ReLU), same outputs") {
  TempDir dir("fwd-unfused");
  tiny_hourglass()->save(dir.file("hg.safetensors"));
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = write_f32_npy(dir, "x.npy", {1, 3, 32, 32}, 9);
  opt.profile = true;
  opt.repeat = 1;
  opt.output = dir.file("fused.npz");
  const ForwardResult fused = run_forward(opt);
  opt.unfused = true;
  opt.output = dir.file("unfused.npz");
  const ForwardResult unfused = run_forward(opt);
  // The option does what a ScopedUnfused around the call does: the leaf layers.
  ForwardResult scoped;
  {
    nn::ScopedUnfused off;
    opt.unfused = false;
    opt.output.clear();
    scoped = run_forward(opt);
  }
  REQUIRE(unfused.profile.size() == scoped.profile.size());
  for (size_t i = 0; i < unfused.profile.size(); ++i) {
    CHECK(unfused.profile[i].name == scoped.profile[i].name);
    CHECK(unfused.profile[i].type == scoped.profile[i].type);
  }
  CHECK(unfused.profile.size() > fused.profile.size());
  auto count_type = [](const ForwardResult& r, const std::string& type) {
    return std::count_if(r.profile.begin(), r.profile.end(),
                         [&](const ProfileRow& row) { return row.type == type; });
  };
  CHECK(count_type(fused, "Conv2d+BN+ReLU") > 0);
  CHECK(count_type(unfused, "Conv2d+BN+ReLU") == 0);
  CHECK(count_type(unfused, "BatchNorm") > count_type(fused, "BatchNorm"));
  // Fused and unfused inference give the same bits.
  const NpzFile a(dir.file("fused.npz")), b(dir.file("unfused.npz"));
  for (const std::string& name : fused.output_names) {
    CAPTURE(name);
    REQUIRE(b.has(name));
    const NpyArray &x = a.array(name), &y = b.array(name);
    CHECK(x.shape == y.shape);
    CHECK(x.to_f32() == y.to_f32());
  }
  // Not with 16-bit activations (those apply to fused inference only).
  opt.activations = "f16";
  opt.unfused = true;
  CHECK(contains(error_of([&] { run_forward(opt); }), "--unfused runs the separate float32 layers"));

  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  std::string out;
  const std::string base = dofpose_test::shell_quote(program) + " forward --model " +
                           dir.file("hg.safetensors") + " --input " + opt.input +
                           " --profile --repeat 1 --threads 1";
  REQUIRE(dofpose_test::run_command(base + " --unfused", &out) == 0);
  CHECK(contains(out, concat("total (", unfused.profile.size() - size_t(std::count_if(
                                 unfused.profile.begin(), unfused.profile.end(),
                                 [](const ProfileRow& r) { return r.composite; })), " layers)")));
  CHECK(contains(out, "layer1.0.bn1"));
  CHECK_FALSE(contains(out, "Conv2d+BN+ReLU"));
  REQUIRE(dofpose_test::run_command(base, &out) == 0);
  CHECK(contains(out, "Conv2d+BN+ReLU"));
  CHECK_FALSE(contains(out, "layer1.0.bn1"));
  CHECK(dofpose_test::run_command(base + " --unfused --activations bf16", &out) == 2);
  CHECK(contains(out, "dofpose forward: error: --unfused runs the separate float32 layers"));
  CHECK(dofpose_test::run_command(base + " --help", &out) == 0);
  CHECK(contains(out, "--unfused"));
}

TEST_CASE("forward: --conv direct gives the unfused bits, winograd (the default) stays close, bad values named") {
  TempDir dir("fwd-conv");
  // The compact hourglass at batch 2: its 32x32 3x3 layers have 128 tiles, so
  // the default runs them by Winograd.
  auto net = std::make_unique<HourglassNet>(dofpose_test::compact_hourglass_config(), 12);
  randomise_buffers(*net, 200);
  net->save(dir.file("hg.safetensors"));
  ForwardOptions opt;
  opt.model = dir.file("hg.safetensors");
  opt.input = write_f32_npy(dir, "x.npy", {2, 3, 64, 64}, 5);
  CHECK(opt.conv == "winograd");
  opt.output = dir.file("winograd.npz");
  CHECK(run_forward(opt).cpu_conv == "winograd");  // named in the profile's header too
  opt.conv = "direct";
  opt.output = dir.file("direct.npz");
  CHECK(run_forward(opt).cpu_conv == "direct");
  opt.conv = "winograd";
  opt.unfused = true;  // every layer separately: the implicit GEMM, whatever --conv says
  opt.output = dir.file("unfused.npz");
  const ForwardResult r = run_forward(opt);
  CHECK(r.cpu_conv.empty());
  const NpzFile wino(dir.file("winograd.npz")), direct(dir.file("direct.npz")),
      unfused(dir.file("unfused.npz"));
  bool any_differs = false;
  for (const std::string& name : r.output_names) {
    CAPTURE(name);
    const std::vector<float> w = wino.array(name).to_f32(), d = direct.array(name).to_f32();
    CHECK(d == unfused.array(name).to_f32());
    float scale = 0.f, diff = 0.f;
    for (size_t i = 0; i < d.size(); ++i) {
      scale = std::max(scale, std::fabs(d[i]));
      diff = std::max(diff, std::fabs(w[i] - d[i]));
    }
    CHECK(diff <= 1e-4f * std::max(scale, 1.f));
    any_differs = any_differs || w != d;
  }
  CHECK(any_differs);  // Winograd did run
  opt.unfused = false;
  opt.conv = "fast";
  CHECK(contains(error_of([&] { run_forward(opt); }),
                 "forward: --conv: unknown value 'fast', expected winograd or direct"));

  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  std::string out;
  const std::string base = dofpose_test::shell_quote(program) + " forward --model " +
                           dir.file("hg.safetensors") + " --input " + opt.input;
  CHECK(dofpose_test::run_command(base + " --conv fast", &out) == 1);
  CHECK(contains(out, "--conv: unknown value 'fast', expected winograd or direct"));
  REQUIRE(dofpose_test::run_command(base + " --conv direct --output " + dir.file("cli.npz"), &out) == 0);
  CHECK(NpzFile(dir.file("cli.npz")).array("coords").to_f32() == direct.array("coords").to_f32());
  REQUIRE(dofpose_test::run_command(base + " --profile --repeat 1", &out) == 0);
  CHECK(contains(out, "; 3x3 convolutions: winograd;"));
  CHECK(dofpose_test::run_command(base + " --help", &out) == 0);
  CHECK(contains(out, "--conv ALGO"));
}

TEST_CASE("forward: an unknown option value is a usage error in every command (exit 1, help named)") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  const std::string q = dofpose_test::shell_quote(program) + " ";
  std::string out;
  struct Case {
    const char* args;
    const char* message;
  };
  const Case cases[] = {
      {"forward --model m --input x --device tpu",
       "dofpose forward: --device: unknown value 'tpu', expected cpu or cuda (see dofpose forward --help)"},
      {"forward --model m --input x --activations f8",
       "dofpose forward: --activations must be f32, f16 or bf16, got 'f8' (see dofpose forward --help)"},
      {"eval --model m --data d --subjects S9 --input xx",
       "dofpose eval: --input: unknown value 'xx', expected 'sh'"},
      {"eval --model m --data d --subjects S9 --attributes noisy:7",
       "dofpose eval: --attributes: bad noisy spec 'noisy:7'"},
      {"eval --model m --data d --subjects S9 --attribute-threshold -3",
       "dofpose eval: --attribute-threshold needs a number of mm >= 0, got '-3' (see dofpose eval --help)"},
      {"lift in.json -o out.json --layout coco18",
       "dofpose lift: --layout: unknown joint layout 'coco18': expected one of h36m17, mpii16, coco17, pem14 "
       "(see dofpose lift --help)"},
      {"lift in.json -o out.json --normalise foo",
       "dofpose lift: --normalise: unknown normalisation 'foo'"},
      {"demo --bogus", "dofpose demo: unknown option '--bogus' (see dofpose demo --help)"},
  };
  for (const Case& c : cases) {
    const int rc = dofpose_test::run_command(q + c.args, &out);
    INFO(c.args << " -> " << rc << ": " << out);
    CHECK(rc == 1);
    CHECK(contains(out, c.message));
    CHECK(contains(out, "--help)"));
    CHECK_FALSE(contains(out, "error:"));
    CHECK_FALSE(contains(out, "--input: --input:"));
  }
}

TEST_CASE("forward: dofpose inspect counts parameters and buffers apart") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  TempDir dir("inspect");
  auto net = tiny_hourglass();
  net->save(dir.file("hg.safetensors"));
  int64_t params = 0, buffers = 0;
  for (const Param& p : net->parameters()) params += p.value->numel();
  for (const Buffer& b : net->buffers()) buffers += b.value->numel();
  REQUIRE(buffers > 0);
  std::string out;
  REQUIRE(dofpose_test::run_command(dofpose_test::shell_quote(program) + " inspect " +
                                        dir.file("hg.safetensors"),
                                    &out) == 0);
  INFO(out);
  CHECK(contains(out, concat("values: ", params + buffers, " (parameters: ", params, ", buffers: ",
                             buffers, ")")));
  // A lifter: its norm.* statistics and BatchNorm running statistics are buffers.
  auto lifter = tiny_lifter(false);
  save_lifter(*lifter, dir.file("l.safetensors"));
  params = buffers = 0;
  for (const Param& p : lifter->parameters()) params += p.value->numel();
  for (const Buffer& b : lifter->buffers()) buffers += b.value->numel();
  REQUIRE(dofpose_test::run_command(dofpose_test::shell_quote(program) + " inspect " +
                                        dir.file("l.safetensors"),
                                    &out) == 0);
  CHECK(contains(out, concat("values: ", params + buffers, " (parameters: ", params, ", buffers: ",
                             buffers, ")")));
}
