// Joint layouts: flip permutations, kinematic trees, maps between layouts,
// joint groups.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>

#include "dofpose/error.h"
#include "dofpose/skeleton.h"

using namespace dofpose;

namespace {

const LayoutId kAllLayouts[] = {LayoutId::H36M17, LayoutId::MPII16, LayoutId::COCO17, LayoutId::PEM14};

std::string mirrored_name(std::string n) {
  if (n.rfind("left ", 0) == 0) return "right " + n.substr(5);
  if (n.rfind("right ", 0) == 0) return "left " + n.substr(6);
  return n;
}

std::vector<float> random_pose(int joints, int dims, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-500.f, 500.f);
  std::vector<float> p(size_t(joints * dims));
  for (float& x : p) x = u(rng);
  return p;
}

}  // namespace

TEST_CASE("skeleton: layouts are well formed (sizes, one root, a tree, flip names)") {
  const int expected_sizes[] = {17, 16, 17, 14};
  int k = 0;
  for (LayoutId id : kAllLayouts) {
    const Layout& l = layout(id);
    INFO("layout ", l.name);
    CHECK(l.num_joints() == expected_sizes[k++]);
    REQUIRE(l.parents.size() == l.joints.size());
    REQUIRE(l.flip.size() == l.joints.size());
    CHECK(std::count(l.parents.begin(), l.parents.end(), -1) == 1);
    for (int j = 0; j < l.num_joints(); ++j) {
      // Following parents reaches the root without a cycle.
      int cur = j, steps = 0;
      while (cur != -1 && steps <= l.num_joints()) cur = l.parents[size_t(cur)], ++steps;
      CHECK_MESSAGE(cur == -1, "joint ", j, " does not reach the root");
      // The mirrored joint has the mirrored name.
      CHECK(l.joints[size_t(l.flip[size_t(j)])] == mirrored_name(l.joints[size_t(j)]));
      CHECK(l.index(l.joints[size_t(j)]) == j);
    }
  }
  CHECK(layout(LayoutId::H36M17).parents == std::vector<int>{-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15});
  CHECK(layout(LayoutId::H36M17).joints[9] == "neck/nose");
  CHECK(layout(LayoutId::MPII16).joints[8] == "upper neck");
  CHECK(layout(LayoutId::COCO17).joints[16] == "right ankle");
  CHECK(layout(LayoutId::PEM14).joints[4] == "right wrist");
}

TEST_CASE("skeleton: flipping twice is identity and flips agree with parents") {
  for (LayoutId id : kAllLayouts) {
    const Layout& l = layout(id);
    INFO("layout ", l.name);
    for (int j = 0; j < l.num_joints(); ++j) {
      const int f = l.flip[size_t(j)];
      CHECK(l.flip[size_t(f)] == j);
      const int p = l.parents[size_t(j)];
      const int flipped_parent = p < 0 ? -1 : l.flip[size_t(p)];
      CHECK_MESSAGE(l.parents[size_t(f)] == flipped_parent, "joint ", j, " '", l.joints[size_t(j)], "'");
    }
    const std::vector<float> pose = random_pose(l.num_joints(), 3, 7);
    std::vector<float> once(pose.size()), twice(pose.size());
    flip_joints(l, pose.data(), 3, once.data());
    flip_joints(l, once.data(), 3, twice.data());
    CHECK(twice == pose);
    CHECK(once != pose);
  }
}

TEST_CASE("skeleton: layout_from_name and unknown names") {
  CHECK(layout_from_name("h36m17").id == LayoutId::H36M17);
  CHECK(layout_from_name("mpii16").id == LayoutId::MPII16);
  CHECK(layout_from_name("coco17").id == LayoutId::COCO17);
  CHECK(layout_from_name("pem14").id == LayoutId::PEM14);
  CHECK_THROWS_WITH_AS(layout_from_name("h36m32"),
                       doctest::Contains("unknown joint layout 'h36m32': expected one of h36m17, mpii16, coco17, pem14"),
                       dofpose::Error);
  CHECK_THROWS_WITH_AS(layout(LayoutId::MPII16).index("nose"), doctest::Contains("layout mpii16: no joint named 'nose'"),
                       dofpose::Error);
}

TEST_CASE("skeleton: joint groups partition the 17 joints, attribute joints are proximal + distal") {
  std::multiset<int> seen;
  const std::vector<int> torso = joints_in_group(JointGroup::Torso);
  const std::vector<int> proximal = joints_in_group(JointGroup::Proximal);
  const std::vector<int> distal = joints_in_group(JointGroup::Distal);
  for (const auto* g : {&torso, &proximal, &distal}) seen.insert(g->begin(), g->end());
  CHECK(seen.size() == 17);
  for (int j = 0; j < 17; ++j) CHECK(seen.count(j) == 1);
  CHECK(torso == std::vector<int>{0, 1, 4, 7, 8, 9, 11, 14});
  CHECK(proximal == std::vector<int>{2, 5, 10, 12, 15});
  CHECK(distal == std::vector<int>{3, 6, 13, 16});
  std::set<int> attr(kAttributeJoints.begin(), kAttributeJoints.end());
  CHECK(attr.size() == 9);
  std::set<int> limbs(proximal.begin(), proximal.end());
  limbs.insert(distal.begin(), distal.end());
  CHECK(attr == limbs);
  for (int a = 0; a < kNumAttributeJoints; ++a)
    CHECK(layout(LayoutId::H36M17).joints[size_t(kAttributeJoints[size_t(a)])] == attribute_joint_name(a));
  CHECK_THROWS_AS(joint_group(17), dofpose::Error);
}

