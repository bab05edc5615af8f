// Camera model: world -> camera -> pixels (with distortion), cameras.json
// loading and its errors, and agreement with the 2D detections of Human3.6M.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "dofpose/camera.h"
#include "dofpose/error.h"
#include "dofpose/npz.h"
#include "dofpose/skeleton.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::error_of;
using dofpose_test::require_shared;
using dofpose_test::TempDir;

namespace {

Camera simple_camera() {
  Camera c;
  c.R = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  c.T = {0, 0, 0};
  c.f = {1000, 1100};
  c.c = {500, 400};
  c.width = 1000;
  c.height = 1000;
  return c;
}

const char* kCameraJson = R"({"S1": {"cam1": {
  "R_world_to_cam": [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
  "T_world_mm": [10, 20, -3000], "f_px": [1000, 1000], "c_px": [500, 500],
  "k_radial": [0.1, -0.01, 0.001], "p_tangential": [0.001, -0.002], "width": 1000, "height": 1002}}})";

std::string load_error(const std::string& path) {
  return error_of([&] { CameraSet::load(path); });
}

}  // namespace

TEST_CASE("camera: projection without and with distortion, by hand") {
  Camera c = simple_camera();
  const Vec3 x = {200, -100, 2000};
  const Vec2 px = camera_to_pixels_undistorted(c, x);
  CHECK(px[0] == doctest::Approx(1000 * 0.1 + 500));
  CHECK(px[1] == doctest::Approx(1100 * -0.05 + 400));
  // Zero distortion: both projections agree.
  const Vec2 pd = camera_to_pixels(c, x);
  CHECK(pd[0] == doctest::Approx(px[0]));
  CHECK(pd[1] == doctest::Approx(px[1]));

  // The README's formula term by term: u = 0.1, v = -0.05.
  c.k = {0.2, -0.1, 0.05};
  c.p = {0.01, -0.02};
  const double u = 0.1, v = -0.05, r2 = u * u + v * v;
  const double radial = 1 + 0.2 * r2 - 0.1 * r2 * r2 + 0.05 * r2 * r2 * r2;
  const double tan = 0.01 * v + -0.02 * u;
  const double ud = u * (radial + tan) + -0.02 * r2, vd = v * (radial + tan) + 0.01 * r2;
  const Vec2 q = camera_to_pixels(c, x);
  CHECK(q[0] == doctest::Approx(1000 * ud + 500).epsilon(1e-12));
  CHECK(q[1] == doctest::Approx(1100 * vd + 400).epsilon(1e-12));

  // World -> camera: X_cam = R (X - T).
  c.R = {0, -1, 0, 1, 0, 0, 0, 0, 1};
  c.T = {10, 20, 30};
  const Vec3 xc = world_to_camera(c, {11, 22, 33});
  CHECK(xc[0] == doctest::Approx(-2));
  CHECK(xc[1] == doctest::Approx(1));
  CHECK(xc[2] == doctest::Approx(3));

  // Batched versions and root-relative coordinates.
  const float world[6] = {11, 22, 33, 10, 20, 31};
  float cam[6], rel[6];
  world_to_camera(c, world, 2, cam);
  CHECK(cam[0] == doctest::Approx(-2));
  CHECK(cam[5] == doctest::Approx(1));
  root_relative(cam, 1, 2, 1, rel);
  CHECK(rel[0] == doctest::Approx(-2));
  CHECK(rel[2] == doctest::Approx(2));
  CHECK(rel[3] == 0.0f);
  const std::vector<float> r = world_to_root_relative_camera(c, world, 1, 2, 0);
  CHECK(r[0] == 0.0f);
  CHECK(r[5] == doctest::Approx(-2));
  float pix[4];
  project_world_to_pixels(c, world, 2, pix, true);
  const Vec2 p0 = camera_to_pixels(c, world_to_camera(c, {11, 22, 33}));
  CHECK(pix[0] == doctest::Approx(p0[0]));
  CHECK(pix[1] == doctest::Approx(p0[1]));
  CHECK_THROWS_AS(root_relative(cam, 1, 2, 2, rel), dofpose::Error);
}

