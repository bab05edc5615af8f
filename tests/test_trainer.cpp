// Lifter training (engine/include/dofpose/train/): the dataset reader, flips,
// noisy attributes, the TrainConfig parser and train_lifter's learning,
// determinism and bit-exact resume, on a small synthetic dataset written here
// in the format of tools/h36m_import.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dofpose/build_info.h"
#include "dofpose/nn/hourglass.h"
#include "dofpose/skeleton.h"
#include "dofpose/torso_plane.h"
#include "dofpose/train/dataset.h"
#include "dofpose/train/trainer.h"
#include "dofpose/weights.h"
#include "tests/test_util.h"

using namespace dofpose;
using namespace dofpose::train;
using dofpose_test::error_of;
using dofpose_test::TempDir;

namespace {

constexpr float kFocal = 1150.f, kCx = 500.f, kCy = 500.f;

// A skeleton from random joint angles: each bone points along its rest
// direction perturbed by noise, the whole body turned by a random yaw and
// placed 4-6 m in front of a pinhole camera (y down).
void random_pose(std::mt19937& rng, float* out17x3) {
  // Rest direction (x right of the image for the person's left side, y down) and length (mm).
  struct Bone { float dx, dy, dz, len; };
  static const Bone bones[17] = {
      {0, 0, 0, 0},      {-1, 0, 0, 130},  {0, 1, 0, 450},   {0, 1, 0, 440},   // pelvis, r-hip, r-knee, r-ankle
      {1, 0, 0, 130},    {0, 1, 0, 450},   {0, 1, 0, 440},   {0, -1, 0, 230},  // l-hip, l-knee, l-ankle, spine
      {0, -1, 0, 250},   {0, -1, 0.3f, 110}, {0, -1, 0, 110}, {1, 0, 0, 150},  // thorax, neck, head, l-shoulder
      {0, 1, 0, 280},    {0, 1, 0, 250},   {-1, 0, 0, 150},  {0, 1, 0, 280},   // l-elbow, l-wrist, r-shoulder, r-elbow
      {0, 1, 0, 250}};                                                         // r-wrist
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const auto& parents = layout(LayoutId::H36M17).parents;
  const float yaw = 3.14159265f * u(rng);
  const float cy = std::cos(yaw), sy = std::sin(yaw);
  float p[17][3];
  p[0][0] = 300.f * u(rng);
  p[0][1] = 200.f * u(rng);
  p[0][2] = 5000.f + 1000.f * u(rng);
  for (int j = 1; j < 17; ++j) {
    const Bone& b = bones[j];
    const float noise = (j == 1 || j == 4 || j == 7 || j == 8 || j == 11 || j == 14) ? 0.15f : 0.8f;
    float d[3] = {b.dx + noise * u(rng), b.dy + noise * u(rng), b.dz + noise * u(rng)};
    const float n = std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    const float r[3] = {(cy * d[0] + sy * d[2]) / n, d[1] / n, (-sy * d[0] + cy * d[2]) / n};
    for (int c = 0; c < 3; ++c) p[j][c] = p[parents[size_t(j)]][c] + b.len * r[c];
  }
  std::memcpy(out17x3, p, sizeof p);
}

void project(const float* p3, int joints, float* p2) {
  for (int j = 0; j < joints; ++j) {
    p2[j * 2] = kFocal * p3[j * 3] / p3[j * 3 + 2] + kCx;
    p2[j * 2 + 1] = kFocal * p3[j * 3 + 1] / p3[j * 3 + 2] + kCy;
  }
}

// Writes a dataset file in the importer's format with m samples.
void write_dataset(const std::string& path, int64_t m, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> pixel_noise(0.f, 3.f);
  std::vector<float> p3(size_t(m) * 51), p2(size_t(m) * 34), sh(size_t(m) * 32);
  const size_t ms = static_cast<size_t>(m);
  std::vector<int32_t> subject(ms), action(ms), camera(ms), frame(ms);
  const LayoutMap& to_mpii = layout_map(LayoutId::H36M17, LayoutId::MPII16);
  for (int64_t i = 0; i < m; ++i) {
    random_pose(rng, &p3[size_t(i) * 51]);
    project(&p3[size_t(i) * 51], 17, &p2[size_t(i) * 34]);
    map_joints(to_mpii, &p2[size_t(i) * 34], 2, &sh[size_t(i) * 32]);
    for (int k = 0; k < 32; ++k) sh[size_t(i) * 32 + size_t(k)] += pixel_noise(rng);
    subject[size_t(i)] = int32_t(i % 2);
    action[size_t(i)] = int32_t(i % 3);
    camera[size_t(i)] = int32_t(i % 4);
    frame[size_t(i)] = int32_t(i);
  }
  const std::vector<int32_t> labels = torso_attribute_labels(p3.data(), m, 50.0);
  std::vector<uint8_t> attrs(labels.begin(), labels.end());
  WeightsWriter w;
  w.add("pose3d_cam", TensorView(p3.data(), {m, 17, 3}));
  w.add("pose2d_gt", TensorView(p2.data(), {m, 17, 2}));
  w.add("pose2d_sh", TensorView(sh.data(), {m, 16, 2}));
  w.add_raw("attributes", DType::U8, {m, 9}, attrs.data());
  w.add_raw("subject", DType::I32, {m}, subject.data());
  w.add_raw("action", DType::I32, {m}, action.data());
  w.add_raw("camera", DType::I32, {m}, camera.data());
  w.add_raw("frame", DType::I32, {m}, frame.data());
  w.set_metadata("subjects", R"(["S1","S5"])");
  w.set_metadata("actions", R"(["Walking","Eating 1","Sitting"])");
  // docs/data.md's format; some distortion so the virtual camera test sees it.
  w.set_metadata("cameras", R"({"ids": ["54138969","55011271","58860488","60457274"], "per_subject": {)"
                            R"("S1": {"54138969": {"f_px": [1150, 1148], "c_px": [500, 500], "k_radial": [-0.2, 0.24, -0.002], "p_tangential": [-0.001, 0.0004]},)"
                            R"("55011271": {"f_px": [1150, 1150], "c_px": [508, 508], "k_radial": [0, 0, 0], "p_tangential": [0, 0]},)"
                            R"("58860488": {"f_px": [1149, 1148], "c_px": [519, 501], "k_radial": [-0.2, 0.2, 0], "p_tangential": [0, 0]},)"
                            R"("60457274": {"f_px": [1145, 1144], "c_px": [514, 501], "k_radial": [-0.19, 0.2, 0], "p_tangential": [0, 0]}},)"
                            R"("S5": {"54138969": {"f_px": [1100, 1100], "c_px": [510, 490], "k_radial": [0, 0, 0], "p_tangential": [0, 0]},)"
                            R"("55011271": {"f_px": [1150, 1150], "c_px": [508, 508], "k_radial": [0, 0, 0], "p_tangential": [0, 0]},)"
                            R"("58860488": {"f_px": [1149, 1148], "c_px": [519, 501], "k_radial": [0, 0, 0], "p_tangential": [0, 0]},)"
                            R"("60457274": {"f_px": [1145, 1144], "c_px": [514, 501], "k_radial": [0, 0, 0], "p_tangential": [0.001, 0]}}}})");
  w.write(path);
}

struct SyntheticData {
  TempDir dir{"trainer"};
  std::string train = dir.file("train.safetensors"), val = dir.file("val.safetensors");
  SyntheticData(int64_t n_train = 384, int64_t n_val = 96) {
    write_dataset(train, n_train, 1);
    write_dataset(val, n_val, 2);
  }
};

// A tiny, fast config.
TrainConfig small_config(const SyntheticData& d, const std::string& out, const std::string& kind) {
  TrainConfig c;
  c.model.kind = kind;
  c.model.width = 32;
  c.model.blocks = 1;
  c.model.dropout = 0.1f;
  c.data.train = d.train;
  c.data.val = d.val;
  c.data.input = "sh";
  c.data.flip_center_x = kCx;
  c.optimizer.type = "adam";
  c.optimizer.lr = 3e-3f;
  c.optimizer.schedule.type = "exponential";
  c.optimizer.schedule.decay_steps = 20;
  c.epochs = 3;
  c.batch_size = 32;
  c.seed = 7;
  c.checkpoint_minutes = 0;
  c.out_dir = out;
  return c;
}

TrainOptions quiet() {
  TrainOptions o;
  o.progress = false;
  return o;
}

// Every tensor of two weights files, byte for byte (and the same names).
void require_same_tensors(const std::string& a, const std::string& b) {
  WeightsFile fa(a), fb(b);
  REQUIRE(fa.names() == fb.names());
  for (const auto& name : fa.names()) {
    const Tensor ta = fa.load_copy(name), tb = fb.load_copy(name);
    INFO("tensor " << name);
    REQUIRE(ta.shape() == tb.shape());
    CHECK(std::memcmp(ta.view().data, tb.view().data, ta.nbytes()) == 0);
  }
}

std::vector<std::string> log_rows_without_seconds(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> rows;
  std::string line;
  while (std::getline(in, line)) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

std::string config_error(const std::string& json) {
  return error_of([&] { TrainConfig::from_json_string(json); });
}

}  // namespace

TEST_CASE("trainer: flips are involutions that swap left and right joints") {
  std::mt19937 rng(3);
  float p3[51], p2[34], f3[51], f2[34], ff3[51], ff2[34];
  random_pose(rng, p3);
  project(p3, 17, p2);
  flip_pose3d_h36m(p3, f3);
  flip_pose3d_h36m(f3, ff3);
  flip_pose2d_h36m(p2, kCx, f2);
  flip_pose2d_h36m(f2, kCx, ff2);
  for (int k = 0; k < 51; ++k) CHECK(ff3[k] == p3[k]);
  for (int k = 0; k < 34; ++k) CHECK(ff2[k] == doctest::Approx(p2[k]).epsilon(1e-6));

  // The left wrist becomes the right wrist, mirrored.
  const int lw = h36m::kLeftWrist, rw = h36m::kRightWrist;
  CHECK(f3[rw * 3 + 0] == -p3[lw * 3 + 0]);
  CHECK(f3[rw * 3 + 1] == p3[lw * 3 + 1]);
  CHECK(f3[rw * 3 + 2] == p3[lw * 3 + 2]);
  CHECK(f2[rw * 2 + 0] == doctest::Approx(2 * kCx - p2[lw * 2]));
  CHECK(f2[rw * 2 + 1] == p2[lw * 2 + 1]);
  CHECK(f3[h36m::kPelvis * 3 + 0] == -p3[0]);  // centre joints stay in place (mirrored)

  // Mirroring about the principal point = projecting the mirrored 3D pose.
  float proj_f3[34];
  project(f3, 17, proj_f3);
  for (int k = 0; k < 34; ++k) CHECK(proj_f3[k] == doctest::Approx(f2[k]).epsilon(1e-4));

  // Attribute labels move with their joints, classes unchanged; and they agree
  // with the labels computed from the mirrored pose.
  const std::vector<int32_t> labels = torso_attribute_labels(p3, 1, 20.0);
  const std::vector<int32_t> labels_of_flipped = torso_attribute_labels(f3, 1, 20.0);
  int32_t flipped[9], back[9];
  flip_attribute_labels(labels.data(), flipped);
  flip_attribute_labels(flipped, back);
  for (int a = 0; a < 9; ++a) {
    CHECK(back[a] == labels[size_t(a)]);
    CHECK(flipped[a] == labels_of_flipped[size_t(a)]);
  }
  CHECK(flipped[3] == labels[2]);  // kAttributeJoints: 2 left wrist, 3 right wrist
  CHECK(flipped[8] == labels[8]);  // the head has no mirror

  // Through the dataset: a flipped sample is the mirror of the unflipped one.
  SyntheticData d(8, 4);
  DatasetOptions o;
  o.input = "gt";
  o.num_joints_in = 17;
  o.flip_center_x = kCx;
  o.attributes = AttributeSource::parse("gt", "attributes");
  LifterDataset ds(d.train, o);
  float x[34], a[27], y[51], xf[34], af[27], yf[51];
  ds.get(5, false, x, a, y);
  ds.get(5, true, xf, af, yf);
  CHECK(yf[rw * 3] == -y[lw * 3]);
  CHECK(xf[rw * 2] == doctest::Approx(2 * kCx - x[lw * 2]));
  for (int k = 0; k < 3; ++k) {
    CHECK(af[3 * 3 + k] == a[2 * 3 + k]);  // right wrist one-hot <- left wrist
    CHECK(y[k] == 0.f);                    // pelvis-relative target
  }
}

TEST_CASE("trainer: noisy attributes replace about 1-P of the labels, never by the same class") {
  for (double p : {0.84, 0.5, 0.0, 1.0}) {
    int64_t replaced = 0, total = 0, to_plus_one = 0, out_of_range = 0, unstable = 0;
    for (int64_t row = 0; row < 20000; ++row)
      for (int a = 0; a < 9; ++a) {
        const int32_t gt = int32_t((row + a) % 3);
        const int32_t l = noisy_attribute_label(gt, p, 1234, row, a);
        out_of_range += l < 0 || l > 2;
        ++total;
        if (l != gt) {
          ++replaced;
          if (l == (gt + 1) % 3) ++to_plus_one;
        }
        // Deterministic: the same label for the same (seed, row, attribute).
        unstable += noisy_attribute_label(gt, p, 1234, row, a) != l;
      }
    CHECK(out_of_range == 0);
    CHECK(unstable == 0);
    const double frac = double(replaced) / double(total);
    INFO("P = " << p << ", replaced " << frac);
    CHECK(std::fabs(frac - (1.0 - p)) < 0.01);
    if (replaced > 1000) CHECK(std::fabs(double(to_plus_one) / double(replaced) - 0.5) < 0.02);
  }
  // In the dataset: labels differ from the file's only where noise replaced them.
  SyntheticData d(400, 4);
  DatasetOptions o;
  o.attributes = AttributeSource::parse("noisy:0.84", "attributes");
  o.noise_seed = 99;
  LifterDataset noisy(d.train, o);
  o.attributes = AttributeSource::parse("gt", "attributes");
  LifterDataset exact(d.train, o);
  int64_t changed = 0;
  for (int64_t i = 0; i < noisy.size(); ++i) {
    int32_t ln[9], lg[9];
    noisy.attribute_labels(i, ln);
    exact.attribute_labels(i, lg);
    for (int a = 0; a < 9; ++a) changed += ln[a] != lg[a];
  }
  CHECK(std::fabs(double(changed) / (400.0 * 9) - 0.16) < 0.03);
  CHECK(error_of([] { AttributeSource::parse("noisy:1.5", "data.attributes"); })
            .find("data.attributes") != std::string::npos);
  CHECK(error_of([] { AttributeSource::parse("noise", "data.attributes"); })
            .find("\"none\", \"gt\" or \"noisy:P\"") != std::string::npos);
}

TEST_CASE("trainer: loss decreases and val MPJPE improves on synthetic data") {
  SyntheticData d;
  TempDir out("trainer-run");
  for (const std::string kind : {"progressive", "martinez"}) {
    INFO("kind " << kind);
    TrainConfig c = small_config(d, out.file(kind), kind);
    c.data.flip = true;
    c.data.attributes = "gt";
    c.model.use_attributes = true;
    c.epochs = 8;
    const TrainResult r = train_lifter(c, quiet());
    REQUIRE(r.epochs.size() == 8);
    CHECK_FALSE(r.interrupted);
    CHECK(r.steps == 8 * 12);
    CHECK(r.train_samples == 384);
    CHECK(r.val_samples == 96);
    CHECK(r.epochs.back().train_loss < 0.8 * r.epochs.front().train_loss);
    CHECK(r.epochs.back().val_mpjpe < 0.9 * r.epochs.front().val_mpjpe);
    CHECK(r.epochs.back().val_pmpjpe > 0);
    CHECK(r.epochs.back().val_pmpjpe < r.epochs.back().val_mpjpe);
    MESSAGE(kind << ": loss " << r.epochs.front().train_loss << " -> " << r.epochs.back().train_loss
                 << ", val MPJPE " << r.epochs.front().val_mpjpe << " -> " << r.epochs.back().val_mpjpe
                 << " mm");

    // The outputs: the final model loads (no optimizer state), the log has one row per epoch.
    WeightsFile model(r.model_path);
    auto lifter = nn::load_lifter(model);
    CHECK(lifter->config().kind == kind);
    for (const auto& name : model.names()) CHECK(name.rfind("optim.", 0) != 0);
    CHECK(model.has("norm.input.mean"));
    CHECK(WeightsFile(r.checkpoint_path).has(WeightsFile(r.checkpoint_path).names().front()));
    const auto rows = log_rows_without_seconds(r.log_path);
    REQUIRE(rows.size() == 9);
    CHECK(rows[0] == "epoch,step,train_loss,val_mpjpe,val_pmpjpe,lr");
    CHECK(rows[8].rfind("8,96,", 0) == 0);
  }
}

TEST_CASE("trainer: two runs with the same seed give bitwise identical weights, whatever the thread count") {
  SyntheticData d;
  TempDir out("trainer-det");
  const int threads = cpu_threads();
  TrainConfig c = small_config(d, out.file("a"), "progressive");
  c.data.flip = true;
  c.epochs = 2;
  set_cpu_threads(1);
  const TrainResult a = train_lifter(c, quiet());
  set_cpu_threads(std::max(2, threads));
  c.out_dir = out.file("b");
  const TrainResult b = train_lifter(c, quiet());
  set_cpu_threads(threads);
  require_same_tensors(a.model_path, b.model_path);
  require_same_tensors(a.checkpoint_path, b.checkpoint_path);
  CHECK(log_rows_without_seconds(a.log_path) == log_rows_without_seconds(b.log_path));

  // A different seed gives different weights (the comparison can fail).
  c.seed = 8;
  c.out_dir = out.file("c");
  const TrainResult e = train_lifter(c, quiet());
  WeightsFile fa(a.model_path), fe(e.model_path);
  const Tensor wa = fa.load_copy("block2.distal.output_layer.weight");
  const Tensor we = fe.load_copy("block2.distal.output_layer.weight");
  CHECK(std::memcmp(wa.view().data, we.view().data, wa.nbytes()) != 0);
}

TEST_CASE("trainer: an interrupted and resumed run ends bitwise identical to an uninterrupted one") {
  SyntheticData d(300, 64);  // 300 / 32: 9 full batches + one of 12
  TempDir out("trainer-resume");
  TrainConfig c = small_config(d, out.file("full"), "progressive");
  c.data.flip = true;
  c.data.attributes = "noisy:0.8";
  c.model.use_attributes = true;
  c.optimizer.type = "rmsprop";
  c.optimizer.momentum = 0.5f;
  c.optimizer.clip_norm = 5.f;
  const TrainResult full = train_lifter(c, quiet());
  REQUIRE(full.steps == 30);

  c.out_dir = out.file("resumed");
  TrainOptions o = quiet();
  o.stop_after_steps = 7;  // mid-epoch 1
  TrainResult r = train_lifter(c, o);
  CHECK(r.interrupted);
  CHECK(r.steps == 7);
  CHECK(r.model_path.empty());
  o.resume = true;
  o.stop_after_steps = 20;  // the last batch of epoch 2, before its validation
  r = train_lifter(c, o);
  CHECK(r.interrupted);
  CHECK(r.steps == 20);
  CHECK(r.epochs.size() == 1);  // epoch 1 finished, epoch 2 not yet validated
  o.stop_after_steps = 0;
  r = train_lifter(c, o);
  CHECK_FALSE(r.interrupted);
  CHECK(r.steps == 30);
  REQUIRE(r.epochs.size() == 2);  // epochs 2 (validation only) and 3

  require_same_tensors(full.model_path, r.model_path);
  require_same_tensors(full.checkpoint_path, r.checkpoint_path);  // incl. optimizer state
  CHECK(log_rows_without_seconds(full.log_path) == log_rows_without_seconds(r.log_path));
  CHECK(full.epochs.back().val_mpjpe == r.epochs.back().val_mpjpe);

  // Resuming a finished run only rewrites the final model.
  r = train_lifter(c, o);
  CHECK(r.steps == 30);
  CHECK(r.epochs.empty());
  require_same_tensors(full.model_path, r.model_path);

  // A changed config is refused, naming the field; epochs may grow.
  TrainConfig changed = c;
  changed.optimizer.lr = 1e-2f;
  const std::string e = error_of([&] { train_lifter(changed, o); });
  CHECK(e.find("optimizer.lr") != std::string::npos);
  changed = c;
  changed.epochs = 4;
  r = train_lifter(changed, o);
  CHECK(r.steps == 40);
}

TEST_CASE("trainer: resuming a checkpoint already at --max-steps trains nothing and writes nothing") {
  SyntheticData d(300, 64);
  TempDir out("trainer-at-stop");
  const TrainConfig c = small_config(d, out.file("run"), "martinez");
  TrainOptions o = quiet();
  o.stop_after_steps = 7;
  REQUIRE(train_lifter(c, o).steps == 7);
  auto bytes = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  };
  const std::string ckpt = out.file("run") + "/" + kCheckpointFile;
  const std::string log = out.file("run") + "/" + kLogFile;
  const std::string ckpt_before = bytes(ckpt), log_before = bytes(log);
  o.resume = true;
  for (int64_t stop : {7, 5}) {  // at, and past, the limit
    o.stop_after_steps = stop;
    const TrainResult r = train_lifter(c, o);
    CHECK(r.already_at_stop);
    CHECK_FALSE(r.interrupted);
    CHECK(r.steps == 7);
    CHECK(bytes(ckpt) == ckpt_before);
    CHECK(bytes(log) == log_before);
  }
  o.stop_after_steps = 8;  // one step more is still trained
  const TrainResult r = train_lifter(c, o);
  CHECK_FALSE(r.already_at_stop);
  CHECK(r.steps == 8);
}

