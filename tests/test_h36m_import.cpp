// tools/h36m_import.py on a small slice of Human3.6M (S9 Walking, 50 frames per
// sequence), checked from C++: the file opens with WeightsFile, its tensors have
// the documented dtypes and shapes, the camera-frame poses match the C++ camera
// model applied to the source .npz, the stored 2D ground truth is the C++
// projection, and the stored attributes are the C++ torso-plane labels. Also:
// the original public layout (h5) gives the same rows, and bad input fails
// with a message naming the problem. See docs/data.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dofpose/camera.h"
#include "dofpose/npz.h"
#include "dofpose/skeleton.h"
#include "dofpose/torso_plane.h"
#include "dofpose/weights.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::require_shared;
using dofpose_test::run_python;
using dofpose_test::TempDir;

namespace {

constexpr int kMaxFrames = 50;
const std::vector<std::string> kCameraIds = {"54138969", "55011271", "58860488", "60457274"};

std::string importer() { return std::string(DOFPOSE_SOURCE_DIR) + "/tools/h36m_import.py"; }

// Runs the importer on S9 Walking into `dir`; returns the dataset path.
std::string import_slice(const TempDir& dir, const std::string& h36m_dir, const std::string& layout) {
  run_python(importer(), {"--data", h36m_dir, "--out", dir.path, "--split", "test", "--subjects", "S9",
                          "--actions", "Walking", "--max-frames", std::to_string(kMaxFrames), "--layout", layout});
  return dir.file("test.safetensors");
}

void check_entry(const WeightsFile& f, const std::string& name, DType dtype, const Shape& shape) {
  INFO("tensor ", name);
  REQUIRE(f.has(name));
  CHECK(f.entry(name).dtype == dtype);
  CHECK(f.entry(name).shape == shape);
}

// The JSON list stored in a metadata entry.
std::vector<std::string> metadata_list(const WeightsFile& f, const std::string& key) {
  const auto j = nlohmann::json::parse(f.metadata_or(key, "null"));
  REQUIRE_MESSAGE(j.is_array(), "metadata ", key, " is not a JSON list");
  return j.get<std::vector<std::string>>();
}

Camera camera_from_json(const std::string& id, const nlohmann::json& c) {
  Camera cam;
  cam.id = id;
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) cam.R[size_t(r * 3 + k)] = c.at("R_world_to_cam").at(r).at(k).get<double>();
  for (int i = 0; i < 3; ++i) cam.T[size_t(i)] = c.at("T_world_mm").at(i).get<double>();
  for (int i = 0; i < 2; ++i) {
    cam.f[size_t(i)] = c.at("f_px").at(i).get<double>();
    cam.c[size_t(i)] = c.at("c_px").at(i).get<double>();
    cam.p[size_t(i)] = c.at("p_tangential").at(i).get<double>();
  }
  for (int i = 0; i < 3; ++i) cam.k[size_t(i)] = c.at("k_radial").at(i).get<double>();
  cam.width = c.at("width").get<int>();
  cam.height = c.at("height").get<int>();
  return cam;
}

bool same_bytes(const WeightsFile& a, const std::vector<int64_t>& rows_a, const WeightsFile& b, const std::string& name) {
  const TensorView va = a.raw(name), vb = b.raw(name);
  const size_t row = va.nbytes() / size_t(va.dim(0));
  if (vb.nbytes() / size_t(vb.dim(0)) != row || int64_t(rows_a.size()) != vb.dim(0)) return false;
  for (size_t i = 0; i < rows_a.size(); ++i)
    if (std::memcmp(static_cast<const uint8_t*>(va.data) + size_t(rows_a[i]) * row,
                    static_cast<const uint8_t*>(vb.data) + i * row, row) != 0)
      return false;
  return true;
}

}  // namespace

