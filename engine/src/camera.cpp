#include "dofpose/camera.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "dofpose/error.h"

namespace dofpose {

Vec3 world_to_camera(const Camera& cam, const Vec3& x) {
  const double d[3] = {x[0] - cam.T[0], x[1] - cam.T[1], x[2] - cam.T[2]};
  Vec3 out;
  for (int r = 0; r < 3; ++r) out[r] = cam.R[r * 3] * d[0] + cam.R[r * 3 + 1] * d[1] + cam.R[r * 3 + 2] * d[2];
  return out;
}

Vec2 camera_to_pixels(const Camera& cam, const Vec3& x) {
  const double u = x[0] / x[2], v = x[1] / x[2];
  const double r2 = u * u + v * v;
  const double radial = 1.0 + cam.k[0] * r2 + cam.k[1] * r2 * r2 + cam.k[2] * r2 * r2 * r2;
  const double tan = cam.p[0] * v + cam.p[1] * u;
  const double ud = u * (radial + tan) + cam.p[1] * r2;
  const double vd = v * (radial + tan) + cam.p[0] * r2;
  return {cam.f[0] * ud + cam.c[0], cam.f[1] * vd + cam.c[1]};
}

Vec2 camera_to_pixels_undistorted(const Camera& cam, const Vec3& x) {
  return {cam.f[0] * x[0] / x[2] + cam.c[0], cam.f[1] * x[1] / x[2] + cam.c[1]};
}

void world_to_camera(const Camera& cam, const float* world, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const Vec3 c = world_to_camera(cam, {world[3 * i], world[3 * i + 1], world[3 * i + 2]});
    for (int d = 0; d < 3; ++d) out[3 * i + d] = float(c[size_t(d)]);
  }
}

void project_world_to_pixels(const Camera& cam, const float* world, int64_t n, float* pixels, bool distort) {
  for (int64_t i = 0; i < n; ++i) {
    const Vec3 c = world_to_camera(cam, {world[3 * i], world[3 * i + 1], world[3 * i + 2]});
    const Vec2 px = distort ? camera_to_pixels(cam, c) : camera_to_pixels_undistorted(cam, c);
    pixels[2 * i] = float(px[0]);
    pixels[2 * i + 1] = float(px[1]);
  }
}

void root_relative(const float* poses, int64_t n, int joints, int root, float* out) {
  DOFPOSE_CHECK(root >= 0 && root < joints, "root_relative: root joint ", root, " outside 0..", joints - 1);
  for (int64_t i = 0; i < n; ++i) {
    const float* p = poses + i * joints * 3;
    float* o = out + i * joints * 3;
    const float r[3] = {p[root * 3], p[root * 3 + 1], p[root * 3 + 2]};
    for (int j = 0; j < joints; ++j)
      for (int d = 0; d < 3; ++d) o[j * 3 + d] = p[j * 3 + d] - r[d];
  }
}

std::vector<float> world_to_root_relative_camera(const Camera& cam, const float* world, int64_t n, int joints, int root) {
  std::vector<float> c(size_t(n) * size_t(joints) * 3);
  world_to_camera(cam, world, n * joints, c.data());
  root_relative(c.data(), n, joints, root, c.data());
  return c;
}

// ------------------------------------------------------------------ cameras.json

namespace {

template <size_t N>
std::array<double, N> read_vector(const nlohmann::json& cam, const char* field, const std::string& where) {
  if (!cam.contains(field)) fail(where, ": missing field '", field, "'");
  const auto& v = cam.at(field);
  if (!v.is_array() || v.size() != N) fail(where, ": field '", field, "' must be a list of ", N, " numbers");
  std::array<double, N> out{};
  for (size_t i = 0; i < N; ++i) {
    if (!v[i].is_number()) fail(where, ": field '", field, "' element ", i, " is not a number");
    out[i] = v[i].get<double>();
    if (!std::isfinite(out[i])) fail(where, ": field '", field, "' element ", i, " is not finite");
  }
  return out;
}

int read_int(const nlohmann::json& cam, const char* field, const std::string& where) {
  if (!cam.contains(field)) fail(where, ": missing field '", field, "'");
  const auto& v = cam.at(field);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > 1000000)
    fail(where, ": field '", field, "' must be a positive integer");
  return v.get<int>();
}

}  // namespace