TEST_CASE("trainer: config errors name the field") {
  CHECK(config_error(R"({"data": {"train": "x"}, "epoch": 3})").find("unknown key \"epoch\"") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "optimizer": {"schedule": {"gama": 0.5}}})")
            .find("unknown key \"optimizer.schedule.gama\"") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "epochs": "3"})").find("epochs must be an integer") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "batch_size": 2.5})")
            .find("batch_size must be an integer") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "flip": 1}})").find("data.flip must be true or false") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "model": {"widht": 64}})").find("model:") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "model": {"widht": 64}})").find("widht") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {}})").find("data.train") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "input": "hg"}})").find("data.input") !=
        std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "attributes": "gt"}})")
            .find("model.use_attributes") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "optimizer": {"type": "sgd"}})")
            .find("optimizer.type") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "optimizer": {"schedule": {"type": "cosine"}}})")
            .find("optimizer.schedule.type") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x"}, "seed": -1})").find("seed must be a non-negative") !=
        std::string::npos);
  CHECK(config_error("{oops").find("not valid JSON") != std::string::npos);
  CHECK(error_of([] { TrainConfig::from_file("/nonexistent/c.json"); }).find("/nonexistent/c.json") !=
        std::string::npos);

  // Round trip: every field written, read back equal.
  const TrainConfig c = TrainConfig::from_json_string(
      R"({"data": {"train": "t.safetensors", "val": "v.safetensors", "flip": true, "subsample": 5},
          "model": {"kind": "martinez", "width": 64},
          "optimizer": {"type": "rmsprop", "lr": 0.002, "schedule": {"type": "step", "gamma": 0.5, "step_size": 10}},
          "epochs": 3, "batch_size": 16, "seed": 42, "out_dir": "o"})");
  CHECK(TrainConfig::from_json_string(c.to_json_string()).to_json_string() == c.to_json_string());
  CHECK(c.learning_rate(0) == doctest::Approx(0.002f));
  CHECK(c.learning_rate(10) == doctest::Approx(0.001f));

  // Files: missing, wrong tensors. Errors name the field, the file and the tensor.
  SyntheticData d(16, 8);
  TempDir out("trainer-err");
  TrainConfig t = small_config(d, out.file("run"), "martinez");
  t.data.train = out.file("missing.safetensors");
  std::string e = error_of([&] { train_lifter(t, quiet()); });
  CHECK(e.find("data.train") != std::string::npos);
  CHECK(e.find("missing.safetensors") != std::string::npos);

  // Copies the training file, letting `change` rewrite or drop (return false) tensors.
  auto rewrite = [&](const std::string& name,
                     const std::function<bool(const std::string&, const Tensor&, WeightsWriter&)>& change) {
    WeightsFile src(d.train);
    WeightsWriter w;
    for (const auto& n : src.names()) {
      const Tensor tt = src.load_copy(n);
      if (!change(n, tt, w)) w.add_raw(n, tt.dtype(), tt.shape(), tt.view().data);
    }
    w.set_metadata("actions", src.metadata().at("actions"));
    w.write(out.file(name));
    return out.file(name);
  };
  t.data.train = rewrite("no_sh.safetensors", [](const std::string& n, const Tensor&, WeightsWriter&) {
    return n == "pose2d_sh";  // dropped
  });

  e = error_of([&] { train_lifter(t, quiet()); });
  CHECK(e.find("'pose2d_sh' is missing") != std::string::npos);
  CHECK(e.find("no_sh.safetensors") != std::string::npos);
  t.data.train = rewrite("bad_shape.safetensors", [](const std::string& n, const Tensor& tt, WeightsWriter& w) {
    if (n != "pose3d_cam") return false;
    w.add_raw(n, tt.dtype(), {tt.shape()[0], 51}, tt.view().data);
    return true;
  });
  e = error_of([&] { train_lifter(t, quiet()); });
  CHECK(e.find("bad_shape.safetensors") != std::string::npos);
  CHECK(e.find("'pose3d_cam' has shape [16,51], expected [M,17,3]") != std::string::npos);
  t.data.train = rewrite("bad_dtype.safetensors", [](const std::string& n, const Tensor& tt, WeightsWriter& w) {
    if (n != "action") return false;
    std::vector<float> f(size_t(tt.numel()), 0.f);
    w.add(n, TensorView(f.data(), tt.shape()));
    return true;
  });
  e = error_of([&] { train_lifter(t, quiet()); });
  CHECK(e.find("'action' has dtype F32, expected I32") != std::string::npos);
  // --resume without a checkpoint; a fresh run into a directory that has one.
  t.data.train = d.train;
  TrainOptions o = quiet();
  o.resume = true;
  CHECK(error_of([&] { train_lifter(t, o); }).find("no checkpoint") != std::string::npos);
  t.epochs = 1;
  train_lifter(t, quiet());
  CHECK(error_of([&] { train_lifter(t, quiet()); }).find("--resume") != std::string::npos);
}

