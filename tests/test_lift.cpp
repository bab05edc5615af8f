// Lifting (dofpose/lift.h), the embedded default model, WeightsFile::from_memory,
// synthetic poses and the demo. No test asserts the accuracy of the default
// model: it may be an untrained stand-in (docs/lift.md).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "dofpose/camera.h"
#include "dofpose/demo.h"
#include "dofpose/error.h"
#include "dofpose/lift.h"
#include "dofpose/nn/lifter.h"
#include "dofpose/skeleton.h"
#include "dofpose/synthetic_pose.h"
#include "dofpose/weights.h"
#include "tests/test_util.h"

using dofpose_test::contains;
using dofpose_test::error_of;
using dofpose_test::kNoError;
using dofpose_test::TempDir;
using json = nlohmann::json;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

const std::string kDefaultModelFile =
    std::string(DOFPOSE_SOURCE_DIR) + "/engine/default_model/default_lifter.safetensors";

// A frontal view of a canonical standing pose: 17 x 2 pixels in H36M-17.
std::vector<float> standing_h36m_2d(dofpose::NamedPose p = dofpose::NamedPose::Standing, double yaw = 0) {
  const auto world = dofpose::place_on_ground(dofpose::synthetic_pose(p));
  const dofpose::Camera cam = dofpose::synthetic_camera(world, yaw);
  std::vector<float> px(34);
  dofpose::project_world_to_pixels(cam, world.data(), 17, px.data(), false);
  return px;
}

std::vector<float> standing_coco_2d() {
  const auto world = dofpose::place_on_ground(dofpose::synthetic_pose(dofpose::NamedPose::Standing));
  const dofpose::Camera cam = dofpose::synthetic_camera(world, 0);
  const auto coco = dofpose::coco17_keypoints_3d(world);
  std::vector<float> px(34);
  dofpose::project_world_to_pixels(cam, coco.data(), 17, px.data(), false);
  return px;
}

// 2D of the standing pose in any layout.
std::vector<float> pose_2d_in(dofpose::LayoutId id) {
  using dofpose::LayoutId;
  const std::vector<float> h = standing_h36m_2d();
  switch (id) {
    case LayoutId::H36M17: return h;
    case LayoutId::COCO17: return standing_coco_2d();
    case LayoutId::MPII16:
      return dofpose::map_poses(dofpose::layout_map(LayoutId::H36M17, LayoutId::MPII16), h.data(), 1, 2);
    case LayoutId::PEM14: {
      const auto m = dofpose::map_poses(dofpose::layout_map(LayoutId::H36M17, LayoutId::MPII16), h.data(), 1, 2);
      return dofpose::map_poses(dofpose::layout_map(LayoutId::MPII16, LayoutId::PEM14), m.data(), 1, 2);
    }
  }
  return {};
}

std::string input_text(const std::string& layout, const std::vector<float>& xy, int frames = 1,
                       int missing = -1) {
  json fs = json::array();
  for (int f = 0; f < frames; ++f) {
    json k = json::array();
    for (size_t j = 0; j < xy.size() / 2; ++j)
      k.push_back({xy[2 * j], xy[2 * j + 1], int(j) == missing ? 0.0 : 0.9});
    fs.push_back({{"keypoints", k}});
  }
  return json{{"layout", layout}, {"image_size", {1000, 1000}}, {"frames", fs}}.dump();
}

}  // namespace

TEST_CASE("lift: embedded default model equals engine/default_model/default_lifter.safetensors") {
  const dofpose::ByteSpan b = dofpose::default_lifter_bytes();
  REQUIRE_MESSAGE(!b.empty(), "the build embedded no default model");
  CHECK(reinterpret_cast<uintptr_t>(b.data) % 64 == 0);
  const std::vector<uint8_t> file = read_bytes(kDefaultModelFile);
  REQUIRE_MESSAGE(file.size() == b.size,
                  "stale build: the embedded model differs from ", kDefaultModelFile, " (rebuild)");
  CHECK_MESSAGE(std::memcmp(file.data(), b.data, b.size) == 0,
                "stale build: the embedded model differs from ", kDefaultModelFile, " (rebuild)");
  const dofpose::PoseLifter lifter = dofpose::PoseLifter::from_default();
  CHECK(contains(lifter.source(), "embedded:default_lifter.safetensors"));
  CHECK(lifter.metadata().count("config") == 1);
}

