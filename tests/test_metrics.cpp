// Metrics: MPJPE, P-MPJPE (checked against a numpy SVD reference), PCK/AUC,
// PCKh, attribute accuracy, action names and the per-action accumulator.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "dofpose/metrics.h"
#include "dofpose/npz.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::python_with_numpy;
using dofpose_test::rotation_matrix;
using dofpose_test::run_python_source;
using dofpose_test::TempDir;

namespace {

using Pose = std::array<float, 17 * 3>;

Pose random_pose(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-800.f, 800.f);
  Pose p;
  for (float& x : p) x = u(rng);
  return p;
}

Pose similar(const Pose& p, const std::array<double, 9>& R, double s, std::array<double, 3> t) {
  Pose out;
  for (int j = 0; j < 17; ++j)
    for (int r = 0; r < 3; ++r)
      out[size_t(j * 3 + r)] = float(s * (R[size_t(r * 3)] * p[size_t(j * 3)] + R[size_t(r * 3 + 1)] * p[size_t(j * 3 + 1)] +
                                          R[size_t(r * 3 + 2)] * p[size_t(j * 3 + 2)]) +
                                     t[size_t(r)]);
  return out;
}

// Reference Procrustes (as in the public 3D-pose baselines' p_mpjpe): numpy SVD
// of the cross-covariance of the normalised poses, reflection removed by
// flipping the last singular vector. Random poses and transforms (some with a
// reflection, some with noise) are generated here and saved uncompressed.
const char* kNumpyProcrustes = R"PY(
import sys, numpy as np
rng = np.random.default_rng(123)
n = 40
gt = rng.uniform(-800, 800, (n, 17, 3)).astype(np.float32)
pred = np.empty_like(gt)
for i in range(n):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if i % 4 == 3 and np.linalg.det(q) > 0:
        q[:, 0] *= -1          # a reflection: must not be aligned away
    elif i % 4 != 3 and np.linalg.det(q) < 0:
        q[:, 0] *= -1
    s = rng.uniform(0.5, 2.0)
    noise = rng.normal(scale=[0, 5, 60, 30][i % 4], size=(17, 3))
    pred[i] = (s * gt[i] @ q.T + rng.uniform(-3000, 3000, 3) + noise).astype(np.float32)

def align(predicted, target):
    muX = target.mean(axis=0); muY = predicted.mean(axis=0)
    X0 = target - muX; Y0 = predicted - muY
    normX = np.sqrt((X0 ** 2).sum()); normY = np.sqrt((Y0 ** 2).sum())
    X0 /= normX; Y0 /= normY
    H = X0.T @ Y0
    U, s, Vt = np.linalg.svd(H)
    V = Vt.T
    R = V @ U.T
    if np.linalg.det(R) < 0:
        V[:, -1] *= -1; s[-1] *= -1
        R = V @ U.T
    a = s.sum() * normX / normY
    t = muX - a * muY @ R
    return a * predicted @ R + t

p64, g64 = pred.astype(np.float64), gt.astype(np.float64)
aligned = np.stack([align(p64[i], g64[i]) for i in range(n)])
pmpjpe = np.linalg.norm(aligned - g64, axis=-1).mean(axis=-1)
mpjpe = np.linalg.norm((p64 - p64[:, :1]) - (g64 - g64[:, :1]), axis=-1).mean(axis=-1)
np.savez(sys.argv[1], pred=pred, gt=gt, aligned=aligned, pmpjpe=pmpjpe, mpjpe=mpjpe)
print('numpy ok')
)PY";

}  // namespace

TEST_CASE("metrics: MPJPE by hand") {
  // Two joints, root 0: pred centred (0,0,0), (0,0,3); gt (0,0,0), (1,0,0).
  const float pred[6] = {5, 5, 5, 5, 5, 8};
  const float gt[6] = {0, 0, 0, 1, 0, 0};
  CHECK(mpjpe(pred, gt, 2, 0) == doctest::Approx(std::sqrt(10.0) / 2));
  double e[2];
  joint_errors(pred, gt, 2, 0, e);
  CHECK(e[0] == 0.0);
  CHECK(e[1] == doctest::Approx(std::sqrt(10.0)));

  std::mt19937 rng(2);
  const Pose g = random_pose(rng);
  Pose p = g;
  for (float& x : p) x += 250;  // a global shift: no error after pelvis-centring
  CHECK(mpjpe(p.data(), g.data()) == doctest::Approx(0.0).scale(1));
  p[size_t(h36m::kLeftWrist * 3)] += 3;
  p[size_t(h36m::kLeftWrist * 3 + 1)] += 4;
  CHECK(mpjpe(p.data(), g.data()) == doctest::Approx(5.0 / 17).epsilon(1e-4));
  CHECK_THROWS_AS(mpjpe(p.data(), g.data(), 17, 17), dofpose::Error);
}