TEST_CASE("trainer: virtual cameras re-project the turned 3D pose with the sample's camera") {
  SyntheticData d(64, 16);
  DatasetOptions o;
  o.input = "gt";
  o.num_joints_in = 17;
  o.virtual_cameras = true;
  const LifterDataset ds(d.train, o);
  WeightsFile f(d.train);
  const float* abs3 = f.raw("pose3d_cam").f32();
  float x[34], y[51], x0[34], y0[51], turned_abs[51];
  for (int64_t i = 0; i < ds.size(); ++i) {
    const double yaw = 0.3 + 0.1 * double(i);
    ds.get_virtual(i, false, yaw, x, nullptr, y);
    // The 2D input is the distorted projection of the target plus the (unmoved) pelvis.
    const Camera& cam = ds.camera_of(i);
    for (int j = 0; j < 17; ++j) {
      const Vec3 p = {double(y[j * 3]) + abs3[i * 51], double(y[j * 3 + 1]) + abs3[i * 51 + 1],
                      double(y[j * 3 + 2]) + abs3[i * 51 + 2]};
      const Vec2 uv = camera_to_pixels(cam, p);
      CHECK(x[j * 2] == doctest::Approx(uv[0]).epsilon(1e-5));
      CHECK(x[j * 2 + 1] == doctest::Approx(uv[1]).epsilon(1e-5));
    }
    // The target is the unturned target turned: heights and distances to the pelvis kept.
    ds.get(i, false, x0, nullptr, y0);
    for (int j = 0; j < 17; ++j) {
      CHECK(y[j * 3 + 1] == doctest::Approx(y0[j * 3 + 1]));
      const double r0 = std::hypot(y0[j * 3], y0[j * 3 + 2]), r = std::hypot(y[j * 3], y[j * 3 + 2]);
      CHECK(r == doctest::Approx(r0).epsilon(1e-4));
    }
    rotate_pose3d_about_pelvis_y(abs3 + i * 51, yaw, turned_abs);
    CHECK(turned_abs[0] == abs3[i * 51]);
    CHECK(turned_abs[2] == abs3[i * 51 + 2]);
    CHECK(y[3] == doctest::Approx(turned_abs[3] - turned_abs[0]));
  }
  // The distortion is used: camera 0 of subject S1 (row 0) is distorted.
  ds.get_virtual(0, false, 0.0, x, nullptr, y);
  double largest = 0;
  for (int j = 0; j < 17; ++j) {
    const Vec3 p = {double(abs3[j * 3]), double(abs3[j * 3 + 1]), double(abs3[j * 3 + 2])};
    const Vec2 uv = camera_to_pixels_undistorted(ds.camera_of(0), p);
    largest = std::max(largest, std::hypot(x[j * 2] - uv[0], x[j * 2 + 1] - uv[1]));
  }
  CHECK(largest > 0.2);
  // Flip composes: the flipped virtual sample is the flip of the virtual sample.
  float xf[34], yf[51], tmp[51];
  ds.get_virtual(5, false, 1.0, x, nullptr, y);
  ds.get_virtual(5, true, 1.0, xf, nullptr, yf);
  flip_pose2d_h36m(x, kCx, tmp);
  for (int k = 0; k < 34; ++k) CHECK(xf[k] == tmp[k]);
  flip_pose3d_h36m(y, tmp);
  for (int k = 0; k < 51; ++k) CHECK(yf[k] == tmp[k]);

  // Detections cannot be re-synthesised; a file without camera metadata is named.
  DatasetOptions sh = o;
  sh.input = "sh";
  sh.num_joints_in = 16;
  CHECK(error_of([&] { LifterDataset(d.train, sh); }).find("input \"gt\"") != std::string::npos);
  TempDir out("trainer-vcam");
  WeightsWriter w;
  for (const auto& n : f.names()) {
    const Tensor t = f.load_copy(n);
    w.add_raw(n, t.dtype(), t.shape(), t.view().data);
  }
  w.set_metadata("actions", f.metadata().at("actions"));
  w.set_metadata("subjects", f.metadata().at("subjects"));
  w.write(out.file("no_cams.safetensors"));
  const std::string e = error_of([&] { LifterDataset(out.file("no_cams.safetensors"), o); });
  CHECK(e.find("no_cams.safetensors") != std::string::npos);
  CHECK(e.find("'cameras'") != std::string::npos);
}