TEST_CASE("h36m import: S9 Walking slice agrees with the C++ camera model and torso plane") {
  if (!dofpose_test::python_with_numpy("the Human3.6M importer test")) return;
  const std::string npz_path = require_shared("data/h36m/S9.npz");
  if (npz_path.empty()) return;
  const std::string cameras_path = require_shared("data/h36m/cameras.json");
  if (cameras_path.empty()) return;
  TempDir dir("h36m");
  const WeightsFile f(import_slice(dir, dofpose_test::shared_path("data/h36m"), "npz"));

  // Metadata.
  CHECK(f.metadata_or("kind", "") == "dataset");
  CHECK(f.metadata_or("format_version", "") == "1");
  CHECK(metadata_list(f, "subjects") == std::vector<std::string>{"S9"});
  const std::vector<std::string> sequences = metadata_list(f, "sequences");
  CHECK(sequences == std::vector<std::string>{"Walking", "Walking 1"});
  CHECK(metadata_list(f, "actions") == std::vector<std::string>{"Walking"});
  const double threshold = std::stod(f.metadata_or("threshold_mm", "nan"));
  REQUIRE(std::isfinite(threshold));
  CHECK(threshold == 70.0);  // the importer's default, chosen in docs/attributes.md
  const auto cams_json = nlohmann::json::parse(f.metadata_or("cameras", "{}"));
  REQUIRE(cams_json.at("ids").get<std::vector<std::string>>() == kCameraIds);
  const auto source = nlohmann::json::parse(f.metadata_or("source", "{}"));
  CHECK(source.at("layout").get<std::string>() == "npz");

  // Shapes and dtypes: 2 sequences x 4 cameras x 50 frames.
  const int64_t m = int64_t(sequences.size()) * 4 * kMaxFrames;
  check_entry(f, "pose3d_cam", DType::F32, Shape{m, 17, 3});
  check_entry(f, "pose2d_gt", DType::F32, Shape{m, 17, 2});
  check_entry(f, "pose2d_sh", DType::F32, Shape{m, 16, 2});
  check_entry(f, "attributes", DType::U8, Shape{m, kNumAttributeJoints});
  for (const char* name : {"subject", "action", "sequence", "camera", "frame"}) check_entry(f, name, DType::I32, Shape{m});

  const float* pose3d = f.raw("pose3d_cam").f32();
  const float* gt2d = f.raw("pose2d_gt").f32();
  const float* sh2d = f.raw("pose2d_sh").f32();
  const uint8_t* attributes = f.raw("attributes").u8();
  const int32_t* subject = f.raw("subject").i32();
  const int32_t* action = f.raw("action").i32();
  const int32_t* sequence = f.raw("sequence").i32();
  const int32_t* camera = f.raw("camera").i32();
  const int32_t* frame = f.raw("frame").i32();

  // The cameras in the metadata are those of cameras.json.
  const CameraSet set = CameraSet::load(cameras_path);
  std::vector<Camera> cams;
  for (const std::string& id : kCameraIds) {
    cams.push_back(camera_from_json(id, cams_json.at("per_subject").at("S9").at(id)));
    const Camera& ref = set.get("S9", id);
    CHECK(cams.back().R == ref.R);
    CHECK(cams.back().T == ref.T);
    CHECK(cams.back().f == ref.f);
    CHECK(cams.back().k == ref.k);
    CHECK(cams.back().p == ref.p);
  }

  const NpzFile npz(npz_path);
  std::map<std::string, std::vector<float>> source_f32;  // npz arrays, converted once
  std::map<std::string, std::vector<int32_t>> source_frames;
  std::map<int, int> rows_per_camera;
  double worst_cam_mm = 0, worst_px = 0;
  int64_t label_mismatches = 0;
  std::array<int64_t, 3> label_counts{};
  for (int64_t i = 0; i < m; ++i) {
    REQUIRE(subject[i] == 0);
    REQUIRE(action[i] == 0);
    REQUIRE((sequence[i] >= 0 && sequence[i] < int32_t(sequences.size())));
    REQUIRE((camera[i] >= 0 && camera[i] < 4));
    ++rows_per_camera[camera[i]];
    const Camera& cam = cams[size_t(camera[i])];
    const std::string& seq = sequences[size_t(sequence[i])];

    // The source frame: frames are 50 Hz indices, every 5th kept.
    REQUIRE(frame[i] % 5 == 0);
    const int64_t k = frame[i] / 5;
    REQUIRE(k < kMaxFrames);
    const std::string sh_key = seq + "/sh2d/" + kCameraIds[size_t(camera[i])];
    if (!source_f32.count(sh_key)) {
      source_f32[seq + "/pos3d"] = npz.array(seq + "/pos3d").to_f32();
      source_f32[sh_key] = npz.array(sh_key).to_f32();
      source_frames[seq] = npz.array(seq + "/frames").to_i32();
    }
    REQUIRE(source_frames[seq].at(size_t(k)) == frame[i]);
    const std::vector<float>& world = source_f32[seq + "/pos3d"];
    const std::vector<float>& sh = source_f32[sh_key];

    const float* p = pose3d + i * 17 * 3;
    for (int j = 0; j < 17; ++j) {
      const float* w = world.data() + (k * 17 + j) * 3;
      const Vec3 xc = world_to_camera(cam, {w[0], w[1], w[2]});
      for (int d = 0; d < 3; ++d) worst_cam_mm = std::max(worst_cam_mm, std::fabs(xc[size_t(d)] - p[j * 3 + d]));
      // Projecting the stored camera-frame joint reproduces the stored 2D ground truth.
      const Vec2 px = camera_to_pixels(cam, {p[j * 3], p[j * 3 + 1], p[j * 3 + 2]});
      for (int d = 0; d < 2; ++d) worst_px = std::max(worst_px, std::fabs(px[size_t(d)] - gt2d[(i * 17 + j) * 2 + d]));
    }
    // The detections are stored as given.
    REQUIRE(std::memcmp(sh2d + i * 16 * 2, sh.data() + k * 16 * 2, 16 * 2 * sizeof(float)) == 0);
    // The attributes are the C++ torso-plane labels of the stored pose.
    const std::vector<int32_t> labels = torso_attribute_labels(p, 1, threshold);
    for (int a = 0; a < kNumAttributeJoints; ++a) {
      label_mismatches += labels[size_t(a)] != int32_t(attributes[i * kNumAttributeJoints + a]);
      REQUIRE(attributes[i * kNumAttributeJoints + a] < 3);
      ++label_counts[attributes[i * kNumAttributeJoints + a]];
    }
  }
  CHECK(worst_cam_mm < 1e-3);  // float32 rounding of coordinates of a few metres
  CHECK(worst_px < 1e-2);
  CHECK(label_mismatches == 0);
  for (int c = 0; c < 4; ++c) CHECK(rows_per_camera[c] == m / 4);
  // Walking has joints on both sides of the plane and near it.
  for (int s = 0; s < 3; ++s) CHECK(label_counts[size_t(s)] > 0);
}