TEST_CASE("metrics: P-MPJPE removes similarity transforms but not reflections") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int trial = 0; trial < 20; ++trial) {
    const Pose g = random_pose(rng);
    const auto R = rotation_matrix({u(rng), u(rng), u(rng)}, u(rng) * M_PI);
    const double s = 1.5 + u(rng);
    const Pose p = similar(g, R, s, {u(rng) * 4000, u(rng) * 4000, u(rng) * 4000});
    CHECK(mpjpe(p.data(), g.data()) > 10.0);
    CHECK(p_mpjpe(p.data(), g.data()) < 1e-2);
    // The recovered transform inverts the one applied.
    const Similarity sim = procrustes_align(p.data(), g.data(), 17);
    CHECK(sim.scale == doctest::Approx(1.0 / s).epsilon(1e-5));
    Pose back;
    apply_similarity(sim, p.data(), 17, back.data());
    for (size_t i = 0; i < back.size(); ++i) CHECK(back[i] == doctest::Approx(g[i]).epsilon(1e-4).scale(1));

    // Mirror image (x -> -x): not a rotation, so it stays misaligned.
    Pose m = g;
    for (int j = 0; j < 17; ++j) m[size_t(j * 3)] = -m[size_t(j * 3)];
    const double reflected = p_mpjpe(m.data(), g.data());
    CHECK(reflected > 50.0);
    const Similarity ms = procrustes_align(m.data(), g.data(), 17);
    const auto& r = ms.R;
    const double det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6]) + r[2] * (r[3] * r[7] - r[4] * r[6]);
    CHECK(det == doctest::Approx(1.0));
  }
  // Degenerate inputs do not crash: all-coincident and collinear predictions.
  Pose g = random_pose(rng);
  Pose flat{};
  CHECK(std::isfinite(p_mpjpe(flat.data(), g.data())));
  for (int j = 0; j < 17; ++j) flat[size_t(j * 3)] = float(j);
  CHECK(std::isfinite(p_mpjpe(flat.data(), g.data())));
  CHECK(p_mpjpe(flat.data(), g.data()) <= mpjpe(flat.data(), g.data()) + 1e-6);
}

TEST_CASE("metrics: Procrustes matches a numpy SVD reference") {
  if (!python_with_numpy("the numpy Procrustes reference")) return;
  TempDir dir("metrics");
  run_python_source(dir, kNumpyProcrustes, {dir.file("ref.npz")});

  const NpzFile ref(dir.file("ref.npz"));
  const std::vector<float> pred = ref.array("pred").to_f32();
  const std::vector<float> gt = ref.array("gt").to_f32();
  const std::vector<double> aligned = ref.array("aligned").to_f64();
  const std::vector<double> pm = ref.array("pmpjpe").to_f64();
  const std::vector<double> m = ref.array("mpjpe").to_f64();
  const size_t n = pm.size();
  REQUIRE(n == 40);
  for (size_t i = 0; i < n; ++i) {
    INFO("pose ", i);
    const float* p = pred.data() + i * 51;
    const float* g = gt.data() + i * 51;
    CHECK(p_mpjpe(p, g) == doctest::Approx(pm[i]).epsilon(1e-5).scale(1));
    CHECK(mpjpe(p, g) == doctest::Approx(m[i]).epsilon(1e-5));
    float a[51];
    apply_similarity(procrustes_align(p, g, 17), p, 17, a);
    double worst = 0;
    for (int k = 0; k < 51; ++k) worst = std::max(worst, std::fabs(a[k] - aligned[i * 51 + size_t(k)]));
    CHECK(worst < 0.05);  // mm, float32 output
    if (i % 4 == 3) CHECK(pm[i] > 50.0);  // the reflected poses stay misaligned in both
  }
}

TEST_CASE("metrics: 3DPCK and AUC on constructed errors") {
  const double e1[] = {10, 60, 149.9, 150, 200};
  CHECK(pck(e1, 5) == doctest::Approx(3.0 / 5));  // 150 is not below 150
  CHECK(pck(e1, 5, 60.5) == doctest::Approx(2.0 / 5));
  const double zero[] = {0, 0};
  CHECK(auc(zero, 2) == doctest::Approx(30.0 / 31));  // nothing is below the 0 mm threshold
  const double a[] = {2.5}, b[] = {7.5}, c[] = {1000};
  CHECK(auc(a, 1) == doctest::Approx(30.0 / 31));
  CHECK(auc(b, 1) == doctest::Approx(29.0 / 31));
  CHECK(auc(c, 1) == 0.0);
  const double mix[] = {2.5, 1000};
  CHECK(auc(mix, 2) == doctest::Approx(15.0 / 31));
  CHECK(pck(mix, 0) == 0.0);
}

