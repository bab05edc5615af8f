// Evaluation metrics: MPJPE, P-MPJPE (similarity Procrustes without
// reflection), per-joint errors, 3DPCK@150 mm and its AUC (MPI-INF-3DHP
// convention), PCKh for 2D, torso-plane attribute accuracy, and an
// accumulator that reports them per action. Poses are joint-major float32 in
// millimetres (3D) or pixels (2D). See docs/geometry.md.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dofpose/skeleton.h"

namespace dofpose {

// ---- 3D errors

// gt ~= scale * R * pred + t for the best scale > 0, rotation R (det +1) and
// translation t in the least-squares sense.
struct Similarity {
  double scale = 1;
  std::array<double, 9> R{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major
  std::array<double, 3> t{};
};
Similarity procrustes_align(const float* pred, const float* gt, int joints);
void apply_similarity(const Similarity& s, const float* in, int joints, float* out);

// Euclidean error of each joint after subtracting each pose's root joint.
void joint_errors(const float* pred, const float* gt, int joints, int root, double* errors);
// Euclidean error of each joint after aligning pred onto gt by Procrustes.
void procrustes_joint_errors(const float* pred, const float* gt, int joints, double* errors);
double mpjpe(const float* pred, const float* gt, int joints = h36m::kNumJoints, int root = h36m::kPelvis);
double p_mpjpe(const float* pred, const float* gt, int joints = h36m::kNumJoints);

// ---- 3DPCK / AUC (thresholds 0, 5, ..., 150 mm; a joint counts when its
// error is strictly below the threshold, as in the MPI-INF-3DHP scripts)
constexpr double kPck3dThresholdMm = 150.0;
constexpr int kAucThresholdCount = 31;
constexpr double kAucThresholdStepMm = 5.0;
double pck(const double* errors, int64_t n, double threshold_mm = kPck3dThresholdMm);
double auc(const double* errors, int64_t n);

// ---- 2D PCKh: a joint is correct when its pixel error is at most
// alpha * the ground-truth head segment (head top - upper neck) length.
// Layouts with a head segment: mpii16 (9, 8) and pem14 (0, 1).
std::pair<int, int> head_segment_joints(const Layout& layout);
struct PckhCount {
  int64_t correct = 0, total = 0;
  double value() const { return total ? double(correct) / double(total) : 0.0; }
};
// n poses of layout.num_joints() x 2; visible (n x joints, nonzero = visible)
// may be null. Poses whose head segment has zero length are skipped (counted
// in neither correct nor total).
PckhCount pckh(const Layout& layout, const float* pred, const float* gt, int64_t n, double alpha = 0.5,
               const uint8_t* visible = nullptr);

// ---- torso-plane attributes: per attribute joint, the fraction of n poses
// whose predicted label (n x 9, 0 front / 1 back / 2 on-plane) equals gt.
std::array<double, kNumAttributeJoints> attribute_accuracy(const int32_t* pred, const int32_t* gt, int64_t n);

// "Walking 1" -> "Walking": strips a trailing " <digits>" (the sequence number).
std::string canonical_action(const std::string& action);

// ---- accumulation over a test set (H36M-17 poses), grouped by action

struct MetricSummary {
  std::string action;  // "" for the overall rows
  int64_t poses = 0;
  double mpjpe = 0, p_mpjpe = 0, pck150 = 0, auc = 0;
  std::array<double, h36m::kNumJoints> joint_mpjpe{};
  std::array<double, 3> group_mpjpe{};  // torso, proximal, distal (JointGroup order)
  int64_t attribute_poses = 0;
  std::array<double, kNumAttributeJoints> attribute_accuracy{};
  double attribute_mean = 0;  // mean over the 9 joints
};

class MetricsAccumulator {
 public:
  // One pose pair (17 x 3 each, mm; any common frame).
  void add_pose(const std::string& action, const float* pred, const float* gt);
  // One pose's attribute labels (9 each).
  void add_attributes(const std::string& action, const int32_t* pred9, const int32_t* gt9);
  std::vector<MetricSummary> per_action() const;  // by canonical action name
  MetricSummary pooled() const;                   // every pose weighted equally
  MetricSummary mean_over_actions() const;        // the protocol's number: mean of per-action values
  int64_t poses() const;

 private:
  struct Sums {
    int64_t poses = 0;
    double mpjpe = 0, p_mpjpe = 0;
    std::array<double, h36m::kNumJoints> joint{};
    std::array<int64_t, kAucThresholdCount> below{};  // joints strictly below each threshold
    int64_t attribute_poses = 0;
    std::array<int64_t, kNumAttributeJoints> attribute_correct{};
    void merge(const Sums& o);
  };
  std::map<std::string, Sums> by_action_;
  static MetricSummary summarise(const std::string& action, const Sums& s);
};

}  // namespace dofpose
