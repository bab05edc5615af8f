// Torso plane: the 3x3 eigen solver, the plane's orientation, front / back /
// on-plane labels on constructed poses, invariance to rigid motion, class balance.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "dofpose/error.h"
#include "dofpose/npz.h"
#include "dofpose/torso_plane.h"
#include "tests/test_util.h"

using namespace dofpose;
using dofpose_test::rotation_matrix;

namespace {

using Pose = std::array<float, 17 * 3>;

void set(Pose& p, int j, float x, float y, float z) {
  p[size_t(j * 3)] = x;
  p[size_t(j * 3 + 1)] = y;
  p[size_t(j * 3 + 2)] = z;
}

// A person standing upright (+y up) facing +z, arms hanging at the sides. Facing
// +z with +y up, the person's left side is at +x. The nose is in front of the
// torso, the head above it.
Pose standing_pose() {
  Pose p{};
  using namespace h36m;
  set(p, kPelvis, 0, 1000, 0);
  set(p, kRightHip, -100, 1000, 0);
  set(p, kLeftHip, 100, 1000, 0);
  set(p, kRightKnee, -100, 550, 10);
  set(p, kLeftKnee, 100, 550, 10);
  set(p, kRightAnkle, -100, 100, -5);
  set(p, kLeftAnkle, 100, 100, -5);
  set(p, kSpine, 0, 1250, 0);
  set(p, kThorax, 0, 1500, 0);
  set(p, kNeckNose, 0, 1600, 90);
  set(p, kHead, 0, 1700, 10);
  set(p, kLeftShoulder, 180, 1450, 0);
  set(p, kRightShoulder, -180, 1450, 0);
  set(p, kLeftElbow, 200, 1180, 0);
  set(p, kRightElbow, -200, 1180, 0);
  set(p, kLeftWrist, 210, 920, 5);
  set(p, kRightWrist, -210, 920, 5);
  return p;
}

Pose transform(const Pose& p, const std::array<double, 9>& R, std::array<double, 3> t) {
  Pose out{};
  for (int j = 0; j < 17; ++j)
    for (int r = 0; r < 3; ++r)
      out[size_t(j * 3 + r)] = float(R[size_t(r * 3)] * p[size_t(j * 3)] + R[size_t(r * 3 + 1)] * p[size_t(j * 3 + 1)] +
                                     R[size_t(r * 3 + 2)] * p[size_t(j * 3 + 2)] + t[size_t(r)]);
  return out;
}

int attribute_slot(int h36m_joint) {
  for (int a = 0; a < kNumAttributeJoints; ++a)
    if (kAttributeJoints[size_t(a)] == h36m_joint) return a;
  return -1;
}

}  // namespace

TEST_CASE("torso plane: symmetric 3x3 eigen solver reconstructs random matrices") {
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-10, 10);
  for (int trial = 0; trial < 200; ++trial) {
    std::array<double, 9> a{};
    for (int r = 0; r < 3; ++r)
      for (int c = r; c < 3; ++c) a[size_t(r * 3 + c)] = a[size_t(c * 3 + r)] = u(rng);
    if (trial % 3 == 1) a = {5, 0, 0, 0, 5, 0, 0, 0, 1};  // repeated eigenvalue
    if (trial % 3 == 2) a[1] = a[3] = a[2] = a[6] = 0;    // partly diagonal
    const SymmetricEigen3 e = symmetric_eigen3(a);
    CHECK(e.values[0] <= e.values[1]);
    CHECK(e.values[1] <= e.values[2]);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        double rec = 0, ortho = 0;
        for (int k = 0; k < 3; ++k) {
          rec += e.vectors[size_t(r * 3 + k)] * e.values[size_t(k)] * e.vectors[size_t(c * 3 + k)];
          ortho += e.vectors[size_t(k * 3 + r)] * e.vectors[size_t(k * 3 + c)];
        }
        CHECK(rec == doctest::Approx(a[size_t(r * 3 + c)]).epsilon(1e-10).scale(10));
        CHECK(ortho == doctest::Approx(r == c ? 1.0 : 0.0).epsilon(1e-12).scale(1));
      }
  }
  CHECK_THROWS_AS(symmetric_eigen3({NAN, 0, 0, 0, 1, 0, 0, 0, 1}), dofpose::Error);
}