TEST_CASE("skeleton: layout maps (weights, direct joints by name, synthesis, flip equivariance)") {
  const std::pair<LayoutId, LayoutId> pairs[] = {{LayoutId::MPII16, LayoutId::H36M17},
                                                 {LayoutId::COCO17, LayoutId::H36M17},
                                                 {LayoutId::PEM14, LayoutId::H36M17},
                                                 {LayoutId::H36M17, LayoutId::MPII16},
                                                 {LayoutId::MPII16, LayoutId::PEM14},
                                                 {LayoutId::COCO17, LayoutId::COCO17}};
  for (const auto& [from_id, to_id] : pairs) {
    const Layout& from = layout(from_id);
    const Layout& to = layout(to_id);
    const LayoutMap& m = layout_map(from_id, to_id);
    INFO("map ", from.name, " -> ", to.name);
    REQUIRE(int(m.joints.size()) == to.num_joints());
    for (int j = 0; j < to.num_joints(); ++j) {
      const JointRecipe& r = m.joints[size_t(j)];
      double w = 0;
      for (const auto& [src, weight] : r.terms) {
        CHECK(src >= 0);
        CHECK(src < from.num_joints());
        w += weight;
      }
      CHECK(w == doctest::Approx(1.0));
      CHECK(!r.rule.empty());
      if (r.source != JointSource::Synthesised) REQUIRE(r.terms.size() == 1);
      // Direct joints are the same joint by name (pem14 "neck" is MPII's "upper neck").
      const bool renamed = from_id == LayoutId::MPII16 && to_id == LayoutId::PEM14 && j == 1;
      if (r.source == JointSource::Direct && !renamed)
        CHECK(from.joints[size_t(r.terms[0].first)] == to.joints[size_t(j)]);
    }
    // Mapping commutes with mirroring: map(flip(pose)) == flip(map(pose)).
    const std::vector<float> pose = random_pose(from.num_joints(), 2, 11);
    std::vector<float> flipped(pose.size()), a(size_t(to.num_joints()) * 2), b(a.size()), mapped(a.size());
    flip_joints(from, pose.data(), 2, flipped.data());
    map_joints(m, flipped.data(), 2, a.data());
    map_joints(m, pose.data(), 2, mapped.data());
    flip_joints(to, mapped.data(), 2, b.data());
    for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  }
  // Synthesised joints, by hand.
  {
    const Layout& mpii = layout(LayoutId::MPII16);
    std::vector<float> p = random_pose(16, 3, 3);
    const std::vector<float> h = map_poses(layout_map(LayoutId::MPII16, LayoutId::H36M17), p.data(), 1, 3);
    const int pel = mpii.index("pelvis"), tho = mpii.index("thorax");
    for (int d = 0; d < 3; ++d) {
      CHECK(h[size_t(h36m::kSpine * 3 + d)] == doctest::Approx(0.5 * (p[size_t(pel * 3 + d)] + p[size_t(tho * 3 + d)])));
      CHECK(h[size_t(h36m::kHead * 3 + d)] == p[size_t(mpii.index("head top") * 3 + d)]);
      CHECK(h[size_t(h36m::kRightWrist * 3 + d)] == p[size_t(mpii.index("right wrist") * 3 + d)]);
    }
  }
  {
    const Layout& coco = layout(LayoutId::COCO17);
    std::vector<float> p = random_pose(17, 2, 5);
    const std::vector<float> h = map_poses(layout_map(LayoutId::COCO17, LayoutId::H36M17), p.data(), 1, 2);
    const int lh = coco.index("left hip"), rh = coco.index("right hip");
    const int ls = coco.index("left shoulder"), rs = coco.index("right shoulder");
    for (int d = 0; d < 2; ++d) {
      const double pelvis = 0.5 * (p[size_t(lh * 2 + d)] + p[size_t(rh * 2 + d)]);
      const double thorax = 0.5 * (p[size_t(ls * 2 + d)] + p[size_t(rs * 2 + d)]);
      CHECK(h[size_t(h36m::kPelvis * 2 + d)] == doctest::Approx(pelvis));
      CHECK(h[size_t(h36m::kThorax * 2 + d)] == doctest::Approx(thorax));
      CHECK(h[size_t(h36m::kSpine * 2 + d)] == doctest::Approx(0.5 * (pelvis + thorax)));
      CHECK(h[size_t(h36m::kNeckNose * 2 + d)] == p[size_t(coco.index("nose") * 2 + d)]);
    }
  }
  CHECK_THROWS_WITH_AS(layout_map(LayoutId::H36M17, LayoutId::COCO17),
                       doctest::Contains("no joint map from layout h36m17 to coco17"), dofpose::Error);
}
