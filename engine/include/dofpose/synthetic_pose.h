// Procedural human poses for the demo and the tests: an H36M-17 skeleton with
// typical adult bone lengths (mm) posed by a few joint angles, named poses
// (standing, walking stride, arms raised, sitting) with seeded random
// variations, COCO-17 keypoints consistent with such a pose, and an
// H36M-like camera looking at it. See docs/lift.md, "Demo".
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "dofpose/camera.h"

namespace dofpose {

// Typical adult bone lengths (close to Human3.6M subject S1), mm.
struct BoneLengths {
  float pelvis_to_hip = 132, thigh = 442, shin = 454;
  float pelvis_to_spine = 233, spine_to_thorax = 257, thorax_to_nose = 121, nose_to_head = 115;
  float thorax_to_shoulder = 151, upper_arm = 278, forearm = 251;
};

// Joint angles in degrees. Legs and arms hang straight down at 0.
struct PoseAngles {
  float torso_lean = 0;  // forward bend of the spine from vertical
  // Legs [right, left]: hip flexion (thigh forward), hip abduction (outward), knee flexion.
  std::array<float, 2> hip_flex{}, hip_abduct{}, knee_flex{};
  // Arms [right, left]: shoulder flexion (forward raise; 180 = straight up in
  // front), abduction (sideways raise; 180 = straight up at the side), elbow flexion.
  std::array<float, 2> shoulder_flex{}, shoulder_abduct{}, elbow_flex{};
};

enum class NamedPose : uint8_t { Standing, Walking, ArmsRaised, Sitting };
const char* named_pose_name(NamedPose p);  // "standing", "walking", "arms_raised", "sitting"
std::vector<NamedPose> all_named_poses();
PoseAngles named_pose_angles(NamedPose p);

// H36M-17 joints (17 x 3, mm) in a body frame: z up, the subject faces +y
// (so its right is +x), the pelvis at the origin.
std::array<float, 51> pose_from_angles(const PoseAngles& angles, const BoneLengths& bones = {});

// A named pose with seeded variation: every angle gets N(0, angle_sd_deg)
// added and every bone a common scale N(1, scale_sd) (clamped to +-3 sd).
// variation 0 returns the canonical pose.
std::array<float, 51> synthetic_pose(NamedPose pose, uint64_t seed = 0, float angle_sd_deg = 0,
                                     float scale_sd = 0);

// The 17 COCO keypoints in the same frame: body joints from the H36M joints,
// nose at the H36M neck/nose joint, eyes and ears placed around the head.
std::array<float, 51> coco17_keypoints_3d(const std::array<float, 51>& h36m_pose);

// Stands a body-frame pose on the ground (lowest ankle 80 mm above z = 0):
// world coordinates, mm.
std::array<float, 51> place_on_ground(const std::array<float, 51>& pose);

// A camera like Human3.6M's (f 1145 px, principal point (512, 515), 1000 x
// 1000 px, no distortion) at `distance_mm` from the world pelvis, 1.6 m above
// the ground, `yaw_deg` around the subject (0 = in front of it, 90 = at its
// left), aimed a little below the pelvis as the H36M cameras are.
Camera synthetic_camera(const std::array<float, 51>& world_pose, double yaw_deg, double distance_mm = 5000);

}  // namespace dofpose
