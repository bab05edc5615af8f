#include "dofpose/skeleton.h"

#include <cstring>
#include <map>

#include "dofpose/error.h"

namespace dofpose {

namespace {

Layout make_h36m17() {
  return {LayoutId::H36M17,
          "h36m17",
          {"pelvis", "right hip", "right knee", "right ankle", "left hip", "left knee",
           "left ankle", "spine", "thorax", "neck/nose", "head", "left shoulder", "left elbow",
           "left wrist", "right shoulder", "right elbow", "right wrist"},
          {-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15},
          {0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13}};
}

// MPII has no 3D tree of its own; this one hangs everything off the pelvis
// like H36M (legs from the pelvis, arms and neck from the thorax).
Layout make_mpii16() {
  return {LayoutId::MPII16,
          "mpii16",
          {"right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle",
           "pelvis", "thorax", "upper neck", "head top", "right wrist", "right elbow",
           "right shoulder", "left shoulder", "left elbow", "left wrist"},
          {1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14},
          {5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10}};
}

// COCO has no joint on the body's midline except the nose, so the nose is the
// root (the root must be its own mirror image for the tree to be symmetric).
Layout make_coco17() {
  return {LayoutId::COCO17,
          "coco17",
          {"nose", "left eye", "right eye", "left ear", "right ear", "left shoulder",
           "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist", "left hip",
           "right hip", "left knee", "right knee", "left ankle", "right ankle"},
          {-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14},
          {0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15}};
}

// The pem_hourglass model's joints (LSP-like); rooted at the neck.
Layout make_pem14() {
  return {LayoutId::PEM14,
          "pem14",
          {"head top", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder",
           "left elbow", "left wrist", "right hip", "right knee", "right ankle", "left hip",
           "left knee", "left ankle"},
          {1, -1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12},
          {0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10}};
}

const Layout kH36M17 = make_h36m17();
const Layout kMPII16 = make_mpii16();
const Layout kCOCO17 = make_coco17();
const Layout kPEM14 = make_pem14();

JointRecipe direct(const Layout& from, const Layout& to, int src, int dst) {
  return {{{src, 1.0f}}, JointSource::Direct, to.joints[size_t(dst)] + " = " + from.name + " " + from.joints[size_t(src)]};
}
JointRecipe approx(const Layout& from, const Layout& to, int src, int dst) {
  return {{{src, 1.0f}}, JointSource::Approximate,
          to.joints[size_t(dst)] + " ~ " + from.name + " " + from.joints[size_t(src)] + " (nearby point)"};
}
JointRecipe synth(const Layout& from, const Layout& to, int dst, std::vector<std::pair<int, float>> terms) {
  std::string rule = to.joints[size_t(dst)] + " = ";
  for (size_t i = 0; i < terms.size(); ++i) {
    if (i) rule += " + ";
    rule += concat(terms[i].second, " * ", from.joints[size_t(terms[i].first)]);
  }
  return {std::move(terms), JointSource::Synthesised, rule};
}

// Builds a map from (source name, target name) pairs of identical joints; the
// remaining target joints are filled by `extra`.
template <typename Extra>
LayoutMap build_map(const Layout& from, const Layout& to,
                    const std::vector<std::pair<const char*, const char*>>& same, Extra extra) {
  LayoutMap m{from.id, to.id, std::vector<JointRecipe>(size_t(to.num_joints()))};
  std::vector<bool> done(size_t(to.num_joints()), false);
  for (const auto& [src, dst] : same) {
    const int s = from.index(src), d = to.index(dst);
    m.joints[size_t(d)] = direct(from, to, s, d);
    done[size_t(d)] = true;
  }
  extra(m, done);
  for (int j = 0; j < to.num_joints(); ++j)
    DOFPOSE_CHECK(done[size_t(j)], "layout map ", from.name, " -> ", to.name, ": joint ", j, " '",
                  to.joints[size_t(j)], "' has no recipe (internal error)");
  return m;
}

const std::vector<std::pair<const char*, const char*>> kLimbsSameName = {
    {"right hip", "right hip"},         {"right knee", "right knee"},
    {"right ankle", "right ankle"},     {"left hip", "left hip"},
    {"left knee", "left knee"},         {"left ankle", "left ankle"},
    {"left shoulder", "left shoulder"}, {"left elbow", "left elbow"},
    {"left wrist", "left wrist"},       {"right shoulder", "right shoulder"},
    {"right elbow", "right elbow"},     {"right wrist", "right wrist"}};

std::vector<std::pair<const char*, const char*>> with(std::vector<std::pair<const char*, const char*>> base,
                                                      std::vector<std::pair<const char*, const char*>> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

LayoutMap make_mpii_to_h36m() {
  const Layout &f = kMPII16, &t = kH36M17;
  return build_map(f, t, with(kLimbsSameName, {{"pelvis", "pelvis"}, {"thorax", "thorax"}}),
                   [&](LayoutMap& m, std::vector<bool>& done) {
                     m.joints[h36m::kSpine] = synth(f, t, h36m::kSpine, {{f.index("pelvis"), 0.5f}, {f.index("thorax"), 0.5f}});
                     m.joints[h36m::kNeckNose] = approx(f, t, f.index("upper neck"), h36m::kNeckNose);
                     m.joints[h36m::kHead] = approx(f, t, f.index("head top"), h36m::kHead);
                     done[h36m::kSpine] = done[h36m::kNeckNose] = done[h36m::kHead] = true;
                   });
}

LayoutMap make_coco_to_h36m() {
  const Layout &f = kCOCO17, &t = kH36M17;
  return build_map(f, t, kLimbsSameName, [&](LayoutMap& m, std::vector<bool>& done) {
    const int lh = f.index("left hip"), rh = f.index("right hip");
    const int ls = f.index("left shoulder"), rs = f.index("right shoulder");
    m.joints[h36m::kPelvis] = synth(f, t, h36m::kPelvis, {{lh, 0.5f}, {rh, 0.5f}});
    m.joints[h36m::kThorax] = synth(f, t, h36m::kThorax, {{ls, 0.5f}, {rs, 0.5f}});
    m.joints[h36m::kSpine] = synth(f, t, h36m::kSpine, {{lh, 0.25f}, {rh, 0.25f}, {ls, 0.25f}, {rs, 0.25f}});
    m.joints[h36m::kNeckNose] = approx(f, t, f.index("nose"), h36m::kNeckNose);
    m.joints[h36m::kHead] = synth(f, t, h36m::kHead,
                                  {{f.index("left eye"), 0.25f}, {f.index("right eye"), 0.25f},
                                   {f.index("left ear"), 0.25f}, {f.index("right ear"), 0.25f}});
    for (int j : {h36m::kPelvis, h36m::kThorax, h36m::kSpine, h36m::kNeckNose, h36m::kHead}) done[size_t(j)] = true;
  });
}

LayoutMap make_pem_to_h36m() {
  const Layout &f = kPEM14, &t = kH36M17;
  return build_map(f, t, kLimbsSameName, [&](LayoutMap& m, std::vector<bool>& done) {
    const int lh = f.index("left hip"), rh = f.index("right hip");
    const int ls = f.index("left shoulder"), rs = f.index("right shoulder");
    m.joints[h36m::kPelvis] = synth(f, t, h36m::kPelvis, {{lh, 0.5f}, {rh, 0.5f}});
    m.joints[h36m::kThorax] = synth(f, t, h36m::kThorax, {{ls, 0.5f}, {rs, 0.5f}});
    m.joints[h36m::kSpine] = synth(f, t, h36m::kSpine, {{lh, 0.25f}, {rh, 0.25f}, {ls, 0.25f}, {rs, 0.25f}});
    m.joints[h36m::kNeckNose] = approx(f, t, f.index("neck"), h36m::kNeckNose);
    m.joints[h36m::kHead] = approx(f, t, f.index("head top"), h36m::kHead);
    for (int j : {h36m::kPelvis, h36m::kThorax, h36m::kSpine, h36m::kNeckNose, h36m::kHead}) done[size_t(j)] = true;
  });
}

LayoutMap make_h36m_to_mpii() {
  const Layout &f = kH36M17, &t = kMPII16;
  return build_map(f, t, with(kLimbsSameName, {{"pelvis", "pelvis"}, {"thorax", "thorax"}}),
                   [&](LayoutMap& m, std::vector<bool>& done) {
                     const int neck = t.index("upper neck"), top = t.index("head top");
                     m.joints[size_t(neck)] = approx(f, t, h36m::kNeckNose, neck);
                     m.joints[size_t(top)] = approx(f, t, h36m::kHead, top);
                     done[size_t(neck)] = done[size_t(top)] = true;
                   });
}

LayoutMap make_mpii_to_pem() {
  return build_map(kMPII16, kPEM14, with(kLimbsSameName, {{"head top", "head top"}, {"upper neck", "neck"}}),
                   [](LayoutMap&, std::vector<bool>&) {});
}

LayoutMap make_identity(const Layout& l) {
  LayoutMap m{l.id, l.id, {}};
  for (int j = 0; j < l.num_joints(); ++j) m.joints.push_back(direct(l, l, j, j));
  return m;
}

}  // namespace

int Layout::index(const std::string& joint) const {
  for (int j = 0; j < num_joints(); ++j)
    if (joints[size_t(j)] == joint) return j;
  std::string known;
  for (const auto& n : joints) known += (known.empty() ? "'" : ", '") + n + "'";
  fail("layout ", name, ": no joint named '", joint, "' (joints: ", known, ")");
}

const Layout& layout(LayoutId id) {
  switch (id) {
    case LayoutId::H36M17: return kH36M17;
    case LayoutId::MPII16: return kMPII16;
    case LayoutId::COCO17: return kCOCO17;
    case LayoutId::PEM14: return kPEM14;
  }
  fail("layout: unknown layout id ", int(id));
}

const char* layout_name(LayoutId id) { return layout(id).name.c_str(); }

const Layout& layout_from_name(const std::string& name) {
  for (const Layout* l : {&kH36M17, &kMPII16, &kCOCO17, &kPEM14})
    if (l->name == name) return *l;
  fail("unknown joint layout '", name, "': expected one of h36m17, mpii16, coco17, pem14");
}

void flip_joints(const Layout& l, const float* in, int dims, float* out) {
  for (int j = 0; j < l.num_joints(); ++j)
    std::memcpy(out + size_t(j) * size_t(dims), in + size_t(l.flip[size_t(j)]) * size_t(dims),
                sizeof(float) * size_t(dims));
}

const LayoutMap& layout_map(LayoutId from, LayoutId to) {
  static const std::map<std::pair<LayoutId, LayoutId>, LayoutMap> maps = [] {
    std::map<std::pair<LayoutId, LayoutId>, LayoutMap> m;
    for (const Layout* l : {&kH36M17, &kMPII16, &kCOCO17, &kPEM14}) m.emplace(std::make_pair(l->id, l->id), make_identity(*l));
    m.emplace(std::make_pair(LayoutId::MPII16, LayoutId::H36M17), make_mpii_to_h36m());
    m.emplace(std::make_pair(LayoutId::COCO17, LayoutId::H36M17), make_coco_to_h36m());
    m.emplace(std::make_pair(LayoutId::PEM14, LayoutId::H36M17), make_pem_to_h36m());
    m.emplace(std::make_pair(LayoutId::H36M17, LayoutId::MPII16), make_h36m_to_mpii());
    m.emplace(std::make_pair(LayoutId::MPII16, LayoutId::PEM14), make_mpii_to_pem());
    return m;
  }();
  auto it = maps.find({from, to});
  if (it == maps.end())
    fail("no joint map from layout ", layout_name(from), " to ", layout_name(to),
         " (supported: identity, mpii16/coco17/pem14 -> h36m17, h36m17 -> mpii16, mpii16 -> pem14)");
  return it->second;
}

void map_joints(const LayoutMap& map, const float* in, int dims, float* out) {
  for (size_t j = 0; j < map.joints.size(); ++j) {
    for (int d = 0; d < dims; ++d) {
      float v = 0.0f;
      for (const auto& [src, w] : map.joints[j].terms) v += w * in[size_t(src) * size_t(dims) + size_t(d)];
      out[j * size_t(dims) + size_t(d)] = v;
    }
  }
}

std::vector<float> map_poses(const LayoutMap& map, const float* in, int64_t n, int dims) {
  const size_t in_stride = size_t(layout(map.from).num_joints()) * size_t(dims);
  const size_t out_stride = map.joints.size() * size_t(dims);
  std::vector<float> out(size_t(n) * out_stride);
  for (int64_t i = 0; i < n; ++i) map_joints(map, in + size_t(i) * in_stride, dims, out.data() + size_t(i) * out_stride);
  return out;
}

const char* attribute_joint_name(int a) {
  static const char* names[kNumAttributeJoints] = {"left elbow", "right elbow", "left wrist",
                                                   "right wrist", "left knee",  "right knee",
                                                   "left ankle", "right ankle", "head"};
  DOFPOSE_CHECK(a >= 0 && a < kNumAttributeJoints, "attribute joint index ", a, " outside 0..8");
  return names[a];
}

const char* joint_group_name(JointGroup g) {
  switch (g) {
    case JointGroup::Torso: return "torso";
    case JointGroup::Proximal: return "proximal";
    case JointGroup::Distal: return "distal";
  }
  return "?";
}

JointGroup joint_group(int j) {
  using namespace h36m;
  switch (j) {
    case kPelvis: case kRightHip: case kLeftHip: case kSpine: case kThorax: case kNeckNose:
    case kLeftShoulder: case kRightShoulder:
      return JointGroup::Torso;
    case kHead: case kLeftElbow: case kRightElbow: case kLeftKnee: case kRightKnee:
      return JointGroup::Proximal;
    case kLeftWrist: case kRightWrist: case kLeftAnkle: case kRightAnkle:
      return JointGroup::Distal;
    default:
      fail("joint_group: H36M-17 joint index ", j, " outside 0..16");
  }
}

std::vector<int> joints_in_group(JointGroup g) {
  std::vector<int> out;
  for (int j = 0; j < h36m::kNumJoints; ++j)
    if (joint_group(j) == g) out.push_back(j);
  return out;
}

}  // namespace dofpose