TEST_CASE("lift: WeightsFile::from_memory validates like a file") {
  const std::vector<uint8_t> bytes = read_bytes(kDefaultModelFile);
  REQUIRE(bytes.size() > 100);
  const dofpose::WeightsFile disk(kDefaultModelFile);
  dofpose::WeightsFile mem = dofpose::WeightsFile::from_memory(bytes.data(), bytes.size(), "buffer");
  CHECK(mem.path() == "buffer");
  CHECK(mem.names() == disk.names());
  CHECK(mem.metadata() == disk.metadata());
  const std::string first = disk.names().front();
  CHECK(std::memcmp(mem.load_copy(first).view().data, disk.load_copy(first).view().data,
                    size_t(disk.entry(first).end - disk.entry(first).begin)) == 0);
  // Moving keeps the view valid and does not free caller memory.
  dofpose::WeightsFile moved = std::move(mem);
  CHECK(moved.has(first));

  const std::string truncated =
      error_of([&] { dofpose::WeightsFile::from_memory(bytes.data(), bytes.size() - 1, "cut"); });
  CHECK(contains(truncated, "cut"));
  CHECK(contains(truncated, "truncated"));
  const std::string header_cut = error_of([&] { dofpose::WeightsFile::from_memory(bytes.data(), 64, "cut"); });
  CHECK(contains(header_cut, "exceeds the file"));
  CHECK(contains(error_of([&] { dofpose::WeightsFile::from_memory(bytes.data(), 5, "tiny"); }),
                 "expected at least 8"));
  CHECK(contains(error_of([&] { dofpose::WeightsFile::from_memory(nullptr, 100, "null"); }), "null"));
  std::vector<uint8_t> garbage(bytes.begin(), bytes.begin() + 200);
  garbage[9] = '!';  // breaks the JSON header
  CHECK(contains(error_of([&] { dofpose::WeightsFile::from_memory(garbage.data(), garbage.size(), "g"); }),
                 "file g:"));
}

TEST_CASE("lift: a synthetic pose in every layout gives 17 finite joints, pelvis at 0") {
  dofpose::PoseLifter lifter = dofpose::PoseLifter::from_default();
  for (dofpose::LayoutId id : {dofpose::LayoutId::H36M17, dofpose::LayoutId::MPII16,
                               dofpose::LayoutId::COCO17, dofpose::LayoutId::PEM14}) {
    CAPTURE(dofpose::layout_name(id));
    const std::vector<float> xy = pose_2d_in(id);
    REQUIRE(int(xy.size()) == 2 * dofpose::layout(id).num_joints());
    const dofpose::LiftInput in = dofpose::parse_lift_input(input_text(dofpose::layout_name(id), xy, 3), "test");
    CHECK(in.frames == 3);
    const dofpose::LiftResult r = lifter.lift(in);
    REQUIRE(r.frames.size() == 3);
    CHECK(r.normalise_used == dofpose::LiftNormalise::Scale);  // image size only
    for (const auto& f : r.frames) {
      for (float v : f.joints) CHECK(std::isfinite(v));
      CHECK(f.joints[0] == 0.f);
      CHECK(f.joints[1] == 0.f);
      CHECK(f.joints[2] == 0.f);
      CHECK(f.imputed.empty());
    }
    // Identical frames, identical answers (inference mode is deterministic).
    CHECK(r.frames[0].joints == r.frames[2].joints);
  }
}

TEST_CASE("lift: layout and joint-count errors") {
  const std::vector<float> coco = standing_coco_2d();
  const std::string unknown = error_of([&] { dofpose::parse_lift_input(input_text("openpose25", coco), "in.json"); });
  CHECK(contains(unknown, "unknown joint layout 'openpose25'"));
  CHECK(contains(unknown, "coco17"));

  std::vector<float> short_pose(coco.begin(), coco.end() - 4);  // 15 joints
  const std::string count = error_of([&] { dofpose::parse_lift_input(input_text("coco17", short_pose), "in.json"); });
  CHECK(contains(count, "in.json"));
  CHECK(contains(count, "frame 0"));
  CHECK(contains(count, "15 keypoints"));
  CHECK(contains(count, "coco17 expects 17"));

  const std::string conflict = error_of([&] { dofpose::parse_lift_input(input_text("coco17", coco), "in.json", "mpii16"); });
  CHECK(contains(conflict, "--layout is mpii16"));

  json bare = json::array({json{{"keypoints", json::array()}}});
  CHECK(contains(error_of([&] { dofpose::parse_lift_input(bare.dump(), "bare.json"); }), "no layout"));
  // A bare list with --layout works.
  json frames = json::parse(input_text("coco17", coco))["frames"];
  const dofpose::LiftInput in = dofpose::parse_lift_input(frames.dump(), "bare.json", "coco17");
  CHECK(in.layout == dofpose::LayoutId::COCO17);
  CHECK(in.frames == 1);

  CHECK(contains(error_of([&] { dofpose::parse_lift_input(R"({"layout": "coco17", "frames": [], "extra": 1})", "x"); }),
                 "unknown key \"extra\""));
}

