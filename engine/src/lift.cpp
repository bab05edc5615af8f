// Lifting 2D keypoints to 3D H36M-17 (dofpose/lift.h, docs/lift.md).
#include "dofpose/lift.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dofpose/arena.h"
#include "dofpose/error.h"
#include "dofpose/nn/model.h"
#include "dofpose/weights.h"

namespace dofpose {

namespace {

using json = nlohmann::json;

constexpr int64_t kBatch = 2048;  // frames per forward: bounds the arena, not the result

// The H36M-17 joints whose spread measures body size (no limbs, no head).
constexpr int kTorsoJoints[] = {h36m::kPelvis, h36m::kRightHip, h36m::kLeftHip, h36m::kSpine,
                                h36m::kThorax, h36m::kLeftShoulder, h36m::kRightShoulder};

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Reads the optional "lift_frame" metadata: {"f":[fx,fy],"c":[cx,cy],"pelvis":[x,y],"torso_scale":s}.
TrainingFrame frame_from_metadata(const std::map<std::string, std::string>& md, const std::string& source) {
  TrainingFrame f;
  auto it = md.find("lift_frame");
  if (it == md.end()) return f;
  const std::string where = "model " + source + ": metadata lift_frame: ";
  json j;
  try {
    j = json::parse(it->second);
  } catch (const json::exception& e) {
    fail(where, "not valid JSON: ", e.what());
  }
  DOFPOSE_CHECK(j.is_object(), where, "expected an object");
  auto pair = [&](const char* key, double* a, double* b) {
    if (!j.contains(key)) return;
    const json& v = j[key];
    DOFPOSE_CHECK(v.is_array() && v.size() == 2 && v[0].is_number() && v[1].is_number(), where,
                  key, " must be [number, number]");
    *a = v[0].get<double>();
    *b = v[1].get<double>();
  };
  pair("f", &f.fx, &f.fy);
  pair("c", &f.cx, &f.cy);
  pair("pelvis", &f.pelvis_x, &f.pelvis_y);
  if (j.contains("torso_scale")) {
    DOFPOSE_CHECK(j["torso_scale"].is_number(), where, "torso_scale must be a number");
    f.torso_scale = j["torso_scale"].get<double>();
  }
  DOFPOSE_CHECK(f.fx > 0 && f.fy > 0 && f.torso_scale > 0 && std::isfinite(f.fx) &&
                    std::isfinite(f.fy) && std::isfinite(f.torso_scale),
                where, "f and torso_scale must be positive");
  return f;
}

}  // namespace

// ================================================================ names

const char* lift_normalise_name(LiftNormalise n) {
  switch (n) {
    case LiftNormalise::Auto: return "auto";
    case LiftNormalise::Camera: return "camera";
    case LiftNormalise::Scale: return "scale";
    case LiftNormalise::None: return "none";
  }
  return "?";
}

LiftNormalise lift_normalise_from_name(const std::string& name) {
  for (LiftNormalise n : {LiftNormalise::Auto, LiftNormalise::Camera, LiftNormalise::Scale,
                          LiftNormalise::None})
    if (name == lift_normalise_name(n)) return n;
  fail("unknown normalisation '", name, "': expected one of auto, camera, scale, none");
}

// ================================================================ PoseLifter

PoseLifter::PoseLifter(PoseLifter&&) noexcept = default;
PoseLifter& PoseLifter::operator=(PoseLifter&&) noexcept = default;
PoseLifter::~PoseLifter() = default;

PoseLifter PoseLifter::from_weights(const WeightsFile& file, const std::string& source) {
  const std::string kind = file.metadata_or("kind", "");
  DOFPOSE_CHECK(kind == "lifter", "model ", source, ": metadata kind is '", kind,
                "', lifting needs a 'lifter' model");
  PoseLifter p;
  p.source_ = source;
  p.metadata_ = file.metadata();
  std::unique_ptr<nn::Lifter> net = nn::load_lifter(file);
  p.config_ = net->config();
  DOFPOSE_CHECK(p.config_.num_joints_in == 16 || p.config_.num_joints_in == 17, "model ", source,
                ": num_joints_in is ", p.config_.num_joints_in,
                ", lifting supports 16 (H36M-17 without neck/nose) or 17");
  p.frame_ = frame_from_metadata(p.metadata_, source);
  p.model_ = nn::make_model(std::move(net));
  return p;
}

PoseLifter PoseLifter::from_file(const std::string& path) {
  WeightsFile file(path, WeightsLoadOptions{true});
  return from_weights(file, path);
}

PoseLifter PoseLifter::from_memory(const void* bytes, size_t size, const std::string& name) {
  WeightsFile file = WeightsFile::from_memory(bytes, size, name, WeightsLoadOptions{true});
  return from_weights(file, name);
}

PoseLifter PoseLifter::from_default() {
  const ByteSpan b = default_lifter_bytes();
  DOFPOSE_CHECK(!b.empty(), "this dofpose was built without a default lifter "
                "(engine/default_model/default_lifter.safetensors was missing): pass --model");
  return from_memory(b.data, b.size, "embedded:" + base_name(default_lifter_source_path()));
}

std::string PoseLifter::status() const {
  auto it = metadata_.find("status");
  return it == metadata_.end() ? std::string() : it->second;
}

std::string PoseLifter::summary() const { return model_->summary(); }

// ================================================================ imputation

std::vector<int> impute_missing_joints(const Layout& layout, float* xy, const std::vector<bool>& present) {
  const int n = layout.num_joints();
  DOFPOSE_CHECK(int(present.size()) == n, "impute_missing_joints: ", present.size(),
                " presence flags for layout ", layout.name, " of ", n, " joints");
  std::vector<bool> known = present;
  int n_known = int(std::count(known.begin(), known.end(), true));
  DOFPOSE_CHECK(n_known > 0, "no joint is present (every confidence is at or below the threshold)");
  std::vector<int> filled;
  if (n_known == n) return filled;

  // Parents before children: order by depth in the tree.
  std::vector<int> depth(static_cast<size_t>(n), 0), order(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j)
    for (int p = layout.parents[size_t(j)], guard = 0; p >= 0 && guard < n; p = layout.parents[size_t(p)], ++guard)
      ++depth[size_t(j)];
  for (int j = 0; j < n; ++j) order[size_t(j)] = j;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return depth[size_t(a)] < depth[size_t(b)]; });

  // The body's vertical axis in the image (hips' midpoint -> shoulders' midpoint),
  // the mirror line for left/right bones; unknown when a hip or shoulder is missing.
  const int lh = layout.index("left hip"), rh = layout.index("right hip");
  const int ls = layout.index("left shoulder"), rs = layout.index("right shoulder");
  bool have_axis = known[size_t(lh)] && known[size_t(rh)] && known[size_t(ls)] && known[size_t(rs)];
  double ax = 0, ay = 0;
  if (have_axis) {
    ax = 0.5 * (xy[2 * ls] + xy[2 * rs] - xy[2 * lh] - xy[2 * rh]);
    ay = 0.5 * (xy[2 * ls + 1] + xy[2 * rs + 1] - xy[2 * lh + 1] - xy[2 * rh + 1]);
    const double len = std::hypot(ax, ay);
    have_axis = len > 1e-6;
    if (have_axis) ax /= len, ay /= len;
  }

  auto mean_of = [&](const std::vector<int>& joints, float* out) {
    double sx = 0, sy = 0;
    int c = 0;
    for (int k : joints)
      if (known[size_t(k)]) sx += xy[2 * k], sy += xy[2 * k + 1], ++c;
    if (c == 0) return false;
    out[0] = float(sx / c), out[1] = float(sy / c);
    return true;
  };

  for (int j : order) {
    if (known[size_t(j)]) continue;
    float* p_out = xy + 2 * j;
    const int parent = layout.parents[size_t(j)];
    const int mate = layout.flip[size_t(j)];
    const int mate_parent = layout.parents[size_t(mate)];
    if (parent >= 0 && known[size_t(parent)]) {
      if (mate != j && known[size_t(mate)] && mate_parent >= 0 && known[size_t(mate_parent)]) {
        // The counterpart's bone, mirrored about the body axis when known.
        double vx = xy[2 * mate] - xy[2 * mate_parent], vy = xy[2 * mate + 1] - xy[2 * mate_parent + 1];
        if (have_axis) {
          const double d = vx * ax + vy * ay;
          vx = 2 * d * ax - vx, vy = 2 * d * ay - vy;
        }
        p_out[0] = float(xy[2 * parent] + vx), p_out[1] = float(xy[2 * parent + 1] + vy);
      } else {
        p_out[0] = xy[2 * parent], p_out[1] = xy[2 * parent + 1];
      }
    } else {
      // A root (or an orphan): the mean of its known children, else of every known joint.
      std::vector<int> children, all;
      for (int k = 0; k < n; ++k) {
        if (layout.parents[size_t(k)] == j) children.push_back(k);
        all.push_back(k);
      }
      if (!mean_of(children, p_out)) mean_of(all, p_out);
    }
    known[size_t(j)] = true;
    filled.push_back(j);
  }
  return filled;
}