TEST_CASE("torso plane: normal points the way the body faces, front / back / on-plane labels") {
  Pose p = standing_pose();
  const TorsoPlane plane = fit_torso_plane(p.data());
  CHECK(plane.normal[2] == doctest::Approx(1.0));  // facing +z
  CHECK(plane.rms_residual_mm == doctest::Approx(0.0));
  CHECK(signed_distance(plane, p.data() + h36m::kNeckNose * 3) == doctest::Approx(90.0));  // nose in front

  const double threshold = 50;
  TorsoAttributes hanging = torso_attributes(p.data(), threshold);
  for (int a = 0; a < kNumAttributeJoints; ++a) {
    INFO(attribute_joint_name(a), " at ", hanging.distance_mm[size_t(a)], " mm");
    CHECK(hanging.side[size_t(a)] == PlaneSide::OnPlane);
  }

  // Right hand stretched forward, left hand reaching behind the back.
  set(p, h36m::kRightElbow, -190, 1400, 280);
  set(p, h36m::kRightWrist, -190, 1400, 560);
  set(p, h36m::kLeftElbow, 200, 1200, -150);
  set(p, h36m::kLeftWrist, 150, 1050, -260);
  // Left knee raised forward.
  set(p, h36m::kLeftKnee, 100, 900, 400);
  const TorsoAttributes t = torso_attributes(p.data(), threshold);
  CHECK(t.side[size_t(attribute_slot(h36m::kRightWrist))] == PlaneSide::Front);
  CHECK(t.distance_mm[size_t(attribute_slot(h36m::kRightWrist))] == doctest::Approx(560.0));
  CHECK(t.side[size_t(attribute_slot(h36m::kRightElbow))] == PlaneSide::Front);
  CHECK(t.side[size_t(attribute_slot(h36m::kLeftWrist))] == PlaneSide::Back);
  CHECK(t.side[size_t(attribute_slot(h36m::kLeftElbow))] == PlaneSide::Back);
  CHECK(t.side[size_t(attribute_slot(h36m::kLeftKnee))] == PlaneSide::Front);
  CHECK(t.side[size_t(attribute_slot(h36m::kRightKnee))] == PlaneSide::OnPlane);
  CHECK(t.side[size_t(attribute_slot(h36m::kHead))] == PlaneSide::OnPlane);

  const std::vector<int32_t> labels = torso_attribute_labels(p.data(), 1, threshold);
  REQUIRE(labels.size() == 9);
  for (int a = 0; a < 9; ++a) CHECK(labels[size_t(a)] == int32_t(t.side[size_t(a)]));

  // A person turned around (facing -z): the stretched hand is still in front.
  const Pose turned = transform(p, rotation_matrix({0, 1, 0}, M_PI), {0, 0, 0});
  const TorsoAttributes tt = torso_attributes(turned.data(), threshold);
  CHECK(tt.plane.normal[2] == doctest::Approx(-1.0));
  CHECK(tt.side[size_t(attribute_slot(h36m::kRightWrist))] == PlaneSide::Front);

  CHECK(classify_distance(50.0, 50.0) == PlaneSide::OnPlane);
  CHECK(classify_distance(50.1, 50.0) == PlaneSide::Front);
  CHECK(classify_distance(-50.1, 50.0) == PlaneSide::Back);
  CHECK(std::string(plane_side_name(PlaneSide::OnPlane)) == "on-plane");
  CHECK_THROWS_AS(torso_attributes(p.data(), -1.0), dofpose::Error);
}