TEST_CASE("lift: malformed JSON and non-finite numbers are reported with their position") {
  const std::string bad = error_of([] { dofpose::parse_lift_input("{\"layout\": \"coco17\",\n \"frames\": [1, }", "in.json"); });
  CHECK(contains(bad, "in.json"));
  CHECK(contains(bad, "malformed JSON at byte"));
  CHECK(contains(bad, "line 2"));

  std::string text = input_text("h36m17", standing_h36m_2d());
  const size_t pos = text.find("[[") + 2;
  text.replace(pos, text.find(',', pos) - pos, "1e999");
  const std::string inf = error_of([&] { dofpose::parse_lift_input(text, "in.json"); });
  CHECK(contains(inf, "in.json"));
  CHECK(contains(inf, "non-finite"));
  CHECK(contains(inf, "1e999"));
  // Through the library API a NaN is caught by lift itself.
  dofpose::LiftInput direct = dofpose::parse_lift_input(input_text("h36m17", standing_h36m_2d()), "in.json");
  direct.keypoints[2 * 13] = std::nanf("");
  dofpose::PoseLifter lifter = dofpose::PoseLifter::from_default();
  CHECK(contains(error_of([&] { lifter.lift(direct); }), "frame 0 joint 'left wrist' has a non-finite coordinate"));

  const std::string str_value = error_of([] {
    json f = json::array();
    for (int j = 0; j < 17; ++j) f.push_back({j == 3 ? json("x") : json(1.0), 2.0});
    dofpose::parse_lift_input(json{{"layout", "h36m17"}, {"frames", {{{"keypoints", f}}}}}.dump(), "s");
  });
  CHECK(contains(str_value, "keypoint 3 (right ankle) x: expected a number"));
}

TEST_CASE("lift: missing joints are imputed and reported, never zeroed") {
  const dofpose::Layout& coco = dofpose::layout(dofpose::LayoutId::COCO17);
  const int lw = coco.index("left wrist");
  const std::vector<float> xy = standing_coco_2d();
  dofpose::LiftInput in = dofpose::parse_lift_input(input_text("coco17", xy, 1, lw), "in.json");
  CHECK(in.confidence[size_t(lw)] == 0.f);

  // The algorithm: the right forearm mirrored about the body axis. The pose is
  // left/right symmetric and seen from the front, so the guess lands near the truth.
  std::vector<float> pose = xy;
  pose[2 * size_t(lw)] = pose[2 * size_t(lw) + 1] = 0.f;
  std::vector<bool> present(17, true);
  present[size_t(lw)] = false;
  const std::vector<int> filled = dofpose::impute_missing_joints(coco, pose.data(), present);
  REQUIRE(filled == std::vector<int>{lw});
  CHECK(std::hypot(pose[2 * size_t(lw)] - xy[2 * size_t(lw)], pose[2 * size_t(lw) + 1] - xy[2 * size_t(lw) + 1]) < 3.0);

  dofpose::PoseLifter lifter = dofpose::PoseLifter::from_default();
  const dofpose::LiftResult r = lifter.lift(in);
  REQUIRE(r.frames.size() == 1);
  CHECK(r.frames[0].imputed == std::vector<int>{lw});
  CHECK(r.frames[0].imputed_h36m == std::vector<int>{dofpose::h36m::kLeftWrist});
  const json out = json::parse(dofpose::lift_output_json(in, r, lifter));
  CHECK(out["frames"][0]["imputed"] == json::array({"left wrist"}));
  CHECK(out["frames"][0]["imputed_h36m"] == json::array({"left wrist"}));

  // A missing root (the COCO nose): the mean of its known children.
  pose = xy;
  present.assign(17, true);
  present[0] = false;
  CHECK(dofpose::impute_missing_joints(coco, pose.data(), present) == std::vector<int>{0});
  for (float v : pose) CHECK(std::isfinite(v));

  // Every joint missing: an error naming the frame.
  dofpose::LiftInput none = in;
  std::fill(none.confidence.begin(), none.confidence.end(), 0.f);
  CHECK(contains(error_of([&] { lifter.lift(none); }), "frame 0: no joint is present"));
  // null keypoints count as missing.
  json frames = json::parse(input_text("coco17", xy))["frames"];
  frames[0]["keypoints"][size_t(lw)] = nullptr;
  const dofpose::LiftInput with_null = dofpose::parse_lift_input(frames.dump(), "n", "coco17");
  CHECK(lifter.lift(with_null).frames[0].imputed == std::vector<int>{lw});
}