// ================================================================ coordinates

double torso_scale_2d(const float* pose) {
  double cx = 0, cy = 0;
  for (int j : kTorsoJoints) cx += pose[2 * j], cy += pose[2 * j + 1];
  const double k = double(std::size(kTorsoJoints));
  cx /= k, cy /= k;
  double s = 0;
  for (int j : kTorsoJoints) {
    const double dx = pose[2 * j] - cx, dy = pose[2 * j + 1] - cy;
    s += dx * dx + dy * dy;
  }
  return std::sqrt(s / k);
}

LiftNormalise to_training_frame(float* poses, int64_t n, const std::optional<Intrinsics>& camera,
                                LiftNormalise mode, const TrainingFrame& frame) {
  if (mode == LiftNormalise::Auto) mode = camera ? LiftNormalise::Camera : LiftNormalise::Scale;
  if (mode == LiftNormalise::None) return mode;
  DOFPOSE_CHECK(mode != LiftNormalise::Camera || camera.has_value(),
                "normalisation 'camera' needs the input's camera intrinsics (\"camera\": "
                "{\"f\": [fx, fy], \"c\": [cx, cy]}); use 'scale' without them");
  const int64_t values = n * h36m::kNumJoints;
  if (camera) {
    const Intrinsics& c = *camera;
    for (int64_t i = 0; i < values; ++i) {
      float* p = poses + 2 * i;
      p[0] = float(frame.fx * ((p[0] - c.cx) / c.fx) + frame.cx);
      p[1] = float(frame.fy * ((p[1] - c.cy) / c.fy) + frame.cy);
    }
  }
  if (mode == LiftNormalise::Scale) {
    for (int64_t f = 0; f < n; ++f) {
      float* pose = poses + f * h36m::kNumJoints * 2;
      const double s = torso_scale_2d(pose);
      DOFPOSE_CHECK(s > 1e-6, "frame ", f, ": the torso joints (pelvis, hips, spine, thorax, "
                    "shoulders) all lie at one point; cannot normalise the scale");
      const double k = frame.torso_scale / s;
      const double px = pose[0], py = pose[1];  // the pelvis
      for (int j = 0; j < h36m::kNumJoints; ++j) {
        pose[2 * j] = float(frame.pelvis_x + (pose[2 * j] - px) * k);
        pose[2 * j + 1] = float(frame.pelvis_y + (pose[2 * j + 1] - py) * k);
      }
    }
  }
  return mode;
}

