#include "dofpose/torso_plane.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "dofpose/error.h"

namespace dofpose {

SymmetricEigen3 symmetric_eigen3(const std::array<double, 9>& a_in) {
  double a[3][3], v[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  for (int r = 0; r < 3; ++r)
    for (int c = r; c < 3; ++c) a[r][c] = a[c][r] = a_in[size_t(r * 3 + c)];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      DOFPOSE_CHECK(std::isfinite(a[r][c]), "symmetric_eigen3: matrix element [", r, "][", c, "] is not finite");
  double scale = 0;
  for (auto& row : a)
    for (double x : row) scale = std::max(scale, std::fabs(x));
  // Cyclic Jacobi: rotate away each off-diagonal element in turn; converges
  // quadratically, a handful of sweeps reach double precision.
  for (int sweep = 0; sweep < 50; ++sweep) {
    const double off = std::fabs(a[0][1]) + std::fabs(a[0][2]) + std::fabs(a[1][2]);
    if (off <= 1e-300 || off <= 1e-15 * scale) break;
    for (int p = 0; p < 2; ++p) {
      for (int q = p + 1; q < 3; ++q) {
        if (std::fabs(a[p][q]) <= 1e-300) continue;
        const double theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        // A' = J^T A J with the rotation J in the (p, q) plane.
        for (int k = 0; k < 3; ++k) {
          const double akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (int k = 0; k < 3; ++k) {
          const double apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (int k = 0; k < 3; ++k) {
          const double vkp = v[k][p], vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  int order[3] = {0, 1, 2};
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (a[order[j]][order[j]] < a[order[i]][order[i]]) std::swap(order[i], order[j]);
  SymmetricEigen3 out;
  for (int i = 0; i < 3; ++i) {
    out.values[size_t(i)] = a[order[i]][order[i]];
    for (int r = 0; r < 3; ++r) out.vectors[size_t(r * 3 + i)] = v[r][order[i]];
  }
  return out;
}

namespace {

using V3 = std::array<double, 3>;
V3 joint(const float* pose, int j) { return {pose[j * 3], pose[j * 3 + 1], pose[j * 3 + 2]}; }
V3 sub(const V3& a, const V3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
V3 add(const V3& a, const V3& b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
double dot(const V3& a, const V3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
V3 cross(const V3& a, const V3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

}  // namespace

TorsoPlane fit_torso_plane(const float* pose) {
  TorsoPlane plane;
  for (int j : kTorsoPlaneJoints) {
    const V3 p = joint(pose, j);
    for (int d = 0; d < 3; ++d) {
      DOFPOSE_CHECK(std::isfinite(p[size_t(d)]), "fit_torso_plane: joint ", j, " coordinate ", d, " is not finite");
      plane.centroid[size_t(d)] += p[size_t(d)] / double(kTorsoPlaneJoints.size());
    }
  }
  std::array<double, 9> scatter{};
  for (int j : kTorsoPlaneJoints) {
    const V3 d = sub(joint(pose, j), plane.centroid);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) scatter[size_t(r * 3 + c)] += d[size_t(r)] * d[size_t(c)];
  }
  const SymmetricEigen3 eig = symmetric_eigen3(scatter);
  V3 n = {eig.vectors[0], eig.vectors[3], eig.vectors[6]};
  plane.rms_residual_mm = std::sqrt(std::max(0.0, eig.values[0]) / double(kTorsoPlaneJoints.size()));

  const V3 up = sub(joint(pose, h36m::kThorax), joint(pose, h36m::kPelvis));
  const V3 left_to_right = add(sub(joint(pose, h36m::kRightHip), joint(pose, h36m::kLeftHip)),
                               sub(joint(pose, h36m::kRightShoulder), joint(pose, h36m::kLeftShoulder)));
  // For a person with up = +y facing +z, the right side is at -x:
  // up x right = (+y) x (-x) = +z, the facing direction.
  const V3 forward = cross(up, left_to_right);
  if (dot(n, forward) < 0) n = {-n[0], -n[1], -n[2]};
  plane.normal = n;
  return plane;
}

double signed_distance(const TorsoPlane& plane, const float* p) {
  const V3 d = {p[0] - plane.centroid[0], p[1] - plane.centroid[1], p[2] - plane.centroid[2]};
  return dot(d, plane.normal);
}

const char* plane_side_name(PlaneSide s) {
  switch (s) {
    case PlaneSide::Front: return "front";
    case PlaneSide::Back: return "back";
    case PlaneSide::OnPlane: return "on-plane";
  }
  return "?";
}

PlaneSide classify_distance(double d, double threshold_mm) {
  if (d > threshold_mm) return PlaneSide::Front;
  if (d < -threshold_mm) return PlaneSide::Back;
  return PlaneSide::OnPlane;
}

TorsoAttributes torso_attributes(const float* pose, double threshold_mm) {
  DOFPOSE_CHECK(threshold_mm >= 0 && std::isfinite(threshold_mm), "torso_attributes: threshold ", threshold_mm,
                " mm must be finite and >= 0");
  TorsoAttributes out;
  out.plane = fit_torso_plane(pose);
  for (int a = 0; a < kNumAttributeJoints; ++a) {
    out.distance_mm[size_t(a)] = signed_distance(out.plane, pose + kAttributeJoints[size_t(a)] * 3);
    out.side[size_t(a)] = classify_distance(out.distance_mm[size_t(a)], threshold_mm);
  }
  return out;
}

std::vector<int32_t> torso_attribute_labels(const float* poses, int64_t n, double threshold_mm) {
  std::vector<int32_t> labels(size_t(n) * kNumAttributeJoints);
  for (int64_t i = 0; i < n; ++i) {
    const TorsoAttributes t = torso_attributes(poses + i * h36m::kNumJoints * 3, threshold_mm);
    for (int a = 0; a < kNumAttributeJoints; ++a) labels[size_t(i * kNumAttributeJoints + a)] = int32_t(t.side[size_t(a)]);
  }
  return labels;
}

double ClassBalance::fraction(PlaneSide s) const {
  const int64_t all = total[0] + total[1] + total[2];
  return all ? double(total[size_t(s)]) / double(all) : 0.0;
}

std::vector<ClassBalance> class_balance(const float* poses, int64_t n, const std::vector<double>& thresholds) {
  std::vector<ClassBalance> out(thresholds.size());
  for (size_t t = 0; t < thresholds.size(); ++t) {
    DOFPOSE_CHECK(thresholds[t] >= 0 && std::isfinite(thresholds[t]), "class_balance: threshold ", thresholds[t],
                  " mm must be finite and >= 0");
    out[t].threshold_mm = thresholds[t];
  }
  for (int64_t i = 0; i < n; ++i) {
    // The distances do not depend on the threshold: fit once per pose.
    const TorsoAttributes attr = torso_attributes(poses + i * h36m::kNumJoints * 3, 0.0);
    for (auto& b : out) {
      for (int a = 0; a < kNumAttributeJoints; ++a) {
        const int s = int(classify_distance(attr.distance_mm[size_t(a)], b.threshold_mm));
        ++b.per_joint[size_t(a)][size_t(s)];
        ++b.total[size_t(s)];
      }
    }
  }
  return out;
}

}  // namespace dofpose
