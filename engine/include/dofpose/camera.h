// Human3.6M camera model: world -> camera (X_cam = R (X - T)), camera ->
// pixels with radial (k1..k3) and tangential (p1, p2) distortion, and the
// cameras.json loader. See docs/geometry.md for the exact formulas.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dofpose {

using Vec2 = std::array<double, 2>;
using Vec3 = std::array<double, 3>;

struct Camera {
  std::string id;                         // e.g. "54138969"
  std::array<double, 9> R{};              // world -> camera rotation, row-major
  Vec3 T{};                               // camera centre in world millimetres
  std::array<double, 2> f{}, c{};         // focal length and principal point, pixels
  std::array<double, 3> k{};              // radial distortion k1, k2, k3
  std::array<double, 2> p{};              // tangential distortion p1, p2
  int width = 0, height = 0;              // image size, pixels
};

Vec3 world_to_camera(const Camera& cam, const Vec3& x_world);
// Normalised coordinates u = X/Z, v = Y/Z, distorted, then f * (u, v)_d + c.
Vec2 camera_to_pixels(const Camera& cam, const Vec3& x_cam);
// The same without distortion: f * (X/Z, Y/Z) + c.
Vec2 camera_to_pixels_undistorted(const Camera& cam, const Vec3& x_cam);

// Batched versions over n points (xyz / uv contiguous, float32).
void world_to_camera(const Camera& cam, const float* world, int64_t n, float* cam_out);
void project_world_to_pixels(const Camera& cam, const float* world, int64_t n, float* pixels,
                             bool distort = true);
// Subtracts joint `root` from every joint of each of n poses of `joints` x 3
// values (pelvis-relative coordinates when root = 0 in H36M-17).
void root_relative(const float* poses, int64_t n, int joints, int root, float* out);
// World poses -> pelvis-relative camera coordinates (n poses x joints x 3).
std::vector<float> world_to_root_relative_camera(const Camera& cam, const float* world, int64_t n,
                                                 int joints, int root = 0);

// The cameras of every subject, as in shared/data/h36m/cameras.json:
// { "S1": { "54138969": { "R_world_to_cam": 3x3, "T_world_mm": 3, "f_px": 2,
//   "c_px": 2, "k_radial": 3, "p_tangential": 2, "width": int, "height": int }, ...}, ...}
class CameraSet {
 public:
  // Throws naming the file, subject, camera and field of any malformed entry.
  static CameraSet load(const std::string& path);
  const std::string& path() const { return path_; }
  std::vector<std::string> subjects() const;
  std::vector<std::string> camera_ids(const std::string& subject) const;
  const Camera& get(const std::string& subject, const std::string& camera_id) const;

 private:
  std::string path_;
  std::map<std::string, std::map<std::string, Camera>> cameras_;
};

}  // namespace dofpose