// ================================================================ lift

LiftResult PoseLifter::lift(const LiftInput& in, const LiftOptions& opt) {
  const Layout& lay = layout(in.layout);
  const int J = lay.num_joints();
  const int64_t n = in.frames;
  DOFPOSE_CHECK(n >= 1, "lift: no frames");
  DOFPOSE_CHECK(int64_t(in.keypoints.size()) == n * J * 2, "lift: ", in.keypoints.size(),
                " keypoint values for ", n, " frames of layout ", lay.name, ", expected ", n * J * 2);
  DOFPOSE_CHECK(in.confidence.empty() || int64_t(in.confidence.size()) == n * J, "lift: ",
                in.confidence.size(), " confidences, expected ", n * J, " (or none)");
  for (size_t i = 0; i < in.keypoints.size(); ++i)
    DOFPOSE_CHECK(std::isfinite(in.keypoints[i]), "lift: frame ", int64_t(i) / (2 * J), " joint '",
                  lay.joints[(i / 2) % size_t(J)], "' has a non-finite coordinate");
  if (in.camera) {
    const Intrinsics& c = *in.camera;
    DOFPOSE_CHECK(c.fx > 0 && c.fy > 0 && std::isfinite(c.fx) && std::isfinite(c.fy) &&
                      std::isfinite(c.cx) && std::isfinite(c.cy),
                  "lift: camera focal lengths must be positive and finite, got f = [", c.fx, ", ",
                  c.fy, "]");
  }
  const bool needs_attributes = config_.use_attributes;
  DOFPOSE_CHECK(!needs_attributes || int64_t(in.attributes.size()) == n * nn::LifterConfig::kAttributeInputs,
                "lift: model ", source_, " uses torso-plane attributes: every frame needs "
                "\"attributes\" (9 labels 0 front / 1 back / 2 on-plane, or 9 x 3 probabilities)");

  LiftResult result;
  result.input_layout = in.layout;
  result.frames.resize(size_t(n));

  // 1. impute, 2. map to H36M-17.
  const LayoutMap& map = layout_map(in.layout, LayoutId::H36M17);
  std::vector<float> h36m2d(size_t(n) * h36m::kNumJoints * 2);
  std::vector<float> pose(static_cast<size_t>(J) * 2);
  std::vector<bool> present(static_cast<size_t>(J));
  for (int64_t f = 0; f < n; ++f) {
    std::copy_n(in.keypoints.data() + f * J * 2, J * 2, pose.data());
    for (int j = 0; j < J; ++j)
      present[size_t(j)] = in.confidence.empty() || in.confidence[size_t(f * J + j)] > opt.min_confidence;
    LiftedFrame& out = result.frames[size_t(f)];
    try {
      out.imputed = impute_missing_joints(lay, pose.data(), present);
    } catch (const Error& e) {
      fail("lift: frame ", f, ": ", e.what());
    }
    map_joints(map, pose.data(), 2, h36m2d.data() + f * h36m::kNumJoints * 2);
    std::vector<bool> imputed(size_t(J), false);
    for (int j : out.imputed) imputed[size_t(j)] = true;
    for (int t = 0; t < h36m::kNumJoints; ++t)
      for (const auto& term : map.joints[size_t(t)].terms)
        if (imputed[size_t(term.first)] && term.second != 0.f) {
          out.imputed_h36m.push_back(t);
          break;
        }
  }

  // 3. into the training frame.
  result.normalise_used = to_training_frame(h36m2d.data(), n, in.camera, opt.normalise, frame_);

  // 4. the model, in batches.
  const std::vector<int> input_joints = config_.input_joints();
  const int64_t jin = int64_t(input_joints.size());
  Arena arena;
  for (int64_t b0 = 0; b0 < n; b0 += kBatch) {
    const int64_t bn = std::min(kBatch, n - b0);
    arena.reset();
    TensorView x = arena.alloc({bn, jin, 2});
    float* xp = static_cast<float*>(x.data);
    for (int64_t f = 0; f < bn; ++f)
      for (int64_t k = 0; k < jin; ++k) {
        const float* src = h36m2d.data() + (b0 + f) * h36m::kNumJoints * 2 + input_joints[size_t(k)] * 2;
        xp[(f * jin + k) * 2] = src[0];
        xp[(f * jin + k) * 2 + 1] = src[1];
      }
    nn::ModelInputs mi;
    mi.input = x;
    if (needs_attributes) {
      TensorView a = arena.alloc({bn, int64_t(nn::LifterConfig::kAttributeInputs)});
      std::copy_n(in.attributes.data() + b0 * nn::LifterConfig::kAttributeInputs,
                  bn * nn::LifterConfig::kAttributeInputs, static_cast<float*>(a.data));
      mi.attributes = a;
    }
    std::vector<nn::NamedView> outs = model_->forward(arena, mi);
    const float* y = static_cast<const float*>(outs.back().value.data);  // "pose3d" [bn,17,3]
    for (int64_t f = 0; f < bn; ++f) {
      std::array<float, 51>& joints = result.frames[size_t(b0 + f)].joints;
      std::copy_n(y + f * 51, 51, joints.data());
      for (float v : joints)
        DOFPOSE_CHECK(std::isfinite(v), "lift: model ", source_, " produced a non-finite value for frame ",
                      b0 + f, " (broken weights?)");
    }
  }
  return result;
}