TEST_CASE("lift: the training frame (camera re-projection, centre and scale)") {
  const dofpose::TrainingFrame tf;
  std::vector<float> pose = standing_h36m_2d();
  // scale: pelvis at the training mean, torso scale equal to the training median.
  std::vector<float> p = pose;
  CHECK(dofpose::to_training_frame(p.data(), 1, std::nullopt, dofpose::LiftNormalise::Auto, tf) ==
        dofpose::LiftNormalise::Scale);
  CHECK(p[0] == doctest::Approx(tf.pelvis_x));
  CHECK(p[1] == doctest::Approx(tf.pelvis_y));
  CHECK(dofpose::torso_scale_2d(p.data()) == doctest::Approx(tf.torso_scale).epsilon(1e-4));
  // camera: the principal point goes to the training principal point, f scales.
  const dofpose::Intrinsics cam{2000, 2000, 960, 540};
  std::vector<float> q(34, 0.f);
  q[0] = 960.f, q[1] = 540.f, q[2] = 1960.f, q[3] = 540.f;
  CHECK(dofpose::to_training_frame(q.data(), 1, cam, dofpose::LiftNormalise::Auto, tf) == dofpose::LiftNormalise::Camera);
  CHECK(q[0] == doctest::Approx(tf.cx));
  CHECK(q[1] == doctest::Approx(tf.cy));
  CHECK(q[2] == doctest::Approx(tf.cx + tf.fx * 0.5));
  // none leaves it alone; camera without intrinsics is an error.
  p = pose;
  dofpose::to_training_frame(p.data(), 1, std::nullopt, dofpose::LiftNormalise::None, tf);
  CHECK(p == pose);
  CHECK(contains(error_of([&] { dofpose::to_training_frame(p.data(), 1, std::nullopt, dofpose::LiftNormalise::Camera, tf); }),
                 "needs the input's camera"));
  std::vector<float> point(34, 5.f);
  CHECK(contains(error_of([&] { dofpose::to_training_frame(point.data(), 1, std::nullopt, dofpose::LiftNormalise::Scale, tf); }),
                 "all lie at one point"));
  CHECK(dofpose::lift_normalise_from_name("scale") == dofpose::LiftNormalise::Scale);
  CHECK(contains(error_of([] { dofpose::lift_normalise_from_name("metric"); }), "auto, camera, scale, none"));
}

TEST_CASE("lift: models whose config does not fit are rejected clearly") {
  TempDir dir("lift");
  // A lifter that needs attributes, lifted without them.
  dofpose::nn::LifterConfig c;
  c.kind = "martinez";
  c.width = 16;
  c.blocks = 1;
  c.use_attributes = true;
  auto net = dofpose::nn::Lifter::create(c, 1);
  dofpose::nn::save_lifter(*net, dir.file("attr.safetensors"));
  dofpose::PoseLifter attr = dofpose::PoseLifter::from_file(dir.file("attr.safetensors"));
  const dofpose::LiftInput in = dofpose::parse_lift_input(input_text("h36m17", standing_h36m_2d()), "in.json");
  CHECK(contains(error_of([&] { attr.lift(in); }), "uses torso-plane attributes"));
  // ... and with them it runs.
  json j = json::parse(input_text("h36m17", standing_h36m_2d()));
  j["frames"][0]["attributes"] = {0, 1, 2, 0, 1, 2, 0, 1, 2};
  const dofpose::LiftInput with = dofpose::parse_lift_input(j.dump(), "in.json");
  CHECK(with.attributes.size() == 27);
  CHECK(attr.lift(with).frames.size() == 1);

  // Not a lifter at all.
  dofpose::WeightsWriter w;
  const float one = 1.f;
  w.add_raw("x", dofpose::DType::F32, dofpose::Shape({1}), &one);
  w.set_metadata("format_version", "1");
  w.set_metadata("kind", "hourglass");
  w.write(dir.file("hg.safetensors"));
  const std::string hg = error_of([&] { dofpose::PoseLifter::from_file(dir.file("hg.safetensors")); });
  CHECK(contains(hg, "hg.safetensors"));
  CHECK(contains(hg, "needs a 'lifter' model"));
  CHECK(contains(error_of([&] { dofpose::PoseLifter::from_file(dir.file("missing.safetensors")); }),
                 "cannot open"));
}