CameraSet CameraSet::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cameras file '", path, "': cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail("cameras file '", path, "': invalid JSON: ", e.what());
  }
  if (!root.is_object()) fail("cameras file '", path, "': expected an object of subjects");
  CameraSet set;
  set.path_ = path;
  for (const auto& [subject, cams] : root.items()) {
    if (!cams.is_object()) fail("cameras file '", path, "' subject '", subject, "': expected an object of cameras");
    for (const auto& [id, c] : cams.items()) {
      const std::string where = "cameras file '" + path + "' subject '" + subject + "' camera '" + id + "'";
      if (!c.is_object()) fail(where, ": expected an object");
      Camera cam;
      cam.id = id;
      if (!c.contains("R_world_to_cam")) fail(where, ": missing field 'R_world_to_cam'");
      const auto& R = c.at("R_world_to_cam");
      if (!R.is_array() || R.size() != 3) fail(where, ": field 'R_world_to_cam' must be a 3x3 list of lists");
      for (size_t r = 0; r < 3; ++r) {
        if (!R[r].is_array() || R[r].size() != 3) fail(where, ": field 'R_world_to_cam' row ", r, " must have 3 numbers");
        for (size_t k = 0; k < 3; ++k) {
          if (!R[r][k].is_number()) fail(where, ": field 'R_world_to_cam' [", r, "][", k, "] is not a number");
          cam.R[r * 3 + k] = R[r][k].get<double>();
        }
      }
      // A rotation: R R^T = I (catches a transposed or scaled matrix early).
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) {
          double dot = 0;
          for (int k = 0; k < 3; ++k) dot += cam.R[size_t(a * 3 + k)] * cam.R[size_t(b * 3 + k)];
          if (std::fabs(dot - (a == b ? 1.0 : 0.0)) > 1e-4) fail(where, ": field 'R_world_to_cam' is not a rotation matrix");
        }
      cam.T = read_vector<3>(c, "T_world_mm", where);
      cam.f = read_vector<2>(c, "f_px", where);
      cam.c = read_vector<2>(c, "c_px", where);
      cam.k = read_vector<3>(c, "k_radial", where);
      cam.p = read_vector<2>(c, "p_tangential", where);
      cam.width = read_int(c, "width", where);
      cam.height = read_int(c, "height", where);
      if (cam.f[0] <= 0 || cam.f[1] <= 0) fail(where, ": field 'f_px' must be positive");
      set.cameras_[subject][id] = cam;
    }
  }
  return set;
}

std::vector<std::string> CameraSet::subjects() const {
  std::vector<std::string> out;
  for (const auto& kv : cameras_) out.push_back(kv.first);
  return out;
}

std::vector<std::string> CameraSet::camera_ids(const std::string& subject) const {
  auto it = cameras_.find(subject);
  if (it == cameras_.end()) fail("cameras file '", path_, "': no subject '", subject, "'");
  std::vector<std::string> out;
  for (const auto& kv : it->second) out.push_back(kv.first);
  return out;
}

const Camera& CameraSet::get(const std::string& subject, const std::string& camera_id) const {
  auto it = cameras_.find(subject);
  if (it == cameras_.end()) fail("cameras file '", path_, "': no subject '", subject, "'");
  auto c = it->second.find(camera_id);
  if (c == it->second.end()) fail("cameras file '", path_, "' subject '", subject, "': no camera '", camera_id, "'");
  return c->second;
}

}  // namespace dofpose