// ================================================================ JSON in

namespace {

double number_at(const json& v, const std::string& where) {
  DOFPOSE_CHECK(v.is_number(), where, ": expected a number, found ", v.type_name(), " ",
                v.dump().substr(0, 40));
  const double d = v.get<double>();
  DOFPOSE_CHECK(std::isfinite(d), where, ": the number is not finite");
  return d;
}

}  // namespace

LiftInput parse_lift_input(const std::string& text, const std::string& source_name,
                           const std::string& layout_override) {
  const std::string where = "lift input " + source_name;
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    // e.what() names line and column; byte is the offset for tools.
    fail(where, ": malformed JSON at byte ", e.byte, ": ", e.what());
  } catch (const json::exception& e) {  // e.g. a number beyond double range (1e999)
    fail(where, ": a number cannot be represented (non-finite): ", e.what());
  }
  LiftInput in;
  const json* frames = nullptr;
  std::string layout_name_in_file;
  if (root.is_array()) {
    frames = &root;
  } else {
    DOFPOSE_CHECK(root.is_object(), where, ": expected an object {\"layout\", \"frames\", ...} "
                  "or a list of frames, found ", root.type_name());
    for (auto it = root.begin(); it != root.end(); ++it) {
      static const char* const kKeys[] = {"layout", "image_size", "camera", "frames"};
      DOFPOSE_CHECK(std::find_if(std::begin(kKeys), std::end(kKeys),
                                 [&](const char* k) { return it.key() == k; }) != std::end(kKeys),
                    where, ": unknown key \"", it.key(), "\" (expected layout, image_size, camera, frames)");
    }
    DOFPOSE_CHECK(root.contains("frames"), where, ": missing \"frames\"");
    frames = &root["frames"];
    if (root.contains("layout")) {
      DOFPOSE_CHECK(root["layout"].is_string(), where, ": \"layout\" must be a string");
      layout_name_in_file = root["layout"].get<std::string>();
    }
    if (root.contains("image_size")) {
      const json& s = root["image_size"];
      DOFPOSE_CHECK(s.is_array() && s.size() == 2, where, ": \"image_size\" must be [width, height]");
      const double w = number_at(s[0], where + ": image_size[0]");
      const double h = number_at(s[1], where + ": image_size[1]");
      DOFPOSE_CHECK(w >= 1 && h >= 1 && w < 1e6 && h < 1e6, where, ": image_size [", w, ", ", h,
                    "] must be positive");
      in.image_width = int(w), in.image_height = int(h);
    }
    if (root.contains("camera")) {
      const json& c = root["camera"];
      DOFPOSE_CHECK(c.is_object() && c.contains("f") && c.contains("c"), where,
                    ": \"camera\" must be {\"f\": [fx, fy], \"c\": [cx, cy]}");
      Intrinsics k;
      const json& f = c["f"];
      if (f.is_number()) {
        k.fx = k.fy = number_at(f, where + ": camera.f");
      } else {
        DOFPOSE_CHECK(f.is_array() && f.size() == 2, where, ": camera.f must be [fx, fy] or a number");
        k.fx = number_at(f[0], where + ": camera.f[0]");
        k.fy = number_at(f[1], where + ": camera.f[1]");
      }
      const json& cc = c["c"];
      DOFPOSE_CHECK(cc.is_array() && cc.size() == 2, where, ": camera.c must be [cx, cy]");
      k.cx = number_at(cc[0], where + ": camera.c[0]");
      k.cy = number_at(cc[1], where + ": camera.c[1]");
      DOFPOSE_CHECK(k.fx > 0 && k.fy > 0, where, ": camera focal lengths must be positive, got [",
                    k.fx, ", ", k.fy, "]");
      in.camera = k;
    }
  }
  // The layout: the file's, or --layout; both must agree.
  std::string lname = layout_name_in_file;
  if (!layout_override.empty()) {
    DOFPOSE_CHECK(lname.empty() || lname == layout_override, where, ": the file says layout \"",
                  lname, "\" but --layout is ", layout_override);
    lname = layout_override;
  }
  DOFPOSE_CHECK(!lname.empty(), where, ": no layout: give \"layout\" in the file or --layout "
                "(h36m17, mpii16, coco17, pem14)");
  const Layout* found = nullptr;
  try {
    found = &layout_from_name(lname);
  } catch (const Error& e) {
    fail(where, ": ", layout_name_in_file == lname ? "\"layout\": " : "--layout: ", e.what());
  }
  const Layout& lay = *found;
  in.layout = lay.id;
  const int J = lay.num_joints();

  DOFPOSE_CHECK(frames->is_array(), where, ": \"frames\" must be a list, found ", frames->type_name());
  DOFPOSE_CHECK(!frames->empty(), where, ": no frames");
  in.frames = int64_t(frames->size());
  in.keypoints.resize(size_t(in.frames) * J * 2);
  in.confidence.resize(size_t(in.frames) * J);
  bool any_attributes = false, all_attributes = true;
  std::vector<float> attributes(size_t(in.frames) * nn::LifterConfig::kAttributeInputs, 0.f);
  for (int64_t f = 0; f < in.frames; ++f) {
    const json& fr = (*frames)[size_t(f)];
    const std::string fw = concat(where, ": frame ", f);
    const json* kps = &fr;
    if (fr.is_object()) {
      DOFPOSE_CHECK(fr.contains("keypoints"), fw, ": missing \"keypoints\"");
      kps = &fr["keypoints"];
      if (fr.contains("attributes")) {
        any_attributes = true;
        const json& a = fr["attributes"];
        DOFPOSE_CHECK(a.is_array() && a.size() == size_t(kNumAttributeJoints), fw,
                      ": \"attributes\" must list 9 labels (0 front, 1 back, 2 on-plane) or 9 x 3 probabilities");
        float* dst = attributes.data() + f * nn::LifterConfig::kAttributeInputs;
        for (int k = 0; k < kNumAttributeJoints; ++k) {
          const json& v = a[size_t(k)];
          if (v.is_array()) {
            DOFPOSE_CHECK(v.size() == 3, fw, ": attributes[", k, "] must have 3 probabilities");
            for (int c = 0; c < 3; ++c) dst[3 * k + c] = float(number_at(v[size_t(c)], concat(fw, ": attributes[", k, "]")));
          } else {
            const double label = number_at(v, concat(fw, ": attributes[", k, "]"));
            DOFPOSE_CHECK(label == 0 || label == 1 || label == 2, fw, ": attributes[", k,
                          "] = ", label, ", expected 0 (front), 1 (back) or 2 (on-plane)");
            dst[3 * k + int(label)] = 1.f;  // one-hot, as nn::encode_attribute_labels
          }
        }
      } else {
        all_attributes = false;
      }
    } else {
      all_attributes = false;
    }
    DOFPOSE_CHECK(kps->is_array(), fw, ": \"keypoints\" must be a list of [x, y] or [x, y, confidence]");
    DOFPOSE_CHECK(int(kps->size()) == J, fw, ": ", kps->size(), " keypoints, layout ", lay.name,
                  " expects ", J, " (", lay.joints.front(), ", ..., ", lay.joints.back(), ")");
    for (int j = 0; j < J; ++j) {
      const json& k = (*kps)[size_t(j)];
      const std::string jw = concat(fw, ": keypoint ", j, " (", lay.joints[size_t(j)], ")");
      float* xy = in.keypoints.data() + (f * J + j) * 2;
      float& conf = in.confidence[size_t(f * J + j)];
      if (k.is_null()) {  // missing
        xy[0] = xy[1] = 0.f;
        conf = 0.f;
        continue;
      }
      DOFPOSE_CHECK(k.is_array() && (k.size() == 2 || k.size() == 3), jw,
                    ": expected [x, y] or [x, y, confidence] (or null when missing), found ",
                    k.dump().substr(0, 40));
      xy[0] = float(number_at(k[0], jw + " x"));
      xy[1] = float(number_at(k[1], jw + " y"));
      DOFPOSE_CHECK(std::isfinite(xy[0]) && std::isfinite(xy[1]), jw, ": coordinate out of float range");
      conf = k.size() == 3 ? float(number_at(k[2], jw + " confidence")) : 1.f;
    }
  }
  if (any_attributes) {
    DOFPOSE_CHECK(all_attributes, where, ": some frames have \"attributes\" and some do not");
    in.attributes = std::move(attributes);
  }
  return in;
}