TEST_CASE("lift: run_lift writes the documented output atomically") {
  TempDir dir("lift");
  {
    std::ofstream f(dir.file("in.json"));
    f << input_text("coco17", standing_coco_2d(), 2, 9);
  }
  dofpose::LiftRunOptions opt;
  opt.input = dir.file("in.json");
  opt.output = dir.file("out.json");
  const dofpose::LiftRunReport rep = dofpose::run_lift(opt);
  CHECK(rep.frames == 2);
  CHECK(rep.input_layout == "coco17");
  CHECK(rep.frames_with_imputed_joints == 2);
  CHECK(dir.listing() == std::vector<std::string>{"in.json", "out.json"});  // no temporaries left
  std::ifstream f(dir.file("out.json"));
  const json out = json::parse(f);
  CHECK(out["layout"] == "h36m17");
  CHECK(out["units"] == "mm");
  CHECK(out["joint_names"].size() == 17);
  CHECK(out["joint_names"][10] == "head");
  REQUIRE(out["frames"].size() == 2);
  CHECK(out["frames"][1]["joints"].size() == 17);
  CHECK(out["frames"][1]["joints"][16].size() == 3);
  CHECK(out["input"]["layout"] == "coco17");
  CHECK(out["input"]["normalisation"] == "scale");
  CHECK(out["model"]["source"] == "embedded:default_lifter.safetensors");
  CHECK(out["model"]["config"].is_object());

  opt.input = dir.file("nope.json");
  CHECK(contains(error_of([&] { dofpose::run_lift(opt); }), "nope.json"));
}

TEST_CASE("lift: synthetic poses have the bone lengths asked for and seeded variation") {
  const dofpose::BoneLengths b;
  for (dofpose::NamedPose p : dofpose::all_named_poses()) {
    CAPTURE(dofpose::named_pose_name(p));
    const auto pose = dofpose::synthetic_pose(p);
    auto len = [&](int a, int c) {
      return std::sqrt(std::pow(pose[3 * a] - pose[3 * c], 2) + std::pow(pose[3 * a + 1] - pose[3 * c + 1], 2) +
                       std::pow(pose[3 * a + 2] - pose[3 * c + 2], 2));
    };
    using namespace dofpose::h36m;
    CHECK(len(kRightHip, kRightKnee) == doctest::Approx(b.thigh).epsilon(1e-4));
    CHECK(len(kLeftKnee, kLeftAnkle) == doctest::Approx(b.shin).epsilon(1e-4));
    CHECK(len(kLeftShoulder, kLeftElbow) == doctest::Approx(b.upper_arm).epsilon(1e-4));
    CHECK(len(kRightElbow, kRightWrist) == doctest::Approx(b.forearm).epsilon(1e-4));
    CHECK(len(kPelvis, kSpine) == doctest::Approx(b.pelvis_to_spine).epsilon(1e-4));
    CHECK(pose[3 * kRightHip] > 0);  // the subject's right is +x
  }
  using dofpose::NamedPose;
  CHECK(dofpose::synthetic_pose(NamedPose::Walking, 7, 5, 0.03f) == dofpose::synthetic_pose(NamedPose::Walking, 7, 5, 0.03f));
  CHECK(dofpose::synthetic_pose(NamedPose::Walking, 7, 5, 0.03f) != dofpose::synthetic_pose(NamedPose::Walking, 8, 5, 0.03f));
  // Arms raised: wrists above the head; sitting: knees about level with the pelvis.
  const auto up = dofpose::synthetic_pose(NamedPose::ArmsRaised);
  CHECK(up[3 * dofpose::h36m::kLeftWrist + 2] > up[3 * dofpose::h36m::kHead + 2]);
  const auto sit = dofpose::synthetic_pose(NamedPose::Sitting);
  CHECK(std::abs(sit[3 * dofpose::h36m::kRightKnee + 2]) < 100.f);
  // The camera sees a frontal subject's right on the image left.
  const auto world = dofpose::place_on_ground(dofpose::synthetic_pose(NamedPose::Standing));
  const dofpose::Camera cam = dofpose::synthetic_camera(world, 0);
  std::vector<float> px(34);
  dofpose::project_world_to_pixels(cam, world.data(), 17, px.data(), false);
  CHECK(px[2 * dofpose::h36m::kRightShoulder] < px[2 * dofpose::h36m::kLeftShoulder]);
  CHECK(px[2 * dofpose::h36m::kHead + 1] < px[2 * dofpose::h36m::kPelvis + 1]);  // head up in the image
}

