// The torso plane of the paper: a total-least-squares plane through both
// shoulders, both hips and the pelvis (H36M-17), its normal oriented the way
// the body faces, and the front / back / on-plane labels of the 9 attribute
// joints. Also the small symmetric 3x3 eigen solver it (and the Procrustes
// alignment in metrics) is built on. See docs/geometry.md.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "dofpose/skeleton.h"

namespace dofpose {

// ---- symmetric 3x3 eigen-decomposition (cyclic Jacobi, double precision)

struct SymmetricEigen3 {
  std::array<double, 3> values{};   // ascending
  std::array<double, 9> vectors{};  // column i (vectors[r*3+i]) is the unit eigenvector of values[i]
};
// `a` is row-major and must be symmetric (only the upper triangle is read).
SymmetricEigen3 symmetric_eigen3(const std::array<double, 9>& a);

// ---- the plane

constexpr std::array<int, 5> kTorsoPlaneJoints = {h36m::kLeftShoulder, h36m::kRightShoulder,
                                                   h36m::kRightHip, h36m::kLeftHip, h36m::kPelvis};

struct TorsoPlane {
  std::array<double, 3> centroid{};  // mean of the 5 plane joints, mm
  std::array<double, 3> normal{};    // unit, pointing to the front of the body
  double rms_residual_mm = 0;        // root-mean-square distance of the 5 joints to the plane
};

// Fits the plane to one H36M-17 pose (17 x 3 floats, any frame, mm). The
// normal is the scatter matrix's smallest-eigenvalue eigenvector, with its sign
// chosen so that it agrees with forward = up x (left -> right), where up =
// thorax - pelvis and left -> right = (right hip - left hip) + (right
// shoulder - left shoulder).
TorsoPlane fit_torso_plane(const float* pose17);
// Positive in front of the body, negative behind (mm).
double signed_distance(const TorsoPlane& plane, const float* point3);

enum class PlaneSide : int8_t { Front = 0, Back = 1, OnPlane = 2 };
const char* plane_side_name(PlaneSide s);
// Front when d > threshold, Back when d < -threshold, OnPlane otherwise.
PlaneSide classify_distance(double distance_mm, double threshold_mm);

struct TorsoAttributes {
  TorsoPlane plane;
  std::array<double, kNumAttributeJoints> distance_mm{};  // kAttributeJoints order
  std::array<PlaneSide, kNumAttributeJoints> side{};
};
TorsoAttributes torso_attributes(const float* pose17, double threshold_mm);
// Labels (0 front, 1 back, 2 on-plane) for n poses: n x 9 int32.
std::vector<int32_t> torso_attribute_labels(const float* poses17, int64_t n, double threshold_mm);

// How the labels of n poses split for each candidate threshold (to choose the
// threshold from data): counts per attribute joint and class, and overall.
struct ClassBalance {
  double threshold_mm = 0;
  std::array<std::array<int64_t, 3>, kNumAttributeJoints> per_joint{};  // [joint][side]
  std::array<int64_t, 3> total{};                                       // [side]
  double fraction(PlaneSide s) const;                                   // of all labels
};
std::vector<ClassBalance> class_balance(const float* poses17, int64_t n, const std::vector<double>& thresholds_mm);

}  // namespace dofpose