LiftInput read_lift_input(const std::string& path, const std::string& layout_override) {
  std::ifstream f(path, std::ios::binary);
  DOFPOSE_CHECK(f.good(), "lift input ", path, ": cannot open for reading: ", std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_lift_input(ss.str(), path, layout_override);
}

// ================================================================ JSON out

std::string lift_output_json(const LiftInput& in, const LiftResult& result, const PoseLifter& lifter) {
  using ojson = nlohmann::ordered_json;
  const Layout& h = layout(LayoutId::H36M17);
  const Layout& src = layout(in.layout);
  ojson input = {{"layout", src.name},
                 {"frames", in.frames},
                 {"normalisation", lift_normalise_name(result.normalise_used)}};
  if (in.image_width > 0) input["image_size"] = {in.image_width, in.image_height};
  if (in.camera) input["camera"] = {{"f", {in.camera->fx, in.camera->fy}}, {"c", {in.camera->cx, in.camera->cy}}};
  ojson model = {{"source", lifter.source()}, {"summary", lifter.summary()}};
  if (!lifter.status().empty()) model["status"] = lifter.status();
  auto cfg = lifter.metadata().find("config");
  if (cfg != lifter.metadata().end()) {
    ojson c = ojson::parse(cfg->second, nullptr, false);
    if (!c.is_discarded()) model["config"] = std::move(c);
  }
  // One frame per line: readable, and diff-friendly.
  std::string text = "{\n";
  auto field = [&](const char* key, const ojson& value, bool last = false) {
    text += concat(" \"", key, "\": ", value.dump(), last ? "\n" : ",\n");
  };
  field("layout", "h36m17");
  field("units", "mm");
  field("coordinates", "camera axes (x right, y down, z forward), relative to the pelvis");
  field("joint_names", h.joints);
  field("input", input);
  field("model", model);
  text += " \"frames\": [\n";
  for (size_t i = 0; i < result.frames.size(); ++i) {
    const LiftedFrame& f = result.frames[i];
    ojson joints = ojson::array();
    // Rounded to 0.01 mm: keeps the file readable, far below the model's precision.
    auto r = [](float v) { return std::round(double(v) * 100.0) / 100.0; };
    for (size_t j = 0; j < size_t(h36m::kNumJoints); ++j)
      joints.push_back({r(f.joints[3 * j]), r(f.joints[3 * j + 1]), r(f.joints[3 * j + 2])});
    ojson imputed = ojson::array(), imputed_h = ojson::array();
    for (int j : f.imputed) imputed.push_back(src.joints[size_t(j)]);
    for (int j : f.imputed_h36m) imputed_h.push_back(h.joints[size_t(j)]);
    const ojson frame = {{"joints", joints}, {"imputed", imputed}, {"imputed_h36m", imputed_h}};
    text += "  " + frame.dump() + (i + 1 < result.frames.size() ? ",\n" : "\n");
  }
  text += " ]\n}\n";
  return text;
}

void write_file_atomically(const std::string& path, const std::string& text) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  DOFPOSE_CHECK(f != nullptr, "cannot create '", tmp, "' (for ", path, "): ", std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool flushed = std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!written || !flushed || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno ? errno : err;
    std::remove(tmp.c_str());
    fail("cannot write '", path, "': ", std::strerror(e));
  }
}