TEST_CASE("lift: the demo runs end to end and writes its files") {
  TempDir dir("lift-demo");
  dofpose::DemoOptions opt;
  opt.out_dir = dir.file("out");
  const dofpose::DemoResult r = dofpose::run_demo(opt);
  CHECK(r.rows.size() == 24);  // 4 poses x 3 views x 2 layouts
  for (const auto& row : r.rows) {
    CHECK(std::isfinite(row.mpjpe_mm));
    CHECK(std::isfinite(row.p_mpjpe_mm));
    CHECK(row.p_mpjpe_mm <= row.mpjpe_mm + 1e-6);  // alignment can only help
  }
  CHECK(r.files.size() == 4 + 12);
  for (const std::string& f : r.files) {
    CAPTURE(f);
    CHECK(std::filesystem::file_size(f) > 100);
  }
  CHECK(read_bytes(r.files[4]).size() > 8);
  const std::vector<uint8_t> png = read_bytes(r.files[4]);
  CHECK(std::memcmp(png.data(), "\x89PNG", 4) == 0);
  const std::string table = dofpose::format_demo_table(r);
  CHECK(contains(table, "arms_raised"));
  CHECK(contains(table, "mean"));
}

TEST_CASE("lift: the demo checks its model before writing anything, and leaves nothing on failure") {
  TempDir dir("lift-demo-bad");
  // A lifter that needs attributes (the demo has none) and a model of another kind.
  dofpose::nn::LifterConfig c;
  c.kind = "martinez";
  c.width = 16;
  c.blocks = 1;
  c.use_attributes = true;
  dofpose::nn::save_lifter(*dofpose::nn::Lifter::create(c, 1), dir.file("attr.safetensors"));
  dofpose::WeightsWriter w;
  const float one = 1.f;
  w.add_raw("x", dofpose::DType::F32, dofpose::Shape({1}), &one);
  w.set_metadata("format_version", "1");
  w.set_metadata("kind", "hourglass");
  w.write(dir.file("hg.safetensors"));

  dofpose::DemoOptions opt;
  opt.write_png = false;
  opt.out_dir = dir.file("dA");
  opt.model = dir.file("attr.safetensors");
  CHECK(contains(error_of([&] { dofpose::run_demo(opt); }), "uses torso-plane attributes"));
  CHECK_FALSE(std::filesystem::exists(opt.out_dir));
  opt.out_dir = dir.file("dB");
  opt.model = dir.file("hg.safetensors");
  CHECK(contains(error_of([&] { dofpose::run_demo(opt); }), "needs a 'lifter' model"));
  CHECK_FALSE(std::filesystem::exists(opt.out_dir));
}

