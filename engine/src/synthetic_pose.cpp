// Procedural H36M-17 poses (dofpose/synthetic_pose.h).
#include "dofpose/synthetic_pose.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "dofpose/error.h"
#include "dofpose/skeleton.h"

namespace dofpose {

namespace {

using V3 = std::array<double, 3>;

constexpr double kDeg = 3.14159265358979323846 / 180.0;

V3 add(V3 a, V3 b) { return {a[0] + b[0], a[1] + b[1], a[2] + b[2]}; }
V3 mul(V3 a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }
double dot(V3 a, V3 b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
V3 cross(V3 a, V3 b) { return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]}; }
V3 normalised(V3 a) {
  const double n = std::sqrt(dot(a, a));
  return n > 1e-12 ? mul(a, 1.0 / n) : V3{0, 0, 1};
}

const V3 kRight{1, 0, 0}, kForward{0, 1, 0}, kUp{0, 0, 1};

// A limb segment hanging down, raised forward by `flex` and outward by `abduct`
// (side = +1 right, -1 left).
V3 limb_direction(double flex_deg, double abduct_deg, double side) {
  const double f = flex_deg * kDeg, a = abduct_deg * kDeg;
  const V3 sagittal = add(mul(kUp, -std::cos(f)), mul(kForward, std::sin(f)));
  return normalised(add(mul(sagittal, std::cos(a)), mul(kRight, side * std::sin(a))));
}

// Bends `dir` by `angle` towards `towards` (in the plane they span).
V3 bend(V3 dir, V3 towards, double angle_deg) {
  V3 perp = add(towards, mul(dir, -dot(towards, dir)));
  if (dot(perp, perp) < 1e-9) perp = add(kUp, mul(dir, -dot(kUp, dir)));
  perp = normalised(perp);
  const double a = angle_deg * kDeg;
  return normalised(add(mul(dir, std::cos(a)), mul(perp, std::sin(a))));
}

void put(std::array<float, 51>& p, int j, V3 v) {
  for (int k = 0; k < 3; ++k) p[size_t(3 * j + k)] = float(v[size_t(k)]);
}
V3 get(const std::array<float, 51>& p, int j) {
  return {p[size_t(3 * j)], p[size_t(3 * j + 1)], p[size_t(3 * j + 2)]};
}

}  // namespace

const char* named_pose_name(NamedPose p) {
  switch (p) {
    case NamedPose::Standing: return "standing";
    case NamedPose::Walking: return "walking";
    case NamedPose::ArmsRaised: return "arms_raised";
    case NamedPose::Sitting: return "sitting";
  }
  return "?";
}

std::vector<NamedPose> all_named_poses() {
  return {NamedPose::Standing, NamedPose::Walking, NamedPose::ArmsRaised, NamedPose::Sitting};
}

PoseAngles named_pose_angles(NamedPose p) {
  PoseAngles a;
  // Relaxed standing: legs slightly apart, arms a little away from the body.
  a.hip_abduct = {4, 4};
  a.knee_flex = {3, 3};
  a.shoulder_flex = {5, 5};
  a.shoulder_abduct = {10, 10};
  a.elbow_flex = {12, 12};
  switch (p) {
    case NamedPose::Standing:
      break;
    case NamedPose::Walking:  // right leg forward, left arm forward
      a.torso_lean = 5;
      a.hip_flex = {28, -14};
      a.knee_flex = {8, 38};
      a.shoulder_flex = {-22, 28};
      a.elbow_flex = {12, 35};
      break;
    case NamedPose::ArmsRaised:
      a.shoulder_flex = {15, 15};
      a.shoulder_abduct = {160, 160};
      a.elbow_flex = {15, 15};
      break;
    case NamedPose::Sitting:  // on a chair, hands on the thighs
      a.torso_lean = -4;
      a.hip_flex = {88, 88};
      a.hip_abduct = {9, 9};
      a.knee_flex = {92, 92};
      a.shoulder_flex = {28, 28};
      a.shoulder_abduct = {6, 6};
      a.elbow_flex = {55, 55};
      break;
  }
  return a;
}