TEST_CASE("trainer: virtual cameras are seeded, change training, and are checked in the config") {
  SyntheticData d(128, 32);
  TempDir out("trainer-vcam-run");
  auto run = [&](const std::string& dir, double p) {
    TrainConfig c = small_config(d, out.file(dir), "martinez");
    c.data.input = "gt";
    c.data.flip = true;
    c.data.virtual_cameras.probability = p;
    c.epochs = 2;
    train_lifter(c, quiet());
    return out.file(dir) + "/" + kModelFile;
  };
  const std::string a = run("a", 0.5), b = run("b", 0.5), off = run("off", 0.0);
  require_same_tensors(a, b);
  // p > 0 changes the batches, hence the weights.
  WeightsFile fa(a), fo(off);
  bool differ = false;
  for (const auto& n : fa.names()) {
    const Tensor ta = fa.load_copy(n), to = fo.load_copy(n);
    differ = differ || std::memcmp(ta.view().data, to.view().data, ta.nbytes()) != 0;
  }
  CHECK(differ);

  const std::string e = config_error(
      R"({"data": {"train": "x", "input": "sh", "virtual_cameras": {"probability": 0.5}}})");
  CHECK(e.find("data.virtual_cameras") != std::string::npos);
  CHECK(e.find("data.input") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "input": "gt", "virtual_cameras": {"probability": 1.5}}})")
            .find("data.virtual_cameras.probability") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "input": "gt", "virtual_cameras": {"max_yaw_deg": 270}}})")
            .find("data.virtual_cameras.max_yaw_deg") != std::string::npos);
  CHECK(config_error(R"({"data": {"train": "x", "virtual_cameras": {"prob": 0.5}}})")
            .find("unknown key \"data.virtual_cameras.prob\"") != std::string::npos);
  // p = 0 with "sh" is fine (off), and the round trip keeps the fields.
  const TrainConfig c = TrainConfig::from_json_string(
      R"({"data": {"train": "x", "input": "gt", "virtual_cameras": {"probability": 0.25, "max_yaw_deg": 90}}})");
  CHECK(c.data.virtual_cameras.probability == 0.25);
  CHECK(c.data.virtual_cameras.max_yaw_deg == 90);
  CHECK(TrainConfig::from_json_string(c.to_json_string()).to_json_string() == c.to_json_string());
  TrainConfig::from_json_string(R"({"data": {"train": "x", "virtual_cameras": {"probability": 0}}})");
}