TEST_CASE("lift: the dofpose binary's usage errors exit 1 with one line naming the help") {
  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  TempDir dir("lift-usage");
  {
    std::ofstream f(dir.file("in.json"));
    f << input_text("coco17", standing_coco_2d());
  }
  const std::string q = dofpose_test::shell_quote(program) + " lift ";
  const std::string in = dir.file("in.json"), out_json = dir.file("out.json");
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {"", "dofpose lift: IN.json is required (see dofpose lift --help)"},
      {in, "dofpose lift: -o OUT.json is required (see dofpose lift --help)"},
      {"--bogus " + in + " -o " + out_json, "dofpose lift: unknown option '--bogus' (see dofpose lift --help)"},
      {in + " -o " + out_json + " --min-confidence abc",
       "dofpose lift: --min-confidence needs a number, got 'abc' (see dofpose lift --help)"},
      {in + " -o " + out_json + " --min-confidence", "dofpose lift: --min-confidence needs a value (see dofpose lift --help)"},
      {in + " " + in + " -o " + out_json, "dofpose lift: more than one input file"},
      {in + " -o " + out_json + " --layout coco18", "dofpose lift: --layout: unknown joint layout 'coco18'"},
  };
  std::string out;
  for (const Case& c : cases) {
    const int rc = dofpose_test::run_command(q + c.args, &out);
    INFO(c.args << " -> " << rc << ": " << out);
    CHECK(rc == 1);
    CHECK(contains(out, c.message));
    CHECK(contains(out, "(see dofpose lift --help)"));
    CHECK_FALSE(contains(out, "usage: dofpose lift"));  // one line, not the whole help
  }
  CHECK_FALSE(std::filesystem::exists(out_json));
  CHECK(dofpose_test::run_command(q + "--help", &out) == 0);
  CHECK(contains(out, "usage: dofpose lift"));
  CHECK(dofpose_test::run_command(q + in + " -o " + out_json + " --min-confidence 0.5", &out) == 0);
}

TEST_CASE("lift: errors found while lifting name the input file, and ignored attributes are noted") {
  TempDir dir("lift-named");
  const std::vector<float> coco = standing_coco_2d();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream f(dir.file(name));
    f << text;
    return dir.file(name);
  };
  dofpose::LiftRunOptions opt;
  opt.output = dir.file("out.json");

  // Every joint at or below the confidence threshold.
  json low = json::parse(input_text("coco17", coco));
  for (json& k : low["frames"][0]["keypoints"]) k[2] = 0.0;
  opt.input = write("low.json", low.dump());
  std::string e = error_of([&] { dofpose::run_lift(opt); });
  CHECK(contains(e, "lift input " + opt.input + ": frame 0: no joint is present"));
  json nulls = json::parse(input_text("coco17", coco));
  for (json& k : nulls["frames"][0]["keypoints"]) k = nullptr;
  opt.input = write("nulls.json", nulls.dump());
  CHECK(contains(error_of([&] { dofpose::run_lift(opt); }),
                 "lift input " + opt.input + ": frame 0: no joint is present"));

  // An unknown layout in the file.
  opt.input = write("coco18.json", input_text("coco18", coco));
  e = error_of([&] { dofpose::run_lift(opt); });
  CHECK(contains(e, "lift input " + opt.input + ": \"layout\": unknown joint layout 'coco18'"));

  // The torso at one point: scale normalisation cannot work.
  std::vector<float> dot(coco.size(), 300.f);
  opt.input = write("dot.json", input_text("coco17", dot));
  e = error_of([&] { dofpose::run_lift(opt); });
  CHECK(contains(e, "lift input " + opt.input + ": frame 0: the torso joints"));
  CHECK(contains(e, "cannot normalise the scale"));
  CHECK_FALSE(std::filesystem::exists(opt.output));

  // Attributes given to a lifter that takes none: lifted, and reported.
  json with_attr = json::parse(input_text("coco17", coco));
  with_attr["frames"][0]["attributes"] = json::array({0, 1, 2, 0, 1, 2, 0, 1, 2});
  opt.input = write("attr.json", with_attr.dump());
  dofpose::LiftRunReport rep = dofpose::run_lift(opt);
  CHECK(rep.attributes_ignored);
  opt.input = write("plain.json", input_text("coco17", coco));
  rep = dofpose::run_lift(opt);
  CHECK_FALSE(rep.attributes_ignored);

  const std::string program = dofpose_test::require_dofpose_program();
  if (program.empty()) return;
  const std::string q = dofpose_test::shell_quote(program) + " lift ";
  std::string out;
  CHECK(dofpose_test::run_command(q + dir.file("low.json") + " -o " + opt.output, &out) == 2);
  CHECK(contains(out, "dofpose lift: error: lift input " + dir.file("low.json") + ": frame 0: no joint is present"));
  CHECK(dofpose_test::run_command(q + dir.file("attr.json") + " -o " + opt.output, &out) == 0);
  CHECK(contains(out, "dofpose lift: note: " + dir.file("attr.json") + ": the frames' \"attributes\" were ignored"));
  CHECK(dofpose_test::run_command(q + dir.file("plain.json") + " -o " + opt.output, &out) == 0);
  CHECK_FALSE(contains(out, "note:"));
}