std::array<float, 51> pose_from_angles(const PoseAngles& a, const BoneLengths& b) {
  std::array<float, 51> p{};
  const V3 pelvis{0, 0, 0};
  put(p, h36m::kPelvis, pelvis);
  // Torso: the spine leans forward; its frame carries the shoulders and the head.
  const V3 up_t = normalised(add(mul(kUp, std::cos(a.torso_lean * kDeg)), mul(kForward, std::sin(a.torso_lean * kDeg))));
  const V3 fwd_t = cross(up_t, kRight);
  const V3 spine = add(pelvis, mul(up_t, b.pelvis_to_spine));
  const V3 thorax = add(spine, mul(up_t, b.spine_to_thorax));
  put(p, h36m::kSpine, spine);
  put(p, h36m::kThorax, thorax);
  const V3 nose = add(thorax, add(mul(up_t, 0.85 * b.thorax_to_nose), mul(fwd_t, 0.53 * b.thorax_to_nose)));
  put(p, h36m::kNeckNose, nose);
  put(p, h36m::kHead, add(nose, add(mul(up_t, 0.96 * b.nose_to_head), mul(fwd_t, -0.28 * b.nose_to_head))));

  const int hip[2] = {h36m::kRightHip, h36m::kLeftHip}, knee[2] = {h36m::kRightKnee, h36m::kLeftKnee},
            ankle[2] = {h36m::kRightAnkle, h36m::kLeftAnkle};
  const int sho[2] = {h36m::kRightShoulder, h36m::kLeftShoulder}, elb[2] = {h36m::kRightElbow, h36m::kLeftElbow},
            wri[2] = {h36m::kRightWrist, h36m::kLeftWrist};
  for (int s = 0; s < 2; ++s) {
    const double side = s == 0 ? 1.0 : -1.0;
    const V3 h = add(pelvis, mul(kRight, side * b.pelvis_to_hip));
    const V3 thigh = limb_direction(a.hip_flex[size_t(s)], a.hip_abduct[size_t(s)], side);
    const V3 k = add(h, mul(thigh, b.thigh));
    // Knees bend backwards: the shin's forward raise is the hip's minus the knee's.
    const V3 shin = limb_direction(a.hip_flex[size_t(s)] - a.knee_flex[size_t(s)], a.hip_abduct[size_t(s)], side);
    put(p, hip[s], h);
    put(p, knee[s], k);
    put(p, ankle[s], add(k, mul(shin, b.shin)));

    const V3 sh = add(thorax, mul(kRight, side * b.thorax_to_shoulder));
    // Arms move with the torso: build in the body frame, then tilt by the lean.
    V3 upper = limb_direction(a.shoulder_flex[size_t(s)], a.shoulder_abduct[size_t(s)], side);
    upper = normalised(add(add(mul(kRight, upper[0]), mul(fwd_t, upper[1])), mul(up_t, upper[2])));
    const V3 e = add(sh, mul(upper, b.upper_arm));
    const V3 fore = bend(upper, add(fwd_t, mul(up_t, 0.3)), a.elbow_flex[size_t(s)]);  // elbows bend forwards
    put(p, sho[s], sh);
    put(p, elb[s], e);
    put(p, wri[s], add(e, mul(fore, b.forearm)));
  }
  return p;
}