TEST_CASE("torso plane: invariant to global rotation and translation") {
  Pose p = standing_pose();
  set(p, h36m::kRightWrist, -190, 1400, 560);
  set(p, h36m::kLeftAnkle, 120, 300, -350);
  // A slightly leaning, twisted torso so that the plane fit is not trivial.
  set(p, h36m::kLeftShoulder, 180, 1450, 40);
  set(p, h36m::kRightShoulder, -175, 1440, -30);
  const TorsoAttributes ref = torso_attributes(p.data(), 30.0);
  CHECK(ref.plane.rms_residual_mm > 1.0);
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> u(-1, 1);
  for (int trial = 0; trial < 50; ++trial) {
    const auto R = rotation_matrix({u(rng), u(rng), u(rng)}, u(rng) * M_PI);
    const Pose q = transform(p, R, {u(rng) * 5000, u(rng) * 5000, u(rng) * 5000});
    const TorsoAttributes t = torso_attributes(q.data(), 30.0);
    for (int a = 0; a < kNumAttributeJoints; ++a) {
      CHECK(t.distance_mm[size_t(a)] == doctest::Approx(ref.distance_mm[size_t(a)]).epsilon(1e-3).scale(1));
      CHECK(t.side[size_t(a)] == ref.side[size_t(a)]);
    }
    CHECK(t.plane.rms_residual_mm == doctest::Approx(ref.plane.rms_residual_mm).epsilon(1e-3));
  }
}

TEST_CASE("torso plane: class balance over thresholds") {
  std::vector<float> poses;
  Pose a = standing_pose();
  Pose b = standing_pose();
  set(b, h36m::kRightWrist, -190, 1400, 100);  // 100 mm in front
  set(b, h36m::kLeftWrist, 150, 1050, -30);    // 30 mm behind (left wrist base z = 5)
  poses.insert(poses.end(), a.begin(), a.end());
  poses.insert(poses.end(), b.begin(), b.end());
  const std::vector<ClassBalance> bal = class_balance(poses.data(), 2, {0.0, 20.0, 50.0, 200.0});
  REQUIRE(bal.size() == 4);
  for (const ClassBalance& c : bal) {
    CHECK(c.total[0] + c.total[1] + c.total[2] == 18);
    int64_t per_joint_sum = 0;
    for (const auto& j : c.per_joint) per_joint_sum += j[0] + j[1] + j[2];
    CHECK(per_joint_sum == 18);
  }
  // On-plane grows with the threshold; at 200 mm everything is on the plane.
  for (size_t i = 1; i < bal.size(); ++i) CHECK(bal[i].total[2] >= bal[i - 1].total[2]);
  CHECK(bal[3].total[2] == 18);
  CHECK(bal[3].fraction(PlaneSide::OnPlane) == 1.0);
  // At 50 mm only pose b's right wrist is off the plane (front).
  const int rw = attribute_slot(h36m::kRightWrist), lw = attribute_slot(h36m::kLeftWrist);
  CHECK(bal[2].total[0] == 1);
  CHECK(bal[2].per_joint[size_t(rw)][0] == 1);
  // At 20 mm pose b's left wrist is behind.
  CHECK(bal[1].per_joint[size_t(lw)][1] == 1);
  CHECK_THROWS_AS(class_balance(poses.data(), 2, {-1.0}), dofpose::Error);
}

TEST_CASE("torso plane: on Human3.6M the nose is in front of the torso plane") {
  const std::string path = dofpose_test::require_shared("data/h36m/S9.npz");
  if (path.empty()) return;
  const NpzFile f(path);
  int64_t total = 0, in_front = 0;
  for (const char* action : {"Walking/pos3d", "Directions/pos3d", "Sitting/pos3d", "Phoning/pos3d"}) {
    const std::vector<float> pos = f.array(action).to_f32();
    const int64_t n = int64_t(pos.size() / 51);
    for (int64_t i = 0; i < n; ++i) {
      const float* p = pos.data() + i * 51;
      in_front += signed_distance(fit_torso_plane(p), p + h36m::kNeckNose * 3) > 0;
      ++total;
    }
  }
  INFO(in_front, " of ", total, " poses have the nose in front");
  CHECK(total > 1000);
  CHECK(double(in_front) / double(total) > 0.99);  // 2119 of 2120 when written
}