TEST_CASE("h36m import: the original h5 layout gives the same S9 Walking rows as the .npz") {
  if (!dofpose_test::python_with_numpy("the Human3.6M original-layout test")) return;
  const std::string cameras_h5 = require_shared("data/h36m/original/cameras.h5");
  if (cameras_h5.empty()) return;
  std::string probe;
  if (dofpose_test::run_command(dofpose_test::shell_quote(DOFPOSE_PYTHON) + " -c 'import h5py'", &probe) != 0) {
    if (dofpose_test::ci_required()) FAIL("the original-layout test needs h5py (CI=true): ", probe);
    MESSAGE("skipping the original-layout test: ", DOFPOSE_PYTHON, " cannot import h5py");
    return;
  }
  TempDir npz_dir("h36m-npz"), orig_dir("h36m-orig");
  const std::string data = dofpose_test::shared_path("data/h36m");
  const WeightsFile a(import_slice(npz_dir, data, "npz"));
  const WeightsFile b(import_slice(orig_dir, data, "original"));
  CHECK(nlohmann::json::parse(b.metadata_or("source", "{}")).at("layout").get<std::string>() == "original");
  // The original copy holds the sequence "Walking" only; compare with those rows of the .npz import.
  const std::vector<std::string> seq_a = metadata_list(a, "sequences"), seq_b = metadata_list(b, "sequences");
  REQUIRE(seq_b == std::vector<std::string>{"Walking"});
  const int32_t walking = int32_t(std::find(seq_a.begin(), seq_a.end(), "Walking") - seq_a.begin());
  REQUIRE(walking < int32_t(seq_a.size()));
  std::vector<int64_t> rows;
  const int32_t* sequence = a.raw("sequence").i32();
  for (int64_t i = 0; i < a.entry("sequence").shape[0]; ++i)
    if (sequence[i] == walking) rows.push_back(i);
  REQUIRE(int64_t(rows.size()) == 4 * kMaxFrames);
  for (const char* name : {"pose3d_cam", "pose2d_gt", "pose2d_sh", "attributes", "subject", "action", "camera", "frame"}) {
    INFO("tensor ", name);
    CHECK(same_bytes(a, rows, b, name));
  }
  CHECK(nlohmann::json::parse(a.metadata_or("cameras", "{}")) == nlohmann::json::parse(b.metadata_or("cameras", "{}")));
}

TEST_CASE("h36m import: a missing subject or data folder fails naming the path") {
  if (!dofpose_test::python_with_numpy("the Human3.6M importer error test")) return;
  TempDir dir("h36m-err");
  std::string out;
  // A data folder without cameras.json.
  const std::string cmd = dofpose_test::shell_quote(DOFPOSE_PYTHON) + " " + dofpose_test::shell_quote(importer()) +
                          " --data " + dofpose_test::shell_quote(dir.path) + " --out " +
                          dofpose_test::shell_quote(dir.file("out"));
  CHECK(dofpose_test::run_command(cmd, &out) != 0);
  CHECK(out.find(dir.file("cameras.json")) != std::string::npos);
  // A requested subject without its file.
  const std::string data = require_shared("data/h36m");
  if (data.empty()) return;
  CHECK(dofpose_test::run_command(cmd.substr(0, cmd.find(" --data ")) + " --data " + dofpose_test::shell_quote(data) +
                                      " --out " + dofpose_test::shell_quote(dir.file("out")) + " --subjects S99 --split x",
                                  &out) != 0);
  CHECK(out.find("S99.npz") != std::string::npos);
  CHECK(dir.listing() == std::vector<std::string>{});  // nothing written
}

TEST_CASE("h36m import: the default threshold is the one tools/attribute_threshold.py chooses") {
  if (!dofpose_test::python_with_numpy("the attribute threshold test")) return;
  const std::string data = require_shared("data/h36m/S1.npz");
  if (data.empty()) return;
  TempDir dir("h36m-thr");
  const std::string out = run_python(std::string(DOFPOSE_SOURCE_DIR) + "/tools/attribute_threshold.py",
                                     {"--data", dofpose_test::shared_path("data/h36m"), "--subjects",
                                      "S1,S5,S6,S7,S8", "--hist", dir.file("hist")});
  INFO(out);
  CHECK(out.find("chosen threshold: 70 mm") != std::string::npos);
  // The histogram is written (text without matplotlib, PNG with it).
  const std::vector<std::string> files = dir.listing();
  REQUIRE(files.size() == 1);
  CHECK((files[0] == "hist.txt" || files[0] == "hist.png"));
}