TEST_CASE("metrics: PCKh@0.5 with the head segment as reference") {
  const Layout& mpii = layout(LayoutId::MPII16);
  std::vector<float> gt(32, 0.0f), pred;
  for (int j = 0; j < 16; ++j) gt[size_t(j * 2)] = float(j * 20), gt[size_t(j * 2 + 1)] = 100;
  gt[size_t(9 * 2)] = 0, gt[size_t(9 * 2 + 1)] = 0;    // head top
  gt[size_t(8 * 2)] = 0, gt[size_t(8 * 2 + 1)] = 10;   // upper neck: head segment 10 px
  pred = gt;
  pred[0] += 4;         // joint 0: 4 px, correct
  pred[2 + 1] += 5;     // joint 1: 5 px = 0.5 * 10, correct (at most)
  pred[4] += 3.6f, pred[5] += 4.8f;  // joint 2: 6 px, wrong
  pred[6] += 100;       // joint 3: wrong
  PckhCount c = pckh(mpii, pred.data(), gt.data(), 1);
  CHECK(c.total == 16);
  CHECK(c.correct == 14);
  CHECK(c.value() == doctest::Approx(14.0 / 16));
  CHECK(pckh(mpii, pred.data(), gt.data(), 1, 1.0).correct == 15);
  std::vector<uint8_t> visible(16, 1);
  visible[3] = 0;
  c = pckh(mpii, pred.data(), gt.data(), 1, 0.5, visible.data());
  CHECK(c.total == 15);
  CHECK(c.correct == 14);
  CHECK(head_segment_joints(layout(LayoutId::PEM14)) == std::pair<int, int>{0, 1});
  CHECK_THROWS_WITH_AS(pckh(layout(LayoutId::COCO17), pred.data(), gt.data(), 1), doctest::Contains("coco17 has no head segment"),
                       dofpose::Error);
}

TEST_CASE("metrics: attribute accuracy, action names, per-action accumulator") {
  const int32_t gt[18] = {0, 1, 2, 0, 1, 2, 0, 1, 2, /**/ 2, 2, 2, 2, 2, 2, 2, 2, 2};
  const int32_t pr[18] = {0, 1, 2, 0, 1, 2, 0, 1, 0, /**/ 2, 2, 2, 2, 2, 2, 2, 2, 1};
  const auto acc = attribute_accuracy(pr, gt, 2);
  for (int a = 0; a < 8; ++a) CHECK(acc[size_t(a)] == 1.0);
  CHECK(acc[8] == 0.0);

  CHECK(canonical_action("Walking 1") == "Walking");
  CHECK(canonical_action("Walking") == "Walking");
  CHECK(canonical_action("WalkDog 12") == "WalkDog");
  CHECK(canonical_action("Photo1") == "Photo1");
  CHECK(canonical_action("7") == "7");
  CHECK(canonical_action("Sitting Down 2") == "Sitting Down");

  std::mt19937 rng(5);
  const Pose g = random_pose(rng);
  Pose p5 = g, p10 = g;
  // Every joint except the pelvis moves by 5 (or 10) mm along x.
  for (int j = 1; j < 17; ++j) p5[size_t(j * 3)] += 5, p10[size_t(j * 3)] += 170;
  MetricsAccumulator acc_all;
  acc_all.add_pose("Walking", p5.data(), g.data());
  acc_all.add_pose("Walking 1", p5.data(), g.data());
  acc_all.add_pose("Eating", p10.data(), g.data());
  acc_all.add_attributes("Eating 2", pr, gt);
  acc_all.add_attributes("Eating", pr + 9, gt + 9);
  CHECK(acc_all.poses() == 3);
  const std::vector<MetricSummary> rows = acc_all.per_action();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].action == "Eating");
  CHECK(rows[1].action == "Walking");
  CHECK(rows[1].poses == 2);
  CHECK(rows[1].mpjpe == doctest::Approx(5.0 * 16 / 17));
  CHECK(rows[1].joint_mpjpe[0] == 0.0);
  CHECK(rows[1].joint_mpjpe[5] == doctest::Approx(5.0));
  CHECK(rows[1].pck150 == 1.0);
  // The pelvis (0 mm) is below 30 thresholds (every t > 0), the others (5 mm) below 29.
  CHECK(rows[1].auc == doctest::Approx((30.0 + 16 * 29.0) / (17 * 31)));
  CHECK(rows[1].group_mpjpe[size_t(JointGroup::Distal)] == doctest::Approx(5.0));
  CHECK(rows[1].group_mpjpe[size_t(JointGroup::Torso)] == doctest::Approx(5.0 * 7 / 8));
  CHECK(rows[0].mpjpe == doctest::Approx(170.0 * 16 / 17));
  CHECK(rows[0].pck150 == doctest::Approx(1.0 / 17));
  CHECK(rows[0].attribute_poses == 2);
  CHECK(rows[0].attribute_accuracy[8] == 0.0);
  CHECK(rows[0].attribute_mean == doctest::Approx(8.0 / 9));
  CHECK(rows[1].attribute_poses == 0);

  const MetricSummary pooled = acc_all.pooled();
  CHECK(pooled.poses == 3);
  CHECK(pooled.mpjpe == doctest::Approx((2 * 5.0 + 170.0) * 16 / 17 / 3));
  const MetricSummary mean = acc_all.mean_over_actions();
  CHECK(mean.mpjpe == doctest::Approx((5.0 + 170.0) * 16 / 17 / 2));
  CHECK(mean.attribute_mean == doctest::Approx(8.0 / 9));
  CHECK(mean.p_mpjpe >= 0.0);
}