TEST_CASE("camera: cameras.json loading and errors naming file, subject, camera and field") {
  TempDir dir("camera");
  const std::string good = dir.file("cameras.json");
  std::ofstream(good) << kCameraJson;
  const CameraSet set = CameraSet::load(good);
  CHECK(set.subjects() == std::vector<std::string>{"S1"});
  CHECK(set.camera_ids("S1") == std::vector<std::string>{"cam1"});
  const Camera& c = set.get("S1", "cam1");
  CHECK(c.R[1] == -1);
  CHECK(c.T[2] == -3000);
  CHECK(c.k[2] == 0.001);
  CHECK(c.p[1] == -0.002);
  CHECK(c.height == 1002);
  CHECK_THROWS_WITH_AS(set.get("S2", "cam1"), doctest::Contains("no subject 'S2'"), dofpose::Error);
  CHECK_THROWS_WITH_AS(set.get("S1", "cam9"), doctest::Contains("subject 'S1': no camera 'cam9'"), dofpose::Error);

  auto variant = [&](const std::string& from, const std::string& to) {
    std::string text = kCameraJson;
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    const std::string path = dir.file("variant.json");
    std::ofstream(path) << text;
    return load_error(path);
  };
  const std::string where = "cameras file '" + dir.file("variant.json") + "' subject 'S1' camera 'cam1'";
  CHECK(variant("\"f_px\"", "\"focal\"") == where + ": missing field 'f_px'");
  CHECK(variant("[10, 20, -3000]", "[10, 20]") == where + ": field 'T_world_mm' must be a list of 3 numbers");
  CHECK(variant("[0.001, -0.002]", "[0.001, \"x\"]") == where + ": field 'p_tangential' element 1 is not a number");
  CHECK(variant("[1, 0, 0]", "[2, 0, 0]") == where + ": field 'R_world_to_cam' is not a rotation matrix");
  CHECK(variant("\"width\": 1000", "\"width\": -5") == where + ": field 'width' must be a positive integer");
  CHECK(variant("\"S1\": {", "\"S1\": [").find("invalid JSON") != std::string::npos);
  CHECK(load_error(dir.file("nope.json")) == "cameras file '" + dir.file("nope.json") + "': cannot open");
}

TEST_CASE("camera: S9 3D poses project onto the stacked-hourglass 2D detections (all 4 cameras)") {
  const std::string npz_path = require_shared("data/h36m/S9.npz");
  if (npz_path.empty()) return;
  const std::string cam_path = require_shared("data/h36m/cameras.json");
  if (cam_path.empty()) return;
  const CameraSet cams = CameraSet::load(cam_path);
  const NpzFile data(npz_path);
  const NpyArray& pos = data.array("Walking/pos3d");
  const int64_t n = std::min<int64_t>(pos.shape[0], 300);
  const std::vector<float> world = pos.to_f32();

  // The MPII-16 detections mapped to H36M-17; compare only the joints that are
  // the same anatomical point in both (pelvis, thorax, limbs).
  const LayoutMap& map = layout_map(LayoutId::MPII16, LayoutId::H36M17);
  std::vector<int> compared;
  for (int j = 0; j < h36m::kNumJoints; ++j)
    if (map.joints[size_t(j)].source == JointSource::Direct) compared.push_back(j);
  CHECK(compared.size() == 14);

  REQUIRE(cams.camera_ids("S9").size() == 4);
  for (const std::string& id : cams.camera_ids("S9")) {
    const Camera& cam = cams.get("S9", id);
    const NpyArray& sh = data.array("Walking/sh2d/" + id);
    const std::vector<float> det = map_poses(map, sh.to_f32().data(), n, 2);
    std::vector<float> px(size_t(n) * 17 * 2), px_plain(px.size());
    project_world_to_pixels(cam, world.data(), n * 17, px.data(), true);
    project_world_to_pixels(cam, world.data(), n * 17, px_plain.data(), false);
    std::vector<double> dist, dist_plain;
    for (int64_t i = 0; i < n; ++i)
      for (int j : compared) {
        const size_t k = size_t(i * 17 + j) * 2;
        dist.push_back(std::hypot(px[k] - det[k], px[k + 1] - det[k + 1]));
        dist_plain.push_back(std::hypot(px_plain[k] - det[k], px_plain[k + 1] - det[k + 1]));
      }
    auto median = [](std::vector<double> v) {
      std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
      return v[v.size() / 2];
    };
    const double med = median(dist), med_plain = median(dist_plain);
    INFO("camera ", id, ": median distance ", med, " px with distortion, ", med_plain, " px without");
    CHECK(med < 20.0);
    CHECK(med > 1.0);  // detections are not the projections themselves
    CHECK(med <= med_plain);  // the distortion model brings the projections closer
    // Points project inside the image.
    int64_t outside = 0;
    for (size_t k = 0; k < px.size(); k += 2)
      outside += !(px[k] > 0 && px[k] < cam.width && px[k + 1] > 0 && px[k + 1] < cam.height);
    CHECK(outside == 0);
  }
}