// ================================================================ run_lift

LiftRunReport run_lift(const LiftRunOptions& opt, PoseLifter& lifter) {
  DOFPOSE_CHECK(!opt.input.empty(), "lift: no input file");
  DOFPOSE_CHECK(!opt.output.empty(), "lift: no output file (-o OUT.json)");
  const LiftInput in = read_lift_input(opt.input, opt.layout);
  LiftOptions lo;
  lo.normalise = opt.normalise;
  lo.min_confidence = opt.min_confidence;
  LiftResult r;
  try {
    r = lifter.lift(in, lo);
  } catch (const Error& e) {
    // Name the input: "frame 0: no joint is present" alone does not say which file.
    std::string msg = e.what();
    if (msg.rfind("lift: ", 0) == 0) msg = msg.substr(6);
    fail("lift: lift input ", opt.input, ": ", msg);
  }
  write_file_atomically(opt.output, lift_output_json(in, r, lifter));
  LiftRunReport rep;
  rep.frames = in.frames;
  rep.input_layout = layout_name(in.layout);
  rep.model_source = lifter.source();
  rep.model_status = lifter.status();
  rep.normalise_used = lift_normalise_name(r.normalise_used);
  rep.attributes_ignored = !in.attributes.empty() && !lifter.config().use_attributes;
  for (const LiftedFrame& f : r.frames) rep.frames_with_imputed_joints += f.imputed.empty() ? 0 : 1;
  return rep;
}

LiftRunReport run_lift(const LiftRunOptions& opt) {
  PoseLifter lifter = opt.model.empty() ? PoseLifter::from_default() : PoseLifter::from_file(opt.model);
  return run_lift(opt, lifter);
}

}  // namespace dofpose