std::array<float, 51> synthetic_pose(NamedPose pose, uint64_t seed, float angle_sd_deg, float scale_sd) {
  PoseAngles a = named_pose_angles(pose);
  BoneLengths b;
  if (angle_sd_deg > 0 || scale_sd > 0) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(pose) + 1);
    std::normal_distribution<float> n01(0.f, 1.f);
    auto draw = [&](float sd) { return sd * std::clamp(n01(rng), -3.f, 3.f); };
    a.torso_lean += draw(angle_sd_deg);
    for (auto* arr : {&a.hip_flex, &a.hip_abduct, &a.knee_flex, &a.shoulder_flex, &a.shoulder_abduct, &a.elbow_flex})
      for (float& v : *arr) v += draw(angle_sd_deg);
    for (float& k : a.knee_flex) k = std::max(k, 0.f);   // knees and elbows do not hyperextend
    for (float& e : a.elbow_flex) e = std::max(e, 0.f);
    const float s = 1.f + draw(scale_sd);
    for (float* len : {&b.pelvis_to_hip, &b.thigh, &b.shin, &b.pelvis_to_spine, &b.spine_to_thorax,
                       &b.thorax_to_nose, &b.nose_to_head, &b.thorax_to_shoulder, &b.upper_arm, &b.forearm})
      *len *= s;
  }
  return pose_from_angles(a, b);
}

std::array<float, 51> coco17_keypoints_3d(const std::array<float, 51>& h) {
  const V3 rs = get(h, h36m::kRightShoulder), ls = get(h, h36m::kLeftShoulder);
  const V3 pelvis = get(h, h36m::kPelvis), thorax = get(h, h36m::kThorax);
  const V3 right = normalised(add(rs, mul(ls, -1)));
  const V3 up = normalised(add(thorax, mul(pelvis, -1)));
  const V3 fwd = normalised(cross(up, right));
  const V3 nose = get(h, h36m::kNeckNose);
  auto at = [&](double r, double u, double f) { return add(nose, add(mul(right, r), add(mul(up, u), mul(fwd, f)))); };
  std::array<float, 51> c{};
  put(c, 0, nose);
  put(c, 1, at(-32, 35, -22));  // left eye
  put(c, 2, at(32, 35, -22));   // right eye
  put(c, 3, at(-75, 20, -95));  // left ear
  put(c, 4, at(75, 20, -95));   // right ear
  const int from[12] = {h36m::kLeftShoulder, h36m::kRightShoulder, h36m::kLeftElbow, h36m::kRightElbow,
                        h36m::kLeftWrist,    h36m::kRightWrist,    h36m::kLeftHip,   h36m::kRightHip,
                        h36m::kLeftKnee,     h36m::kRightKnee,     h36m::kLeftAnkle, h36m::kRightAnkle};
  for (int k = 0; k < 12; ++k) put(c, 5 + k, get(h, from[k]));
  return c;
}

std::array<float, 51> place_on_ground(const std::array<float, 51>& pose) {
  const double lowest = std::min(pose[3 * h36m::kRightAnkle + 2], pose[3 * h36m::kLeftAnkle + 2]);
  std::array<float, 51> w = pose;
  for (int j = 0; j < h36m::kNumJoints; ++j) w[size_t(3 * j + 2)] = float(w[size_t(3 * j + 2)] - lowest + 80.0);
  return w;
}

Camera synthetic_camera(const std::array<float, 51>& world_pose, double yaw_deg, double distance_mm) {
  DOFPOSE_CHECK(distance_mm > 500, "synthetic_camera: distance ", distance_mm, " mm is too close");
  const V3 pelvis = get(world_pose, h36m::kPelvis);
  const double y = yaw_deg * kDeg;
  // yaw 0: in front (+y); 90: at the subject's left (-x).
  const V3 centre{pelvis[0] - std::sin(y) * distance_mm, pelvis[1] + std::cos(y) * distance_mm, 1600.0};
  const V3 target{pelvis[0], pelvis[1], pelvis[2] - 300.0};
  const V3 z = normalised(add(target, mul(centre, -1)));
  const V3 x = normalised(cross(z, kUp));  // image right
  const V3 yv = cross(z, x);               // image down
  Camera cam;
  cam.id = "synthetic";
  cam.R = {x[0], x[1], x[2], yv[0], yv[1], yv[2], z[0], z[1], z[2]};
  cam.T = centre;
  cam.f = {1145.0, 1145.0};
  cam.c = {512.0, 515.0};
  cam.width = cam.height = 1000;
  return cam;
}

}  // namespace dofpose
