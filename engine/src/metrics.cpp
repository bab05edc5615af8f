#include "dofpose/metrics.h"

#include <algorithm>
#include <cmath>

#include "dofpose/error.h"
#include "dofpose/torso_plane.h"

namespace dofpose {

namespace {

using V3 = std::array<double, 3>;
double dot(const V3& a, const V3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
V3 cross(const V3& a, const V3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double norm(const V3& a) { return std::sqrt(dot(a, a)); }
V3 scaled(const V3& a, double s) { return {a[0] * s, a[1] * s, a[2] * s}; }
V3 mat_vec(const std::array<double, 9>& m, const V3& v) {
  return {m[0] * v[0] + m[1] * v[1] + m[2] * v[2], m[3] * v[0] + m[4] * v[1] + m[5] * v[2],
          m[6] * v[0] + m[7] * v[1] + m[8] * v[2]};
}
// Any unit vector perpendicular to a unit vector a.
V3 perpendicular(const V3& a) {
  const V3 e = std::fabs(a[0]) < 0.6 ? V3{1, 0, 0} : V3{0, 1, 0};
  const V3 c = cross(a, e);
  return scaled(c, 1 / norm(c));
}

void check_joints(const char* what, int joints) {
  DOFPOSE_CHECK(joints > 0, what, ": joint count ", joints, " must be positive");
}

}  // namespace

// ------------------------------------------------------------------ Procrustes

Similarity procrustes_align(const float* pred, const float* gt, int joints) {
  check_joints("procrustes_align", joints);
  V3 mx{}, my{};
  for (int j = 0; j < joints; ++j)
    for (int d = 0; d < 3; ++d) {
      mx[size_t(d)] += pred[j * 3 + d] / double(joints);
      my[size_t(d)] += gt[j * 3 + d] / double(joints);
    }
  // H = sum_i x_i y_i^T over centred pred x and gt y; the rotation maximising
  // sum_i y_i . R x_i is V U^T for H = U S V^T (restricted to det +1).
  std::array<double, 9> H{};
  double xx = 0;
  for (int j = 0; j < joints; ++j) {
    const V3 x = {pred[j * 3] - mx[0], pred[j * 3 + 1] - mx[1], pred[j * 3 + 2] - mx[2]};
    const V3 y = {gt[j * 3] - my[0], gt[j * 3 + 1] - my[1], gt[j * 3 + 2] - my[2]};
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) H[size_t(r * 3 + c)] += x[size_t(r)] * y[size_t(c)];
    xx += dot(x, x);
  }
  for (double h : H) DOFPOSE_CHECK(std::isfinite(h), "procrustes_align: pose coordinates are not finite");
  Similarity out;
  if (xx <= 0) {  // all predicted joints coincide: only the translation is defined
    out.scale = 0;
    out.t = my;
    return out;
  }
  // V and S^2 from the eigen-decomposition of H^T H (descending order).
  std::array<double, 9> HtH{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 3; ++k) HtH[size_t(r * 3 + c)] += H[size_t(k * 3 + r)] * H[size_t(k * 3 + c)];
  const SymmetricEigen3 eig = symmetric_eigen3(HtH);
  V3 v[3];
  for (int i = 0; i < 3; ++i) v[i] = {eig.vectors[size_t(2 - i)], eig.vectors[size_t(3 + 2 - i)], eig.vectors[size_t(6 + 2 - i)]};
  if (dot(cross(v[0], v[1]), v[2]) < 0) v[2] = scaled(v[2], -1);  // det V = +1
  // U's columns from H v_i, completed to a rotation; the third singular value
  // then carries the sign that excludes reflections.
  V3 u[3];
  const V3 h0 = mat_vec(H, v[0]);
  const double scale_h = norm(h0);
  u[0] = scale_h > 0 ? scaled(h0, 1 / scale_h) : V3{1, 0, 0};
  V3 h1 = mat_vec(H, v[1]);
  h1 = {h1[0] - dot(h1, u[0]) * u[0][0], h1[1] - dot(h1, u[0]) * u[0][1], h1[2] - dot(h1, u[0]) * u[0][2]};
  const double n1 = norm(h1);
  u[1] = n1 > 1e-12 * std::max(scale_h, 1e-300) ? scaled(h1, 1 / n1) : perpendicular(u[0]);
  u[2] = cross(u[0], u[1]);
  double trace = 0;
  for (int i = 0; i < 3; ++i) trace += dot(u[i], mat_vec(H, v[i]));
  // R = V U^T.
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) {
      double s = 0;
      for (int i = 0; i < 3; ++i) s += v[i][size_t(r)] * u[i][size_t(c)];
      out.R[size_t(r * 3 + c)] = s;
    }
  out.scale = trace / xx;
  // trace = s1 + s2 +- s3 >= 0 in exact arithmetic (s3 <= s2); guard rounding.
  if (out.scale < 0) out.scale = 0;
  const V3 rmx = mat_vec(out.R, mx);
  for (int d = 0; d < 3; ++d) out.t[size_t(d)] = my[size_t(d)] - out.scale * rmx[size_t(d)];
  return out;
}

void apply_similarity(const Similarity& s, const float* in, int joints, float* out) {
  for (int j = 0; j < joints; ++j) {
    const V3 r = mat_vec(s.R, {in[j * 3], in[j * 3 + 1], in[j * 3 + 2]});
    for (int d = 0; d < 3; ++d) out[j * 3 + d] = float(s.scale * r[size_t(d)] + s.t[size_t(d)]);
  }
}

// ------------------------------------------------------------------ errors

void joint_errors(const float* pred, const float* gt, int joints, int root, double* errors) {
  check_joints("joint_errors", joints);
  DOFPOSE_CHECK(root >= 0 && root < joints, "joint_errors: root joint ", root, " outside 0..", joints - 1);
  for (int j = 0; j < joints; ++j) {
    double s = 0;
    for (int d = 0; d < 3; ++d) {
      const double e = (double(pred[j * 3 + d]) - pred[root * 3 + d]) - (double(gt[j * 3 + d]) - gt[root * 3 + d]);
      s += e * e;
    }
    errors[j] = std::sqrt(s);
  }
}

void procrustes_joint_errors(const float* pred, const float* gt, int joints, double* errors) {
  const Similarity s = procrustes_align(pred, gt, joints);
  for (int j = 0; j < joints; ++j) {
    const V3 r = mat_vec(s.R, {pred[j * 3], pred[j * 3 + 1], pred[j * 3 + 2]});
    double e2 = 0;
    for (int d = 0; d < 3; ++d) {
      const double e = s.scale * r[size_t(d)] + s.t[size_t(d)] - gt[j * 3 + d];
      e2 += e * e;
    }
    errors[j] = std::sqrt(e2);
  }
}

double mpjpe(const float* pred, const float* gt, int joints, int root) {
  std::vector<double> e(size_t(std::max(joints, 1)));
  joint_errors(pred, gt, joints, root, e.data());
  double s = 0;
  for (int j = 0; j < joints; ++j) s += e[size_t(j)];
  return s / joints;
}

double p_mpjpe(const float* pred, const float* gt, int joints) {
  std::vector<double> e(size_t(std::max(joints, 1)));
  procrustes_joint_errors(pred, gt, joints, e.data());
  double s = 0;
  for (int j = 0; j < joints; ++j) s += e[size_t(j)];
  return s / joints;
}

double pck(const double* errors, int64_t n, double threshold_mm) {
  if (n <= 0) return 0.0;
  int64_t below = 0;
  for (int64_t i = 0; i < n; ++i) below += errors[i] < threshold_mm;
  return double(below) / double(n);
}

double auc(const double* errors, int64_t n) {
  double s = 0;
  for (int t = 0; t < kAucThresholdCount; ++t) s += pck(errors, n, t * kAucThresholdStepMm);
  return s / kAucThresholdCount;
}

// ------------------------------------------------------------------ 2D PCKh

std::pair<int, int> head_segment_joints(const Layout& layout) {
  switch (layout.id) {
    case LayoutId::MPII16: return {layout.index("head top"), layout.index("upper neck")};
    case LayoutId::PEM14: return {layout.index("head top"), layout.index("neck")};
    default: fail("PCKh: layout ", layout.name, " has no head segment (head top, neck); use mpii16 or pem14");
  }
}

PckhCount pckh(const Layout& layout, const float* pred, const float* gt, int64_t n, double alpha, const uint8_t* visible) {
  DOFPOSE_CHECK(alpha > 0 && std::isfinite(alpha), "PCKh: alpha ", alpha, " must be positive");
  const auto [top, neck] = head_segment_joints(layout);
  const int J = layout.num_joints();
  PckhCount out;
  for (int64_t i = 0; i < n; ++i) {
    const float* p = pred + i * J * 2;
    const float* g = gt + i * J * 2;
    const double head = std::hypot(double(g[top * 2]) - g[neck * 2], double(g[top * 2 + 1]) - g[neck * 2 + 1]);
    if (!(head > 0)) continue;
    for (int j = 0; j < J; ++j) {
      if (visible && !visible[i * J + j]) continue;
      const double e = std::hypot(double(p[j * 2]) - g[j * 2], double(p[j * 2 + 1]) - g[j * 2 + 1]);
      out.correct += e <= alpha * head;
      ++out.total;
    }
  }
  return out;
}

// ------------------------------------------------------------------ attributes

std::array<double, kNumAttributeJoints> attribute_accuracy(const int32_t* pred, const int32_t* gt, int64_t n) {
  std::array<double, kNumAttributeJoints> acc{};
  if (n <= 0) return acc;
  for (int64_t i = 0; i < n; ++i)
    for (int a = 0; a < kNumAttributeJoints; ++a) acc[size_t(a)] += pred[i * kNumAttributeJoints + a] == gt[i * kNumAttributeJoints + a];
  for (double& a : acc) a /= double(n);
  return acc;
}

std::string canonical_action(const std::string& action) {
  size_t end = action.size();
  while (end > 0 && action[end - 1] >= '0' && action[end - 1] <= '9') --end;
  if (end < action.size() && end > 1 && action[end - 1] == ' ') return action.substr(0, end - 1);
  return action;
}

// ------------------------------------------------------------------ accumulator

void MetricsAccumulator::Sums::merge(const Sums& o) {
  poses += o.poses;
  mpjpe += o.mpjpe;
  p_mpjpe += o.p_mpjpe;
  for (size_t j = 0; j < joint.size(); ++j) joint[j] += o.joint[j];
  for (size_t t = 0; t < below.size(); ++t) below[t] += o.below[t];
  attribute_poses += o.attribute_poses;
  for (size_t a = 0; a < attribute_correct.size(); ++a) attribute_correct[a] += o.attribute_correct[a];
}

void MetricsAccumulator::add_pose(const std::string& action, const float* pred, const float* gt) {
  constexpr int J = h36m::kNumJoints;
  double e[J], pe[J];
  joint_errors(pred, gt, J, h36m::kPelvis, e);
  procrustes_joint_errors(pred, gt, J, pe);
  Sums& s = by_action_[canonical_action(action)];
  ++s.poses;
  double m = 0, pm = 0;
  for (int j = 0; j < J; ++j) {
    m += e[j];
    pm += pe[j];
    s.joint[size_t(j)] += e[j];
    for (int t = 0; t < kAucThresholdCount; ++t) s.below[size_t(t)] += e[j] < t * kAucThresholdStepMm;
  }
  s.mpjpe += m / J;
  s.p_mpjpe += pm / J;
}

void MetricsAccumulator::add_attributes(const std::string& action, const int32_t* pred9, const int32_t* gt9) {
  Sums& s = by_action_[canonical_action(action)];
  ++s.attribute_poses;
  for (int a = 0; a < kNumAttributeJoints; ++a) s.attribute_correct[size_t(a)] += pred9[a] == gt9[a];
}

int64_t MetricsAccumulator::poses() const {
  int64_t n = 0;
  for (const auto& kv : by_action_) n += kv.second.poses;
  return n;
}

MetricSummary MetricsAccumulator::summarise(const std::string& action, const Sums& s) {
  MetricSummary m;
  m.action = action;
  m.poses = s.poses;
  m.attribute_poses = s.attribute_poses;
  if (s.poses > 0) {
    const double n = double(s.poses);
    m.mpjpe = s.mpjpe / n;
    m.p_mpjpe = s.p_mpjpe / n;
    std::array<double, 3> group_sum{};
    std::array<int, 3> group_count{};
    for (int j = 0; j < h36m::kNumJoints; ++j) {
      m.joint_mpjpe[size_t(j)] = s.joint[size_t(j)] / n;
      const size_t g = size_t(joint_group(j));
      group_sum[g] += m.joint_mpjpe[size_t(j)];
      ++group_count[g];
    }
    for (size_t g = 0; g < 3; ++g) m.group_mpjpe[g] = group_sum[g] / group_count[g];
    const double all = n * h36m::kNumJoints;
    const int t150 = int(kPck3dThresholdMm / kAucThresholdStepMm);
    m.pck150 = double(s.below[size_t(t150)]) / all;
    double auc_sum = 0;
    for (int64_t b : s.below) auc_sum += double(b) / all;
    m.auc = auc_sum / kAucThresholdCount;
  }
  if (s.attribute_poses > 0) {
    double sum = 0;
    for (int a = 0; a < kNumAttributeJoints; ++a) {
      m.attribute_accuracy[size_t(a)] = double(s.attribute_correct[size_t(a)]) / double(s.attribute_poses);
      sum += m.attribute_accuracy[size_t(a)];
    }
    m.attribute_mean = sum / kNumAttributeJoints;
  }
  return m;
}

std::vector<MetricSummary> MetricsAccumulator::per_action() const {
  std::vector<MetricSummary> out;
  for (const auto& [action, s] : by_action_) out.push_back(summarise(action, s));
  return out;
}

MetricSummary MetricsAccumulator::pooled() const {
  Sums all;
  for (const auto& kv : by_action_) all.merge(kv.second);
  return summarise("", all);
}

MetricSummary MetricsAccumulator::mean_over_actions() const {
  MetricSummary m;
  int pose_actions = 0, attr_actions = 0;
  for (const auto& [action, s] : by_action_) {
    const MetricSummary a = summarise(action, s);
    m.poses += a.poses;
    m.attribute_poses += a.attribute_poses;
    if (a.poses > 0) {
      ++pose_actions;
      m.mpjpe += a.mpjpe, m.p_mpjpe += a.p_mpjpe, m.pck150 += a.pck150, m.auc += a.auc;
      for (size_t j = 0; j < m.joint_mpjpe.size(); ++j) m.joint_mpjpe[j] += a.joint_mpjpe[j];
      for (size_t g = 0; g < 3; ++g) m.group_mpjpe[g] += a.group_mpjpe[g];
    }
    if (a.attribute_poses > 0) {
      ++attr_actions;
      for (size_t k = 0; k < m.attribute_accuracy.size(); ++k) m.attribute_accuracy[k] += a.attribute_accuracy[k];
      m.attribute_mean += a.attribute_mean;
    }
  }
  if (pose_actions) {
    const double n = pose_actions;
    m.mpjpe /= n, m.p_mpjpe /= n, m.pck150 /= n, m.auc /= n;
    for (double& x : m.joint_mpjpe) x /= n;
    for (double& x : m.group_mpjpe) x /= n;
  }
  if (attr_actions) {
    for (double& x : m.attribute_accuracy) x /= attr_actions;
    m.attribute_mean /= attr_actions;
  }
  return m;
}

}  // namespace dofpose
