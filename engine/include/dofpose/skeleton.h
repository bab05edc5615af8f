// Joint layouts (H36M-17, MPII-16, COCO-17, the 14-joint pem_hourglass model),
// their kinematic trees and left/right flip permutations, the maps between
// layouts (with the joints one layout lacks synthesised from others), and the
// H36M-17 joint groups and attribute joints of the paper. See docs/geometry.md.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dofpose {

enum class LayoutId : uint8_t { H36M17, MPII16, COCO17, PEM14 };

struct Layout {
  LayoutId id;
  std::string name;                 // "h36m17", "mpii16", "coco17", "pem14"
  std::vector<std::string> joints;  // joint names by index
  std::vector<int> parents;         // parent index, -1 for the root
  std::vector<int> flip;            // index of the mirrored joint (left <-> right)

  int num_joints() const { return int(joints.size()); }
  // Index of a joint by name; throws naming the layout and listing its joints.
  int index(const std::string& joint) const;
};

const Layout& layout(LayoutId id);
// "h36m17" | "mpii16" | "coco17" | "pem14"; throws listing the known names.
const Layout& layout_from_name(const std::string& name);
const char* layout_name(LayoutId id);

// Mirrors a pose (n joints x dims values, joint-major) by the layout's flip
// permutation: out[j] = in[flip[j]]. Coordinates are not negated; the caller
// mirrors the image/world axis. `in` and `out` must not overlap.
void flip_joints(const Layout& layout, const float* in, int dims, float* out);

// ---- maps between layouts

// How one joint of the target layout is obtained from the source layout.
enum class JointSource : uint8_t {
  Direct,       // the same anatomical point
  Approximate,  // a nearby point (e.g. MPII "upper neck" for H36M "neck/nose")
  Synthesised,  // a weighted mean of source joints (e.g. pelvis = mid-hips)
};

struct JointRecipe {
  std::vector<std::pair<int, float>> terms;  // (source joint, weight), weights sum to 1
  JointSource source = JointSource::Direct;
  std::string rule;  // human-readable, e.g. "pelvis = mean(left hip, right hip)"
};

struct LayoutMap {
  LayoutId from, to;
  std::vector<JointRecipe> joints;  // one per target joint
};

// Supported: identity for every layout, mpii16/coco17/pem14 -> h36m17,
// h36m17 -> mpii16, mpii16 -> pem14. Throws naming both layouts otherwise.
const LayoutMap& layout_map(LayoutId from, LayoutId to);
// Applies a map to one pose of from-joints x dims values.
void map_joints(const LayoutMap& map, const float* in, int dims, float* out);
// Applies it to n poses (contiguous).
std::vector<float> map_poses(const LayoutMap& map, const float* in, int64_t n, int dims);

// ---- H36M-17 indices, joint groups and attribute joints

namespace h36m {
enum Joint : int {
  kPelvis = 0, kRightHip = 1, kRightKnee = 2, kRightAnkle = 3, kLeftHip = 4, kLeftKnee = 5,
  kLeftAnkle = 6, kSpine = 7, kThorax = 8, kNeckNose = 9, kHead = 10, kLeftShoulder = 11,
  kLeftElbow = 12, kLeftWrist = 13, kRightShoulder = 14, kRightElbow = 15, kRightWrist = 16,
};
constexpr int kNumJoints = 17;
}  // namespace h36m

// The 9 joints whose position relative to the torso plane the paper predicts,
// in this (fixed) order.
constexpr int kNumAttributeJoints = 9;
constexpr std::array<int, kNumAttributeJoints> kAttributeJoints = {
    h36m::kLeftElbow, h36m::kRightElbow, h36m::kLeftWrist, h36m::kRightWrist,
    h36m::kLeftKnee,  h36m::kRightKnee,  h36m::kLeftAnkle, h36m::kRightAnkle,
    h36m::kHead};
const char* attribute_joint_name(int attribute_index);  // "left elbow", ...

enum class JointGroup : uint8_t { Torso, Proximal, Distal };
const char* joint_group_name(JointGroup g);
// Torso: pelvis, hips, spine, thorax, neck/nose, shoulders; proximal: head,
// elbows, knees; distal: wrists, ankles. Throws for an index outside 0..16.
JointGroup joint_group(int h36m_joint);
std::vector<int> joints_in_group(JointGroup g);

}  // namespace dofpose