TEST_CASE("trainer: config.json writes float settings as their shortest decimal and older checkpoints still resume") {
  // 1e-3f is 0.0010000000474974513 as a double: the file says 0.001.
  SyntheticData d(300, 64);
  TempDir out("trainer-floats");
  TrainConfig c = small_config(d, out.file("run"), "martinez");
  c.optimizer.lr = 1e-3f;
  c.optimizer.schedule.rate = 0.96f;
  const std::string text = c.to_json_string();
  CHECK(text.find("\"lr\": 0.001,") != std::string::npos);
  CHECK(text.find("\"rate\": 0.96,") != std::string::npos);
  CHECK(text.find("\"beta2\": 0.999,") != std::string::npos);
  CHECK(text.find("\"eps\": 1e-08,") != std::string::npos);
  CHECK(text.find("0000000") == std::string::npos);  // no float32 artefacts anywhere
  CHECK(nn::LifterConfig().to_json_string().find("\"bn_eps\":1e-05,") != std::string::npos);
  CHECK(nn::HourglassConfig().to_json_string().find("0000000") == std::string::npos);
  // And they read back as the same floats.
  const TrainConfig back = TrainConfig::from_json_string(text);
  CHECK(back.optimizer.lr == c.optimizer.lr);
  CHECK(back.optimizer.schedule.rate == c.optimizer.schedule.rate);
  CHECK(back.model.bn_eps == c.model.bn_eps);

  // A checkpoint whose stored config has the old float32 text resumes.
  const TrainConfig s = small_config(d, out.file("run"), "martinez");
  TrainOptions o = quiet();
  o.stop_after_steps = 3;
  REQUIRE(train_lifter(s, o).steps == 3);
  const std::string ckpt = out.file("run") + "/" + kCheckpointFile;
  {
    const WeightsFile f(ckpt);
    nlohmann::json trainer = nlohmann::json::parse(f.metadata().at("trainer"));
    nlohmann::json cfg = nlohmann::json::parse(trainer.at("train_config").get<std::string>());
    REQUIRE(cfg["optimizer"]["lr"].dump() == "0.003");
    cfg["optimizer"]["lr"] = double(s.optimizer.lr);  // 0.003000000026077032
    cfg["model"]["dropout"] = double(s.model.dropout);
    trainer["train_config"] = cfg.dump(2);
    WeightsWriter w;
    for (const WeightsEntry& e : f.entries()) {
      const Tensor t = f.load_copy(e.name);
      w.add_raw(e.name, e.dtype, e.shape, t.view().data);
    }
    for (const auto& [k, v] : f.metadata())
      if (k != "trainer") w.set_metadata(k, v);
    w.set_metadata("trainer", trainer.dump());
    w.write(ckpt + ".old");
  }
  std::filesystem::rename(ckpt + ".old", ckpt);
  o.resume = true;
  o.stop_after_steps = 5;
  CHECK(train_lifter(s, o).steps == 5);
}
